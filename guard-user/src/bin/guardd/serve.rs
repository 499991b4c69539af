//! The running daemon: the API on its socket, metrics, drop events, and the loop over
//! signals, interface changes and the expiry sweep.

use std::{os::unix::fs::PermissionsExt, path::Path};

use anyhow::{Context, bail};
use tokio::{
    net::UnixListener,
    signal::unix::{SignalKind, signal},
};
use tracing::{error, info};

use crate::{api, daemonize::Ready, events, http, metrics, state::Shared};

pub async fn serve(
    daemon: Shared,
    socket: &Path,
    mode: u32,
    metrics_listen: std::net::SocketAddr,
    ready: Option<Ready>,
) -> anyhow::Result<()> {
    // Handlers first: once the socket answers, a supervisor may send SIGTERM at once, and
    // the default action would kill guardd instead of stopping it cleanly.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let listener = bind_socket(socket, mode)?;
    let requests = metrics::ApiRequests::default();
    let metrics_listener = metrics::bind(metrics_listen).await?;
    let registry = metrics::registry(daemon.clone(), requests.clone());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(http::serve(
        metrics_listener,
        metrics::router(registry),
        http::METRICS,
        "metrics",
        stop_rx.clone(),
    ));
    let ring = daemon.engine.with_datapath(|d| d.take_drop_events());
    let top = daemon.top.clone();
    match ring {
        Some(ring) => drop(tokio::spawn(events::read(ring, top.clone()))),
        None => error!("the object has no DROP_EVENTS ring buffer: /v1/top stays empty"),
    }
    tokio::spawn(events::summarize(daemon.clone(), top));
    match daemon.engine.with_datapath(|d| d.take_limit_reports()) {
        Some(ring) => drop(tokio::spawn(crate::auto::run(ring, daemon.engine.clone()))),
        None => error!("the object has no LIMIT_REPORTS ring buffer: ban_after bans nothing"),
    }
    tokio::spawn(guard_user::fleet::run(daemon.engine.clone()));
    tokio::spawn(crate::shape::run(daemon.engine.clone()));
    info!(listen = %metrics_listen, "metrics listening");
    let app = api::router(daemon.clone(), requests);
    let server = tokio::spawn(http::serve(listener, app, http::API, "api", stop_rx));
    info!(socket = %socket.display(), "control API listening");
    if let Some(ready) = ready {
        ready.done();
    }
    notify(&[sd_notify::NotifyState::Ready]);
    crate::memory::release_freed();
    let links = crate::ifaces::link_events()
        .map_err(|e| {
            tracing::warn!(
                "no rtnetlink link notifications ({e}); interfaces are checked every second"
            )
        })
        .ok();
    let mut sweep = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = async {
                match &links {
                    Some(l) => crate::ifaces::next_change(l).await,
                    None => std::future::pending().await,
                }
            } => {
                let d = daemon.clone();
                tokio::task::spawn_blocking(move || d.follow_interfaces()).await?;
            }
            _ = sweep.tick() => {
                let d = daemon.clone();
                // Housekeeping off the runtime thread: attaching talks to the kernel, and
                // trimming the heap after a bulk call takes a while.
                let swept = tokio::task::spawn_blocking(move || {
                    crate::memory::trim_if_pending();
                    d.follow_interfaces();
                    d.engine.sweep().map(|gone| gone.len())
                });
                match swept.await? {
                    Ok(0) => {}
                    Ok(n) => {
                        info!(expired = n, "removed expired bans and allows");
                        if n >= crate::memory::BULK {
                            crate::memory::after_bulk();
                        }
                    }
                    Err(e) => error!("expiry sweep: {}", guard_user::error_chain(&e)),
                }
            }
            _ = hup.recv() => {
                notify(&[sd_notify::NotifyState::Reloading]);
                let d = daemon.clone();
                let res = tokio::task::spawn_blocking(move || {
                    let res = d.reload();
                    crate::memory::release_freed();
                    res
                })
                .await?;
                if let Err(e) = res {
                    error!("{e}");
                }
                notify(&[sd_notify::NotifyState::Ready]);
            }
        }
    }
    notify(&[sd_notify::NotifyState::Stopping]);
    info!(
        "stopping; enforcement stays attached through the pinned links (guardctl detach removes it)"
    );
    let _ = stop_tx.send(true);
    server.await?;
    let _ = std::fs::remove_file(socket);
    Ok(())
}

/// Tells systemd (Type=notify) where we are; a no-op outside systemd.
fn notify(state: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(false, state) {
        error!("sd_notify: {e}");
    }
}

/// Binds the API socket, replacing a stale socket file but never a live daemon's.
fn bind_socket(path: &Path, mode: u32) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!("another guardd is serving {}", path.display());
        }
        std::fs::remove_file(path)
            .with_context(|| format!("removing stale socket {}", path.display()))?;
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", path.display()))?;
    // Group-owned by `guard` when that group exists, so its members may use the API. Under
    // the unit guardd's group is guard already, and its syscall filter refuses chown.
    if let Ok(Some(group)) = nix::unistd::Group::from_name("guard") {
        if nix::unistd::getegid() != group.gid {
            nix::unistd::chown(path, None, Some(group.gid))
                .with_context(|| format!("chown {}", path.display()))?;
        }
    }
    Ok(listener)
}

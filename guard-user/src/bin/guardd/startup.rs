//! Start-up: config, checks, maps, attachment; then the API and the signal loop.

use std::{
    collections::HashMap,
    os::unix::fs::PermissionsExt,
    path::Path,
    sync::{Arc, Mutex},
    time::Instant,
};

use anyhow::{Context, bail};
use guard_common::{ListCode, lists::flags};
use guard_user::{
    config::Config,
    kernel::attach::{self, interface_exists},
    kernel::clock::monotonic_ns,
    kernel::datapath::{Datapath, Sizes},
    kernel::netif,
    kernel::objects,
    kernel::pins::PinLayout,
    lists,
    lists::tables::Tables,
    rate::refill::{Refill, Refiller, refill_params, ticks_per_period},
    rate::rules::RuleSet,
    verdicts::DynamicTable,
};
use ipnet::IpNet;
use tokio::{
    net::UnixListener,
    signal::unix::{SignalKind, signal},
};
use tracing::{error, info};

use crate::{
    Options, api,
    daemonize::Ready,
    events, metrics,
    state::{Daemon, Shared},
};

/// Temporary allows at most (bans are bounded by `[bans] max_entries`).
pub const MAX_ALLOWS: usize = 65_536;

/// The config file (or the embedded default) with the command-line flags applied.
pub fn effective_config(opts: &Options) -> anyhow::Result<Config> {
    let mut config = match &opts.config {
        Some(path) => Config::load(path)?,
        None => Config::embedded_default(),
    };
    if !opts.ifaces.is_empty() {
        config.interfaces = opts.ifaces.clone();
    }
    if let Some(mode) = opts.xdp_mode {
        config.xdp_mode = mode;
    }
    if let Some(socket) = &opts.socket {
        config.api.socket = socket.clone();
    }
    if let Some(dir) = &opts.pin_dir {
        config.pin_dir = dir.clone();
    }
    if let Some(addr) = opts.metrics {
        config.metrics.listen = addr;
    }
    config.monitor |= opts.monitor;
    Ok(config)
}

/// The kernel tables of the lists, and the allow entries (a ban inside one is refused).
pub fn build_tables(config: &Config) -> anyhow::Result<(Tables, Vec<IpNet>)> {
    let allow = lists::load(&config.lists.allow).context("allow list")?;
    let deny = lists::load(&config.lists.deny).context("deny list")?;
    Ok((Tables::build(&allow, &deny)?, allow))
}

pub fn runtime_flags(config: &Config) -> u32 {
    let mut f = 0;
    if config.monitor {
        f |= flags::MONITOR;
    }
    if config.drop_malformed {
        f |= flags::DROP_MALFORMED;
    }
    f
}

/// Public blocklists include private ranges: say so loudly when one covers this host.
pub fn warn_about_own_addresses(tables: &Tables, ifaces: &[String]) {
    for iface in ifaces {
        for addr in netif::addresses(iface) {
            if tables.lookup(addr) == ListCode::Deny {
                error!(
                    "the deny list covers {addr}, an address of {iface}: peers on that network \
                     will be dropped; allow your own networks if that is not what you want"
                );
            }
        }
    }
}

pub fn run(opts: Options, ready: Option<Ready>) -> anyhow::Result<()> {
    let config = effective_config(&opts)?;
    if config.interfaces.is_empty() {
        bail!("no interface to protect: set `interfaces` in the config or pass --iface");
    }
    for iface in &config.interfaces {
        if !interface_exists(iface) {
            bail!("unknown interface {iface}");
        }
    }
    check_privileges()?;
    check_kernel()?;
    // Before touching the kernel: a live daemon on our socket means this one must not start.
    if std::os::unix::net::UnixStream::connect(&config.api.socket).is_ok() {
        bail!("another guardd is serving {}", config.api.socket.display());
    }
    let (tables, allow_nets) = build_tables(&config)?;
    let pins = PinLayout::new(&config.pin_dir);
    pins.prepare()?;
    let rules = RuleSet::compile(&config.rules);
    let sizes = Sizes {
        buckets: rules.total_buckets(),
        dynamic: config.bans.max_entries + MAX_ALLOWS as u32,
    };
    let mut datapath = Datapath::load(objects::guard(), Some(&pins), sizes)?;
    datapath.set_flags(runtime_flags(&config))?;
    // Rules go live with full buckets (new ones) or their adopted state. Adopted buckets are
    // refilled from where the previous daemon left each slice (pinned in HEARTBEAT), so
    // tokens keep accruing across a restart; the burst caps what a long absence adds.
    let ticks = ticks_per_period(config.refill_period, config.refill_batches_per_second);
    let now = monotonic_ns();
    let heartbeat = datapath.heartbeat();
    let beat = match heartbeat.last() {
        0 => now,
        beat => beat.min(now),
    };
    let last = match (datapath.fresh_buckets, heartbeat.slices(ticks)) {
        (true, _) => vec![now; ticks as usize],
        // A slice no daemon has refilled yet (time 0) is the oldest: it goes first in the
        // rotation and earns up to its burst. Counting it as refilled at the last heartbeat
        // starved it when every daemon lived less than one period (found by restart_netns).
        (false, Some(slices)) => slices.into_iter().map(|t| t.min(now)).collect(),
        (false, None) => vec![beat; ticks as usize],
    };
    let mut work = Refill::new(refill_params(&rules), last);
    if datapath.fresh_buckets {
        // New buckets start full now, recorded for every slice, so a restart resumes the
        // rotation from here.
        work.fill_all(&datapath.buckets(), &heartbeat, now);
    } else {
        // The kernel reads each slice's time with this slicing (`ticks` may have changed).
        work.save_slices(&heartbeat);
    }
    datapath.set_refill_timing(ticks, config.refill_stale_after)?;
    let refiller = Refiller::start(
        work,
        datapath.buckets(),
        datapath.heartbeat(),
        config.refill_period,
    )?;
    datapath.set_rules(&rules)?;
    // Bans and allows pinned by an earlier guardd are adopted (expired ones dropped).
    let maps = datapath.take_dynamic().expect("fresh datapath");
    let max_bans = (config.bans.max_entries as usize)
        .min(datapath.dyn_capacity() as usize - MAX_ALLOWS.min(datapath.dyn_capacity() as usize));
    let dynamic = DynamicTable::new(maps, max_bans, MAX_ALLOWS, monotonic_ns())?;
    datapath.set_dyn_lens(&dynamic.lens()?)?;
    warn_about_own_addresses(&tables, &config.interfaces);
    let lists = tables.counts;
    // Lists are in the maps before the program sees its first packet.
    datapath.write_tables(tables)?;
    let mut attachments = Vec::new();
    for iface in &config.interfaces {
        attachments.push(attach::attach(
            datapath.program_mut(),
            iface,
            config.xdp_mode,
            &pins,
        )?);
    }
    info!(
        interfaces = ?config.interfaces,
        allow = lists.allow,
        deny = lists.deny,
        rules = rules.rules.len(),
        bans = dynamic.bans_active(),
        allows = dynamic.allows_active(),
        monitor = config.monitor,
        pin_dir = %config.pin_dir.display(),
        "guardd started"
    );
    let socket = config.api.socket.clone();
    let mode = config.api.socket_mode.bits();
    let metrics_listen = config.metrics.listen;
    let daemon: Shared = Arc::new(Mutex::new(Daemon {
        opts,
        config,
        datapath,
        attachments,
        pins,
        lists,
        rules,
        refiller,
        dynamic,
        allow_nets,
        top: Arc::default(),
        started: Instant::now(),
        reattach_failures: HashMap::new(),
    }));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve(daemon, &socket, mode, metrics_listen, ready))
}

async fn serve(
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
    tokio::spawn(metrics::serve(metrics_listener, registry));
    let (ring, top) = {
        let mut d = daemon.lock().expect("state lock");
        (d.datapath.take_drop_events(), d.top.clone())
    };
    match ring {
        Some(ring) => drop(tokio::spawn(events::read(ring, top.clone()))),
        None => error!("the object has no DROP_EVENTS ring buffer: /v1/top stays empty"),
    }
    tokio::spawn(events::summarize(daemon.clone(), top));
    info!(listen = %metrics_listen, "metrics listening");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let app = api::router(daemon.clone(), requests);
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<api::Peer>(),
        )
        .with_graceful_shutdown(async {
            let _ = stop_rx.await;
        })
        .await
    });
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
                tokio::task::spawn_blocking(move || d.lock().expect("state lock").follow_interfaces()).await?;
            }
            _ = sweep.tick() => {
                crate::memory::trim_if_pending();
                let d = daemon.clone();
                // Housekeeping off the runtime thread, as attaching may talk to the kernel.
                let swept = tokio::task::spawn_blocking(move || {
                    let mut d = d.lock().expect("state lock");
                    d.follow_interfaces();
                    d.sweep()
                });
                match swept.await? {
                    Ok(0) => {}
                    Ok(n) => {
                        info!(expired = n, "removed expired bans and allows");
                        if n >= crate::memory::BULK {
                            crate::memory::after_bulk();
                        }
                    }
                    Err(e) => error!("expiry sweep: {}", e.1),
                }
            }
            _ = hup.recv() => {
                notify(&[sd_notify::NotifyState::Reloading]);
                let d = daemon.clone();
                let res = tokio::task::spawn_blocking(move || d.lock().expect("state lock").reload()).await?;
                if let Err(e) = res {
                    error!("{e:#}");
                }
                crate::memory::release_freed();
                notify(&[sd_notify::NotifyState::Ready]);
            }
        }
    }
    notify(&[sd_notify::NotifyState::Stopping]);
    info!(
        "stopping; enforcement stays attached through the pinned links (guardctl detach removes it)"
    );
    let _ = stop_tx.send(());
    server.await??;
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
    // Group-owned by `guard` when that group exists, so its members may use the API.
    if let Ok(Some(group)) = nix::unistd::Group::from_name("guard") {
        nix::unistd::chown(path, None, Some(group.gid))
            .with_context(|| format!("chown {}", path.display()))?;
    }
    Ok(listener)
}

/// The oldest kernel with everything guard uses: bpf_loop (5.17), mmapable arrays (5.5),
/// XDP bpf_links (5.9).
const MIN_KERNEL: (u32, u32) = (5, 17);

fn check_kernel() -> anyhow::Result<()> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .context("reading the kernel release")?;
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    let version = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if version < MIN_KERNEL {
        bail!(
            "kernel {} is too old: guard needs Linux {}.{} or newer (the bpf_loop helper runs its rate rules)",
            release.trim(),
            MIN_KERNEL.0,
            MIN_KERNEL.1
        );
    }
    Ok(())
}

/// Fails with the missing capabilities' names rather than an EPERM from deep inside a load.
fn check_privileges() -> anyhow::Result<()> {
    use guard_user::kernel::privileges;
    let eff = privileges::effective().context("reading this process's capabilities")?;
    let missing = privileges::missing(eff);
    if missing.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = missing
        .iter()
        .map(|c| format!("{} ({})", c.name, c.why))
        .collect();
    bail!(
        "missing privileges: guardd needs {}; run it as root or grant them \
         (the shipped unit's AmbientCapabilities)",
        list.join(", ")
    )
}

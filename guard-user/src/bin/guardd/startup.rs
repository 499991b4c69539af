//! Start-up: the effective config, the checks, the engine, the attachments; then `serve`.

use std::{
    collections::HashMap,
    path::Path,
    sync::{Arc, Mutex},
    time::Instant,
};

use anyhow::bail;
use guard_user::{
    engine::{Engine, EngineError, Lists, Refilling},
    kernel::{
        attach::{self, interface_exists},
        pins::PinLayout,
        verifier::{self, Refused},
    },
};
use tracing::{info, warn};

use crate::{
    Options, checks,
    daemonize::Ready,
    serve,
    settings::effective_config,
    state::{Daemon, Interfaces, Shared},
};

/// A load the verifier refused: its whole log goes to a file beside the API socket (the
/// runtime directory, writable by guardd), and the error says where, in one line.
fn refused_load(e: EngineError, socket: &Path) -> anyhow::Error {
    let Some(refused) = find_refusal(&e) else {
        return e.into();
    };
    let path = socket
        .parent()
        .unwrap_or(Path::new("/tmp"))
        .join("verifier.log");
    let kept = std::fs::write(&path, &refused.log);
    match kept {
        Ok(()) => anyhow::anyhow!("{refused}; the verifier's log is in {}", path.display()),
        Err(w) => anyhow::anyhow!(
            "{refused} (its log could not be written to {}: {w})",
            path.display()
        ),
    }
}

fn find_refusal<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<Box<Refused>>() {
            return Some(r);
        }
        cur = err.source();
    }
    None
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
    checks::privileges()?;
    checks::kernel()?;
    checks::fleet(&config)?;
    guard_user::shape::window().map_err(anyhow::Error::msg)?;
    for w in config.warnings() {
        warn!("{w}");
    }
    // Before touching the kernel: a live daemon on our socket means this one must not start.
    if std::os::unix::net::UnixStream::connect(&config.api.socket).is_ok() {
        bail!("another guardd is serving {}", config.api.socket.display());
    }
    // Lists are read whole before anything else: a bad line loads nothing.
    let lists = Lists::load(&config)?.check(&config)?;
    let pins = PinLayout::new(&config.pin_dir);
    pins.prepare()?;
    // Flags, lists and rules are in the maps, buckets full or adopted and the refill running
    // before the program sees its first packet.
    let engine = Engine::start(&config, lists, Some(&pins), Refilling::Thread)
        .map_err(|e| refused_load(e, &config.api.socket))?;
    let program = engine.program_load().clone();
    info!(
        verified_insns = program.verified_insns,
        budget = verifier::BUDGET,
        load_ms = program.load_ms,
        kernel = %program.kernel,
        "XDP program loaded"
    );
    if program.verified_insns.is_some_and(|n| n > verifier::BUDGET) {
        warn!(
            "the kernel's verifier processed {} instructions of guard's program, over guard's \
             budget of {} (a fifth of its limit): a kernel update may refuse it; please report this",
            program.verified_insns.unwrap_or_default(),
            verifier::BUDGET
        );
    }
    let mut attachments = Vec::new();
    for iface in &config.interfaces {
        attachments.push(
            engine.with_datapath(|d| {
                attach::attach(d.program_mut(), iface, config.xdp_mode, &pins)
            })?,
        );
    }
    // An older release's pins: its links now run this program (taken over above, without a
    // moment unguarded); its maps go. Verdicts came back from the state database.
    for dir in pins.remove_older() {
        warn!(
            dir,
            "took over from an older guard's pins (another map layout): its links now run this \
             program; bans and allows were restored from the state database, rate buckets start full"
        );
    }
    let (bans, allows, _) = engine.verdict_counts();
    let counts = engine.list_counts();
    info!(
        interfaces = ?config.interfaces,
        allow = counts.allow,
        deny = counts.deny,
        rules = config.rules.len(),
        bans,
        allows,
        monitor = config.monitor,
        pin_dir = %config.pin_dir.display(),
        "guardd started"
    );
    let daemon: Shared = Arc::new(Daemon {
        opts,
        engine: std::sync::Arc::new(engine),
        pins,
        interfaces: Mutex::new(Interfaces {
            attachments,
            reattach_failures: HashMap::new(),
        }),
        top: Arc::default(),
        started: Instant::now(),
    });
    // Two workers: a request being answered (a long list, a bulk decode) never holds up
    // signals, scrapes and the other clients.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let api = &config.api;
    rt.block_on(serve::serve(
        daemon,
        &api.socket,
        api.socket_mode.bits(),
        config.metrics.listen,
        ready,
    ))
}

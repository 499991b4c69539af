//! Start-up: the effective config, the checks, the engine, the attachments; then `serve`.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Instant,
};

use anyhow::bail;
use guard_user::{
    engine::{Engine, Lists, Refilling},
    kernel::{
        attach::{self, interface_exists},
        pins::PinLayout,
    },
};
use tracing::info;

use crate::{
    Options, checks,
    daemonize::Ready,
    serve,
    settings::effective_config,
    state::{Daemon, Interfaces, Shared},
};

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
    // Before touching the kernel: a live daemon on our socket means this one must not start.
    if std::os::unix::net::UnixStream::connect(&config.api.socket).is_ok() {
        bail!("another guardd is serving {}", config.api.socket.display());
    }
    // Lists are read whole before anything else: a bad line loads nothing.
    let lists = Lists::load(&config)?;
    let pins = PinLayout::new(&config.pin_dir);
    pins.prepare()?;
    // Flags, lists and rules are in the maps, buckets full or adopted and the refill running
    // before the program sees its first packet.
    let engine = Engine::start(&config, lists, Some(&pins), Refilling::Thread)?;
    let mut attachments = Vec::new();
    for iface in &config.interfaces {
        attachments.push(
            engine.with_datapath(|d| {
                attach::attach(d.program_mut(), iface, config.xdp_mode, &pins)
            })?,
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
    let rt = tokio::runtime::Builder::new_current_thread()
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

//! The running daemon's state, shared by the API handlers and the signal loop.

use std::{
    sync::{Arc, Mutex},
    time::Instant,
};

use anyhow::Context;
use guard_user::{
    attach::Attachment,
    config::Config,
    datapath::Datapath,
    model::{InterfaceStatus, Stats, Status},
    pins::PinLayout,
    tables::ListCounts,
};
use tracing::{info, warn};

use crate::{Options, startup};

pub type Shared = Arc<Mutex<Daemon>>;

pub struct Daemon {
    pub opts: Options,
    pub config: Config,
    pub datapath: Datapath,
    pub attachments: Vec<Attachment>,
    pub pins: PinLayout,
    pub lists: ListCounts,
    pub started: Instant,
}

impl Daemon {
    pub fn status(&self) -> Status {
        let program_id = self.datapath.program_id();
        Status {
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            interfaces: self
                .attachments
                .iter()
                .map(|a| InterfaceStatus {
                    name: a.iface.clone(),
                    xdp_mode: a.mode,
                    program_id,
                })
                .collect(),
            monitor: self.config.monitor,
            uptime_secs: self.started.elapsed().as_secs(),
            config_path: self.opts.config.as_ref().map(|p| p.display().to_string()),
            pin_dir: self.pins.root().display().to_string(),
            refill_heartbeat_age_secs: None,
        }
    }

    pub fn stats(&self) -> anyhow::Result<Stats> {
        Ok(Stats::new(self.datapath.counters()?, self.lists))
    }

    /// Re-reads the config and the lists and applies them; on any error the running
    /// configuration stays as it was and the error is returned.
    pub fn reload(&mut self) -> anyhow::Result<()> {
        let config = startup::effective_config(&self.opts).context("reload refused")?;
        let tables = startup::build_tables(&config).context("reload refused")?;
        for (what, changed) in [
            ("interfaces", config.interfaces != self.config.interfaces),
            ("pin_dir", config.pin_dir != self.config.pin_dir),
            ("api.socket", config.api.socket != self.config.api.socket),
            ("xdp_mode", config.xdp_mode != self.config.xdp_mode),
        ] {
            if changed {
                warn!("{what} changed: it takes effect when guardd restarts");
            }
        }
        startup::warn_about_own_addresses(&tables, &self.config.interfaces);
        let counts = tables.counts;
        self.datapath.set_flags(startup::runtime_flags(&config))?;
        self.datapath.write_tables(tables)?;
        self.lists = counts;
        info!(
            allow = counts.allow,
            deny = counts.deny,
            monitor = config.monitor,
            "reloaded"
        );
        self.config = config;
        Ok(())
    }
}

//! The running daemon: the engine, the interfaces it protects, and what the API reports.
//! Nothing here holds a lock across the engine's work: the engine locks what it needs.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Instant,
};

use guard_user::{
    config::Config,
    control::{
        model::{InterfaceStatus, Status},
        top::TopTalkers,
    },
    engine::{Applied, Engine, EngineError},
    kernel::{attach::Attachment, pins::PinLayout},
};
use tracing::{info, warn};

use crate::{Options, settings};

pub type Shared = Arc<Daemon>;

pub struct Daemon {
    pub opts: Options,
    pub engine: Arc<Engine>,
    pub pins: PinLayout,
    pub interfaces: Mutex<Interfaces>,
    /// Sampled drops by source, fed by `events::read`.
    pub top: Arc<Mutex<TopTalkers>>,
    pub started: Instant,
}

/// The interfaces guardd protects.
pub struct Interfaces {
    pub attachments: Vec<Attachment>,
    /// Interfaces that came back but could not be attached again, with the last error:
    /// logged once per distinct error while retried.
    pub reattach_failures: HashMap<String, String>,
}

/// Why a reload did not apply.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("reload refused: {0:#}")]
    Config(anyhow::Error),
    #[error("reload refused: {}", guard_user::error_chain(.0))]
    Refused(#[source] EngineError),
    #[error("reload failed; the previous configuration stays in force: {}", guard_user::error_chain(.0))]
    Failed(#[source] EngineError),
}

impl Daemon {
    pub fn status(&self) -> Status {
        let config = self.engine.config();
        let interfaces = self
            .interfaces
            .lock()
            .expect("interfaces lock")
            .attachments
            .iter()
            .map(|a| InterfaceStatus {
                name: a.iface.clone(),
                xdp_mode: a.mode,
                // Gone, or back and not attached again yet: nothing runs there.
                program_id: (a.ifindex != 0).then_some(a.program_id),
            })
            .collect();
        Status {
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            interfaces,
            monitor: config.monitor,
            uptime_secs: self.started.elapsed().as_secs(),
            config_path: self.opts.config.as_ref().map(|p| p.display().to_string()),
            pin_dir: self.pins.root().display().to_string(),
            refill_heartbeat_age_secs: self.heartbeat_age_secs(),
            program: self.engine.program_load().clone(),
            fleet: self.engine.fleet().map(|f| f.status()),
        }
    }

    /// Seconds since the last refill tick; None while there is no rule to refill.
    pub fn heartbeat_age_secs(&self) -> Option<f64> {
        self.engine.heartbeat_age_secs()
    }

    /// Re-reads the config (with the command line's overrides) and the lists and applies
    /// them, all or nothing (`Engine::apply`).
    pub fn reload(&self) -> Result<Applied, ReloadError> {
        let config: Config = settings::effective_config(&self.opts).map_err(ReloadError::Config)?;
        let applied = self.engine.apply(&config).map_err(|e| match e {
            EngineError::Datapath(_) | EngineError::Verdicts(_) | EngineError::Refill(_) => {
                ReloadError::Failed(e)
            }
            other => ReloadError::Refused(other),
        })?;
        for w in config.warnings() {
            warn!("{w}");
        }
        info!(
            allow = applied.lists.allow,
            deny = applied.lists.deny,
            monitor = config.monitor,
            "reloaded"
        );
        Ok(applied)
    }
}

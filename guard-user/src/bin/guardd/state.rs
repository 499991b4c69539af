//! The running daemon's state, shared by the API handlers and the signal loop.

use std::{
    sync::{Arc, Mutex},
    time::Instant,
};

use anyhow::Context;
use guard_user::{
    attach::Attachment,
    buckets::monotonic_ns,
    config::Config,
    datapath::Datapath,
    model::{InterfaceStatus, RefillSummary, RuleCount, Stats, Status},
    pins::PinLayout,
    refill::{Refiller, refill_params},
    rules::RuleSet,
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
    pub rules: RuleSet,
    pub refiller: Refiller,
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
            refill_heartbeat_age_secs: self.heartbeat_age_secs(),
        }
    }

    /// Seconds since the last refill tick; None while there is no rule to refill.
    pub fn heartbeat_age_secs(&self) -> Option<f64> {
        let beat = self.datapath.heartbeat().last();
        (!self.rules.rules.is_empty() && beat != 0)
            .then(|| monotonic_ns().saturating_sub(beat) as f64 / 1e9)
    }

    pub fn stats(&self) -> anyhow::Result<Stats> {
        let per_rule = self.datapath.rule_counters(self.rules.rules.len())?;
        let rules = self
            .rules
            .rules
            .iter()
            .zip(per_rule)
            .map(|(r, (passed, limited))| RuleCount {
                rule: r.name.clone(),
                passed,
                limited,
            })
            .collect();
        Ok(Stats::new(
            self.datapath.counters()?,
            rules,
            self.lists,
            self.refill_summary(),
        ))
    }

    fn refill_summary(&self) -> Option<RefillSummary> {
        use std::sync::atomic::Ordering::Relaxed;
        if self.rules.rules.is_empty() {
            return None;
        }
        let s = &self.refiller.stats;
        let ticks = s.ticks.load(Relaxed);
        Some(RefillSummary {
            ticks,
            buckets_per_tick: s.buckets_touched.load(Relaxed) as f64 / ticks.max(1) as f64,
            last_tick_us: s.last_duration_ns.load(Relaxed) as f64 / 1e3,
            max_tick_us: s.max_duration_ns.load(Relaxed) as f64 / 1e3,
            cpu_share: s.busy_ns.load(Relaxed) as f64
                / self.started.elapsed().as_nanos().max(1) as f64,
        })
    }

    /// Re-reads the config and the lists and applies them; on any error the running
    /// configuration stays as it was and the error is returned.
    pub fn reload(&mut self) -> anyhow::Result<()> {
        let config = startup::effective_config(&self.opts).context("reload refused")?;
        let tables = startup::build_tables(&config).context("reload refused")?;
        let rules = RuleSet::compile(&config.rules);
        if !rules.same_layout(&self.rules) {
            anyhow::bail!(
                "reload refused: the rules' bucket layout changed (how many rules, or their \
                 `buckets`); restart guardd to apply it"
            );
        }
        for (what, changed) in [
            ("interfaces", config.interfaces != self.config.interfaces),
            ("pin_dir", config.pin_dir != self.config.pin_dir),
            ("api.socket", config.api.socket != self.config.api.socket),
            ("xdp_mode", config.xdp_mode != self.config.xdp_mode),
            (
                "refill_period",
                config.refill_period != self.config.refill_period,
            ),
            (
                "refill_batches_per_second",
                config.refill_batches_per_second != self.config.refill_batches_per_second,
            ),
        ] {
            if changed {
                warn!("{what} changed: it takes effect when guardd restarts");
            }
        }
        startup::warn_about_own_addresses(&tables, &self.config.interfaces);
        let counts = tables.counts;
        self.datapath.set_flags(startup::runtime_flags(&config))?;
        self.datapath.set_stale_after(config.refill_stale_after)?;
        self.datapath.write_tables(tables)?;
        self.datapath.set_rules(&rules)?;
        self.refiller.set_rules(refill_params(&rules));
        self.rules = rules;
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

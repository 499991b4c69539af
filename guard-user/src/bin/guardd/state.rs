//! The running daemon's state, shared by the API handlers and the signal loop.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::Instant,
};

use axum::http::StatusCode;
use guard_common::{
    dynamic::DynLens,
    tokens::{TOKEN_SCALE, available},
};
use guard_user::{
    control::model::{PenaltyResult, RulePenalty},
    verdicts::{DynError, DynamicTable, Entry, Escalation, Kind, Request},
};
use ipnet::IpNet;

use anyhow::Context;
use guard_user::{
    config::Config,
    control::model::{InterfaceStatus, RefillSummary, RuleCount, Stats, Status},
    kernel::attach::Attachment,
    kernel::clock::monotonic_ns,
    kernel::datapath::{Change, Datapath},
    kernel::pins::PinLayout,
    lists::tables::ListCounts,
    rate::refill::{Refiller, refill_params},
    rate::rules::RuleSet,
};
use tracing::info;

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
    pub dynamic: DynamicTable,
    /// The allow list's entries: a ban inside one is refused.
    pub allow_nets: Vec<IpNet>,
    /// Sampled drops by source, fed by `events::read`.
    pub top: Arc<Mutex<guard_user::control::top::TopTalkers>>,
    pub started: Instant,
    /// Interfaces that came back but could not be attached again, with the last error:
    /// logged once per distinct error while retried.
    pub reattach_failures: HashMap<String, String>,
}

/// A refused or failed request: what the API answers.
pub struct Refusal(pub StatusCode, pub String);

impl From<DynError> for Refusal {
    fn from(e: DynError) -> Refusal {
        let code = match e {
            DynError::CoveredByAllow { .. } => StatusCode::CONFLICT,
            DynError::BansFull { .. }
            | DynError::AllowsFull { .. }
            | DynError::TooManyLengths { .. } => StatusCode::INSUFFICIENT_STORAGE,
            DynError::NotFound { .. } => StatusCode::NOT_FOUND,
            DynError::Map { .. } | DynError::MissingMap { .. } | DynError::Undo { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        Refusal(code, guard_user::error_chain(&e))
    }
}

impl Daemon {
    pub fn status(&self) -> Status {
        Status {
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            interfaces: self
                .attachments
                .iter()
                .map(|a| InterfaceStatus {
                    name: a.iface.clone(),
                    xdp_mode: a.mode,
                    // Gone, or back and not attached again yet: nothing runs there.
                    program_id: (a.ifindex != 0).then_some(a.program_id),
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

    /// Adds bans or allows, all or none; the kernel probes any new prefix length before the
    /// first entry of that length is written.
    pub fn add_entries(&mut self, kind: Kind, reqs: &[Request]) -> Result<Vec<Entry>, Refusal> {
        let Daemon {
            dynamic,
            datapath,
            allow_nets,
            config,
            ..
        } = self;
        let escalation = Escalation {
            ttls: config.bans.escalation.iter().map(|d| d.0).collect(),
            default_ttl: config.bans.default_ttl,
        };
        let set_lens = |lens: &DynLens| {
            datapath.set_dyn_lens(lens).map_err(|e| DynError::Map {
                name: "CONFIG",
                source: map_error(e),
            })
        };
        Ok(dynamic.add(
            kind,
            reqs,
            allow_nets,
            &escalation,
            monotonic_ns(),
            set_lens,
        )?)
    }

    pub fn remove_entry(&mut self, net: &IpNet, kind: Kind) -> Result<Entry, Refusal> {
        let e = self.dynamic.remove(net, kind)?;
        self.shrink_lens()?;
        Ok(e)
    }

    /// Removes expired bans and allows; returns how many.
    pub fn sweep(&mut self) -> Result<usize, Refusal> {
        let gone = self.dynamic.sweep(monotonic_ns())?;
        if !gone.is_empty() {
            self.shrink_lens()?;
        }
        Ok(gone.len())
    }

    /// After removals: the kernel stops probing lengths no entry uses.
    fn shrink_lens(&mut self) -> Result<(), Refusal> {
        let lens = self.dynamic.lens()?;
        self.datapath.set_dyn_lens(&lens).map_err(|e| {
            Refusal(
                StatusCode::INTERNAL_SERVER_ERROR,
                guard_user::error_chain(&e),
            )
        })
    }

    /// Charges `tokens` to the source's bucket in one rule or all, never taking it deeper in
    /// debt than 60 s of the rule's refill.
    pub fn penalize(
        &self,
        ip: IpAddr,
        tokens: u64,
        rule: Option<&str>,
    ) -> Result<PenaltyResult, Refusal> {
        let indices: Vec<usize> = match rule {
            Some(name) => match self.rules.rules.iter().position(|r| r.name == name) {
                Some(i) => vec![i],
                None => {
                    return Err(Refusal(
                        StatusCode::NOT_FOUND,
                        format!("no rule named {name:?}"),
                    ));
                }
            },
            None => (0..self.rules.rules.len()).collect(),
        };
        if indices.is_empty() {
            return Err(Refusal(
                StatusCode::CONFLICT,
                "no rate rule is configured".into(),
            ));
        }
        let key = self.datapath.key();
        let buckets = self.datapath.buckets();
        let mut out = Vec::new();
        for i in indices {
            let r = &self.rules.rules[i];
            let idx = self.rules.bucket_of(i, &key, ip).expect("index in range");
            let b = buckets.get(idx);
            let charge = guard_user::rate::penalty::charge(b.credit, b.spent, r.rate_units, tokens);
            buckets.add_spent(idx, charge);
            let after = buckets.get(idx);
            out.push(RulePenalty {
                rule: r.name.clone(),
                tokens_charged: charge as f64 / TOKEN_SCALE as f64,
                tokens_available: available(after.credit, after.spent) as f64 / TOKEN_SCALE as f64,
            });
        }
        Ok(PenaltyResult {
            ip: ip.to_string(),
            rules: out,
        })
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
        let mut stats = Stats::new(
            self.datapath.counters()?,
            rules,
            self.lists,
            self.refill_summary(),
        );
        stats.bans_active = self.dynamic.bans_active();
        stats.allows_active = self.dynamic.allows_active();
        stats.bans_refused_full = self.dynamic.refused_full;
        Ok(stats)
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

    /// Re-reads the config and the lists and applies them, all or nothing: everything is
    /// validated and built first; settings that only a restart can apply refuse the reload;
    /// a kernel write that fails puts the previous lists, rules and flags back. On any error
    /// the running configuration stays as it was and the error is returned.
    pub fn reload(&mut self) -> anyhow::Result<()> {
        let config = startup::effective_config(&self.opts).context("reload refused")?;
        let (tables, allow_nets) = startup::build_tables(&config).context("reload refused")?;
        let rules = RuleSet::compile(&config.rules);
        if let Some(why) = restart_only_change(&self.config, &config, &rules, &self.rules) {
            anyhow::bail!("reload refused: {why}; restart guardd to apply it");
        }
        startup::warn_about_own_addresses(&tables, &self.config.interfaces);
        let counts = tables.counts;
        // The refill keeps its period (refused above when it changed).
        let ticks = guard_user::rate::refill::ticks_per_period(
            self.config.refill_period,
            self.config.refill_batches_per_second,
        );
        let change = Change {
            tables,
            rules: &rules,
            flags: startup::runtime_flags(&config),
            refill_ticks: ticks,
            stale_after: config.refill_stale_after,
        };
        self.datapath
            .apply(change, &self.rules)
            .context("reload failed; the previous configuration stays in force")?;
        self.refiller.set_rules(refill_params(&rules));
        self.rules = rules;
        self.lists = counts;
        self.allow_nets = allow_nets;
        let room = (self.datapath.dyn_capacity() as usize).saturating_sub(startup::MAX_ALLOWS);
        self.dynamic.max_bans = (config.bans.max_entries as usize).min(room);
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

/// The first setting of `new` that differs from `old` and takes a restart to apply, if any.
fn restart_only_change(
    old: &Config,
    new: &Config,
    new_rules: &RuleSet,
    old_rules: &RuleSet,
) -> Option<String> {
    let changed = [
        ("interfaces", old.interfaces != new.interfaces),
        ("xdp_mode", old.xdp_mode != new.xdp_mode),
        ("pin_dir", old.pin_dir != new.pin_dir),
        ("api.socket", old.api.socket != new.api.socket),
        (
            "api.socket_mode",
            old.api.socket_mode != new.api.socket_mode,
        ),
        ("metrics.listen", old.metrics.listen != new.metrics.listen),
        ("refill_period", old.refill_period != new.refill_period),
        (
            "refill_batches_per_second",
            old.refill_batches_per_second != new.refill_batches_per_second,
        ),
    ];
    if let Some((key, _)) = changed.iter().find(|(_, c)| *c) {
        return Some(format!("{key} changed"));
    }
    (!new_rules.same_layout(old_rules)).then(|| {
        "the rules' bucket layout changed (how many rules, or their `buckets`)".to_string()
    })
}

fn map_error(e: guard_user::kernel::datapath::DatapathError) -> aya::maps::MapError {
    match e {
        guard_user::kernel::datapath::DatapathError::Map { source, .. } => source,
        other => aya::maps::MapError::SyscallError(aya::sys::SyscallError {
            call: "write CONFIG",
            io_error: std::io::Error::other(other.to_string()),
        }),
    }
}

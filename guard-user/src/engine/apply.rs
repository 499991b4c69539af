//! Applying a configuration, all or nothing: everything is parsed and built before the
//! kernel is touched; a setting only a restart can apply refuses the whole change; the
//! datapath writes lists, rules, then the runtime config, and puts the old ones back when a
//! write fails (`Datapath::apply`).

use guard_common::runtime::flags;
use ipnet::IpNet;

use super::{Engine, EngineError, start::Lists};
use crate::{
    config::{Config, Protocol},
    kernel::datapath::Change,
    lists::tables::Tables,
    model::report::ListCounts,
    protect::{check_deny, host::Protection},
    rate::{
        refill::{refill_params, ticks_per_period},
        rules::RuleSet,
    },
};

/// What an applied configuration holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub lists: ListCounts,
    pub rules: usize,
}

impl Engine {
    /// Reads the lists `config` names and applies both (guardd's reload).
    pub fn apply(&self, config: &Config) -> Result<Applied, EngineError> {
        let lists = Lists::load(config)?;
        self.apply_lists(config, lists)
    }

    /// Applies `config` with `lists`, all or nothing; on any error the configuration in
    /// force stays as it was.
    pub fn apply_lists(&self, config: &Config, lists: Lists) -> Result<Applied, EngineError> {
        let c = lists.check(config)?;
        self.commit(config, c.tables, c.allow, c.protection, Check::RestartOnly)
    }

    /// Writes `config`, its list `tables` and `allow` entries to the kernel (lists, rules,
    /// then the runtime config; the previous ones back on failure) and makes them the
    /// configuration in force. The one path from a config to the kernel: start-up, reloads
    /// and fixtures all come through here.
    pub(super) fn commit(
        &self,
        config: &Config,
        tables: Tables,
        allow: Vec<IpNet>,
        protection: Protection,
        check: Check,
    ) -> Result<Applied, EngineError> {
        let rules = RuleSet::compile(&config.rules);
        let mut k = self.kernel();
        if check == Check::RestartOnly
            && let Some(what) = restart_only_change(&k.config, config, &k.rules, &rules)
        {
            return Err(EngineError::RestartOnly { what });
        }
        let counts = tables.counts;
        // The refill keeps its period (a change is refused above).
        let ticks = ticks_per_period(k.config.refill_period, k.config.refill_batches_per_second);
        // The fleet's connections skip the rules: the servers are in the map before the
        // flag that turns the lookup on.
        let fleet_flag = k.datapath.set_fleet_peers(protection.fleet_servers())?;
        let change = Change {
            tables,
            rules: &rules.rules,
            flags: runtime_flags(config) | fleet_flag,
            refill_ticks: ticks,
            stale_after: config.refill_stale_after,
            verified_for: config.known.verified_for,
        };
        let old_rules = k.rules.clone();
        k.datapath.apply(change, &old_rules.rules)?;
        if let Some(r) = &k.refiller {
            r.set_rules(refill_params(&rules));
        }
        let applied = Applied {
            lists: counts,
            rules: rules.rules.len(),
        };
        k.rules = rules;
        k.lists = counts;
        k.allow_nets = std::sync::Arc::new(allow);
        k.protection = protection;
        k.config = config.clone();
        let max_bans = k.max_bans();
        drop(k);
        self.verdicts().max_bans = max_bans;
        // The engaged budgets' bits follow the rules' new places and modes (a failure leaves
        // them to the next window's close, which writes them again).
        if let Err(e) = self.shape_engage() {
            tracing::warn!("attack shape: {}", crate::error_chain(&e));
        }
        Ok(applied)
    }
}

/// What `commit` checks against the configuration in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Check {
    /// Start-up: nothing is in force yet.
    First,
    /// A reload: settings only a restart can apply are refused.
    RestartOnly,
}

/// The flag bits of `config` for the runtime config (`guard_common::runtime::flags`).
pub(super) fn runtime_flags(config: &Config) -> u32 {
    let mut f = 0;
    if config.monitor {
        f |= flags::MONITOR;
    }
    if config.drop_malformed {
        f |= flags::DROP_MALFORMED;
    }
    // Sources are learned only where a budget may need them.
    if config.rules.iter().any(|r| r.budget().is_some()) {
        f |= flags::KNOWN;
    }
    // Rules that need the transport header: what hides it from them is dropped.
    for r in config.rules.iter().filter(|r| !r.monitor) {
        if r.ports.is_empty() && !r.tcp_syn_only {
            continue;
        }
        match r.protocol {
            Protocol::Tcp => f |= flags::L4_RULES_TCP,
            Protocol::Udp => f |= flags::L4_RULES_UDP,
            Protocol::Any => f |= flags::L4_RULES_TCP | flags::L4_RULES_UDP,
            Protocol::Icmp => {}
        }
    }
    f
}

/// The protected addresses of `config` on this host; refused when the deny list drops
/// one that no allow entry covers (public blocklists include private ranges: the FireHOL
/// list holds 10.0.0.0/8 and 198.18.0.0/15).
pub(super) fn protection(
    config: &Config,
    lists: &Lists,
    tables: &Tables,
) -> Result<Protection, EngineError> {
    let mut protection = Protection::new(config);
    check_deny(
        &lists.deny,
        tables,
        &protection.current(),
        &config.lists.deny,
    )?;
    Ok(protection)
}

/// The first setting of `new` that differs from `old` and takes a restart to apply, if any,
/// by its key.
pub fn restart_only_change(
    old: &Config,
    new: &Config,
    old_rules: &RuleSet,
    new_rules: &RuleSet,
) -> Option<String> {
    let changed = [
        ("interfaces", old.interfaces != new.interfaces),
        ("xdp_mode", old.xdp_mode != new.xdp_mode),
        ("pin_dir", old.pin_dir != new.pin_dir),
        ("state_dir", old.state_dir != new.state_dir),
        ("api.socket", old.api.socket != new.api.socket),
        (
            "api.socket_mode",
            old.api.socket_mode != new.api.socket_mode,
        ),
        ("metrics.listen", old.metrics.listen != new.metrics.listen),
        ("fleet", old.fleet != new.fleet),
        ("known.slots", old.known.slots != new.known.slots),
        ("refill_period", old.refill_period != new.refill_period),
        (
            "refill_batches_per_second",
            old.refill_batches_per_second != new.refill_batches_per_second,
        ),
    ];
    if let Some((key, _)) = changed.iter().find(|(_, c)| *c) {
        return Some(key.to_string());
    }
    (!new_rules.same_layout(old_rules)).then(|| {
        "the rules' bucket layout (how many rules, their `buckets`, or which have a budget)"
            .to_string()
    })
}

//! The engine behind guardd: it owns the datapath, the bans-and-allows table, the rule set
//! and the refill. `Engine::start` loads (adopting pins) and applies a config; `apply` applies
//! a new one all or nothing (guardd's reload); the verdict operations (add, remove, sweep,
//! penalize) and the readings (stats, lists of entries) are here too. guardd wires it to
//! signals, the API and metrics; the test fixtures start it without pins or refill thread.
//!
//! Locks, always taken in this order and never the other way: `verdicts` (the table, held
//! for a whole batch), `durable` (the database: reached only with the table in hand,
//! `durable_under`, or alone for a moment), `kernel` (the configuration in force and the
//! datapath, held briefly and never while taking another), and inside the kernel layer the
//! `CONFIG` cell. `shape` (the attack shapes) is taken alone, never with another. Status, stats and scrapes take only `kernel` and the published counts, so
//! a bulk ban never stalls them.

mod apply;
mod auto;
mod durable;
mod fleet;
mod ops;
mod shape;
mod start;

use std::{
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed},
    },
    time::Instant,
};

use ipnet::IpNet;

pub use apply::{Applied, restart_only_change};
pub use auto::AutoBan;
pub use ops::Added;
pub use shape::ShapeReport;
pub use start::{Checked, Lists, Refilling};

use crate::{
    config::Config,
    kernel::{
        buckets::{Buckets, Heartbeat},
        datapath::Datapath,
    },
    model::clock::monotonic_ns,
    model::report::ListCounts,
    protect::{Protected, host::Protection},
    rate::{
        refill::{RefillStats, Refiller},
        rules::RuleSet,
    },
    verdicts::{DynamicTable, Escalation},
};

/// Temporary allows at most (bans are bounded by `[bans] max_entries`); with it, the size
/// of every bans-and-allows map: `max_entries + MAX_ALLOWS`.
pub const MAX_ALLOWS: usize = 65_536;
/// Vouches at most, in the same maps: `max_entries + MAX_ALLOWS + MAX_VOUCHES` in all.
pub const MAX_VOUCHES: usize = 262_144;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Datapath(#[from] crate::kernel::KernelError),
    #[error(transparent)]
    Verdicts(#[from] crate::verdicts::DynError),
    #[error("{which} list")]
    List {
        which: &'static str,
        #[source]
        source: crate::lists::ListError,
    },
    #[error(transparent)]
    Tables(#[from] crate::lists::tables::TableError),
    #[error("{what} changed; restart guardd to apply it")]
    RestartOnly { what: String },
    #[error("cannot start the refill thread")]
    Refill(#[source] std::io::Error),
    #[error("no rule named {name:?}")]
    NoSuchRule { name: String },
    #[error("no rate rule is configured")]
    NoRules,
    #[error(
        "{}: left as it is (only a corrupt database is set aside); fix it and start guardd again",
        crate::error_chain(.0)
    )]
    State(Box<crate::state::StateError>),
    #[error(transparent)]
    DenyCoversProtected(#[from] Box<crate::protect::DenyCoversProtected>),
}

/// What the kernel-facing half holds: the datapath and the configuration in force.
pub(crate) struct Kernel {
    pub datapath: Datapath,
    pub rules: RuleSet,
    pub lists: ListCounts,
    /// The allow list's entries: a ban inside one is refused.
    pub allow_nets: Arc<Vec<IpNet>>,
    pub config: Config,
    pub refiller: Option<Refiller>,
    /// What no ban may cover (`crate::protect`).
    pub protection: Protection,
}

impl Kernel {
    fn escalation(&self) -> Escalation {
        Escalation {
            ttls: self.config.bans.escalation.iter().map(|d| d.0).collect(),
            default_ttl: self.config.bans.default_ttl,
            vouch_ttl: self.config.known.verified_for,
        }
    }

    /// Bans the table may hold: `[bans] max_entries`, within the maps' capacity.
    fn max_bans(&self) -> usize {
        let room = (self.datapath.dyn_capacity() as usize).saturating_sub(MAX_ALLOWS + MAX_VOUCHES);
        (self.config.bans.max_entries as usize).min(room)
    }
}

/// Counts the status and metrics read without waiting for the verdict table.
#[derive(Debug, Default)]
struct Published {
    bans: AtomicUsize,
    allows: AtomicUsize,
    vouches: AtomicUsize,
    refused_full: AtomicU64,
    /// Changes enforced but not yet in the state database.
    unsaved: AtomicUsize,
}

pub struct Engine {
    verdicts: Mutex<DynamicTable>,
    kernel: Mutex<Kernel>,
    published: Published,
    buckets: Arc<Buckets>,
    heartbeat: Arc<Heartbeat>,
    refill_stats: Option<Arc<RefillStats>>,
    key: [u64; 2],
    started: Instant,
    durable: Mutex<durable::Durable>,
    /// With `[fleet]`: the outbox and the link's state.
    fleet: Option<Arc<crate::fleet::Fleet>>,
    /// Automatic verdicts' counters and monitor-mode memory.
    auto: auto::Auto,
    /// What loading the XDP program cost the kernel's verifier.
    program: crate::kernel::verifier::ProgramLoad,
    /// The rules' attack shapes and the maps they are read from.
    shape: Mutex<shape::ShapeState>,
}

impl Engine {
    fn kernel(&self) -> MutexGuard<'_, Kernel> {
        self.kernel.lock().expect("engine kernel lock")
    }

    fn verdicts(&self) -> MutexGuard<'_, DynamicTable> {
        self.verdicts.lock().expect("engine verdicts lock")
    }

    /// Runs `f` on the datapath (attaching, fixtures' test runs).
    pub fn with_datapath<T>(&self, f: impl FnOnce(&mut Datapath) -> T) -> T {
        f(&mut self.kernel().datapath)
    }

    /// What loading the XDP program cost the kernel's verifier (no lock taken).
    pub fn program_load(&self) -> &crate::kernel::verifier::ProgramLoad {
        &self.program
    }

    /// The protected addresses in force, read again from the host when they are old.
    pub fn protected(&self) -> Arc<Protected> {
        self.kernel().protection.current()
    }

    /// The configuration in force.
    pub fn config(&self) -> Config {
        self.kernel().config.clone()
    }

    /// The rule set in force.
    pub fn rules(&self) -> RuleSet {
        self.kernel().rules.clone()
    }

    pub fn list_counts(&self) -> ListCounts {
        self.kernel().lists
    }

    pub fn buckets(&self) -> Arc<Buckets> {
        self.buckets.clone()
    }

    pub fn heartbeat(&self) -> Arc<Heartbeat> {
        self.heartbeat.clone()
    }

    /// The refill thread's counters (none without a refill thread).
    pub fn refill_stats(&self) -> Option<Arc<RefillStats>> {
        self.refill_stats.clone()
    }

    /// The bucket-index key. Never log or export it: it would let a sender aim at buckets.
    pub fn key(&self) -> [u64; 2] {
        self.key
    }

    /// Bans and allows in force, and requests refused because a table was full.
    /// Vouches in force.
    pub fn vouches_active(&self) -> usize {
        self.published.vouches.load(Relaxed)
    }

    pub fn verdict_counts(&self) -> (usize, usize, u64) {
        let p = &self.published;
        (
            p.bans.load(Relaxed),
            p.allows.load(Relaxed),
            p.refused_full.load(Relaxed),
        )
    }

    /// Changes enforced but not yet in the state database (it refuses writes).
    pub fn unsaved(&self) -> usize {
        self.published.unsaved.load(Relaxed)
    }

    /// Seconds since the last refill tick; None while there is no rule to refill.
    pub fn heartbeat_age_secs(&self) -> Option<f64> {
        let rules = self.kernel().rules.rules.len();
        let beat = self.heartbeat.last();
        (rules > 0 && beat != 0).then(|| monotonic_ns().saturating_sub(beat) as f64 / 1e9)
    }

    fn publish(&self, t: &DynamicTable) {
        let p = &self.published;
        p.bans.store(t.bans_active(), Relaxed);
        p.allows.store(t.allows_active(), Relaxed);
        p.vouches.store(t.vouches_active(), Relaxed);
        p.refused_full.store(t.refused_full, Relaxed);
    }
}

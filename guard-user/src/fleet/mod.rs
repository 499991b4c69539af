//! The fleet: verdicts made on one host enforced on every host, through NATS JetStream
//! key-value buckets (`record`). Each node publishes what it makes (`outbox`, `link`) and
//! applies what the others make through its `Host` (guardd's engine), as the API would
//! (`watch`). Expiry
//! stays in each kernel. NATS down: the node goes on alone and publishes when it is back.

mod link;
pub mod outbox;
pub mod record;
mod watch;

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
};

use prometheus_client::metrics::histogram::Histogram;
use tracing::warn;

pub use link::run;
use outbox::Outbox;
use record::{Refusal, Refused};

use std::collections::HashSet;

use ipnet::IpNet;

use crate::{
    config::Config,
    model::{Kind, Request, report::FleetStatus},
    state::{Commit, OutboxRow},
};

/// A change another node made, as its bucket delivered it.
#[derive(Debug, Clone)]
pub enum RemoteOp {
    /// A request with `remote` set.
    Put(Request),
    Delete(IpNet),
}

/// What applying remote changes did.
#[derive(Debug, Default)]
pub struct RemoteApplied {
    /// Creation times (wall-clock ns) of the entries written.
    pub put: Vec<u64>,
    /// Their prefixes.
    pub nets: Vec<IpNet>,
    pub deleted: usize,
}

/// What the link needs of the daemon it serves (guardd's engine): the shared fleet state,
/// and the verdict table, through which remote changes go as the API's do. The link knows
/// nothing else of the daemon, and the daemon calls the link only to start it.
pub trait Host: Send + Sync + 'static {
    fn fleet(&self) -> Option<&Arc<Fleet>>;
    /// The outbox rows NATS acknowledged.
    fn fleet_sent(&self, rows: &[OutboxRow]);
    /// Applies a batch of one bucket's changes.
    fn apply_remote(&self, kind: Kind, ops: Vec<RemoteOp>, commit: Commit) -> RemoteApplied;
    /// After a catch-up: removes remote entries of `kind` the bucket no longer holds.
    fn forget_remote_missing(&self, kind: Kind, present: &HashSet<IpNet>) -> usize;
    /// Makes what catch-up batches applied with `Commit::WithTheNext` durable.
    fn commit_deferred(&self);
}

/// What the fleet link and the engine share, and what status and metrics read.
pub struct Fleet {
    pub node: String,
    pub servers: Vec<String>,
    /// How guardd authenticates to NATS (credentials, TLS files).
    pub auth: crate::config::Fleet,
    pub outbox: Outbox,
    pub connected: AtomicBool,
    /// NATS refused a publication to a bucket (a node whose user only receives).
    pub publish_denied: AtomicBool,
    /// Per bucket (`Kind::index`): made as guard makes it, so its deletions are trusted.
    trusted: [AtomicBool; Kind::ALL.len()],
    /// Every bucket's state applied since the last (re)connection.
    pub in_sync: AtomicBool,
    last_applied_unix_ns: AtomicU64,
    /// Remote changes applied, in `APPLIED_KINDS` order.
    applied: [AtomicU64; APPLIED_KINDS.len()],
    /// Seconds from a verdict made on another node to in force here (live changes only).
    pub propagation: Histogram,
    /// The last revision applied per bucket (`Kind::index`): a new session resumes after it.
    revisions: [AtomicU64; Kind::ALL.len()],
    /// Records refused, by `Refusal` (in `Refusal::ALL` order), and when each reason was
    /// last logged (unix seconds): a flood of hostile records is counted, not logged.
    refused: [AtomicU64; Refusal::ALL.len()],
    refusal_logged: [AtomicU64; Refusal::ALL.len()],
}

/// A refusal's reason is logged at most this often.
const REFUSAL_LOG_EVERY_SECS: u64 = 60;

/// Kinds of remote change, as `guard_fleet_applied_total{kind}` names them.
pub const APPLIED_KINDS: [&str; 6] = ["ban", "unban", "allow", "unallow", "vouch", "unvouch"];

fn applied_index(kind: Kind, put: bool) -> usize {
    2 * kind.index() + usize::from(!put)
}

impl Fleet {
    /// Whether deletions the bucket of `kind` delivers are applied (`link::trust`).
    pub fn trusted(&self, kind: Kind) -> bool {
        self.trusted[kind.index()].load(Relaxed)
    }

    pub(super) fn set_trusted(&self, kind: Kind, trusted: bool) {
        self.trusted[kind.index()].store(trusted, Relaxed);
    }

    /// The fleet of `config`, with the verdicts the state database still had to publish;
    /// none without `[fleet] servers`.
    pub fn new(config: &Config, queued: Vec<OutboxRow>, capacity: usize) -> Option<Fleet> {
        config.fleet.enabled().then(|| Fleet {
            node: config.node_name(),
            servers: config.fleet.servers.clone(),
            auth: config.fleet.clone(),
            outbox: Outbox::new(queued, capacity),
            connected: AtomicBool::new(false),
            publish_denied: AtomicBool::new(false),
            trusted: Kind::ALL.map(|_| AtomicBool::new(true)),
            in_sync: AtomicBool::new(false),
            last_applied_unix_ns: AtomicU64::new(0),
            applied: Default::default(),
            revisions: Default::default(),
            refused: Default::default(),
            refusal_logged: Default::default(),
            propagation: Histogram::new(
                [
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
                ]
                .into_iter(),
            ),
        })
    }

    pub(crate) fn count_applied(&self, kind: Kind, put: bool, n: usize, now_unix: u64) {
        if n > 0 {
            self.applied[applied_index(kind, put)].fetch_add(n as u64, Relaxed);
            self.last_applied_unix_ns.store(now_unix, Relaxed);
        }
    }

    /// Counts a refused record; logs it unless its reason was logged in the last minute.
    pub(crate) fn refuse(&self, kind: Kind, key: &str, why: &Refused) {
        let i = why.why as usize;
        let n = self.refused[i].fetch_add(1, Relaxed) + 1;
        let now = crate::model::clock::unix_now_ns() / 1_000_000_000;
        let last = self.refusal_logged[i].load(Relaxed);
        if (last == 0 || now >= last + REFUSAL_LOG_EVERY_SECS)
            && self.refusal_logged[i]
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_ok()
        {
            warn!(
                bucket = record::bucket(kind),
                key,
                reason = why.why.as_str(),
                refused_so_far = n,
                "fleet: refused a record: {} (this reason is logged at most once a minute; \
                 guard_fleet_refused_total counts them all)",
                why.detail
            );
        }
    }

    /// Records refused so far, in `Refusal::ALL` order.
    pub fn refused(&self) -> [u64; Refusal::ALL.len()] {
        std::array::from_fn(|i| self.refused[i].load(Relaxed))
    }

    pub(crate) fn revision(&self, kind: Kind) -> &AtomicU64 {
        &self.revisions[kind.index()]
    }

    /// Remote changes applied, in `APPLIED_KINDS` order.
    pub fn applied(&self) -> [u64; APPLIED_KINDS.len()] {
        std::array::from_fn(|i| self.applied[i].load(Relaxed))
    }

    pub fn status(&self) -> FleetStatus {
        let last = self.last_applied_unix_ns.load(Relaxed);
        FleetStatus {
            connected: self.connected.load(Relaxed),
            in_sync: self.in_sync.load(Relaxed),
            servers: self.servers.clone(),
            node: self.node.clone(),
            outbox: self.outbox.len(),
            last_applied: (last != 0).then(|| {
                humantime::format_rfc3339_millis(
                    std::time::UNIX_EPOCH + std::time::Duration::from_nanos(last),
                )
                .to_string()
            }),
        }
    }
}

/// Shared with the guardd runtime.
pub type SharedFleet = Arc<Fleet>;

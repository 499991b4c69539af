//! Following a bucket: first its current state (the last record of every key), applied in
//! batches; then, when it has caught up, entries other nodes made that the bucket no longer
//! holds are removed; from then on every change as it comes.

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering::Relaxed},
    },
};

use async_nats::jetstream::kv;
use futures_util::{FutureExt, StreamExt};
use tracing::{info, warn};

use super::{
    Fleet,
    link::{FleetError, nats},
    record::{self, Record},
};
use crate::{
    engine::{Engine, RemoteOp},
    kernel::clock::unix_now_ns,
    verdicts::{Kind, Request},
};

/// Changes applied per engine call (one durable write) while they arrive faster.
const APPLY_BATCH: usize = 4096;

/// The buckets of a session still catching up; the fleet is in sync when none is.
pub(super) struct Catchup(AtomicUsize);

impl Catchup {
    pub(super) fn new(buckets: usize) -> Catchup {
        Catchup(AtomicUsize::new(buckets))
    }

    fn one_done(&self, fleet: &Fleet) {
        if self.0.fetch_sub(1, Relaxed) == 1 {
            fleet.in_sync.store(true, Relaxed);
            info!(outbox = fleet.outbox.len(), "fleet: in sync");
        }
    }
}

pub(super) async fn follow(
    engine: &Arc<Engine>,
    fleet: &Arc<Fleet>,
    store: &kv::Store,
    kind: Kind,
    catchup: &Catchup,
) -> Result<(), FleetError> {
    let bucket = record::bucket(kind);
    let held = store
        .status()
        .await
        .map_err(|e| nats(format!("reading bucket {bucket}"))(e.into()))?
        .info
        .state
        .messages;
    let mut watch = store
        .watch_with_history(">")
        .await
        .map_err(|e| nats(format!("watching bucket {bucket}"))(e.into()))?;
    let mut present: Option<HashSet<ipnet::IpNet>> = Some(HashSet::new());
    if held == 0 {
        caught_up(engine, fleet, kind, present.take().expect("once"), catchup).await;
    }
    loop {
        let mut batch = vec![next(&mut watch, bucket).await?];
        while batch.len() < APPLY_BATCH {
            match watch.next().now_or_never() {
                Some(Some(e)) => {
                    batch.push(e.map_err(|e| nats(format!("watching bucket {bucket}"))(e.into()))?)
                }
                Some(None) => return Err(FleetError::WatchEnded { bucket }),
                None => break,
            }
        }
        let now = unix_now_ns();
        let live = present.is_none();
        let last = batch.last().is_some_and(|e| e.delta == 0);
        let ops = ops_of(batch, now, present.as_mut());
        let e = engine.clone();
        let applied = tokio::task::spawn_blocking(move || e.apply_remote(kind, ops))
            .await
            .expect("applying the fleet's verdicts");
        if live {
            for created in applied.put {
                fleet
                    .propagation
                    .observe(now.saturating_sub(created) as f64 / 1e9);
            }
        }
        if let (Some(p), true) = (&present, last) {
            let p = p.clone();
            present = None;
            caught_up(engine, fleet, kind, p, catchup).await;
        }
    }
}

async fn next(watch: &mut kv::Watch, bucket: &'static str) -> Result<kv::Entry, FleetError> {
    match watch.next().await {
        Some(e) => e.map_err(|e| nats(format!("watching bucket {bucket}"))(e.into())),
        None => Err(FleetError::WatchEnded { bucket }),
    }
}

/// The engine's operations for a batch of bucket entries; while catching up, the prefixes
/// the bucket holds in force go into `present`.
fn ops_of(
    batch: Vec<kv::Entry>,
    now: u64,
    mut present: Option<&mut HashSet<ipnet::IpNet>>,
) -> Vec<RemoteOp> {
    let mut ops = Vec::with_capacity(batch.len());
    for e in batch {
        let net = match record::net_of(&e.key) {
            Ok(n) => n,
            Err(why) => {
                warn!(bucket = %e.bucket, "fleet: skipped an entry: {why}");
                continue;
            }
        };
        match e.operation {
            kv::Operation::Put => match Record::decode(&e.value, now) {
                Ok(r) if r.live(now) => {
                    if let Some(p) = present.as_deref_mut() {
                        p.insert(net);
                    }
                    ops.push(RemoteOp::Put(Request {
                        net,
                        reason: r.reason.clone(),
                        remote: Some(r.remote()),
                        ..Request::default()
                    }));
                }
                // Expired everywhere: each kernel has dropped it.
                Ok(_) => {}
                Err(why) => {
                    warn!(bucket = %e.bucket, key = %e.key, "fleet: skipped a record: {why}")
                }
            },
            kv::Operation::Delete | kv::Operation::Purge => ops.push(RemoteOp::Delete(net)),
        }
    }
    ops
}

async fn caught_up(
    engine: &Arc<Engine>,
    fleet: &Fleet,
    kind: Kind,
    present: HashSet<ipnet::IpNet>,
    catchup: &Catchup,
) {
    let e = engine.clone();
    let held = present.len();
    let removed = tokio::task::spawn_blocking(move || e.forget_remote_missing(kind, &present))
        .await
        .expect("removing what the fleet removed");
    info!(
        bucket = record::bucket(kind),
        held, removed, "fleet: caught up with the bucket"
    );
    catchup.one_done(fleet);
}

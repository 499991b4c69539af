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
use tracing::info;

use super::{
    Fleet,
    link::{FleetError, nats},
    record::{self, Record},
};
use crate::{
    fleet::{Host, RemoteOp},
    model::clock::unix_now_ns,
    model::{Kind, Request},
    state::Commit,
};

/// Changes applied per engine call (one write) while they arrive faster.
const APPLY_BATCH: usize = 4096;
/// How long a catch-up batch waits for more entries before it is applied.
const CATCHUP_GATHER: std::time::Duration = std::time::Duration::from_millis(50);

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

pub(super) async fn follow<H: Host>(
    engine: &Arc<H>,
    fleet: &Arc<Fleet>,
    store: &kv::Store,
    kind: Kind,
    catchup: &Catchup,
) -> Result<(), FleetError> {
    let bucket = record::bucket(kind);
    let state = store
        .status()
        .await
        .map_err(|e| nats(format!("reading bucket {bucket}"))(e.into()))?
        .info
        .state;
    // Back after an outage: what changed since the last change applied, when the stream
    // still holds all of it (deletions included). Else, and at start, the whole state.
    let seen = fleet.revision(kind).load(Relaxed);
    let resume = seen > 0 && seen <= state.last_sequence && seen + 1 >= state.first_sequence;
    let watched = match resume {
        true => store.watch_all_from_revision(seen + 1).await,
        false => store.watch_with_history(">").await,
    };
    let mut watch = watched.map_err(|e| nats(format!("watching bucket {bucket}"))(e.into()))?;
    // The prefixes the bucket holds, gathered by a whole catch-up.
    let mut present: Option<HashSet<ipnet::IpNet>> = (!resume).then(HashSet::new);
    let mut catching_up = true;
    // How the catch-up spent its time: in all, and applying (the rest is NATS delivering).
    let (started, mut applying) = (std::time::Instant::now(), std::time::Duration::ZERO);
    let mut batches = 0usize;
    if state.messages == 0 || (resume && seen == state.last_sequence) {
        caught_up(engine, fleet, kind, present.take(), catchup).await;
        catching_up = false;
    }
    loop {
        let batch = gather(&mut watch, bucket, catching_up).await?;
        let now = unix_now_ns();
        let last = batch.last().is_some_and(|e| e.delta == 0);
        let revision = batch.iter().map(|e| e.revision).max().unwrap_or(0);
        let ops = ops_of(fleet, kind, batch, now, present.as_mut());
        let e = engine.clone();
        // Durable at the end of the catch-up (what it applies can be fetched again).
        let commit = match catching_up {
            true => Commit::WithTheNext,
            false => Commit::Durable,
        };
        let t = std::time::Instant::now();
        let applied = tokio::task::spawn_blocking(move || e.apply_remote(kind, ops, commit))
            .await
            .expect("applying the fleet's verdicts");
        applying += t.elapsed();
        batches += 1;
        fleet.revision(kind).fetch_max(revision, Relaxed);
        if !catching_up {
            for created in applied.put {
                fleet
                    .propagation
                    .observe(now.saturating_sub(created) as f64 / 1e9);
            }
        }
        if catching_up && last {
            info!(
                bucket,
                secs = started.elapsed().as_secs_f64(),
                applying_secs = applying.as_secs_f64(),
                batches,
                "fleet: catch-up received"
            );
            caught_up(engine, fleet, kind, present.take(), catchup).await;
            catching_up = false;
        }
    }
}

/// The next entries to apply. Catching up, a batch waits a little for more (the server
/// sends in flow-controlled windows): fewer, larger writes. Live, what has arrived goes at
/// once.
async fn gather(
    watch: &mut kv::Watch,
    bucket: &'static str,
    catching_up: bool,
) -> Result<Vec<kv::Entry>, FleetError> {
    let mut batch = vec![next(watch, bucket).await?];
    let deadline = tokio::time::Instant::now() + CATCHUP_GATHER;
    while batch.len() < APPLY_BATCH && batch.last().is_some_and(|e| e.delta > 0 || !catching_up) {
        let more = match watch.next().now_or_never() {
            Some(more) => more,
            None if catching_up => match tokio::time::timeout_at(deadline, watch.next()).await {
                Ok(more) => more,
                Err(_) => break,
            },
            None => break,
        };
        match more {
            Some(e) => {
                batch.push(e.map_err(|e| nats(format!("watching bucket {bucket}"))(e.into()))?)
            }
            None => return Err(FleetError::WatchEnded { bucket }),
        }
    }
    Ok(batch)
}

async fn next(watch: &mut kv::Watch, bucket: &'static str) -> Result<kv::Entry, FleetError> {
    match watch.next().await {
        Some(e) => e.map_err(|e| nats(format!("watching bucket {bucket}"))(e.into())),
        None => Err(FleetError::WatchEnded { bucket }),
    }
}

/// The engine's operations for a batch of bucket entries; while catching up, the prefixes
/// the bucket holds in force go into `present`. A refused entry is counted and changes
/// nothing here: not even a deletion under a key guard does not write.
fn ops_of(
    fleet: &Fleet,
    kind: Kind,
    batch: Vec<kv::Entry>,
    now: u64,
    mut present: Option<&mut HashSet<ipnet::IpNet>>,
) -> Vec<RemoteOp> {
    let mut ops = Vec::with_capacity(batch.len());
    for e in batch {
        let net = match record::net_of(&e.key).and_then(|n| record::fits(n, kind)) {
            Ok(n) => n,
            Err(why) => {
                fleet.refuse(kind, &e.key, &why);
                continue;
            }
        };
        match e.operation {
            kv::Operation::Put => match Record::decode(&e.value, kind, now) {
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
                Err(why) => fleet.refuse(kind, &e.key, &why),
            },
            kv::Operation::Delete | kv::Operation::Purge => ops.push(RemoteOp::Delete(net)),
        }
    }
    ops
}

async fn caught_up<H: Host>(
    engine: &Arc<H>,
    fleet: &Fleet,
    kind: Kind,
    present: Option<HashSet<ipnet::IpNet>>,
    catchup: &Catchup,
) {
    match present {
        // A whole catch-up: what other nodes made that the bucket no longer holds goes.
        Some(present) => {
            let e = engine.clone();
            let held = present.len();
            let removed =
                tokio::task::spawn_blocking(move || e.forget_remote_missing(kind, &present))
                    .await
                    .expect("removing what the fleet removed");
            info!(
                bucket = record::bucket(kind),
                held, removed, "fleet: caught up with the bucket"
            );
        }
        None => {
            let e = engine.clone();
            // What the resumed catch-up applied, on disk now.
            tokio::task::spawn_blocking(move || e.commit_deferred())
                .await
                .expect("committing the catch-up");
            info!(
                bucket = record::bucket(kind),
                "fleet: caught up with the changes made while away"
            );
        }
    }
    catchup.one_done(fleet);
}

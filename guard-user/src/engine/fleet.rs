//! The engine's side of the fleet: verdicts made here are queued for publication in the
//! transaction that makes them durable; verdicts made elsewhere are applied through the
//! same table as the API's (allow over ban, capacity, durability), never queued again.

use std::collections::HashSet;

use ipnet::IpNet;
use tracing::warn;

use super::Engine;
use crate::{
    fleet::{
        Fleet, RemoteApplied, RemoteOp,
        record::{Record, Refusal, Refused, key_of},
    },
    model::clock::{monotonic_ns, unix_now_ns},
    model::{Entry, Kind, Request},
    state::{Change, Commit, OutboxRow},
    verdicts::{DynError, DynamicTable},
};

impl Engine {
    pub fn fleet(&self) -> Option<&std::sync::Arc<Fleet>> {
        self.fleet.as_ref()
    }

    /// The outbox rows for `entries` just made through the API (local ones are not shared),
    /// queued for the publisher.
    pub(super) fn queue_made(&self, kind: Kind, entries: &[Entry]) -> Vec<Change> {
        let Some(f) = &self.fleet else {
            return Vec::new();
        };
        self.queue_entries(kind, entries.iter().filter(|e| *e.origin == *f.node))
    }

    /// The outbox rows for `entries` whoever made them (local ones are not shared).
    pub(super) fn queue_entries<'a>(
        &self,
        kind: Kind,
        entries: impl Iterator<Item = &'a Entry>,
    ) -> Vec<Change> {
        let Some(f) = &self.fleet else {
            return Vec::new();
        };
        let (mono, unix) = (monotonic_ns(), unix_now_ns());
        let rows: Vec<Change> = entries
            .filter(|e| !e.local)
            .map(|e| {
                let record = Record::of(e, mono, unix).encode();
                Change::Queue(f.outbox.push(kind, e.net, Some(record)))
            })
            .collect();
        if !rows.is_empty() {
            f.outbox.wake.notify_one();
        }
        rows
    }

    /// The outbox row for a removal made here of a shared entry.
    pub(super) fn queue_removed(&self, gone: &Entry) -> Vec<Change> {
        match &self.fleet {
            Some(f) if !gone.local => {
                let row = f.outbox.push(gone.kind, gone.net, None);
                f.outbox.wake.notify_one();
                vec![Change::Queue(row)]
            }
            _ => Vec::new(),
        }
    }

    /// NATS acknowledged `rows`: the state database forgets them with its next write.
    pub fn fleet_sent(&self, rows: &[OutboxRow]) {
        let sent = rows.iter().map(|r| Change::Sent {
            kind: r.kind,
            net: r.net,
            seq: r.seq,
        });
        self.defer_changes(sent);
    }

    /// Applies changes another node made to `kind`, in order, as one write committed as
    /// `commit` says (a catch-up defers durability to its end). A put
    /// is skipped when this host has a newer verdict of its own for the prefix (queued,
    /// not yet published), a local entry there, or the same entry already; a put the table
    /// refuses (inside an allow, table full) is logged and skipped, the others applied.
    pub fn apply_remote(&self, kind: Kind, ops: Vec<RemoteOp>, commit: Commit) -> RemoteApplied {
        let mut out = RemoteApplied::default();
        let Some(f) = &self.fleet else { return out };
        let mut t = self.verdicts();
        let mut puts: Vec<Request> = Vec::new();
        let mut queued = Vec::new();
        for op in ops {
            let net = match &op {
                RemoteOp::Put(r) => r.net,
                RemoteOp::Delete(n) => *n,
            };
            let here = t.get(&net);
            let keep_ours = f.outbox.pending(kind, &net) || here.is_some_and(|e| e.local);
            match op {
                // This host's newer verdict, or a local entry, stands.
                _ if keep_ours => {}
                RemoteOp::Put(r) => {
                    let same = here.is_some_and(|e| {
                        let remote = r.remote.as_ref().expect("a remote put");
                        e.kind == kind
                            && *e.origin == *remote.origin
                            && e.created_unix_ns == remote.created_unix_ns
                    });
                    // The same entry again (an echo, a redelivery): nothing to write.
                    if !same {
                        puts.push(r);
                    }
                }
                RemoteOp::Delete(net) if !f.trusted(kind) => {
                    let why = Refused::new(
                        Refusal::Bucket,
                        format!("the deletion of {net}: the bucket is not made as guard makes it"),
                    );
                    f.refuse(kind, &key_of(&net), &why);
                }
                RemoteOp::Delete(net) => {
                    // Puts before it in the batch go first: order is the bucket's.
                    self.add_remote(&mut t, kind, std::mem::take(&mut puts), &mut out);
                    let gone = t.get(&net).filter(|e| e.kind == kind).cloned();
                    if let Some(gone) = gone
                        && self.drop_entry(&mut t, &net, kind)
                    {
                        out.deleted += 1;
                        queued.extend(self.lifted(&mut t, &gone));
                    }
                }
            }
        }
        self.add_remote(&mut t, kind, puts, &mut out);
        queued.extend(self.aggregate_around(&mut t, kind, out.nets.iter().copied()));
        self.persist_with(&mut t, queued, commit);
        self.publish(&t);
        drop(t);
        let now = unix_now_ns();
        f.count_applied(kind, true, out.put.len(), now);
        f.count_applied(kind, false, out.deleted, now);
        out
    }

    /// After catching up with a bucket: entries of `kind` another node made that the bucket
    /// no longer holds (removed while this host was away) are removed here too.
    pub fn forget_remote_missing(&self, kind: Kind, present: &HashSet<IpNet>) -> usize {
        let Some(f) = &self.fleet else { return 0 };
        // A bucket that may lose records by itself says nothing by not holding one.
        if !f.trusted(kind) {
            return 0;
        }
        let mut t = self.verdicts();
        let stale: Vec<IpNet> = t
            .of_kind(kind)
            .filter(|e| !e.local && *e.origin != *f.node && !present.contains(&e.net))
            .filter(|e| !f.outbox.pending(kind, &e.net))
            .map(|e| e.net)
            .collect();
        let removed = stale
            .iter()
            .filter(|net| self.drop_entry(&mut t, net, kind))
            .count();
        self.persist(&mut t, Vec::new());
        self.publish(&t);
        drop(t);
        f.count_applied(kind, false, removed, unix_now_ns());
        removed
    }

    /// Writes a batch of remote puts; when the table refuses the batch, each on its own.
    fn add_remote(
        &self,
        t: &mut DynamicTable,
        kind: Kind,
        puts: Vec<Request>,
        out: &mut RemoteApplied,
    ) {
        if puts.is_empty() {
            return;
        }
        match self.add_to(t, kind, &puts) {
            Ok(entries) => {
                out.put.extend(entries.iter().map(|e| e.created_unix_ns));
                out.nets.extend(entries.iter().map(|e| e.net));
            }
            Err(_) if puts.len() > 1 => {
                for p in puts {
                    self.add_remote(t, kind, vec![p], out);
                }
            }
            Err(e) => {
                if let Some(f) = &self.fleet {
                    f.refuse(kind, &key_of(&puts[0].net), &not_applied(&puts[0], &e));
                }
            }
        }
    }

    /// Makes what catch-up batches committed with `Commit::WithTheNext` durable.
    pub fn commit_deferred(&self) {
        let mut t = self.verdicts();
        self.persist(&mut t, Vec::new());
    }

    /// Removes `net`'s entry of `kind`; false (logged) when the kernel refused.
    fn drop_entry(&self, t: &mut DynamicTable, net: &IpNet, kind: Kind) -> bool {
        match t.remove(net, kind) {
            Ok(_) => true,
            Err(e) => {
                warn!(
                    "cannot remove {net} as the fleet asks: {}",
                    crate::error_chain(&e)
                );
                false
            }
        }
    }
}

/// A valid record this host's checks refused (counted as `not_applied`).
fn not_applied(r: &Request, e: &DynError) -> Refused {
    let origin = r.remote.as_ref().map_or("?", |x| x.origin.as_str());
    let why = match e {
        DynError::Protected { .. } => Refusal::Protected,
        DynError::RemoteLengths { .. } => Refusal::Lengths,
        _ => Refusal::NotApplied,
    };
    Refused::new(
        why,
        format!(
            "{} from {origin} is not applied here: {}",
            r.net,
            crate::error_chain(e)
        ),
    )
}

/// The fleet link reaches the daemon only through this.
impl crate::fleet::Host for Engine {
    fn fleet(&self) -> Option<&std::sync::Arc<Fleet>> {
        Engine::fleet(self)
    }

    fn fleet_sent(&self, rows: &[OutboxRow]) {
        Engine::fleet_sent(self, rows)
    }

    fn apply_remote(&self, kind: Kind, ops: Vec<RemoteOp>, commit: Commit) -> RemoteApplied {
        Engine::apply_remote(self, kind, ops, commit)
    }

    fn forget_remote_missing(&self, kind: Kind, present: &HashSet<IpNet>) -> usize {
        Engine::forget_remote_missing(self, kind, present)
    }

    fn commit_deferred(&self) {
        Engine::commit_deferred(self)
    }
}

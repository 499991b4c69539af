//! Verdicts made here that NATS has not acknowledged: one per kind and prefix (a newer one
//! replaces an older one, so an outage of any length queues at most one per prefix), in the
//! order they were made, bounded. The state database keeps a copy (`state::OutboxRow`,
//! written in the transaction that made the verdict), so a restart loses none.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
};

use ipnet::IpNet;
use tracing::error;

use crate::{model::Kind, state::OutboxRow};

pub struct Outbox {
    queue: Mutex<Queue>,
    /// Wakes the publisher.
    pub wake: tokio::sync::Notify,
    capacity: usize,
    /// Verdicts dropped because the outbox was full (the oldest go first).
    pub dropped: AtomicU64,
}

#[derive(Default)]
struct Queue {
    next_seq: u64,
    order: BTreeMap<u64, (Kind, IpNet)>,
    rows: HashMap<(Kind, IpNet), OutboxRow>,
}

impl Outbox {
    /// An outbox holding `rows` (from the state database) of at most `capacity` verdicts.
    pub fn new(rows: Vec<OutboxRow>, capacity: usize) -> Outbox {
        let mut q = Queue::default();
        for row in rows {
            q.next_seq = q.next_seq.max(row.seq + 1);
            q.order.insert(row.seq, (row.kind, row.net));
            q.rows.insert((row.kind, row.net), row);
        }
        Outbox {
            queue: Mutex::new(q),
            wake: tokio::sync::Notify::new(),
            capacity: capacity.max(1),
            dropped: AtomicU64::new(0),
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().expect("outbox lock")
    }

    /// Queues a verdict (`record` none: a removal), replacing an older one of its kind and
    /// prefix; returns the row for the state database.
    pub fn push(&self, kind: Kind, net: IpNet, record: Option<Vec<u8>>) -> OutboxRow {
        let mut q = self.queue();
        let seq = q.next_seq;
        q.next_seq += 1;
        if let Some(old) = q.rows.get(&(kind, net)).map(|r| r.seq) {
            q.order.remove(&old);
        }
        while q.order.len() >= self.capacity {
            let (_, oldest) = q.order.pop_first().expect("a full outbox is not empty");
            q.rows.remove(&oldest);
            if self.dropped.fetch_add(1, Relaxed) == 0 {
                error!(
                    capacity = self.capacity,
                    "the fleet outbox is full: the oldest unpublished verdicts are dropped \
                     (they stay in force here)"
                );
            }
        }
        let row = OutboxRow {
            kind,
            net,
            seq,
            record,
        };
        q.order.insert(seq, (kind, net));
        q.rows.insert((kind, net), row.clone());
        row
    }

    /// The oldest `max` rows, left queued until `done`.
    pub fn peek(&self, max: usize) -> Vec<OutboxRow> {
        let q = self.queue();
        q.order
            .values()
            .take(max)
            .map(|k| q.rows[k].clone())
            .collect()
    }

    /// Forgets rows NATS acknowledged, unless a newer verdict replaced one meanwhile.
    pub fn done(&self, rows: &[OutboxRow]) {
        let mut q = self.queue();
        for r in rows {
            if q.rows
                .get(&(r.kind, r.net))
                .is_some_and(|now| now.seq == r.seq)
            {
                q.rows.remove(&(r.kind, r.net));
                q.order.remove(&r.seq);
            }
        }
    }

    /// A verdict of this kind and prefix waits to be published: it is newer than whatever
    /// the fleet holds for it.
    pub fn pending(&self, kind: Kind, net: &IpNet) -> bool {
        self.queue().rows.contains_key(&(kind, *net))
    }

    pub fn len(&self) -> usize {
        self.queue().order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn a_newer_verdict_replaces_the_queued_one_and_keeps_order() {
        let o = Outbox::new(Vec::new(), 10);
        o.push(Kind::Ban, net("198.18.0.1/32"), Some(b"a".to_vec()));
        o.push(Kind::Ban, net("198.18.0.2/32"), Some(b"b".to_vec()));
        let first = o.peek(10);
        o.push(Kind::Ban, net("198.18.0.1/32"), None);
        assert_eq!(o.len(), 2);
        let now = o.peek(10);
        assert_eq!(now[0].net, net("198.18.0.2/32"));
        assert_eq!(
            (now[1].net, now[1].record.clone()),
            (net("198.18.0.1/32"), None)
        );
        // The first publication of .1 is acknowledged after the removal was queued: the
        // removal stays.
        o.done(&first);
        assert_eq!(o.peek(10).len(), 1);
        assert!(o.pending(Kind::Ban, &net("198.18.0.1/32")));
        assert!(!o.pending(Kind::Allow, &net("198.18.0.1/32")));
    }

    #[test]
    fn a_full_outbox_drops_the_oldest_and_counts() {
        let o = Outbox::new(Vec::new(), 2);
        for i in 1..=3 {
            o.push(Kind::Ban, net(&format!("198.18.0.{i}/32")), None);
        }
        assert_eq!(o.len(), 2);
        assert_eq!(o.dropped.load(Relaxed), 1);
        assert_eq!(o.peek(1)[0].net, net("198.18.0.2/32"));
    }

    #[test]
    fn rows_from_the_database_keep_their_order_and_numbering() {
        let rows = vec![
            OutboxRow {
                kind: Kind::Ban,
                net: net("198.18.0.9/32"),
                seq: 7,
                record: None,
            },
            OutboxRow {
                kind: Kind::Allow,
                net: net("198.18.0.8/32"),
                seq: 3,
                record: None,
            },
        ];
        let o = Outbox::new(rows, 10);
        assert_eq!(o.peek(10)[0].seq, 3);
        assert_eq!(o.push(Kind::Ban, net("198.18.0.1/32"), None).seq, 8);
    }
}

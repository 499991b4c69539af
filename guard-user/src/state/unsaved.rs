//! Changes the database has not taken yet, bounded: a change replaces the waiting one of the
//! same row, so while writes fail the queue never holds more than the rows it would write
//! (the table's entries and histories, the fleet outbox), however many changes come.

use std::collections::{BTreeMap, HashMap};

use ipnet::IpNet;

use super::Change;
use crate::model::Kind;

/// The row a change writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Row {
    Entry(IpNet),
    History(IpNet),
    Outbox(Kind, IpNet),
    Superseded(IpNet),
}

fn row_of(c: &Change) -> Row {
    match c {
        Change::Put(s) => Row::Entry(s.net),
        Change::Delete(net) => Row::Entry(*net),
        Change::History(h) => Row::History(h.net),
        Change::ForgetHistory(net) => Row::History(*net),
        Change::Queue(r) => Row::Outbox(r.kind, r.net),
        Change::Sent { kind, net, .. } => Row::Outbox(*kind, *net),
        Change::Supersede { member, .. } => Row::Superseded(member.net),
        Change::Release(net) => Row::Superseded(*net),
    }
}

/// Waiting changes, oldest first.
#[derive(Default)]
pub struct Unsaved {
    order: BTreeMap<u64, Change>,
    /// The waiting changes of each row (two at most: a queued verdict and its `Sent`).
    rows: HashMap<Row, Vec<u64>>,
    next: u64,
}

impl Unsaved {
    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    pub fn push(&mut self, change: Change) {
        let row = row_of(&change);
        let waiting = self.rows.entry(row).or_default();
        if let Change::Sent { seq, .. } = &change {
            match waiting.last().and_then(|at| self.order.get(at)) {
                // A newer verdict waits: it replaces the row, and this one was published.
                Some(Change::Queue(q)) if q.seq != *seq => return,
                // Its own verdict waits: both are written, in order (the `Sent` removes
                // the row only when it holds that verdict).
                Some(Change::Queue(_)) => {
                    let at = self.next;
                    self.next += 1;
                    waiting.push(at);
                    self.order.insert(at, change);
                    return;
                }
                _ => {}
            }
        }
        for old in waiting.drain(..) {
            self.order.remove(&old);
        }
        let at = self.next;
        self.next += 1;
        waiting.push(at);
        self.order.insert(at, change);
    }

    pub fn extend(&mut self, changes: impl IntoIterator<Item = Change>) {
        for c in changes {
            self.push(c);
        }
    }

    /// The `n` oldest, to write; `written` forgets them once they are.
    pub fn oldest(&self, n: usize) -> Vec<Change> {
        self.order.values().take(n).cloned().collect()
    }

    /// Forgets the `n` oldest (written).
    pub fn written(&mut self, n: usize) {
        for _ in 0..n {
            let Some((at, c)) = self.order.pop_first() else {
                return;
            };
            let row = row_of(&c);
            if let Some(waiting) = self.rows.get_mut(&row) {
                waiting.retain(|w| *w != at);
                if waiting.is_empty() {
                    self.rows.remove(&row);
                }
            }
        }
    }

    /// All of them, oldest first.
    pub fn into_changes(mut self) -> Vec<Change> {
        self.take_all()
    }

    /// All of them, oldest first, leaving none.
    pub fn take_all(&mut self) -> Vec<Change> {
        self.rows.clear();
        std::mem::take(&mut self.order).into_values().collect()
    }
}

impl From<Vec<Change>> for Unsaved {
    fn from(changes: Vec<Change>) -> Unsaved {
        let mut u = Unsaved::default();
        u.extend(changes);
        u
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::OutboxRow;

    fn delete(n: &str) -> Change {
        Change::Delete(n.parse().unwrap())
    }

    fn queue(n: &str, seq: u64) -> Change {
        Change::Queue(OutboxRow {
            kind: Kind::Ban,
            net: n.parse().unwrap(),
            seq,
            record: None,
        })
    }

    fn sent(n: &str, seq: u64) -> Change {
        Change::Sent {
            kind: Kind::Ban,
            net: n.parse().unwrap(),
            seq,
        }
    }

    fn shown(u: &Unsaved) -> Vec<String> {
        u.oldest(usize::MAX)
            .iter()
            .map(|c| match c {
                Change::Delete(n) => format!("delete {n}"),
                Change::Queue(r) => format!("queue {} {}", r.net, r.seq),
                Change::Sent { net, seq, .. } => format!("sent {net} {seq}"),
                _ => "other".into(),
            })
            .collect()
    }

    #[test]
    fn a_change_replaces_the_waiting_one_of_its_row_and_the_queue_stays_bounded() {
        let mut u = Unsaved::default();
        for _ in 0..10_000 {
            u.push(delete("198.18.0.1/32"));
            u.push(delete("198.18.0.2/32"));
        }
        assert_eq!(u.len(), 2);
        u.push(delete("198.18.0.1/32"));
        assert_eq!(shown(&u), ["delete 198.18.0.2/32", "delete 198.18.0.1/32"]);
        u.written(1);
        assert_eq!(shown(&u), ["delete 198.18.0.1/32"]);
        u.push(delete("198.18.0.1/32"));
        assert_eq!(u.len(), 1);
    }

    #[test]
    fn a_published_verdict_keeps_its_queue_row_but_a_stale_one_is_dropped() {
        let mut u = Unsaved::default();
        u.push(queue("198.18.0.1/32", 5));
        u.push(sent("198.18.0.1/32", 5));
        assert_eq!(shown(&u), ["queue 198.18.0.1/32 5", "sent 198.18.0.1/32 5"]);
        u.push(queue("198.18.0.1/32", 6));
        assert_eq!(shown(&u), ["queue 198.18.0.1/32 6"]);
        u.push(sent("198.18.0.1/32", 5));
        assert_eq!(shown(&u), ["queue 198.18.0.1/32 6"]);
        u.written(1);
        assert!(u.is_empty());
        u.push(sent("198.18.0.1/32", 6));
        assert_eq!(shown(&u), ["sent 198.18.0.1/32 6"]);
    }
}

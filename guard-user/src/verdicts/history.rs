//! Escalation: how many times a source was banned within the window, and the TTL that
//! earns. The daemon's index of `BAN_HIST` lives here; the map keeps it across restarts.
//!
//! `BAN_HIST` has the capacity of the ban maps, but a source's history outlives its ban by
//! up to the window, so churn of distinct sources could fill it while the ban table has
//! room. Before a batch needs more room than is free, the oldest histories of sources not
//! banned now are evicted (their escalation restarts at the first TTL); a source banned now
//! always keeps its history, and since bans never outnumber the map there is always
//! something to evict.

use std::{
    collections::{BTreeSet, HashMap},
    time::Duration,
};

use guard_common::dynamic::BanHistory;
use ipnet::IpNet;

/// Window in which repeated bans of a source escalate.
pub const ESCALATION_WINDOW: Duration = Duration::from_secs(24 * 3600);

const WINDOW_NS: u64 = ESCALATION_WINDOW.as_nanos() as u64;

/// The TTLs of `[bans]`: the n-th ban of a source within the window gets the n-th
/// escalation TTL (the last one from then on); with no escalation, `default_ttl`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Escalation {
    pub ttls: Vec<Duration>,
    pub default_ttl: Duration,
    /// A vouch's TTL when the request names none (`[known] verified_for`).
    pub vouch_ttl: Duration,
}

impl Escalation {
    /// The TTL of ban number `nth` (1 = first).
    pub fn ttl(&self, nth: u32) -> Duration {
        match self.ttls.len() {
            0 => self.default_ttl,
            n => self.ttls[(nth.max(1) as usize).min(n) - 1],
        }
    }
}

/// The histories in `BAN_HIST`, oldest first by their last ban.
#[derive(Debug, Default)]
pub struct History {
    by_net: HashMap<IpNet, BanHistory>,
    order: BTreeSet<(u64, IpNet)>,
    capacity: usize,
}

impl History {
    pub fn new(capacity: usize, found: impl IntoIterator<Item = (IpNet, BanHistory)>) -> History {
        let mut h = History {
            capacity,
            ..History::default()
        };
        for (net, hist) in found {
            h.set(net, hist);
        }
        h
    }

    pub fn len(&self) -> usize {
        self.by_net.len()
    }

    pub fn get(&self, net: &IpNet) -> Option<BanHistory> {
        self.by_net.get(net).copied()
    }

    /// The history a new ban of `net` at `now_unix` writes: the count goes on within the
    /// window and starts again at 1 after it.
    pub fn next(&self, net: &IpNet, now_unix: u64) -> BanHistory {
        let prev = self
            .get(net)
            .filter(|h| now_unix.saturating_sub(h.last_unix_ns) < WINDOW_NS)
            .map_or(0, |h| h.count);
        BanHistory {
            last_unix_ns: now_unix,
            count: prev + 1,
            _reserved: 0,
        }
    }

    /// The history after another node's ban of `net`, its `step`-th, made at `made_unix`:
    /// the count is at least that step, so the next ban here escalates from it.
    pub fn seen(&self, net: &IpNet, step: u32, made_unix: u64) -> BanHistory {
        let (last, count) = match self.get(net) {
            Some(h) if made_unix.saturating_sub(h.last_unix_ns) < WINDOW_NS => {
                (h.last_unix_ns.max(made_unix), h.count.max(step))
            }
            _ => (made_unix, step.max(1)),
        };
        BanHistory {
            last_unix_ns: last,
            count,
            _reserved: 0,
        }
    }

    /// The oldest histories to evict so that `adding` new ones fit, never one for which
    /// `keep` holds. Fewer than needed only when everything left must be kept.
    pub fn evictions(&self, adding: usize, keep: impl Fn(&IpNet) -> bool) -> Vec<IpNet> {
        let over = (self.len() + adding).saturating_sub(self.capacity);
        self.order
            .iter()
            .map(|(_, net)| *net)
            .filter(|n| !keep(n))
            .take(over)
            .collect()
    }

    /// Histories whose last ban is a window old, except those `keep` holds on to.
    pub fn expired(&self, now_unix: u64, keep: impl Fn(&IpNet) -> bool) -> Vec<IpNet> {
        let cutoff = now_unix.saturating_sub(WINDOW_NS);
        self.order
            .range(..(cutoff + 1, IpNet::default()))
            .map(|(_, net)| *net)
            .filter(|n| !keep(n))
            .collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = (IpNet, BanHistory)> + '_ {
        self.by_net.iter().map(|(n, h)| (*n, *h))
    }

    pub fn set(&mut self, net: IpNet, hist: BanHistory) {
        self.remove(&net);
        self.order.insert((hist.last_unix_ns, net));
        self.by_net.insert(net, hist);
    }

    pub fn remove(&mut self, net: &IpNet) {
        if let Some(old) = self.by_net.remove(net) {
            self.order.remove(&(old.last_unix_ns, *net));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(i: u32) -> IpNet {
        IpNet::new(std::net::Ipv4Addr::from(0xc612_0000 + i).into(), 32).unwrap()
    }

    fn at(t: u64, count: u32) -> BanHistory {
        BanHistory {
            last_unix_ns: t,
            count,
            _reserved: 0,
        }
    }

    #[test]
    fn escalation_walks_the_ttls_then_stays_on_the_last() {
        let s = Duration::from_secs;
        let e = Escalation {
            ttls: vec![s(600), s(3600)],
            default_ttl: s(60),
            vouch_ttl: Duration::from_secs(3600),
        };
        assert_eq!([e.ttl(1), e.ttl(2), e.ttl(9)], [s(600), s(3600), s(3600)]);
        let none = Escalation {
            ttls: vec![],
            default_ttl: s(60),
            vouch_ttl: Duration::from_secs(3600),
        };
        assert_eq!(none.ttl(3), s(60));
    }

    #[test]
    fn counts_go_on_within_the_window_and_restart_after() {
        let h = History::new(10, [(net(1), at(1_000, 2))]);
        assert_eq!(h.next(&net(1), 2_000).count, 3);
        assert_eq!(h.next(&net(1), 1_000 + WINDOW_NS).count, 1);
        assert_eq!(h.next(&net(2), 2_000).count, 1);
    }

    #[test]
    fn eviction_takes_the_oldest_it_may_and_only_what_is_needed() {
        let h = History::new(3, (1..=3).map(|i| (net(i), at(u64::from(i), 1))));
        assert!(h.evictions(0, |_| false).is_empty());
        // net 1 is banned now: it stays, the next oldest goes.
        assert_eq!(h.evictions(1, |n| *n == net(1)), vec![net(2)]);
        assert_eq!(h.evictions(2, |_| false), vec![net(1), net(2)]);
        assert_eq!(h.evictions(5, |_| true), Vec::<IpNet>::new());
    }

    #[test]
    fn expiry_leaves_recent_and_kept_histories() {
        let mut h = History::new(10, [(net(1), at(1, 1)), (net(2), at(WINDOW_NS, 1))]);
        h.set(net(3), at(2, 1));
        let now = WINDOW_NS + 5;
        assert_eq!(h.expired(now, |n| *n == net(3)), vec![net(1)]);
        h.remove(&net(1));
        assert_eq!(h.len(), 2);
    }
}

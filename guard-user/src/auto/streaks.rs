//! `ban_after`: which sources a rule keeps limiting.
//!
//! The kernel reports the first limited packet of each bucket of a rule with `ban_after` in
//! each second of its clock (`LIMIT_REPORTS`). A source (the rule's prefix of it) is on a
//! streak while it is reported in consecutive seconds; a second without a report ends
//! the streak. It is due for a ban at the first report at least `ban_after` after the
//! streak's first report: limited in every second for `ban_after`, banned within the
//! second after that. Bursts with quiet seconds between them never add up.
//!
//! A streak is *proven* when, during it, one of the source's reported packets came on a
//! TCP connection this host established (a `PROOF` report): only then is the source known
//! to be real rather than forged.

use std::collections::HashMap;

use ipnet::IpNet;

/// Streaks tracked at most: a flood of forged sources cannot grow the daemon without bound
/// (each forged source is seen once, then pruned two seconds later).
pub const MAX_STREAKS: usize = 1 << 20;

#[derive(Debug, Clone, Copy)]
struct Streak {
    first_ns: u64,
    last_second: u32,
    proven: bool,
}

/// A streak that reached `ban_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    pub limited_for_ns: u64,
    /// The source proved itself real during the streak.
    pub proven: bool,
}

#[derive(Debug, Default)]
pub struct Streaks {
    by_source: HashMap<(u8, IpNet), Streak>,
    /// Reports not tracked because `MAX_STREAKS` were.
    pub untracked: u64,
}

impl Streaks {
    /// A report of `rule` limiting `net` at `at_ns` (in kernel second `second`). Says how
    /// long it has been limited when that reaches `ban_after_ns` (the streak then ends).
    pub fn report(
        &mut self,
        rule: u8,
        net: IpNet,
        second: u32,
        at_ns: u64,
        ban_after_ns: u64,
    ) -> Option<Due> {
        let fresh = Streak {
            first_ns: at_ns,
            last_second: second,
            proven: false,
        };
        let full = self.by_source.len() >= MAX_STREAKS;
        let streak = match self.by_source.get_mut(&(rule, net)) {
            Some(s) => {
                if second == s.last_second.wrapping_add(1) {
                    s.last_second = second;
                } else if second != s.last_second {
                    *s = fresh;
                }
                *s
            }
            None if full => {
                self.untracked += 1;
                return None;
            }
            None => {
                self.by_source.insert((rule, net), fresh);
                fresh
            }
        };
        let limited_for = at_ns.saturating_sub(streak.first_ns);
        if limited_for >= ban_after_ns {
            self.by_source.remove(&(rule, net));
            return Some(Due {
                limited_for_ns: limited_for,
                proven: streak.proven,
            });
        }
        None
    }

    /// A packet of `net` that `rule` reported limited in `second` came on an established
    /// connection: its streak is proven (the report it follows made or kept the streak).
    pub fn prove(&mut self, rule: u8, net: IpNet, second: u32) {
        if let Some(s) = self.by_source.get_mut(&(rule, net))
            && s.last_second == second
        {
            s.proven = true;
        }
    }

    /// Forgets streaks that missed a second before `now_second` (they ended).
    pub fn prune(&mut self, now_second: u32) {
        self.by_source
            .retain(|_, s| s.last_second.wrapping_add(1) >= now_second);
    }

    /// Forgets every streak: after a reload, rule indices may name other rules.
    pub fn clear(&mut self) {
        self.by_source.clear();
    }

    pub fn len(&self) -> usize {
        self.by_source.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_source.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn net() -> IpNet {
        "198.18.0.7/32".parse().unwrap()
    }

    /// Reports as the kernel makes them for a source limited from `start_ns` to `end_ns`:
    /// the first limited packet, then one at the start of each following second.
    fn flood(t: &mut Streaks, start_ns: u64, end_ns: u64, ban_after: u64) -> Option<u64> {
        let mut at = start_ns;
        while at < end_ns {
            if t.report(0, net(), (at / S) as u32, at, ban_after).is_some() {
                return Some(at);
            }
            at = (at / S + 1) * S;
        }
        None
    }

    #[test]
    fn a_source_limited_every_second_is_due_after_ban_after() {
        let mut t = Streaks::default();
        let start = 100 * S + S / 10;
        let at = flood(&mut t, start, start + 10 * S, 3 * S).expect("banned");
        // The first report at least 3 s after the first: within the second after it.
        assert!(at - start >= 3 * S && at - start < 4 * S, "{}", at - start);
        assert!(t.is_empty(), "the streak ends with the ban");
    }

    #[test]
    fn bursts_with_quiet_seconds_never_add_up() {
        let mut t = Streaks::default();
        // Limited 1 s in every 5 s for a minute (two kernel seconds each time at most).
        for k in 0..12u64 {
            let start = 100 * S + k * 5 * S + S / 2;
            assert_eq!(flood(&mut t, start, start + S, 3 * S), None, "burst {k}");
        }
    }

    #[test]
    fn repeated_reports_within_a_second_do_not_count_twice() {
        let mut t = Streaks::default();
        for i in 0..10 {
            assert_eq!(t.report(0, net(), 5, 5 * S + i * 1000, S), None);
        }
        // A missed second restarts the streak.
        assert_eq!(t.report(0, net(), 7, 7 * S, S), None);
        let due = t.report(0, net(), 8, 8 * S, S).map(|d| d.limited_for_ns);
        assert_eq!(due, Some(S));
    }

    #[test]
    fn rules_and_sources_keep_their_own_streaks() {
        let mut t = Streaks::default();
        let other: IpNet = "198.18.0.8/32".parse().unwrap();
        t.report(0, net(), 1, S, 2 * S);
        t.report(1, net(), 2, 2 * S, 2 * S);
        t.report(0, other, 2, 2 * S, 2 * S);
        assert_eq!(t.report(0, net(), 2, 2 * S, 2 * S), None);
        let due = t
            .report(0, net(), 3, 3 * S, 2 * S)
            .map(|d| d.limited_for_ns);
        assert_eq!(due, Some(2 * S));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn a_proof_during_the_streak_proves_it_and_only_it() {
        let mut t = Streaks::default();
        let other: IpNet = "198.18.0.8/32".parse().unwrap();
        t.report(0, net(), 1, S, 2 * S);
        t.report(0, other, 1, S, 2 * S);
        // A proof for a second the streak is not in (stale, or another streak) is none.
        t.prove(0, net(), 0);
        t.prove(1, net(), 1);
        t.prove(0, net(), 1);
        let due = t.report(0, net(), 2, 2 * S, S).unwrap();
        assert!(due.proven);
        let due = t.report(0, other, 2, 2 * S, S).unwrap();
        assert!(!due.proven, "a proof of one source proves no other");
        // A new streak starts unproven.
        t.report(0, net(), 10, 10 * S, S);
        assert!(!t.report(0, net(), 11, 11 * S, S).unwrap().proven);
    }

    #[test]
    fn prune_forgets_ended_streaks() {
        let mut t = Streaks::default();
        t.report(0, net(), 10, 10 * S, 5 * S);
        t.prune(11);
        assert_eq!(t.len(), 1, "still on its streak");
        t.prune(12);
        assert!(t.is_empty(), "missed second 11");
    }
}

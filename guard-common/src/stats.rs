//! Verdicts and reasons: the labels of `guard_packets_total` and the index of the per-CPU
//! `STATS` array (`verdict * Reason::COUNT + reason`).

#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass = 0,
    Drop = 1,
    /// A would-drop in monitor mode: counted, passed.
    Monitor = 2,
}

#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    None = 0,
    Allow = 1,
    Deny = 2,
    Ban = 3,
    Rate = 4,
    /// A rule's endpoint budget is empty and the source is neither vouched for nor verified.
    Overload = 5,
    Malformed = 6,
    StaleRefill = 7,
}

impl Verdict {
    pub const COUNT: u32 = 3;
    pub const ALL: [Verdict; 3] = [Verdict::Pass, Verdict::Drop, Verdict::Monitor];

    pub const fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Drop => "drop",
            Verdict::Monitor => "monitor",
        }
    }
}

impl Reason {
    pub const COUNT: u32 = 8;
    pub const ALL: [Reason; 8] = [
        Reason::None,
        Reason::Allow,
        Reason::Deny,
        Reason::Ban,
        Reason::Rate,
        Reason::Overload,
        Reason::Malformed,
        Reason::StaleRefill,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::None => "none",
            Reason::Allow => "allow",
            Reason::Deny => "deny",
            Reason::Ban => "ban",
            Reason::Rate => "rate",
            Reason::Overload => "overload",
            Reason::Malformed => "malformed",
            Reason::StaleRefill => "stale_refill",
        }
    }
}

/// Number of slots in the `STATS` per-CPU array.
pub const STATS_LEN: u32 = Verdict::COUNT * Reason::COUNT;

/// Slot of a (verdict, reason) pair in the `STATS` array.
#[inline(always)]
pub const fn stat_index(verdict: Verdict, reason: Reason) -> u32 {
    verdict as u32 * Reason::COUNT + reason as u32
}

/// Inverse of [`stat_index`], for readers of the array.
pub const fn stat_slot(index: u32) -> Option<(Verdict, Reason)> {
    if index >= STATS_LEN {
        return None;
    }
    let v = Verdict::ALL[(index / Reason::COUNT) as usize];
    let r = Reason::ALL[(index % Reason::COUNT) as usize];
    Some((v, r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_index_round_trips_every_pair() {
        let mut seen = [false; STATS_LEN as usize];
        for v in Verdict::ALL {
            for r in Reason::ALL {
                let i = stat_index(v, r);
                assert!(i < STATS_LEN);
                assert!(!seen[i as usize], "two pairs share slot {i}");
                seen[i as usize] = true;
                assert_eq!(stat_slot(i), Some((v, r)));
            }
        }
        assert_eq!(stat_slot(STATS_LEN), None);
    }

    #[test]
    fn labels_match_the_metric_contract() {
        let reasons: [&str; 8] = Reason::ALL.map(Reason::as_str);
        assert_eq!(
            reasons,
            [
                "none",
                "allow",
                "deny",
                "ban",
                "rate",
                "overload",
                "malformed",
                "stale_refill"
            ]
        );
        assert_eq!(
            Verdict::ALL.map(Verdict::as_str),
            ["pass", "drop", "monitor"]
        );
    }
}

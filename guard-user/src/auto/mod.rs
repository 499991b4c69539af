//! Automatic verdicts (docs/AUTO_BANS.md): a source a rule with `ban_after` keeps limiting
//! is banned (`streaks`), and many bans inside one range become one ban of the range
//! (`aggregate`). Both go through the engine like an API ban: escalation, durability, the
//! fleet; in monitor mode they are logged and counted, not applied.

pub mod aggregate;
pub mod streaks;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// What made an automatic verdict: the `kind` label of `guard_auto_bans_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoKind {
    /// A rule's `ban_after`.
    Rule,
    /// `[bans] aggregate_*`.
    Aggregate,
}

impl AutoKind {
    pub const ALL: [AutoKind; 2] = [AutoKind::Rule, AutoKind::Aggregate];

    pub fn as_str(self) -> &'static str {
        match self {
            AutoKind::Rule => "rule",
            AutoKind::Aggregate => "aggregate",
        }
    }
}

/// Why an automatic verdict was not made: the `reason` label of
/// `guard_auto_bans_skipped_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// It would cover a protected address (`crate::protect`).
    Protected,
    /// The source never proved its address real, and the rule wants proof.
    Unverified,
}

impl Skip {
    pub const ALL: [Skip; 2] = [Skip::Protected, Skip::Unverified];

    pub fn as_str(self) -> &'static str {
        match self {
            Skip::Protected => "protected",
            Skip::Unverified => "unverified",
        }
    }
}

/// Counters for metrics: applied, would-be verdicts in monitor mode, and skipped.
#[derive(Debug, Default)]
pub struct AutoCounts {
    applied: [AtomicU64; 2],
    monitored: [AtomicU64; 2],
    skipped: [[AtomicU64; Skip::ALL.len()]; 2],
}

impl AutoCounts {
    pub fn count(&self, kind: AutoKind, monitored: bool) {
        let slot = kind as usize;
        if monitored {
            self.monitored[slot].fetch_add(1, Relaxed);
        } else {
            self.applied[slot].fetch_add(1, Relaxed);
        }
    }

    pub fn skip(&self, kind: AutoKind, why: Skip) {
        self.skipped[kind as usize][why as usize].fetch_add(1, Relaxed);
    }

    pub fn skipped(&self, kind: AutoKind, why: Skip) -> u64 {
        self.skipped[kind as usize][why as usize].load(Relaxed)
    }

    pub fn applied(&self, kind: AutoKind) -> u64 {
        self.applied[kind as usize].load(Relaxed)
    }

    pub fn monitored(&self, kind: AutoKind) -> u64 {
        self.monitored[kind as usize].load(Relaxed)
    }
}

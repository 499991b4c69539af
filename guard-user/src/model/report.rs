//! What the engine reports of itself: packet and rule counts, refill, penalties, the fleet.
//! The control API serves these shapes as they are (`control::model`).

use guard_common::{Reason, Verdict, stats::stat_slot};
use serde::{Deserialize, Serialize};

/// One `guard_packets_total` series.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PacketCount {
    pub verdict: String,
    pub reason: String,
    pub packets: u64,
}

/// Packets by verdict and reason, every pair listed (zeros too) in a fixed order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub packets: Vec<PacketCount>,
}

impl Counters {
    pub fn add(&mut self, index: u32, packets: u64) {
        if let Some((v, r)) = stat_slot(index) {
            self.packets.push(PacketCount {
                verdict: v.as_str().to_string(),
                reason: r.as_str().to_string(),
                packets,
            });
        }
    }

    pub fn get(&self, verdict: Verdict, reason: Reason) -> u64 {
        self.packets
            .iter()
            .find(|p| p.verdict == verdict.as_str() && p.reason == reason.as_str())
            .map_or(0, |p| p.packets)
    }

    pub fn total(&self, verdict: Verdict) -> u64 {
        self.packets
            .iter()
            .filter(|p| p.verdict == verdict.as_str())
            .map(|p| p.packets)
            .sum()
    }
}

/// `GET /v1/stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub totals: Totals,
    pub packets: Vec<PacketCount>,
    pub rules: Vec<RuleCount>,
    pub lists: ListCounts,
    pub bans_active: usize,
    pub allows_active: usize,
    /// Ban or allow requests refused because the table was full.
    pub bans_refused_full: u64,
    pub refill: Option<RefillSummary>,
    /// Sources an empty endpoint budget lets through.
    #[serde(default)]
    pub known: KnownCounts,
}

/// `guard_known_sources{kind}`: verified (a live slot of the kernel's table) and vouched for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownCounts {
    pub verified: u64,
    pub vouched: u64,
}

/// Packets a rule charged (passed), found its bucket empty for (limited), and dropped for
/// its empty endpoint budget (overload); the tokens its budget holds (None: no budget).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleCount {
    pub rule: String,
    pub passed: u64,
    pub limited: u64,
    #[serde(default)]
    pub overload: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_tokens: Option<f64>,
}

/// The refill's own cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefillSummary {
    pub ticks: u64,
    pub buckets_per_tick: f64,
    pub last_tick_us: f64,
    pub max_tick_us: f64,
    /// Share of one CPU spent refilling since start.
    pub cpu_share: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub pass: u64,
    pub drop: u64,
    pub monitor: u64,
}

impl Stats {
    pub fn new(
        counters: Counters,
        rules: Vec<RuleCount>,
        lists: ListCounts,
        refill: Option<RefillSummary>,
    ) -> Stats {
        Stats {
            totals: Totals {
                pass: counters.total(Verdict::Pass),
                drop: counters.total(Verdict::Drop),
                monitor: counters.total(Verdict::Monitor),
            },
            packets: counters.packets,
            rules,
            lists,
            bans_active: 0,
            allows_active: 0,
            bans_refused_full: 0,
            refill,
            known: KnownCounts::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetStatus {
    /// Connected to a NATS server.
    pub connected: bool,
    /// The buckets' state is applied here (since the last connection).
    pub in_sync: bool,
    pub servers: Vec<String>,
    /// This host's name in the fleet: the origin of what it makes.
    pub node: String,
    /// Verdicts made here that NATS has not acknowledged yet.
    pub outbox: usize,
    /// When a verdict from another node was last applied (RFC 3339).
    pub last_applied: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PenaltyResult {
    pub ip: String,
    pub rules: Vec<RulePenalty>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RulePenalty {
    pub rule: String,
    /// Tokens taken (less than asked when the debt bound of 60 s of refill was reached).
    pub tokens_charged: f64,
    /// Tokens left in the bucket afterwards; negative is debt.
    pub tokens_available: f64,
}

/// List entries loaded, for status and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListCounts {
    pub allow: usize,
    pub deny: usize,
}

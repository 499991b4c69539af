//! The JSON shapes of the control API, shared by the server and `guardctl`.

use guard_common::{Reason, Verdict, stats::stat_slot};
use serde::{Deserialize, Serialize};

pub use crate::kernel::verifier::ProgramLoad;

use crate::{kernel::attach::AttachMode, lists::tables::ListCounts};

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
}

/// Packets a rule charged (passed) and found its bucket empty for (limited).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleCount {
    pub rule: String,
    pub passed: u64,
    pub limited: u64,
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
        }
    }
}

/// `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub pid: u32,
    pub interfaces: Vec<InterfaceStatus>,
    pub monitor: bool,
    pub uptime_secs: u64,
    /// The config file, or null when running on the embedded default.
    pub config_path: Option<String>,
    pub pin_dir: String,
    /// Seconds since the last refill; null while no rate rule is enforced.
    pub refill_heartbeat_age_secs: Option<f64>,
    /// What loading the XDP program cost the kernel's verifier.
    pub program: ProgramLoad,
    /// With `[fleet]`: the link to the other hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetStatus>,
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceStatus {
    pub name: String,
    pub xdp_mode: AttachMode,
    pub program_id: Option<u32>,
}

/// Every error answer: `{"error": "..."}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

/// One entry of `POST /v1/bans` or `POST /v1/allows`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryRequest {
    pub cidr: String,
    /// Bans: omitted = escalation; allows: omitted = until removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Kept on this host, not shared with the fleet.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub local: bool,
}

/// A ban or allow as listed and as applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryView {
    pub cidr: String,
    /// RFC 3339, or null for an allow without TTL.
    pub expires_at: Option<String>,
    pub ttl_remaining_secs: Option<u64>,
    pub reason: String,
    pub created_at: Option<String>,
    /// Bans: the how-many-th ban of this source within 24 h (what escalation used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ban_number: Option<u32>,
    /// The fleet node that made the verdict (this host's name for its own).
    #[serde(default)]
    pub origin: Option<String>,
    /// Kept on this host, not shared with the fleet.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub local: bool,
    /// An automatic ban of a source that never proved its address real (`ban_unverified`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unverified: bool,
}

/// Answer of `POST /v1/bans` and `POST /v1/allows`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub applied: Vec<EntryView>,
    /// False when the entries are enforced but not yet in the state database (it refused the
    /// write; guardd retries every second).
    #[serde(default)]
    pub durable: bool,
}

/// Answer of `GET /v1/bans` and `GET /v1/allows`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryList {
    pub entries: Vec<EntryView>,
}

/// `POST /v1/penalties`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PenaltyRequest {
    pub ip: String,
    pub tokens: u64,
    /// Omitted: every rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
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

/// Answer of `POST /v1/reload`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reloaded {
    pub reloaded: bool,
    pub lists: ListCounts,
    pub rules: usize,
}

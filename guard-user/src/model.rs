//! The JSON shapes of the control API, shared by the server and `guardctl`.

use guard_common::{Reason, Verdict, stats::stat_slot};
use serde::{Deserialize, Serialize};

use crate::{attach::AttachMode, tables::ListCounts};

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

//! The JSON shapes of the control API, shared by the server and `guardctl`.

use serde::{Deserialize, Serialize};

pub use crate::model::report::{
    Counters, FleetStatus, ListCounts, PacketCount, PenaltyResult, RefillSummary, RuleCount,
    RulePenalty, Stats, Totals,
};

pub use crate::kernel::verifier::ProgramLoad;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{
    kernel::attach::AttachMode,
    model::{Entry, Kind},
};

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

impl EntryView {
    /// `e` as the API shows it: monotonic expiry turned into wall-clock time.
    pub fn of(e: &Entry) -> EntryView {
        let remaining = e.remaining();
        let rfc3339 = |t: SystemTime| humantime::format_rfc3339_seconds(t).to_string();
        EntryView {
            cidr: e.net.to_string(),
            expires_at: remaining.map(|r| rfc3339(SystemTime::now() + r)),
            ttl_remaining_secs: remaining.map(|r| r.as_secs()),
            reason: e.reason.clone(),
            created_at: (e.created_unix_ns != 0)
                .then(|| rfc3339(UNIX_EPOCH + Duration::from_nanos(e.created_unix_ns))),
            ban_number: (e.kind == Kind::Ban && e.ban_number > 0).then_some(e.ban_number),
            origin: (!e.origin.is_empty()).then(|| e.origin.to_string()),
            local: e.local,
            unverified: e.unverified,
        }
    }
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

/// Answer of `POST /v1/reload`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reloaded {
    pub reloaded: bool,
    pub lists: ListCounts,
    pub rules: usize,
}

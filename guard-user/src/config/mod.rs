//! The TOML configuration (`/etc/guard/guard.toml`): its shape, defaults and validation.
//!
//! Field-level rules live in the field types (`values.rs`), so the TOML parser reports them
//! with the line, column and key; rules that span fields are checked in [`Config::validate`].

mod budget;
mod fleet;
mod locate;
mod validate;
mod values;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

pub use fleet::Fleet;
use locate::{invalid, locate_key};
use serde::{Deserialize, Serialize};
pub use values::{
    BucketCount, Cidr, HumanDuration, Protocol, RuleName, SocketMode, XdpModeSetting,
};

/// The configuration guardd runs on when no `--config` is given.
pub const EMBEDDED_DEFAULT: &str = include_str!("default.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}:{line}:{column}: {key}{message}")]
    Invalid {
        origin: String,
        line: usize,
        column: usize,
        /// Dotted key path, with a trailing ": ", or empty when the error is not in a key.
        key: String,
        message: String,
    },
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub interfaces: Vec<String>,
    #[serde(default)]
    pub xdp_mode: XdpModeSetting,
    #[serde(default)]
    pub monitor: bool,
    /// Drop packets with malformed or truncated headers (default: count and pass them;
    /// those a rule with ports or `tcp_syn_only` cannot judge are dropped all the same).
    #[serde(default)]
    pub drop_malformed: bool,
    #[serde(default = "defaults::refill_period", with = "humantime_serde")]
    pub refill_period: Duration,
    #[serde(default = "defaults::refill_batches_per_second")]
    pub refill_batches_per_second: u32,
    #[serde(default = "defaults::refill_stale_after", with = "humantime_serde")]
    pub refill_stale_after: Duration,
    #[serde(default = "defaults::pin_dir")]
    pub pin_dir: PathBuf,
    /// Where bans, allows and escalation histories are kept across reboots; empty: only in
    /// the pinned maps (lost when the host reboots).
    #[serde(default = "defaults::state_dir")]
    pub state_dir: PathBuf,
    #[serde(default)]
    pub rules: Vec<Rule>,
    #[serde(default)]
    pub lists: Lists,
    #[serde(default)]
    pub bans: Bans,
    #[serde(default)]
    pub known: Known,
    #[serde(default)]
    pub api: Api,
    #[serde(default)]
    pub metrics: Metrics,
    #[serde(default)]
    pub fleet: Fleet,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: RuleName,
    #[serde(default)]
    pub protocol: Protocol,
    /// Destination ports; empty means all.
    #[serde(default)]
    pub ports: Vec<u16>,
    #[serde(default)]
    pub tcp_syn_only: bool,
    #[serde(default = "defaults::ipv4_prefix")]
    pub ipv4_prefix: u8,
    #[serde(default = "defaults::ipv6_prefix")]
    pub ipv6_prefix: u8,
    /// Tokens per second.
    pub rate: f64,
    /// Bucket size in tokens.
    pub burst: u32,
    #[serde(default)]
    pub buckets: BucketCount,
    #[serde(default)]
    pub monitor: bool,
    /// A source this rule keeps limiting for this long is banned (`crate::auto`), once it
    /// proved its address real.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ban_after: Option<HumanDuration>,
    /// `ban_after` may ban sources that gave no such proof.
    #[serde(default)]
    pub ban_unverified: bool,
    /// The endpoint's budget over all sources this rule matches, tokens per second; when it
    /// is empty only vouched or verified sources pass. None: no budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_rate: Option<f64>,
    /// The budget's size in tokens (with `total_rate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_burst: Option<u32>,
    #[serde(default)]
    pub budget_mode: BudgetMode,
}

/// When a rule's endpoint budget is enforced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetMode {
    #[default]
    Always,
    /// Only while the rule's traffic is shaped like a distributed attack.
    UnderAttack,
}

/// Sources known to be real: verified by a completed TCP handshake.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Known {
    /// How long a handshake keeps a source verified (also a vouch's TTL when none is given).
    #[serde(default = "defaults::verified_for", with = "humantime_serde")]
    pub verified_for: Duration,
    /// Slots of the fixed-size table of verified sources (a power of two, 8 bytes each).
    #[serde(default = "defaults::known_slots")]
    pub slots: u32,
}

impl Default for Known {
    fn default() -> Self {
        Known {
            verified_for: defaults::verified_for(),
            slots: defaults::known_slots(),
        }
    }
}

impl Rule {
    /// Whether this rule's traffic can prove a source real (a segment of an established
    /// TCP connection): not UDP, ICMP or connection attempts only.
    pub fn can_prove(&self) -> bool {
        matches!(self.protocol, Protocol::Tcp | Protocol::Any) && !self.tcp_syn_only
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Lists {
    #[serde(default)]
    pub allow: Vec<PathBuf>,
    #[serde(default)]
    pub deny: Vec<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Bans {
    #[serde(default = "defaults::ban_max_entries")]
    pub max_entries: u32,
    #[serde(default = "defaults::ban_ttl", with = "humantime_serde")]
    pub default_ttl: Duration,
    #[serde(default = "defaults::escalation")]
    pub escalation: Vec<HumanDuration>,
    /// This many bans inside one aggregate prefix become one ban of it; 0: never (shared
    /// NAT ranges make it a choice).
    #[serde(default)]
    pub aggregate_sources: u32,
    #[serde(default = "defaults::aggregate_ipv4_prefix")]
    pub aggregate_ipv4_prefix: u8,
    #[serde(default = "defaults::aggregate_ipv6_prefix")]
    pub aggregate_ipv6_prefix: u8,
    /// Never banned by anyone, besides what the host always protects (`crate::protect`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protect: Vec<Cidr>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Api {
    #[serde(default = "defaults::socket")]
    pub socket: PathBuf,
    #[serde(default)]
    pub socket_mode: SocketMode,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    #[serde(default = "defaults::metrics_listen")]
    pub listen: SocketAddr,
}

impl Config {
    /// The name entries made here carry as their origin: `[fleet] node`, else the hostname.
    pub fn node_name(&self) -> String {
        self.fleet.node.clone().unwrap_or_else(|| {
            let host = nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default();
            let host: String = host
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
                .take(limits::MAX_NODE_NAME)
                .collect();
            if host.is_empty() {
                "guard".into()
            } else {
                host
            }
        })
    }
}

mod defaults {
    use super::*;

    pub fn refill_period() -> Duration {
        Duration::from_secs(1)
    }
    pub fn refill_batches_per_second() -> u32 {
        32
    }
    pub fn refill_stale_after() -> Duration {
        Duration::from_secs(5)
    }
    pub fn pin_dir() -> PathBuf {
        PathBuf::from("/sys/fs/bpf/guard")
    }
    pub fn state_dir() -> PathBuf {
        PathBuf::from("/var/lib/guard")
    }
    pub fn ipv4_prefix() -> u8 {
        32
    }
    pub fn ipv6_prefix() -> u8 {
        64
    }
    pub fn ban_max_entries() -> u32 {
        1 << 20
    }
    pub fn ban_ttl() -> Duration {
        Duration::from_secs(600)
    }
    pub fn escalation() -> Vec<HumanDuration> {
        [600, 3600, 86400]
            .map(|s| HumanDuration(Duration::from_secs(s)))
            .to_vec()
    }
    pub fn aggregate_ipv4_prefix() -> u8 {
        24
    }
    pub fn aggregate_ipv6_prefix() -> u8 {
        48
    }
    pub fn socket() -> PathBuf {
        PathBuf::from("/run/guard/guard.sock")
    }
    pub fn verified_for() -> Duration {
        Duration::from_secs(3600)
    }
    pub fn known_slots() -> u32 {
        1 << 20
    }
    pub fn metrics_listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 9752))
    }
}

impl Default for Bans {
    fn default() -> Self {
        Bans {
            max_entries: defaults::ban_max_entries(),
            default_ttl: defaults::ban_ttl(),
            escalation: defaults::escalation(),
            aggregate_sources: 0,
            aggregate_ipv4_prefix: defaults::aggregate_ipv4_prefix(),
            aggregate_ipv6_prefix: defaults::aggregate_ipv6_prefix(),
            protect: Vec::new(),
        }
    }
}

impl Default for Api {
    fn default() -> Self {
        Api {
            socket: defaults::socket(),
            socket_mode: SocketMode::default(),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            listen: defaults::metrics_listen(),
        }
    }
}

/// Bounds the config accepts; the token arithmetic is sized for them.
pub mod limits {
    use std::time::Duration;

    pub const MAX_RULES: usize = guard_common::rules::MAX_RULES;
    pub const MIN_REFILL_PERIOD: Duration = Duration::from_millis(100);
    pub const MAX_REFILL_PERIOD: Duration =
        Duration::from_nanos(guard_common::tokens::MAX_REFILL_PERIOD_NS);
    pub const MAX_BATCHES_PER_SECOND: u32 = 1000;
    pub const MAX_RATE: f64 = 10_000_000.0;
    pub const MIN_RATE: f64 = 0.001;
    pub const MAX_BURST: u32 = 100_000_000;
    pub const MAX_PORTS: usize = 64;
    /// `ban_after` bounds: a second is the kernel's report window.
    pub const MIN_BAN_AFTER: Duration = Duration::from_secs(1);
    pub const MAX_BAN_AFTER: Duration = Duration::from_secs(86_400);
    /// `aggregate_sources` at most.
    pub const MAX_AGGREGATE_SOURCES: u32 = 65_536;
    /// Below the kernel maps' fixed capacity (2^24), leaving room for temporary allows.
    pub const MAX_BANS: u32 = 16_000_000;
    /// Bytes of a fleet node name (an entry's origin, kept in the pinned metadata).
    pub const MAX_NODE_NAME: usize = guard_common::dynamic::ORIGIN_MAX;
    /// `[known] verified_for` bounds.
    pub const MIN_VERIFIED_FOR: Duration = Duration::from_secs(10);
    pub const MAX_VERIFIED_FOR: Duration = Duration::from_secs(7 * 86_400);
}

impl Rule {
    /// The endpoint budget: (tokens per second, size in tokens), if the rule has one.
    pub fn budget(&self) -> Option<(f64, u32)> {
        self.total_rate.zip(self.total_burst)
    }
}

impl Config {
    /// Parses and validates a config; `origin` names it in errors (a path or "<embedded>").
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::parse(text).map_err(|e| invalid(text, origin, "", e))?;
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            invalid(text, origin, &key, e.into_inner())
        })?;
        config.validate().map_err(|(key, message)| {
            // Cross-field errors point at the key's first line in the file when found.
            let (line, column) = locate_key(text, &key);
            ConfigError::Invalid {
                origin: origin.to_string(),
                line,
                column,
                key: format!("{key}: "),
                message,
            }
        })?;
        Ok(config)
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    pub fn embedded_default() -> Config {
        Config::parse(EMBEDDED_DEFAULT, "<embedded default>")
            .expect("the embedded default config is valid (unit-tested)")
    }
}

#[cfg(test)]
mod tests;

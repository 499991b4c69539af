//! Config value types that validate themselves while being parsed, so the TOML parser
//! reports a bad value with its line, column and key.

use std::fmt;

use serde::{Deserialize, Serialize};

/// `auto` tries native (driver) XDP first and falls back to generic (skb) XDP.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum XdpModeSetting {
    #[default]
    Auto,
    Driver,
    Skb,
}

impl fmt::Display for XdpModeSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            XdpModeSetting::Auto => "auto",
            XdpModeSetting::Driver => "driver",
            XdpModeSetting::Skb => "skb",
        })
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
    #[default]
    Any,
}

/// A rule name: `[a-z0-9-]{1,32}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct RuleName(String);

impl RuleName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RuleName {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        let ok = (1..=32).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(RuleName(s))
        } else {
            Err(format!("rule name {s:?} must match [a-z0-9-]{{1,32}}"))
        }
    }
}

impl From<RuleName> for String {
    fn from(n: RuleName) -> String {
        n.0
    }
}

/// Buckets per rule: a power of two between 2^4 and 2^24.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct BucketCount(u32);

impl BucketCount {
    pub const MIN: u32 = 1 << 4;
    pub const MAX: u32 = 1 << 24;

    pub fn get(self) -> u32 {
        self.0
    }
}

impl Default for BucketCount {
    fn default() -> Self {
        BucketCount(1 << 17)
    }
}

impl TryFrom<u64> for BucketCount {
    type Error = String;

    fn try_from(n: u64) -> Result<Self, String> {
        if n.is_power_of_two() && (Self::MIN as u64..=Self::MAX as u64).contains(&n) {
            Ok(BucketCount(n as u32))
        } else {
            Err(format!(
                "buckets = {n}: must be a power of two between {} and {}",
                Self::MIN,
                Self::MAX
            ))
        }
    }
}

impl From<BucketCount> for u64 {
    fn from(b: BucketCount) -> u64 {
        b.0 as u64
    }
}

/// File mode of the API socket, written as an octal string such as "0660".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct SocketMode(u32);

impl SocketMode {
    pub fn bits(self) -> u32 {
        self.0
    }
}

impl Default for SocketMode {
    fn default() -> Self {
        SocketMode(0o660)
    }
}

impl TryFrom<String> for SocketMode {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        match u32::from_str_radix(&s, 8) {
            Ok(bits) if bits <= 0o777 && s.len() <= 4 => Ok(SocketMode(bits)),
            _ => Err(format!(
                "socket_mode {s:?} must be an octal file mode such as \"0660\""
            )),
        }
    }
}

impl From<SocketMode> for String {
    fn from(m: SocketMode) -> String {
        format!("{:04o}", m.0)
    }
}

/// An address or CIDR as lists and the API accept it (host bits clear, not /0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr(pub ipnet::IpNet);

impl TryFrom<String> for Cidr {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        crate::lists::parse_net(&s)
            .map(Cidr)
            .map_err(|why| format!("{s:?}: {why}"))
    }
}

impl From<Cidr> for String {
    fn from(c: Cidr) -> String {
        c.0.to_string()
    }
}

/// A humantime duration (`30s`, `10m`, `1h`) inside a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct HumanDuration(#[serde(with = "humantime_serde")] pub std::time::Duration);

//! What the fleet's buckets hold: one key per prefix, one JSON record per verdict. JSON so
//! an operator can read a bucket with `nats kv get`; a record is a few hundred bytes.

use guard_common::dynamic::{ORIGIN_MAX, REASON_MAX};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::{
    model::ttl::MAX_TTL_SECS,
    model::{Entry, Kind, Remote},
};

/// The key-value bucket of each kind.
pub const BANS_BUCKET: &str = "guard_bans";
pub const ALLOWS_BUCKET: &str = "guard_allows";
pub const VOUCHES_BUCKET: &str = "guard_vouches";

pub fn bucket(kind: Kind) -> &'static str {
    match kind {
        Kind::Ban => BANS_BUCKET,
        Kind::Allow => ALLOWS_BUCKET,
        Kind::Vouch => VOUCHES_BUCKET,
    }
}

/// A verdict as the fleet shares it. Times are wall-clock ns (each node converts the expiry
/// to its own clock); `expires_unix_ns` 0 = until removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub origin: String,
    pub reason: String,
    pub expires_unix_ns: u64,
    pub created_unix_ns: u64,
    /// Bans: the escalation step the origin gave it.
    #[serde(default)]
    pub ban_number: u32,
    /// An automatic ban of a source that never proved its address real.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unverified: bool,
}

impl Record {
    /// `e` as the fleet shares it, as of `now_mono`/`now_unix`.
    pub fn of(e: &Entry, now_mono: u64, now_unix: u64) -> Record {
        Record {
            origin: e.origin.to_string(),
            reason: e.reason.clone(),
            expires_unix_ns: match e.expires_mono_ns {
                0 => 0,
                t => now_unix + t.saturating_sub(now_mono),
            },
            created_unix_ns: e.created_unix_ns,
            ban_number: e.ban_number,
            unverified: e.unverified,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a record serializes")
    }

    /// A record from another node, checked as the API checks a request and more: a record
    /// that would make an entry the API refuses, or that no guard writes, is refused with
    /// the reason `guard_fleet_refused_total` counts.
    pub fn decode(bytes: &[u8], kind: Kind, now_unix: u64) -> Result<Record, Refused> {
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(Refused::new(
                Refusal::Size,
                format!("{} bytes, over {MAX_RECORD_BYTES}", bytes.len()),
            ));
        }
        let r: Record =
            serde_json::from_slice(bytes).map_err(|e| Refused::new(Refusal::Malformed, e))?;
        if r.reason.len() > REASON_MAX || r.reason.chars().any(char::is_control) {
            return Err(Refused::new(
                Refusal::Reason,
                "a reason the API would refuse",
            ));
        }
        let name_ok = r
            .origin
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if r.origin.is_empty() || r.origin.len() > ORIGIN_MAX || !name_ok {
            return Err(Refused::new(
                Refusal::Origin,
                format!("origin {:?} is not a node name", r.origin),
            ));
        }
        if r.created_unix_ns < EARLIEST_CREATED_NS || r.created_unix_ns > now_unix + CLOCK_SLACK_NS
        {
            return Err(Refused::new(
                Refusal::Created,
                format!(
                    "created at {} ns, not a time a node made it",
                    r.created_unix_ns
                ),
            ));
        }
        if r.ban_number > MAX_BAN_NUMBER {
            return Err(Refused::new(
                Refusal::BanNumber,
                format!("ban number {}", r.ban_number),
            ));
        }
        let longest = MAX_TTL_SECS * 1_000_000_000 + CLOCK_SLACK_NS;
        match r.expires_unix_ns {
            // Until removed: an allow may be (the API makes them), a ban or a vouch never is.
            0 if kind != Kind::Allow => {
                return Err(Refused::new(
                    Refusal::Expiry,
                    format!("a {} that never expires", kind.as_str()),
                ));
            }
            0 => {}
            t if t <= r.created_unix_ns => {
                return Err(Refused::new(
                    Refusal::Expiry,
                    "an expiry before its creation",
                ));
            }
            t if t > now_unix + longest || t - r.created_unix_ns > longest => {
                return Err(Refused::new(
                    Refusal::Expiry,
                    "an expiry beyond the longest TTL",
                ));
            }
            _ => {}
        }
        Ok(r)
    }

    /// In force at `now_unix`.
    pub fn live(&self, now_unix: u64) -> bool {
        self.expires_unix_ns == 0 || self.expires_unix_ns > now_unix
    }

    pub fn remote(&self) -> Remote {
        Remote {
            origin: self.origin.clone(),
            expires_unix_ns: self.expires_unix_ns,
            created_unix_ns: self.created_unix_ns,
            ban_number: self.ban_number,
            unverified: self.unverified,
        }
    }
}

/// `net` as a key of the bucket of `kind`: a vouch's is one address, as the API's.
pub fn fits(net: IpNet, kind: Kind) -> Result<IpNet, Refused> {
    if kind == Kind::Vouch && net.prefix_len() != net.max_prefix_len() {
        return Err(Refused::new(
            Refusal::Key,
            format!("a vouch for {net}, not one address"),
        ));
    }
    Ok(net)
}

/// Clocks of the fleet's hosts may differ by this much before an expiry looks too far.
const CLOCK_SLACK_NS: u64 = 60 * 1_000_000_000;
/// The largest record a guard writes is under 512 bytes (a 64-byte origin, a 120-byte
/// reason); the streams refuse larger messages too (`link`).
pub const MAX_RECORD_BYTES: usize = 1024;
/// No node made a verdict before guard existed (2024-01-01).
const EARLIEST_CREATED_NS: u64 = 1_704_067_200 * 1_000_000_000;
/// Escalation counts past this are not a history any host keeps.
const MAX_BAN_NUMBER: u32 = 65_535;

/// Why a record from the fleet was refused, as `guard_fleet_refused_total{reason}` names it.
/// Declared in `Refusal::ALL`'s order: a refusal is its own index there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not a canonical prefix key, or `/0`.
    Key,
    /// Over `MAX_RECORD_BYTES`.
    Size,
    /// Not a record.
    Malformed,
    Origin,
    Reason,
    Created,
    BanNumber,
    Expiry,
    /// A ban covering an address this host protects (`crate::protect`).
    Protected,
    /// A prefix length past those entries from the fleet may use (`MAX_REMOTE_LENS`).
    Lengths,
    /// A deletion from a bucket not made as guard makes it (`link::trust`).
    Bucket,
    /// Valid, but this host's checks refused it (an allow-listed address, no room).
    NotApplied,
}

impl Refusal {
    pub const ALL: [Refusal; 12] = [
        Refusal::Key,
        Refusal::Size,
        Refusal::Malformed,
        Refusal::Origin,
        Refusal::Reason,
        Refusal::Created,
        Refusal::BanNumber,
        Refusal::Expiry,
        Refusal::Protected,
        Refusal::Lengths,
        Refusal::Bucket,
        Refusal::NotApplied,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Key => "key",
            Refusal::Size => "size",
            Refusal::Malformed => "malformed",
            Refusal::Origin => "origin",
            Refusal::Reason => "reason",
            Refusal::Created => "created",
            Refusal::BanNumber => "ban_number",
            Refusal::Expiry => "expiry",
            Refusal::Protected => "protected",
            Refusal::Lengths => "lengths",
            Refusal::Bucket => "bucket",
            Refusal::NotApplied => "not_applied",
        }
    }
}

/// A refused record: why, and the detail for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub why: Refusal,
    pub detail: String,
}

impl Refused {
    pub fn new(why: Refusal, detail: impl std::fmt::Display) -> Refused {
        Refused {
            why,
            detail: detail.to_string(),
        }
    }
}

/// A prefix as a key: NATS keys take `[-/_=.A-Za-z0-9]`, so IPv6's colons become dashes
/// (`198.18.0.7/32`, `2001-db8--/64`).
pub fn key_of(net: &IpNet) -> String {
    net.to_string().replace(':', "-")
}

/// The prefix a key names. Only the key `key_of` writes for it is one: `198.18.0.7` beside
/// `198.18.0.7/32` would be two records of one prefix. `/0` is no verdict's (the API refuses
/// it too).
pub fn net_of(key: &str) -> Result<IpNet, Refused> {
    let refused = |why: &str| Refused::new(Refusal::Key, format!("key {key:?} {why}"));
    let text = key.replace('-', ":");
    let net: IpNet = text.parse().map_err(|_| refused("is not a prefix"))?;
    if net.trunc() != net {
        return Err(refused("has host bits set"));
    }
    if net.prefix_len() == 0 {
        return Err(refused("covers a whole address family"));
    }
    if key_of(&net) != key {
        return Err(refused("is not written as guard writes it"));
    }
    Ok(net)
}

#[cfg(test)]
mod tests;

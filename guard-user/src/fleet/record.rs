//! What the fleet's buckets hold: one key per prefix, one JSON record per verdict. JSON so
//! an operator can read a bucket with `nats kv get`; a record is a few hundred bytes.

use std::net::IpAddr;

use guard_common::dynamic::{ORIGIN_MAX, REASON_MAX};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::{
    control::requests::MAX_TTL_SECS,
    verdicts::{Entry, Kind, Remote},
};

/// The key-value bucket of each kind.
pub const BANS_BUCKET: &str = "guard_bans";
pub const ALLOWS_BUCKET: &str = "guard_allows";

pub fn bucket(kind: Kind) -> &'static str {
    match kind {
        Kind::Ban => BANS_BUCKET,
        Kind::Allow => ALLOWS_BUCKET,
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
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a record serializes")
    }

    /// A record from another node, checked as the API checks a request: a record that
    /// would make an entry the API refuses is refused too.
    pub fn decode(bytes: &[u8], now_unix: u64) -> Result<Record, String> {
        let r: Record = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if r.reason.len() > REASON_MAX || r.reason.chars().any(char::is_control) {
            return Err("a reason the API would refuse".into());
        }
        let name_ok = r
            .origin
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if r.origin.is_empty() || r.origin.len() > ORIGIN_MAX || !name_ok {
            return Err(format!("origin {:?} is not a node name", r.origin));
        }
        let latest = now_unix + MAX_TTL_SECS * 1_000_000_000 + CLOCK_SLACK_NS;
        if r.expires_unix_ns > latest {
            return Err("an expiry beyond the longest TTL".into());
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
        }
    }
}

/// Clocks of the fleet's hosts may differ by this much before an expiry looks too far.
const CLOCK_SLACK_NS: u64 = 60 * 1_000_000_000;

/// A prefix as a key: NATS keys take `[-/_=.A-Za-z0-9]`, so IPv6's colons become dashes
/// (`198.18.0.7/32`, `2001-db8--/64`).
pub fn key_of(net: &IpNet) -> String {
    net.to_string().replace(':', "-")
}

pub fn net_of(key: &str) -> Result<IpNet, String> {
    let text = key.replace('-', ":");
    let net: IpNet = text
        .parse()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("key {key:?} is not a prefix"))?;
    if net.trunc() != net {
        return Err(format!("key {key:?} has host bits set"));
    }
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_nats_keys_and_come_back() {
        for text in [
            "198.18.0.7/32",
            "198.18.0.0/24",
            "2001:db8::/64",
            "2001:db8::7/128",
            "::ffff:198.18.0.1/128",
        ] {
            let net: IpNet = text.parse().unwrap();
            let key = key_of(&net);
            assert!(
                key.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-/_=.".contains(c)),
                "{key}"
            );
            assert!(!key.starts_with('.') && !key.ends_with('.'));
            assert_eq!(net_of(&key).unwrap(), net, "{key}");
        }
        assert!(net_of("198.18.0.7/24").is_err(), "host bits");
        assert!(net_of("junk").is_err());
    }

    #[test]
    fn records_the_api_would_refuse_are_refused() {
        let now = 1_800_000_000_000_000_000;
        let ok = Record {
            origin: "web-1".into(),
            reason: "junk".into(),
            expires_unix_ns: now + 600_000_000_000,
            created_unix_ns: now,
            ban_number: 1,
        };
        assert_eq!(Record::decode(&ok.encode(), now).unwrap(), ok);
        for bad in [
            Record {
                origin: String::new(),
                ..ok.clone()
            },
            Record {
                origin: "a b".into(),
                ..ok.clone()
            },
            Record {
                reason: "x".repeat(REASON_MAX + 1),
                ..ok.clone()
            },
            Record {
                reason: "a\nb".into(),
                ..ok.clone()
            },
            Record {
                expires_unix_ns: now + 40 * 86_400 * 1_000_000_000,
                ..ok.clone()
            },
        ] {
            assert!(Record::decode(&bad.encode(), now).is_err(), "{bad:?}");
        }
        assert!(Record::decode(b"{}", now).is_err());
    }
}

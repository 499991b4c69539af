//! The records of the durable state. Times are wall-clock (a reboot resets the monotonic
//! clock the kernel uses), converted at the edges.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::verdicts::{Entry, Kind};

/// A ban or an allow as the database keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    pub net: IpNet,
    pub kind: Kind,
    /// Wall-clock ns; 0 = until removed.
    pub expires_unix_ns: u64,
    pub created_unix_ns: u64,
    pub reason: String,
    pub ban_number: u32,
}

/// A source's escalation history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredHistory {
    pub net: IpNet,
    pub last_unix_ns: u64,
    pub count: u32,
}

impl Stored {
    /// `e` with its monotonic expiry turned into wall-clock time, as of `now_mono`/`now_unix`.
    pub fn from_entry(e: &Entry, now_mono: u64, now_unix: u64) -> Stored {
        Stored {
            net: e.net,
            kind: e.kind,
            expires_unix_ns: match e.expires_mono_ns {
                0 => 0,
                t => now_unix + t.saturating_sub(now_mono),
            },
            created_unix_ns: e.created_unix_ns,
            reason: e.reason.clone(),
            ban_number: e.ban_number,
        }
    }

    /// The entry on this boot's monotonic clock; None when it has expired.
    pub fn to_entry(&self, now_mono: u64, now_unix: u64) -> Option<Entry> {
        let expires_mono_ns = match self.expires_unix_ns {
            0 => 0,
            t if t <= now_unix => return None,
            t => now_mono + (t - now_unix),
        };
        Some(Entry {
            net: self.net,
            kind: self.kind,
            expires_mono_ns,
            created_unix_ns: self.created_unix_ns,
            reason: self.reason.clone(),
            ban_number: self.ban_number,
        })
    }

    pub(super) fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a record serializes")
    }

    pub(super) fn decode(bytes: &[u8]) -> Result<Stored, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
}

impl StoredHistory {
    pub(super) fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a record serializes")
    }

    pub(super) fn decode(bytes: &[u8]) -> Result<StoredHistory, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_crosses_a_reboot_in_wall_clock_time() {
        let e = Entry {
            net: "198.18.0.7/32".parse().unwrap(),
            kind: Kind::Ban,
            expires_mono_ns: 1_000 + 600,
            created_unix_ns: 5,
            reason: "junk".into(),
            ban_number: 2,
        };
        // Stored at monotonic 1,000 = unix 50,000; read back after a reboot at monotonic 10.
        let s = Stored::from_entry(&e, 1_000, 50_000);
        assert_eq!(s.expires_unix_ns, 50_600);
        let back = s.to_entry(10, 50_100).unwrap();
        assert_eq!(back.expires_mono_ns, 10 + 500);
        assert_eq!((back.reason.as_str(), back.ban_number), ("junk", 2));
        assert!(s.to_entry(10, 50_600).is_none(), "expired while down");
        let forever = Stored {
            expires_unix_ns: 0,
            ..s
        };
        assert_eq!(forever.to_entry(10, u64::MAX).unwrap().expires_mono_ns, 0);
    }
}

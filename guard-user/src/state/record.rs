//! The records of the durable state. Times are wall-clock (a reboot resets the monotonic
//! clock the kernel uses), converted at the edges.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::model::{Entry, Kind};

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
    /// The fleet node that made it (absent in the first format: this host).
    #[serde(default)]
    pub origin: String,
    /// Not shared with the fleet.
    #[serde(default)]
    pub local: bool,
    /// An automatic ban of a source that never proved its address real.
    #[serde(default)]
    pub unverified: bool,
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
            origin: e.origin.to_string(),
            local: e.local,
            unverified: e.unverified,
        }
    }

    /// The entry on this boot's monotonic clock; None when it has expired.
    pub fn to_entry(&self, now_mono: u64, now_unix: u64) -> Option<Entry> {
        let expires_mono_ns = match self.expires_unix_ns {
            0 => 0,
            t if t <= now_unix => return None,
            // Saturating: a record from a file someone wrote may say any time.
            t => now_mono.saturating_add(t - now_unix),
        };
        Some(Entry {
            net: self.net,
            kind: self.kind,
            expires_mono_ns,
            created_unix_ns: self.created_unix_ns,
            reason: self.reason.clone(),
            ban_number: self.ban_number,
            origin: crate::model::origin(&self.origin),
            local: self.local,
            unverified: self.unverified,
        })
    }

    /// flags (bit 0: ban, bit 1: local, bit 2: unverified, bit 3: vouch) | ban_number u32 |
    /// expires u64 | created u64 |
    /// origin length u8 | origin | reason (UTF-8), little-endian: a tenth of JSON's bytes,
    /// and none of its encoding time in a bulk call.
    pub fn encode(&self) -> Vec<u8> {
        let origin = &self.origin.as_bytes()[..self.origin.len().min(u8::MAX as usize)];
        let mut v = Vec::with_capacity(HEAD + origin.len() + self.reason.len());
        let ban = u8::from(self.kind == Kind::Ban);
        let vouch = u8::from(self.kind == Kind::Vouch);
        v.push(ban | u8::from(self.local) << 1 | u8::from(self.unverified) << 2 | vouch << 3);
        v.extend_from_slice(&self.ban_number.to_le_bytes());
        v.extend_from_slice(&self.expires_unix_ns.to_le_bytes());
        v.extend_from_slice(&self.created_unix_ns.to_le_bytes());
        v.push(origin.len() as u8);
        v.extend_from_slice(origin);
        v.extend_from_slice(self.reason.as_bytes());
        v
    }

    pub fn decode(key: &[u8], bytes: &[u8]) -> Result<Stored, String> {
        let net = net_of(key)?;
        let short = || format!("{net}: a short record");
        let flags = *bytes.first().ok_or_else(short)?;
        let kind = match flags & 0b1001 {
            _ if flags > 15 => return Err(format!("{net}: flags {flags}")),
            0 => Kind::Allow,
            1 => Kind::Ban,
            8 => Kind::Vouch,
            _ => return Err(format!("{net}: flags {flags}: a ban and a vouch")),
        };
        let origin_len = *bytes.get(HEAD - 1).ok_or_else(short)? as usize;
        let origin = bytes.get(HEAD..HEAD + origin_len).ok_or_else(short)?;
        let reason = &bytes[HEAD + origin_len..];
        let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|e| format!("{net}: {e}"));
        Ok(Stored {
            net,
            kind,
            ban_number: u32_at(bytes, 1),
            expires_unix_ns: u64_at(bytes, 5),
            created_unix_ns: u64_at(bytes, 13),
            origin: text(origin)?,
            local: flags & 2 != 0,
            unverified: flags & 4 != 0,
            reason: text(reason)?,
        })
    }

    /// The JSON records of the first format (`entries`/`history` tables), read once to
    /// move them into the binary tables.
    pub(super) fn decode_json(bytes: &[u8]) -> Result<Stored, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
}

impl StoredHistory {
    /// count u32 | last ban u64, little-endian.
    pub fn encode(&self) -> [u8; 12] {
        let mut v = [0; 12];
        v[..4].copy_from_slice(&self.count.to_le_bytes());
        v[4..].copy_from_slice(&self.last_unix_ns.to_le_bytes());
        v
    }

    pub fn decode(key: &[u8], bytes: &[u8]) -> Result<StoredHistory, String> {
        let net = net_of(key)?;
        if bytes.len() != 12 {
            return Err(format!("{net}: a history of {} bytes", bytes.len()));
        }
        Ok(StoredHistory {
            net,
            count: u32_at(bytes, 0),
            last_unix_ns: u64_at(bytes, 4),
        })
    }

    pub(super) fn decode_json(bytes: &[u8]) -> Result<StoredHistory, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
}

/// Bytes of a record before its origin: flags, ban number, expiry, creation, origin length.
const HEAD: usize = 22;

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// A prefix as a table key: family (4 or 6), length, the address's 16 bytes (IPv4 in the
/// first 4). Fixed size; sorts by family, then length, then address.
pub fn key_of(net: &IpNet) -> [u8; 18] {
    let mut k = [0; 18];
    k[1] = net.prefix_len();
    match net {
        IpNet::V4(n) => {
            k[0] = 4;
            k[2..6].copy_from_slice(&n.network().octets());
        }
        IpNet::V6(n) => {
            k[0] = 6;
            k[2..].copy_from_slice(&n.network().octets());
        }
    }
    k
}

pub(super) fn net_of(key: &[u8]) -> Result<IpNet, String> {
    let bad = || format!("a key of {} bytes: {key:?}", key.len());
    if key.len() != 18 {
        return Err(bad());
    }
    let addr: std::net::IpAddr = match key[0] {
        4 => <[u8; 4]>::try_from(&key[2..6]).expect("4 bytes").into(),
        6 => <[u8; 16]>::try_from(&key[2..]).expect("16 bytes").into(),
        _ => return Err(bad()),
    };
    let net = IpNet::new(addr, key[1]).map_err(|_| bad())?;
    // One key per prefix (no host bits, nothing after an IPv4 address), and no /0: a file
    // someone wrote may hold anything, guard writes only these.
    if key_of(&net) != key || net.prefix_len() == 0 {
        return Err(format!("{}: not a key guard writes", bad()));
    }
    Ok(net)
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
            origin: "web-1".into(),
            local: false,
            unverified: false,
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

    #[test]
    fn every_kind_survives_the_encoding() {
        for kind in Kind::ALL {
            let e = Entry {
                net: "2001:db8::9/128".parse().unwrap(),
                kind,
                expires_mono_ns: 2_000,
                created_unix_ns: 5,
                reason: "solved the challenge".into(),
                ban_number: 0,
                origin: "web-1".into(),
                local: true,
                unverified: false,
            };
            let s = Stored::from_entry(&e, 1_000, 50_000);
            let back = Stored::decode(&key_of(&e.net), &s.encode()).unwrap();
            assert_eq!((back.kind, back.local), (kind, true), "{kind:?}");
        }
        let mut bytes = Stored::from_entry(
            &Entry {
                net: "198.18.0.9/32".parse().unwrap(),
                kind: Kind::Ban,
                expires_mono_ns: 0,
                created_unix_ns: 5,
                reason: String::new(),
                ban_number: 1,
                origin: "a".into(),
                local: false,
                unverified: false,
            },
            0,
            0,
        )
        .encode();
        bytes[0] |= 8;
        let key = key_of(&"198.18.0.9/32".parse().unwrap());
        assert!(
            Stored::decode(&key, &bytes)
                .unwrap_err()
                .contains("a ban and a vouch")
        );
    }
}

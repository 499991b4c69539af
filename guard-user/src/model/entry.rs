//! What the table holds and is asked for: the kind of an entry, a request, an entry.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use guard_common::dynamic::{DynEntry, KIND_ALLOW, KIND_BAN, KIND_VOUCH};
use ipnet::IpNet;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Allow,
    Ban,
    /// One address the application vouches for: it passes a rule's empty endpoint budget,
    /// and is still held to its buckets and bans.
    Vouch,
}

impl Kind {
    /// Every kind, in `index` order.
    pub const ALL: [Kind; 3] = [Kind::Ban, Kind::Allow, Kind::Vouch];

    /// The kind's place in arrays kept per kind.
    pub fn index(self) -> usize {
        match self {
            Kind::Ban => 0,
            Kind::Allow => 1,
            Kind::Vouch => 2,
        }
    }

    pub fn code(self) -> u32 {
        match self {
            Kind::Allow => KIND_ALLOW,
            Kind::Ban => KIND_BAN,
            Kind::Vouch => KIND_VOUCH,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Allow => "allow",
            Kind::Ban => "ban",
            Kind::Vouch => "vouch",
        }
    }
}

/// A validated request to add one entry.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub net: IpNet,
    /// None: bans escalate, allows last until removed. Ignored for a remote entry.
    pub ttl: Option<Duration>,
    pub reason: String,
    /// Kept on this host: not shared with the fleet.
    pub local: bool,
    /// Made on another node of the fleet: applied as it was made there.
    pub remote: Option<Remote>,
    /// An automatic ban of a source that never proved its address real (`ban_unverified`):
    /// aggregation does not count it.
    pub unverified: bool,
}

/// A verdict another node made, as its record in the fleet's buckets says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    pub origin: String,
    /// Wall-clock ns; 0 = until removed. Converted to this host's clock, never extended.
    pub expires_unix_ns: u64,
    pub created_unix_ns: u64,
    /// For bans: the escalation step the origin gave it (fleet-wide counts).
    pub ban_number: u32,
    pub unverified: bool,
}

/// An entry as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub net: IpNet,
    pub kind: Kind,
    /// CLOCK_MONOTONIC ns; 0 = never.
    pub expires_mono_ns: u64,
    pub created_unix_ns: u64,
    pub reason: String,
    /// For bans: the how-many-th ban of this source within the escalation window.
    pub ban_number: u32,
    /// The fleet node that made it (this host's name for entries made here). Shared, not
    /// one allocation per entry: 100,000 small strings kept the heap from shrinking after a
    /// bulk call.
    pub origin: Arc<str>,
    /// Not shared with the fleet (`"local": true`); the fleet never changes it.
    pub local: bool,
    /// See `Request::unverified`.
    pub unverified: bool,
}

impl Entry {
    /// Time left, or None for an allow without TTL.
    pub fn remaining(&self) -> Option<Duration> {
        (self.expires_mono_ns != 0).then(|| {
            Duration::from_nanos(
                self.expires_mono_ns
                    .saturating_sub(crate::model::clock::monotonic_ns()),
            )
        })
    }

    /// The entry as the kernel holds it.
    pub fn kernel(&self) -> DynEntry {
        DynEntry {
            expires_ns: self.expires_mono_ns,
            kind: self.kind.code(),
            _reserved: 0,
        }
    }
}

/// The one shared copy of a node name (a fleet has a handful).
pub fn origin(name: &str) -> Arc<str> {
    /// Beyond this many distinct names, each entry gets its own copy.
    const MAX: usize = 1024;
    static NAMES: Mutex<Vec<Arc<str>>> = Mutex::new(Vec::new());
    let mut names = NAMES.lock().expect("origin names");
    if let Some(n) = names.iter().find(|n| &***n == name) {
        return n.clone();
    }
    let n: Arc<str> = Arc::from(name);
    if names.len() < MAX {
        names.push(n.clone());
    }
    n
}

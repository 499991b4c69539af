//! Bans and temporary allows: the daemon's side of the `DYN_*` maps.
//!
//! The kernel enforces entries and their TTLs; this keeps an index of them (rebuilt from the
//! pinned maps after a restart) for listing, expiry sweeps and conflict checks, the
//! metadata the kernel does not need (reason, creation time) in `DYN_META`, and the
//! escalation history in `BAN_HIST`. A batch is checked whole before anything is written.

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    net::IpAddr,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use aya::maps::{Array, HashMap, MapData, MapError};
use guard_common::{
    V6Key, V6Len,
    dynamic::{
        BanHistory, DynEntry, DynKeyV4, DynLens, DynMeta, DynMetaKey, KIND_ALLOW, KIND_BAN,
        MAX_DYN_LENS, REASON_MAX, V4Len,
    },
    lists::Bitmap512,
};
use ipnet::IpNet;

use crate::{dyn_regions::Regions, tables::v6_words};

/// Window in which repeated bans of a source escalate.
pub const ESCALATION_WINDOW: Duration = Duration::from_secs(24 * 3600);

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Allow,
    Ban,
}

impl Kind {
    fn code(self) -> u32 {
        match self {
            Kind::Allow => KIND_ALLOW,
            Kind::Ban => KIND_BAN,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Allow => "allow",
            Kind::Ban => "ban",
        }
    }
}

/// A validated request to add one entry.
#[derive(Debug, Clone)]
pub struct Request {
    pub net: IpNet,
    /// None: bans escalate, allows last until removed.
    pub ttl: Option<Duration>,
    pub reason: String,
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
}

impl Entry {
    /// Time left, or None for an allow without TTL.
    pub fn remaining(&self) -> Option<Duration> {
        (self.expires_mono_ns != 0).then(|| {
            Duration::from_nanos(
                self.expires_mono_ns
                    .saturating_sub(crate::buckets::monotonic_ns()),
            )
        })
    }

    /// The entry as the API shows it: monotonic expiry turned into wall-clock time.
    pub fn view(&self) -> crate::model::EntryView {
        let remaining = self.remaining();
        let rfc3339 = |t: SystemTime| humantime::format_rfc3339_seconds(t).to_string();
        crate::model::EntryView {
            cidr: self.net.to_string(),
            expires_at: remaining.map(|r| rfc3339(SystemTime::now() + r)),
            ttl_remaining_secs: remaining.map(|r| r.as_secs()),
            reason: self.reason.clone(),
            created_at: (self.created_unix_ns != 0)
                .then(|| rfc3339(UNIX_EPOCH + Duration::from_nanos(self.created_unix_ns))),
            ban_number: (self.kind == Kind::Ban && self.ban_number > 0).then_some(self.ban_number),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DynError {
    #[error(
        "{net} is covered by the allow entry {allow}: remove that first or ban a narrower prefix"
    )]
    CoveredByAllow { net: IpNet, allow: IpNet },
    #[error(
        "the ban table is full: {active} active, max_entries {max}; this request adds {adding}"
    )]
    BansFull {
        active: usize,
        max: usize,
        adding: usize,
    },
    #[error("the allow table is full: {active} active, at most {max}; this request adds {adding}")]
    AllowsFull {
        active: usize,
        max: usize,
        adding: usize,
    },
    #[error(
        "{family} bans and allows would use {count} distinct prefix lengths; at most {MAX_DYN_LENS} are supported"
    )]
    TooManyLengths { family: &'static str, count: usize },
    #[error("no {} for {net}", .kind.as_str())]
    NotFound { net: IpNet, kind: Kind },
    #[error("kernel map {name}")]
    Map {
        name: &'static str,
        #[source]
        source: MapError,
    },
    #[error("the {name} map was not handed over")]
    MissingMap { name: &'static str },
}

pub struct DynamicMaps {
    pub v4: HashMap<MapData, DynKeyV4, DynEntry>,
    pub v6: HashMap<MapData, V6Key, DynEntry>,
    /// `DYN_REGIONS`; `None` for read-only use (guardctl reading the pins).
    pub regions: Option<Array<MapData, Bitmap512>>,
    pub meta: HashMap<MapData, DynMetaKey, DynMeta>,
    pub hist: HashMap<MapData, DynMetaKey, BanHistory>,
}

pub struct DynamicTable {
    maps: DynamicMaps,
    region_map: Array<MapData, Bitmap512>,
    regions: Regions,
    entries: BTreeMap<IpNet, Entry>,
    expiry: BTreeSet<(u64, IpNet)>,
    bans: usize,
    allows: usize,
    pub max_bans: usize,
    pub max_allows: usize,
    /// Refusals because a table was full, for metrics.
    pub refused_full: u64,
}

fn map_err(name: &'static str) -> impl Fn(MapError) -> DynError {
    move |source| DynError::Map { name, source }
}

fn meta_key(net: &IpNet) -> DynMetaKey {
    let (family, addr) = match net.network() {
        IpAddr::V4(a) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&a.octets());
            (4, b)
        }
        IpAddr::V6(a) => (6, a.octets()),
    };
    DynMetaKey {
        family,
        prefix_len: net.prefix_len() as u32,
        addr,
    }
}

fn net_of(key: &DynMetaKey) -> Option<IpNet> {
    let addr: IpAddr = match key.family {
        4 => IpAddr::from([key.addr[0], key.addr[1], key.addr[2], key.addr[3]]),
        _ => IpAddr::from(key.addr),
    };
    IpNet::new(addr, key.prefix_len as u8).ok()
}

fn unix_now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl DynamicTable {
    /// Takes the maps and indexes what they already hold (entries pinned by an earlier
    /// daemon); expired entries are dropped on the way.
    pub fn new(
        maps: DynamicMaps,
        max_bans: usize,
        max_allows: usize,
        now_mono: u64,
    ) -> Result<Self, DynError> {
        let mut maps = maps;
        let region_map = maps.regions.take().ok_or(DynError::MissingMap {
            name: "DYN_REGIONS",
        })?;
        let mut t = DynamicTable {
            maps,
            region_map,
            regions: Regions::default(),
            entries: BTreeMap::new(),
            expiry: BTreeSet::new(),
            bans: 0,
            allows: 0,
            max_bans,
            max_allows,
            refused_full: 0,
        };
        for (entry, live) in scan(&t.maps, now_mono) {
            if live {
                t.index(entry);
            } else {
                t.delete_kernel(&entry.net)?;
            }
        }
        t.regions = Regions::rebuild(&mut t.region_map, t.entries.keys())
            .map_err(map_err("DYN_REGIONS"))?;
        Ok(t)
    }

    pub fn bans_active(&self) -> usize {
        self.bans
    }

    pub fn allows_active(&self) -> usize {
        self.allows
    }

    pub fn list(&self, kind: Kind) -> Vec<Entry> {
        self.entries
            .values()
            .filter(|e| e.kind == kind)
            .cloned()
            .collect()
    }

    pub fn get(&self, net: &IpNet) -> Option<&Entry> {
        self.entries.get(net)
    }

    /// The prefix lengths the kernel must probe, longest first.
    pub fn lens(&self) -> Result<DynLens, DynError> {
        lens_of(self.entries.keys())
    }

    /// Adds entries of one kind, all or none. `static_allows` are the allow list's entries
    /// (a ban inside one is refused, like a ban inside a temporary allow). `escalation`
    /// gives ban TTLs when a request has none. `set_lens` is called with the lengths the
    /// kernel must probe before any entry is written.
    pub fn add(
        &mut self,
        kind: Kind,
        reqs: &[Request],
        static_allows: &[IpNet],
        escalation: &[Duration],
        now_mono: u64,
        mut set_lens: impl FnMut(&DynLens) -> Result<(), DynError>,
    ) -> Result<Vec<Entry>, DynError> {
        // Checks first: conflicts, capacity, prefix lengths.
        if kind == Kind::Ban {
            let allows: HashSet<IpNet> = static_allows
                .iter()
                .copied()
                .chain(
                    self.entries
                        .values()
                        .filter(|e| e.kind == Kind::Allow)
                        .map(|e| e.net),
                )
                .collect();
            let lens: BTreeSet<u8> = allows.iter().map(IpNet::prefix_len).collect();
            for r in reqs {
                for &len in lens.range(..=r.net.prefix_len()) {
                    let outer = IpNet::new(r.net.network(), len)
                        .map(|n| n.trunc())
                        .expect("shorter prefix");
                    if allows.contains(&outer) {
                        return Err(DynError::CoveredByAllow {
                            net: r.net,
                            allow: outer,
                        });
                    }
                }
            }
        }
        let new: BTreeSet<IpNet> = reqs
            .iter()
            .map(|r| r.net)
            .filter(|n| self.entries.get(n).is_none_or(|e| e.kind != kind))
            .collect();
        let (active, max) = match kind {
            Kind::Ban => (self.bans, self.max_bans),
            Kind::Allow => (self.allows, self.max_allows),
        };
        if active + new.len() > max {
            self.refused_full += 1;
            return Err(match kind {
                Kind::Ban => DynError::BansFull {
                    active,
                    max,
                    adding: new.len(),
                },
                Kind::Allow => DynError::AllowsFull {
                    active,
                    max,
                    adding: new.len(),
                },
            });
        }
        let all_lens = lens_of(self.entries.keys().chain(reqs.iter().map(|r| &r.net)))?;
        set_lens(&all_lens)?;
        // The regions of entries new to the table are marked before the entries exist.
        let fresh: BTreeSet<IpNet> = reqs
            .iter()
            .map(|r| r.net)
            .filter(|n| !self.entries.contains_key(n))
            .collect();
        for net in &fresh {
            self.regions
                .cover(&mut self.region_map, net)
                .map_err(map_err("DYN_REGIONS"))?;
        }
        let now_unix = unix_now_ns();
        let mut applied = Vec::with_capacity(reqs.len());
        for r in reqs {
            let mkey = meta_key(&r.net);
            let mut ban_number = 0;
            let ttl = match kind {
                Kind::Allow => r.ttl,
                Kind::Ban => {
                    let prev = self.maps.hist.get(&mkey, 0).ok().filter(|h| {
                        now_unix.saturating_sub(h.last_unix_ns)
                            < ESCALATION_WINDOW.as_nanos() as u64
                    });
                    ban_number = prev.map_or(0, |h| h.count) + 1;
                    let hist = BanHistory {
                        last_unix_ns: now_unix,
                        count: ban_number,
                        _reserved: 0,
                    };
                    self.maps
                        .hist
                        .insert(mkey, hist, 0)
                        .map_err(map_err("BAN_HIST"))?;
                    let nth = (ban_number as usize).min(escalation.len()).max(1) - 1;
                    Some(r.ttl.unwrap_or(escalation[nth]))
                }
            };
            let expires = ttl.map_or(0, |t| now_mono + t.as_nanos() as u64);
            let mut reason = [0u8; REASON_MAX];
            let n = r.reason.len().min(REASON_MAX);
            reason[..n].copy_from_slice(&r.reason.as_bytes()[..n]);
            let meta = DynMeta {
                created_unix_ns: now_unix,
                reason_len: n as u32,
                kind: kind.code(),
                reason,
            };
            self.maps
                .meta
                .insert(mkey, meta, 0)
                .map_err(map_err("DYN_META"))?;
            let entry = DynEntry {
                expires_ns: expires,
                kind: kind.code(),
                _reserved: 0,
            };
            match r.net {
                IpNet::V4(n) => self
                    .maps
                    .v4
                    .insert(
                        V4Len::new(n.prefix_len() as u32).key(u32::from(n.network())),
                        entry,
                        0,
                    )
                    .map_err(map_err("DYN_V4"))?,
                IpNet::V6(n) => self
                    .maps
                    .v6
                    .insert(
                        V6Len::new(n.prefix_len() as u32).key(&v6_words(&n.network())),
                        entry,
                        0,
                    )
                    .map_err(map_err("DYN_V6"))?,
            }
            let e = Entry {
                net: r.net,
                kind,
                expires_mono_ns: expires,
                created_unix_ns: now_unix,
                reason: r.reason.clone(),
                ban_number,
            };
            self.unindex(&r.net);
            self.index(e.clone());
            applied.push(e);
        }
        Ok(applied)
    }

    /// Removes an entry of `kind`; the kernel forgets it at once.
    pub fn remove(&mut self, net: &IpNet, kind: Kind) -> Result<Entry, DynError> {
        match self.entries.get(net) {
            Some(e) if e.kind == kind => {}
            _ => return Err(DynError::NotFound { net: *net, kind }),
        }
        self.delete_kernel(net)?;
        let _ = self.maps.meta.remove(&meta_key(net));
        let e = self.unindex(net).expect("checked above");
        self.uncover(net)?;
        Ok(e)
    }

    /// Removes entries whose TTL has passed (the kernel already ignores them) and history
    /// older than the escalation window. Returns what was removed.
    pub fn sweep(&mut self, now_mono: u64) -> Result<Vec<Entry>, DynError> {
        let due: Vec<IpNet> = self
            .expiry
            .range(..(now_mono + 1, IpNet::default()))
            .map(|(_, n)| *n)
            .collect();
        let mut out = Vec::new();
        for net in due {
            self.delete_kernel(&net)?;
            let _ = self.maps.meta.remove(&meta_key(&net));
            out.extend(self.unindex(&net));
            self.uncover(&net)?;
        }
        let now_unix = unix_now_ns();
        let old: Vec<DynMetaKey> = self
            .maps
            .hist
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, h)| {
                now_unix.saturating_sub(h.last_unix_ns) >= ESCALATION_WINDOW.as_nanos() as u64
            })
            .filter(|(k, _)| net_of(k).is_none_or(|n| !self.entries.contains_key(&n)))
            .map(|(k, _)| k)
            .collect();
        for k in old {
            let _ = self.maps.hist.remove(&k);
        }
        Ok(out)
    }

    fn delete_kernel(&mut self, net: &IpNet) -> Result<(), DynError> {
        let res = match net {
            IpNet::V4(n) => self
                .maps
                .v4
                .remove(&V4Len::new(n.prefix_len() as u32).key(u32::from(n.network()))),
            IpNet::V6(n) => self
                .maps
                .v6
                .remove(&V6Len::new(n.prefix_len() as u32).key(&v6_words(&n.network()))),
        };
        match res {
            Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(DynError::Map {
                name: "DYN",
                source: e,
            }),
        }
    }

    /// After `net`'s entry left the kernel.
    fn uncover(&mut self, net: &IpNet) -> Result<(), DynError> {
        self.regions
            .uncover(&mut self.region_map, net)
            .map_err(map_err("DYN_REGIONS"))
    }

    fn index(&mut self, e: Entry) {
        match e.kind {
            Kind::Ban => self.bans += 1,
            Kind::Allow => self.allows += 1,
        }
        if e.expires_mono_ns != 0 {
            self.expiry.insert((e.expires_mono_ns, e.net));
        }
        self.entries.insert(e.net, e);
    }

    fn unindex(&mut self, net: &IpNet) -> Option<Entry> {
        let e = self.entries.remove(net)?;
        match e.kind {
            Kind::Ban => self.bans -= 1,
            Kind::Allow => self.allows -= 1,
        }
        self.expiry.remove(&(e.expires_mono_ns, e.net));
        Some(e)
    }
}

/// Every entry in the maps with its metadata, and whether it is still live. Reads only.
fn scan(maps: &DynamicMaps, now_mono: u64) -> Vec<(Entry, bool)> {
    let mut found: Vec<(IpNet, DynEntry)> = Vec::new();
    for k in maps.v4.keys().filter_map(Result::ok) {
        if let (Ok(e), Ok(net)) = (
            maps.v4.get(&k, 0),
            IpNet::new(IpAddr::from(k.addr.to_be_bytes()), k.prefix_len as u8),
        ) {
            found.push((net, e));
        }
    }
    for k in maps.v6.keys().filter_map(Result::ok) {
        let bytes: Vec<u8> = k.addr.iter().flat_map(|w| w.to_ne_bytes()).collect();
        let octets: [u8; 16] = bytes.try_into().expect("16 bytes");
        if let (Ok(e), Ok(net)) = (
            maps.v6.get(&k, 0),
            IpNet::new(IpAddr::from(octets), k.prefix_len as u8),
        ) {
            found.push((net, e));
        }
    }
    found
        .into_iter()
        .map(|(net, e)| {
            let meta = maps.meta.get(&meta_key(&net), 0).ok();
            let entry = Entry {
                net,
                kind: if e.kind == KIND_ALLOW {
                    Kind::Allow
                } else {
                    Kind::Ban
                },
                expires_mono_ns: e.expires_ns,
                created_unix_ns: meta.map_or(0, |m| m.created_unix_ns),
                reason: meta
                    .map(|m| {
                        String::from_utf8_lossy(
                            &m.reason[..(m.reason_len as usize).min(REASON_MAX)],
                        )
                        .into_owned()
                    })
                    .unwrap_or_default(),
                ban_number: maps.hist.get(&meta_key(&net), 0).map_or(0, |h| h.count),
            };
            (entry, e.live(now_mono))
        })
        .collect()
}

/// The live entries of `kind` in the pinned maps, for when guardd is not running.
pub fn pinned_entries(
    pins: &crate::pins::PinLayout,
    kind: Kind,
    now_mono: u64,
) -> Result<Vec<Entry>, DynError> {
    use aya::maps::Map;
    use guard_common::map_names;
    fn open<T: TryFrom<Map, Error = MapError>>(
        pins: &crate::pins::PinLayout,
        name: &'static str,
    ) -> Result<T, DynError> {
        let data = MapData::from_pin(pins.map(name)).map_err(map_err(name))?;
        T::try_from(Map::HashMap(data)).map_err(map_err(name))
    }
    let maps = DynamicMaps {
        v4: open(pins, map_names::DYN_V4)?,
        v6: open(pins, map_names::DYN_V6)?,
        meta: open(pins, map_names::DYN_META)?,
        hist: open(pins, map_names::BAN_HIST)?,
        regions: None,
    };
    let mut out: Vec<Entry> = scan(&maps, now_mono)
        .into_iter()
        .filter(|(e, live)| *live && e.kind == kind)
        .map(|(e, _)| e)
        .collect();
    out.sort_by_key(|a| a.net);
    Ok(out)
}

/// The distinct prefix lengths of `nets` per family, longest first, as the kernel wants them.
fn lens_of<'a>(nets: impl Iterator<Item = &'a IpNet>) -> Result<DynLens, DynError> {
    let mut v4 = BTreeSet::new();
    let mut v6 = BTreeSet::new();
    for n in nets {
        match n {
            IpNet::V4(n) => v4.insert(n.prefix_len()),
            IpNet::V6(n) => v6.insert(n.prefix_len()),
        };
    }
    for (family, set) in [("IPv4", &v4), ("IPv6", &v6)] {
        if set.len() > MAX_DYN_LENS {
            return Err(DynError::TooManyLengths {
                family,
                count: set.len(),
            });
        }
    }
    let mut lens = DynLens::EMPTY;
    lens.v4_count = v4.len() as u32;
    lens.v6_count = v6.len() as u32;
    for (slot, len) in lens.v4.iter_mut().zip(v4.iter().rev()) {
        *slot = V4Len::new(*len as u32);
    }
    for (slot, len) in lens.v6.iter_mut().zip(v6.iter().rev()) {
        *slot = V6Len::new(*len as u32);
    }
    Ok(lens)
}

//! Bans and temporary allows: the daemon's side of the `DYN_*` maps.
//!
//! The kernel enforces entries and their TTLs; this keeps an index of them (rebuilt from the
//! pinned maps after a restart) for listing, expiry sweeps and conflict checks, the
//! metadata the kernel does not need (reason, creation time) in `DYN_META`, and the
//! escalation history in `BAN_HIST` (`history`). A batch is checked whole before anything
//! is written, and a kernel write that fails part-way puts back everything the batch wrote
//! (`undo`): nothing is half-applied.

mod history;
pub mod regions;
mod scan;
mod undo;

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use aya::maps::{Array, HashMap, IterableMap, MapData, MapError};
use guard_common::{
    V6Key, V6Len,
    dynamic::{
        BanHistory, DynEntry, DynKeyV4, DynLens, DynMeta, DynMetaKey, KIND_ALLOW, KIND_BAN,
        MAX_DYN_LENS, REASON_MAX, V4Len,
    },
    lists::Bitmap512,
};
use ipnet::IpNet;

pub use history::{ESCALATION_WINDOW, Escalation};
pub use scan::pinned_entries;

use crate::{kernel::datapath::DatapathError, lists::tables::v6_words, verdicts::regions::Regions};
use history::History;
use scan::{lens_of, meta_key, net_of, scan};
use undo::{Record, Undo};

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
                    .saturating_sub(crate::kernel::clock::monotonic_ns()),
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

    /// The entry as the API shows it: monotonic expiry turned into wall-clock time.
    pub fn view(&self) -> crate::control::model::EntryView {
        let remaining = self.remaining();
        let rfc3339 = |t: SystemTime| humantime::format_rfc3339_seconds(t).to_string();
        crate::control::model::EntryView {
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
    #[error("{error}; putting back what it wrote failed too ({undo}): restart guardd to resync")]
    Undo {
        error: Box<DynError>,
        undo: Box<DynError>,
    },
    #[error("writing the prefix lengths the kernel probes")]
    Lens(#[source] DatapathError),
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
    history: History,
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

fn unix_now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// One entry of a batch, planned before anything is written.
struct Planned {
    entry: Entry,
    meta: DynMeta,
    /// Bans: the history the ban writes.
    hist: Option<BanHistory>,
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
        let hist_capacity = maps
            .hist
            .map()
            .info()
            .map_err(map_err("BAN_HIST"))?
            .max_entries() as usize;
        let found: Vec<(IpNet, BanHistory)> = maps
            .hist
            .iter()
            .filter_map(Result::ok)
            .filter_map(|(k, h)| Some((net_of(&k)?, h)))
            .collect();
        let mut t = DynamicTable {
            maps,
            region_map,
            regions: Regions::default(),
            entries: BTreeMap::new(),
            expiry: BTreeSet::new(),
            history: History::new(hist_capacity, found),
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

    /// Sources with an escalation history (`BAN_HIST` entries).
    pub fn histories(&self) -> usize {
        self.history.len()
    }

    pub fn list(&self, kind: Kind) -> Vec<Entry> {
        self.entries
            .values()
            .filter(|e| e.kind == kind)
            .cloned()
            .collect()
    }

    /// The prefix lengths the kernel must probe, longest first.
    pub fn lens(&self) -> Result<DynLens, DynError> {
        lens_of(self.entries.keys())
    }

    /// Adds entries of one kind, all or none. `static_allows` are the allow list's entries
    /// (a ban inside one is refused, like a ban inside a temporary allow). `escalation`
    /// gives ban TTLs when a request has none. `set_lens` is called with the lengths the
    /// kernel must probe before any entry is written (and with the old ones again if the
    /// batch is undone). A request naming a prefix twice applies the last.
    pub fn add(
        &mut self,
        kind: Kind,
        reqs: &[Request],
        static_allows: &[IpNet],
        escalation: &Escalation,
        now_mono: u64,
        mut set_lens: impl FnMut(&DynLens) -> Result<(), DatapathError>,
    ) -> Result<Vec<Entry>, DynError> {
        let reqs = last_of_each(reqs);
        self.check(kind, &reqs, static_allows)?;
        let old_lens = self.lens()?;
        let new_lens = lens_of(self.entries.keys().chain(reqs.iter().map(|r| &r.net)))?;
        let plan = self.plan(kind, &reqs, escalation, now_mono);
        let batch: HashSet<IpNet> = reqs.iter().map(|r| r.net).collect();
        let new_hists = plan
            .iter()
            .filter(|p| p.hist.is_some() && self.history.get(&p.entry.net).is_none())
            .count();
        let evict = self.history.evictions(new_hists, |n| {
            batch.contains(n) || self.entries.get(n).is_some_and(|e| e.kind == Kind::Ban)
        });
        let mut undo = Undo::default();
        let written = set_lens(&new_lens)
            .map_err(DynError::Lens)
            .and_then(|()| self.write(&plan, &evict, &mut undo));
        if let Err(e) = written {
            let restored = undo.rollback(self).map_err(map_err("DYN (undo)"));
            let lens = set_lens(&old_lens).map_err(DynError::Lens);
            return Err(match restored.and(lens) {
                Ok(()) => e,
                Err(undo_error) => DynError::Undo {
                    error: Box::new(e),
                    undo: Box::new(undo_error),
                },
            });
        }
        // Everything is in the kernel: the index follows.
        for net in &evict {
            self.history.remove(net);
        }
        let mut applied = Vec::with_capacity(plan.len());
        for p in plan {
            if let Some(h) = p.hist {
                self.history.set(p.entry.net, h);
            }
            self.unindex(&p.entry.net);
            self.index(p.entry.clone());
            applied.push(p.entry);
        }
        Ok(applied)
    }

    /// Conflicts with allows, and room in the table.
    fn check(
        &mut self,
        kind: Kind,
        reqs: &[Request],
        static_allows: &[IpNet],
    ) -> Result<(), DynError> {
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
        let adding = reqs
            .iter()
            .filter(|r| self.entries.get(&r.net).is_none_or(|e| e.kind != kind))
            .count();
        let (active, max) = match kind {
            Kind::Ban => (self.bans, self.max_bans),
            Kind::Allow => (self.allows, self.max_allows),
        };
        if active + adding > max {
            self.refused_full += 1;
            return Err(match kind {
                Kind::Ban => DynError::BansFull {
                    active,
                    max,
                    adding,
                },
                Kind::Allow => DynError::AllowsFull {
                    active,
                    max,
                    adding,
                },
            });
        }
        Ok(())
    }

    /// The entries, metadata and histories the batch will write.
    fn plan(
        &self,
        kind: Kind,
        reqs: &[Request],
        escalation: &Escalation,
        now_mono: u64,
    ) -> Vec<Planned> {
        let now_unix = unix_now_ns();
        reqs.iter()
            .map(|r| {
                let hist = (kind == Kind::Ban).then(|| self.history.next(&r.net, now_unix));
                let ttl = match hist {
                    Some(h) => Some(r.ttl.unwrap_or_else(|| escalation.ttl(h.count))),
                    None => r.ttl,
                };
                let mut reason = [0u8; REASON_MAX];
                let n = r.reason.len().min(REASON_MAX);
                reason[..n].copy_from_slice(&r.reason.as_bytes()[..n]);
                Planned {
                    entry: Entry {
                        net: r.net,
                        kind,
                        expires_mono_ns: ttl.map_or(0, |t| now_mono + t.as_nanos() as u64),
                        created_unix_ns: now_unix,
                        reason: r.reason.clone(),
                        ban_number: hist.map_or(0, |h| h.count),
                    },
                    meta: DynMeta {
                        created_unix_ns: now_unix,
                        reason_len: n as u32,
                        kind: kind.code(),
                        reason,
                    },
                    hist,
                }
            })
            .collect()
    }

    /// Writes a planned batch, recording in `undo` what each write replaced. Regions are
    /// marked before the entries they cover exist; an entry goes in last, after its
    /// metadata and history.
    fn write(
        &mut self,
        plan: &[Planned],
        evict: &[IpNet],
        undo: &mut Undo,
    ) -> Result<(), DynError> {
        for p in plan
            .iter()
            .filter(|p| !self.entries.contains_key(&p.entry.net))
        {
            undo.push(Record::Cover(p.entry.net));
            self.regions
                .cover(&mut self.region_map, &p.entry.net)
                .map_err(map_err("DYN_REGIONS"))?;
        }
        for net in evict {
            let key = meta_key(net);
            undo.push(Record::Hist(key, self.history.get(net)));
            match self.maps.hist.remove(&key) {
                Ok(()) | Err(MapError::KeyNotFound) => {}
                Err(e) => return Err(map_err("BAN_HIST")(e)),
            }
        }
        for p in plan {
            let net = p.entry.net;
            let key = meta_key(&net);
            if let Some(h) = p.hist {
                undo.push(Record::Hist(key, self.history.get(&net)));
                self.maps
                    .hist
                    .insert(key, h, 0)
                    .map_err(map_err("BAN_HIST"))?;
            }
            // Only an indexed entry has metadata worth putting back (a lookup per new entry
            // would double a bulk ban's syscalls).
            let meta_before = match self.entries.contains_key(&net) {
                true => self.maps.meta.get(&key, 0).ok(),
                false => None,
            };
            undo.push(Record::Meta(key, meta_before));
            self.maps
                .meta
                .insert(key, p.meta, 0)
                .map_err(map_err("DYN_META"))?;
            let before = self.entries.get(&net).map(Entry::kernel);
            let value = p.entry.kernel();
            match net {
                IpNet::V4(n) => {
                    let k = V4Len::new(n.prefix_len() as u32).key(u32::from(n.network()));
                    undo.push(Record::V4(k, before));
                    self.maps
                        .v4
                        .insert(k, value, 0)
                        .map_err(map_err("DYN_V4"))?;
                }
                IpNet::V6(n) => {
                    let k = V6Len::new(n.prefix_len() as u32).key(&v6_words(&n.network()));
                    undo.push(Record::V6(k, before));
                    self.maps
                        .v6
                        .insert(k, value, 0)
                        .map_err(map_err("DYN_V6"))?;
                }
            }
        }
        Ok(())
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

    /// Removes entries whose TTL has passed (the kernel already ignores them) and histories
    /// a window old. Returns what was removed.
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
        let old = self
            .history
            .expired(unix_now_ns(), |n| self.entries.contains_key(n));
        for net in old {
            match self.maps.hist.remove(&meta_key(&net)) {
                Ok(()) | Err(MapError::KeyNotFound) => self.history.remove(&net),
                Err(e) => return Err(map_err("BAN_HIST")(e)),
            }
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

/// The requests with each prefix once (its last request), in order of first appearance.
fn last_of_each(reqs: &[Request]) -> Vec<Request> {
    let mut at: std::collections::HashMap<IpNet, usize> = std::collections::HashMap::new();
    let mut out: Vec<Request> = Vec::with_capacity(reqs.len());
    for r in reqs {
        match at.get(&r.net) {
            Some(&i) => out[i] = r.clone(),
            None => {
                at.insert(r.net, out.len());
                out.push(r.clone());
            }
        }
    }
    out
}

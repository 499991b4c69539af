//! Bans and temporary allows: the daemon's side of the `DYN_*` maps.
//!
//! The kernel enforces entries and their TTLs; this keeps an index of them (rebuilt from the
//! pinned maps after a restart) for listing, expiry sweeps and conflict checks, the
//! metadata the kernel does not need (reason, creation time) in `DYN_META`, and the
//! escalation history in `BAN_HIST` (`history`). A batch is checked whole before anything
//! is written, and a kernel write that fails part-way puts back everything the batch wrote
//! (`undo`): nothing is half-applied.

mod error;
mod history;
mod index;
mod persist;
mod policy;
pub mod regions;
mod scan;
mod store;
mod superseded;
mod undo;

use std::collections::{BTreeMap, BTreeSet, HashSet};

use aya::maps::{Array, HashMap, IterableMap, MapData, MapError};
use guard_common::{
    V6Key,
    dynamic::{BanHistory, DynEntry, DynKeyV4, DynLens, DynMeta, DynMetaKey},
    lists::Bitmap512,
};
use ipnet::IpNet;

pub use error::DynError;
pub use history::{ESCALATION_WINDOW, Escalation};
pub use scan::pinned_entries;

use crate::{
    kernel::datapath::DatapathError,
    model::{Entry, Kind, Request, clock::unix_now_ns, origin},
    protect::Protected,
    verdicts::regions::Regions,
};
use history::History;
use scan::{length_of, lens_of_lengths, meta_key, net_of, scan};
use undo::Undo;

use crate::state::{Change, Stored, StoredHistory, SupersededSet};

fn stored_history(net: IpNet, h: BanHistory) -> StoredHistory {
    StoredHistory {
        net,
        last_unix_ns: h.last_unix_ns,
        count: h.count,
    }
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
    /// Entries per (family, length): the lengths the kernel probes, without a scan.
    lengths: BTreeMap<(bool, u8), usize>,
    /// The same for entries other nodes made (`policy::remote_room`).
    remote_lengths: BTreeMap<(bool, u8), usize>,
    /// The temporary allows (a ban inside one is refused), without a scan.
    allow_nets: BTreeSet<IpNet>,
    history: History,
    bans: usize,
    allows: usize,
    pub max_bans: usize,
    pub max_allows: usize,
    /// Refusals because a table was full, for metrics.
    pub refused_full: u64,
    /// This host's fleet name: the origin of entries made here (`set_node`).
    node: String,
    /// What changed since the last `take_journal`, for the durable state.
    journal: Vec<crate::state::Change>,
    /// Bans an aggregate prefix ban replaced, by that prefix (`superseded`).
    superseded: SupersededSet,
}

/// Batches from this size are written with a second thread: the kernel maps the kernel
/// never reads side by side, and the state database's rows while the kernel maps are written.
pub const BULK_FROM: usize = 1024;

/// What a ban may not cover: the allow list's entries (a ban inside one is refused, like a
/// ban inside a temporary allow) and the protected addresses (`crate::protect`).
#[derive(Clone, Copy)]
pub struct Guards<'a> {
    pub static_allows: &'a [IpNet],
    pub protected: &'a Protected,
}

/// A batch checked and planned by `prepare`: what `apply` writes, and the durable state's
/// rows for it.
pub struct Prepared {
    pub batch: Batch,
    /// In the order they go in.
    pub changes: Vec<Change>,
}

/// The kernel and index writes of a prepared batch.
pub struct Batch {
    plan: Vec<policy::Planned>,
    evict: Vec<IpNet>,
    lens: DynLens,
}

fn map_err(name: &'static str) -> impl Fn(MapError) -> DynError {
    move |source| DynError::Map { name, source }
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
            lengths: BTreeMap::new(),
            remote_lengths: BTreeMap::new(),
            allow_nets: BTreeSet::new(),
            history: History::new(hist_capacity, found),
            bans: 0,
            allows: 0,
            max_bans,
            max_allows,
            refused_full: 0,
            node: String::new(),
            journal: Vec::new(),
            superseded: SupersededSet::new(),
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

    /// The entry of `net`, of either kind.
    pub fn get(&self, net: &IpNet) -> Option<&Entry> {
        self.entries.get(net)
    }

    pub fn list(&self, kind: Kind) -> Vec<Entry> {
        self.of_kind(kind).cloned().collect()
    }

    /// Up to `max` entries of `kind` after `after`, in prefix order: a listing in slices,
    /// each under the lock for a bounded time.
    pub fn page(&self, kind: Kind, after: Option<&IpNet>, max: usize) -> Vec<Entry> {
        use std::ops::Bound::{Excluded, Unbounded};
        let from = after.map_or(Unbounded, Excluded);
        self.entries
            .range((from, Unbounded))
            .map(|(_, e)| e)
            .filter(|e| e.kind == kind)
            .take(max)
            .cloned()
            .collect()
    }

    /// The entries of `kind`, without copying them.
    pub fn of_kind(&self, kind: Kind) -> impl Iterator<Item = &Entry> {
        self.entries.values().filter(move |e| e.kind == kind)
    }

    /// The prefix lengths the kernel must probe, longest first.
    pub fn lens(&self) -> Result<DynLens, DynError> {
        lens_of_lengths(self.lengths.keys().copied())
    }

    /// The lengths with `nets` added.
    fn lens_with<'a>(&self, nets: impl Iterator<Item = &'a IpNet>) -> Result<DynLens, DynError> {
        lens_of_lengths(self.lengths.keys().copied().chain(nets.map(length_of)))
    }

    /// Checks and plans adding entries of one kind, all or none: nothing is written yet.
    /// `guards` say what a ban may not cover. `escalation` gives ban TTLs when a request
    /// has none. A request naming a prefix twice applies the last.
    pub fn prepare(
        &mut self,
        kind: Kind,
        reqs: &[Request],
        guards: Guards<'_>,
        escalation: &Escalation,
        now_mono: u64,
    ) -> Result<Prepared, DynError> {
        let reqs = policy::last_of_each(reqs);
        self.check(kind, &reqs, guards)?;
        policy::remote_room(
            &self.remote_lengths,
            reqs.iter().filter(|r| r.remote.is_some()),
        )?;
        let now_unix = unix_now_ns();
        let plan = policy::plan(
            kind,
            &reqs,
            &self.history,
            escalation,
            (now_mono, now_unix),
            &self.node,
        );
        let batch: HashSet<IpNet> = reqs.iter().map(|r| r.net).collect();
        let new_hists = plan
            .iter()
            .filter(|p| p.hist.is_some() && self.history.get(&p.entry.net).is_none())
            .count();
        let evict = self.history.evictions(new_hists, |n| {
            batch.contains(n) || self.entries.get(n).is_some_and(|e| e.kind == Kind::Ban)
        });
        // What the durable state will hold once the batch is in, in the order it goes in.
        let mut changes = Vec::with_capacity(evict.len() + 2 * plan.len());
        changes.extend(evict.iter().map(|n| Change::ForgetHistory(*n)));
        for p in &plan {
            if let Some(h) = p.hist {
                changes.push(Change::History(stored_history(p.entry.net, h)));
            }
            changes.push(Change::Put(Stored::from_entry(
                &p.entry, now_mono, now_unix,
            )));
        }
        let lens = self.lens_with(reqs.iter().map(|r| &r.net))?;
        Ok(Prepared {
            batch: Batch { plan, evict, lens },
            changes,
        })
    }

    /// Writes a prepared batch into the kernel and the index, all or none, under the same
    /// lock as `prepare`. `set_lens` is called with the lengths the kernel must probe before
    /// any entry is written (and with the old ones again if the batch is undone). The
    /// prepared `changes` are the caller's to make durable: the journal does not take them.
    pub fn apply(
        &mut self,
        batch: Batch,
        mut set_lens: impl FnMut(&DynLens) -> Result<(), DatapathError>,
    ) -> Result<Vec<Entry>, DynError> {
        let Batch { plan, evict, lens } = batch;
        let old_lens = self.lens()?;
        let mut undo = Undo::default();
        let written = set_lens(&lens)
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

    /// Protected addresses and conflicts with allows (bans only), and room in the table.
    fn check(&mut self, kind: Kind, reqs: &[Request], guards: Guards<'_>) -> Result<(), DynError> {
        if kind == Kind::Ban {
            if let Some((net, protect)) = reqs
                .iter()
                .find_map(|r| Some((r.net, guards.protected.overlapping(&r.net)?)))
            {
                return Err(DynError::Protected {
                    net,
                    protect: protect.clone(),
                });
            }
            let allows: HashSet<IpNet> = guards
                .static_allows
                .iter()
                .copied()
                .chain(self.allow_nets.iter().copied())
                .collect();
            if let Some((net, allow)) = policy::covered_by_allow(reqs, &allows) {
                return Err(DynError::CoveredByAllow { net, allow });
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
        policy::room(kind, active, max, adding).inspect_err(|_| self.refused_full += 1)
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
        self.journal.push(Change::Delete(*net));
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
            self.journal.push(Change::Delete(net));
        }
        let old = self
            .history
            .expired(unix_now_ns(), |n| self.entries.contains_key(n));
        for net in old {
            match self.maps.hist.remove(&meta_key(&net)) {
                Ok(()) | Err(MapError::KeyNotFound) => {
                    self.history.remove(&net);
                    self.journal.push(Change::ForgetHistory(net));
                }
                Err(e) => return Err(map_err("BAN_HIST")(e)),
            }
        }
        Ok(out)
    }
}

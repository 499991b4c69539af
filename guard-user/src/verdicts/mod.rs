//! Bans and temporary allows: the daemon's side of the `DYN_*` maps.
//!
//! The kernel enforces entries and their TTLs; this keeps an index of them (rebuilt from the
//! pinned maps after a restart) for listing, expiry sweeps and conflict checks, the
//! metadata the kernel does not need (reason, creation time) in `DYN_META`, and the
//! escalation history in `BAN_HIST` (`history`). The maps are the kernel layer's
//! (`kernel::verdict_maps`): this is an index and a policy. A batch is checked whole and
//! planned (`store`) before anything is written; the kernel layer writes the plan all or
//! nothing, and only then does the index follow: nothing is half-applied.

mod error;
mod history;
mod index;
mod persist;
mod policy;
pub mod regions;
mod remove;
mod scan;
mod store;
mod superseded;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashSet};

use guard_common::dynamic::{BanHistory, DynLens};
use ipnet::IpNet;

pub use crate::kernel::verdict_maps::BULK_FROM;
pub use error::DynError;
pub use history::{ESCALATION_WINDOW, Escalation};
pub use scan::pinned_entries;

use crate::{
    kernel::verdict_maps::{self, KernelVerdictMaps, Step, VerdictMaps, execute},
    model::{Entry, Kind, Request, clock::unix_now_ns, origin},
    protect::Protected,
    verdicts::regions::Regions,
};
use history::History;
use scan::{length_of, lens_of_lengths, meta_key, net_of, scan};

use crate::state::{Change, Stored, StoredHistory, SupersededSet};

fn history_of(h: &StoredHistory) -> BanHistory {
    BanHistory {
        last_unix_ns: h.last_unix_ns,
        count: h.count,
        _reserved: 0,
    }
}

fn stored_history(net: IpNet, h: BanHistory) -> StoredHistory {
    StoredHistory {
        net,
        last_unix_ns: h.last_unix_ns,
        count: h.count,
    }
}

/// The index of the verdict maps `M` (the kernel's; an in-memory stand-in in tests).
pub struct DynamicTable<M: VerdictMaps = KernelVerdictMaps> {
    maps: M,
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
    vouches: usize,
    pub max_bans: usize,
    pub max_allows: usize,
    /// 0 until the owner sets it: no vouches.
    pub max_vouches: usize,
    /// Refusals because a table was full, for metrics.
    pub refused_full: u64,
    /// This host's fleet name: the origin of entries made here (`set_node`).
    node: String,
    /// What changed since the last `take_journal`, for the durable state.
    journal: Vec<crate::state::Change>,
    /// Bans an aggregate prefix ban replaced, by that prefix (`superseded`).
    superseded: SupersededSet,
}

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

impl<M: VerdictMaps> DynamicTable<M> {
    /// Takes the maps and indexes what they already hold (entries pinned by an earlier
    /// daemon); expired entries are dropped on the way, and the regions and lengths the
    /// kernel probes are written anew for what stays.
    pub fn new(
        maps: M,
        max_bans: usize,
        max_allows: usize,
        now_mono: u64,
    ) -> Result<Self, DynError> {
        let hist_capacity = maps.capacity::<verdict_maps::Hist>()?;
        let found: Vec<(IpNet, BanHistory)> = maps
            .all::<verdict_maps::Hist>()?
            .into_iter()
            .filter_map(|(k, h)| Some((net_of(&k)?, h)))
            .collect();
        let (live, expired): (Vec<_>, Vec<_>) = scan(&maps, now_mono)?
            .into_iter()
            .partition(|(_, live)| *live);
        let mut t = DynamicTable {
            maps,
            regions: Regions::default(),
            entries: BTreeMap::new(),
            expiry: BTreeSet::new(),
            lengths: BTreeMap::new(),
            remote_lengths: BTreeMap::new(),
            allow_nets: BTreeSet::new(),
            history: History::new(hist_capacity, found),
            bans: 0,
            allows: 0,
            vouches: 0,
            max_bans,
            max_allows,
            max_vouches: 0,
            refused_full: 0,
            node: String::new(),
            journal: Vec::new(),
            superseded: SupersededSet::new(),
        };
        for (entry, _) in live {
            t.index(entry);
        }
        let expired: Vec<IpNet> = expired.into_iter().map(|(e, _)| e.net).collect();
        // The expired entries out, then the regions and lengths of what stays, written whole.
        let mut plan = store::deletion(&expired);
        t.regions = Regions::rebuild(t.entries.keys());
        // What an earlier daemon left there is read to be put back: not known here.
        plan.push(Step::Regions(t.regions.all(), None));
        plan.push(Step::Lens(t.lens()?));
        execute(&mut t.maps, &plan)?;
        Ok(t)
    }

    pub fn bans_active(&self) -> usize {
        self.bans
    }

    pub fn allows_active(&self) -> usize {
        self.allows
    }

    pub fn vouches_active(&self) -> usize {
        self.vouches
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

    /// Writes a prepared batch into the kernel (the kernel layer, all or none) and then the
    /// index, under the same lock as `prepare`. The prepared `changes` are the caller's to
    /// make durable: the journal does not take them.
    pub fn apply(&mut self, batch: Batch) -> Result<Vec<Entry>, DynError> {
        let Batch { plan, evict, lens } = batch;
        let steps = self.batch_plan(&plan, &evict, lens);
        execute(&mut self.maps, &steps)?;
        // Everything is in the kernel: the index follows.
        for net in &evict {
            self.history.remove(net);
        }
        let mut applied = Vec::with_capacity(plan.len());
        for p in plan {
            if let Some(h) = p.hist {
                self.history.set(p.entry.net, h);
            }
            if self.unindex(&p.entry.net).is_none() {
                self.regions.cover(&p.entry.net);
            }
            self.index(p.entry.clone());
            applied.push(p.entry);
        }
        Ok(applied)
    }

    /// A vouch is for one address, and never replaces a ban or an allow of the same prefix
    /// (one entry per prefix: it would lift the ban, or narrow the allow).
    fn check_vouches(&self, reqs: &[Request]) -> Result<(), DynError> {
        for r in reqs {
            if r.net.prefix_len() != r.net.max_prefix_len() {
                return Err(DynError::NotOneAddress { net: r.net });
            }
            if let Some(e) = self.entries.get(&r.net).filter(|e| e.kind != Kind::Vouch) {
                return Err(DynError::VouchOverEntry {
                    net: r.net,
                    kind: e.kind,
                });
            }
        }
        Ok(())
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
        if kind == Kind::Vouch {
            self.check_vouches(reqs)?;
        }
        let adding = reqs
            .iter()
            .filter(|r| self.entries.get(&r.net).is_none_or(|e| e.kind != kind))
            .count();
        let (active, max) = match kind {
            Kind::Ban => (self.bans, self.max_bans),
            Kind::Allow => (self.allows, self.max_allows),
            Kind::Vouch => (self.vouches, self.max_vouches),
        };
        policy::room(kind, active, max, adding).inspect_err(|_| self.refused_full += 1)
    }
}

//! Bans replaced by the ban of a prefix holding them (`auto::aggregate`): kept aside with
//! the prefix, written to the state database with the table's other changes, and given
//! back when the prefix ban is removed (or dropped when it expires: none outlives it).

use ipnet::IpNet;

use super::{DynamicTable, Entry, Kind};
use crate::kernel::verdict_maps::VerdictMaps;
use crate::{
    model::clock::unix_now_ns,
    state::{Change, Stored, SupersededSet},
};

impl<M: VerdictMaps> DynamicTable<M> {
    /// The bans strictly inside `prefix` still in force at `now_mono`.
    pub fn bans_inside(&self, prefix: &IpNet, now_mono: u64) -> impl Iterator<Item = &Entry> {
        let (lo, hi) = match prefix {
            IpNet::V4(p) => (
                IpNet::new(p.network().into(), 0),
                IpNet::new(p.broadcast().into(), 32),
            ),
            IpNet::V6(p) => (
                IpNet::new(p.network().into(), 0),
                IpNet::new(p.broadcast().into(), 128),
            ),
        };
        let (lo, hi) = (lo.expect("length 0"), hi.expect("full length"));
        let len = prefix.prefix_len();
        self.entries
            .range(lo..=hi)
            .map(|(_, e)| e)
            .filter(move |e| {
                e.kind == Kind::Ban
                    && e.net.prefix_len() > len
                    && (e.expires_mono_ns == 0 || e.expires_mono_ns > now_mono)
            })
    }

    /// A ban holding `net` (itself or a shorter prefix), as the kernel would find it.
    pub fn ban_over(&self, net: &IpNet) -> Option<IpNet> {
        let (v6, len) = super::scan::length_of(net);
        self.lengths
            .range((v6, 0)..=(v6, len))
            .filter_map(|(&(_, l), _)| IpNet::new(net.network(), l).ok().map(|n| n.trunc()))
            .find(|outer| self.entries.get(outer).is_some_and(|e| e.kind == Kind::Ban))
    }

    /// A temporary allow inside `prefix` or over it.
    pub fn allow_overlapping(&self, prefix: &IpNet) -> Option<IpNet> {
        self.allow_nets
            .iter()
            .find(|a| a.contains(prefix) || prefix.contains(*a))
            .copied()
    }

    /// Keeps `members` (just removed from the table) aside under `prefix`.
    pub fn supersede(&mut self, prefix: IpNet, members: &[Entry], now_mono: u64) {
        let now_unix = unix_now_ns();
        let kept = self.superseded.entry(prefix).or_default();
        for m in members {
            let s = Stored::from_entry(m, now_mono, now_unix);
            self.journal.push(Change::Supersede {
                by: prefix,
                member: s.clone(),
            });
            kept.push(s);
        }
    }

    /// The members `prefix` replaced, forgotten here and in the database.
    pub fn release(&mut self, prefix: &IpNet) -> Vec<Stored> {
        let members = self.superseded.remove(prefix).unwrap_or_default();
        for m in &members {
            self.journal.push(Change::Release(m.net));
        }
        members
    }

    /// Forgets the members of aggregates not in `banned` (they expired while guard was
    /// stopped), returning the database changes.
    pub fn release_all_but(&mut self, banned: &std::collections::HashSet<IpNet>) -> Vec<Change> {
        let ended: Vec<IpNet> = self
            .superseded
            .keys()
            .filter(|p| !banned.contains(*p))
            .copied()
            .collect();
        for p in &ended {
            self.release(p);
        }
        self.take_journal()
    }

    /// Whether `prefix` replaced members.
    pub fn supersedes(&self, prefix: &IpNet) -> bool {
        self.superseded.contains_key(prefix)
    }

    /// What the state database kept (at start).
    pub fn set_superseded(&mut self, set: SupersededSet) {
        self.superseded = set;
    }

    /// Members kept aside, in all.
    pub fn superseded_count(&self) -> usize {
        self.superseded.values().map(Vec::len).sum()
    }
}

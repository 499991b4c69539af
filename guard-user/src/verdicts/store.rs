//! The table's changes as plans for the kernel layer (`kernel::verdict_maps::Plan`): what
//! a batch, a removal, a sweep and the start write, in the order the kernel must see it.
//! Nothing here writes; `execute` does, all or nothing, and the index follows after.

use std::collections::BTreeMap;

use guard_common::{
    V6Key, V6Len,
    dynamic::{DynKeyV4, DynLens, V4Len},
};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::{
    DynError, DynamicTable, length_of, lens_of_lengths, meta_key, policy::Planned, regions::Regions,
};
use crate::{
    kernel::verdict_maps::{Plan, Step, VerdictMaps, Writes},
    model::v6_words,
};

impl<M: VerdictMaps> DynamicTable<M> {
    /// Adding a planned batch: the lengths the kernel probes, the regions the new entries
    /// cover, evicted histories out, histories and metadata, then the entries that make
    /// the kernel act on them.
    pub(super) fn batch_plan(&self, plan: &[Planned], evict: &[IpNet], lens: DynLens) -> Plan {
        let mut out = Plan::default();
        if lens != self.maps.lens() {
            out.push(Step::Lens(lens));
        }
        let new = plan
            .iter()
            .filter(|p| !self.entries.contains_key(&p.entry.net));
        let regions = self.regions.covering(new.map(|p| &p.entry.net));
        let before = self.regions.now(&regions.keys);
        out.push(Step::Regions(regions, Some(before)));
        out.push(Step::DeleteHist(evict.iter().map(meta_key).collect()));
        // Sized up front: a bulk call's 100,000 metadata values are 20 MB to regrow.
        let n = plan.len();
        let (mut hist, mut meta) = (Writes::with_capacity(n), Writes::with_capacity(n));
        let v4s = plan.iter().filter(|p| p.entry.net.addr().is_ipv4()).count();
        let (mut v4, mut v6) = (Writes::with_capacity(v4s), Writes::with_capacity(n - v4s));
        for p in plan {
            let net = p.entry.net;
            let key = meta_key(&net);
            let indexed = self.entries.contains_key(&net);
            if let Some(h) = p.hist {
                hist.push(key, h, self.history.get(&net).is_some());
            }
            meta.push(key, p.meta, indexed);
            match net {
                IpNet::V4(n) => v4.push(v4_key(&n), p.entry.kernel(), indexed),
                IpNet::V6(n) => v6.push(v6_key(&n), p.entry.kernel(), indexed),
            }
        }
        out.push(Step::Side(hist, meta));
        out.push(Step::V4(v4));
        out.push(Step::V6(v6));
        out
    }

    /// Removing the entries of `nets` (indexed ones): the entries first, their metadata,
    /// then the regions and lengths nothing else uses. Also the regions once they are gone.
    pub(super) fn removal_plan(&self, nets: &[IpNet]) -> Result<(Plan, Regions), DynError> {
        let mut out = deletion(nets);
        let (regions, writes) = self.regions.uncovering(nets.iter());
        let before = self.regions.now(&writes.keys);
        out.push(Step::Regions(writes, Some(before)));
        let mut lengths: BTreeMap<(bool, u8), usize> = self.lengths.clone();
        for net in nets {
            if let Some(n) = lengths.get_mut(&length_of(net)) {
                *n = n.saturating_sub(1);
            }
        }
        let lens = lens_of_lengths(lengths.into_iter().filter(|(_, n)| *n > 0).map(|(l, _)| l))?;
        if lens != self.maps.lens() {
            out.push(Step::Lens(lens));
        }
        Ok((out, regions))
    }
}

/// The entries of `nets` and their metadata out of the maps: a removal's first steps.
pub(super) fn deletion(nets: &[IpNet]) -> Plan {
    let mut out = Plan::default();
    let v4 = nets.iter().filter_map(|n| match n {
        IpNet::V4(n) => Some(v4_key(n)),
        IpNet::V6(_) => None,
    });
    let v6 = nets.iter().filter_map(|n| match n {
        IpNet::V6(n) => Some(v6_key(n)),
        IpNet::V4(_) => None,
    });
    out.push(Step::DeleteV4(v4.collect()));
    out.push(Step::DeleteV6(v6.collect()));
    out.push(Step::DeleteMeta(nets.iter().map(meta_key).collect()));
    out
}

pub(super) fn v4_key(n: &Ipv4Net) -> DynKeyV4 {
    V4Len::new(n.prefix_len() as u32).key(u32::from(n.network()))
}

pub(super) fn v6_key(n: &Ipv6Net) -> V6Key {
    V6Len::new(n.prefix_len() as u32).key(&v6_words(&n.network()))
}

//! The table's writes to the kernel maps: a planned batch with its undo records, and the
//! deletion of one entry.

use aya::maps::{IterableMap, MapError};
use guard_common::{V6Len, dynamic::V4Len};
use ipnet::IpNet;

use super::{
    DynError, DynamicTable, Entry, map_err,
    policy::Planned,
    scan::meta_key,
    undo::{Record, Undo},
};
use crate::{kernel::batch, model::v6_words};

impl DynamicTable {
    /// Writes a planned batch, recording in `undo` what each write replaced. Regions are
    /// marked before the entries they cover exist; an entry goes in last, after its
    /// metadata and history.
    pub(super) fn write(
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
        // Per map in one system call each, in the order above: histories, metadata, then
        // the entries that make the kernel act on them. Sized up front: a bulk call's
        // 100,000 metadata values are 20 MB to regrow.
        let n = plan.len();
        let (mut hist, mut meta) = (pair(n), pair(n));
        let v4s = plan.iter().filter(|p| p.entry.net.addr().is_ipv4()).count();
        let (mut v4, mut v6) = (pair(v4s), pair(n - v4s));
        undo.reserve(3 * n);
        for p in plan {
            let net = p.entry.net;
            let key = meta_key(&net);
            if let Some(h) = p.hist {
                undo.push(Record::Hist(key, self.history.get(&net)));
                hist.0.push(key);
                hist.1.push(h);
            }
            // Only an indexed entry has metadata worth putting back (a lookup per new entry
            // would double a bulk ban's syscalls).
            let meta_before = match self.entries.contains_key(&net) {
                true => self.maps.meta.get(&key, 0).ok().map(Box::new),
                false => None,
            };
            undo.push(Record::Meta(key, meta_before));
            meta.0.push(key);
            meta.1.push(p.meta);
            let before = self.entries.get(&net).map(Entry::kernel);
            let value = p.entry.kernel();
            match net {
                IpNet::V4(n) => {
                    let k = V4Len::new(n.prefix_len() as u32).key(u32::from(n.network()));
                    undo.push(Record::V4(k, before));
                    v4.0.push(k);
                    v4.1.push(value);
                }
                IpNet::V6(n) => {
                    let k = V6Len::new(n.prefix_len() as u32).key(&v6_words(&n.network()));
                    undo.push(Record::V6(k, before));
                    v6.0.push(k);
                    v6.1.push(value);
                }
            }
        }
        // The two maps the kernel never reads are written side by side in a bulk call (each
        // insert is ~1 us of kernel time; a thread costs more than a small batch saves).
        let (hist, meta) = match n >= super::BULK_FROM {
            true => std::thread::scope(|s| {
                let hist = s.spawn(|| batch::update(self.maps.hist.map(), &hist.0, &hist.1));
                let meta = batch::update(self.maps.meta.map(), &meta.0, &meta.1);
                (hist.join().expect("BAN_HIST writer"), meta)
            }),
            false => (
                batch::update(self.maps.hist.map(), &hist.0, &hist.1),
                batch::update(self.maps.meta.map(), &meta.0, &meta.1),
            ),
        };
        hist.map_err(map_err("BAN_HIST"))?;
        meta.map_err(map_err("DYN_META"))?;
        batch::update(self.maps.v4.map(), &v4.0, &v4.1).map_err(map_err("DYN_V4"))?;
        batch::update(self.maps.v6.map(), &v6.0, &v6.1).map_err(map_err("DYN_V6"))?;
        Ok(())
    }

    pub(super) fn delete_kernel(&mut self, net: &IpNet) -> Result<(), DynError> {
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
    pub(super) fn uncover(&mut self, net: &IpNet) -> Result<(), DynError> {
        self.regions
            .uncover(&mut self.region_map, net)
            .map_err(map_err("DYN_REGIONS"))
    }
}

fn pair<K, V>(n: usize) -> (Vec<K>, Vec<V>) {
    (Vec::with_capacity(n), Vec::with_capacity(n))
}

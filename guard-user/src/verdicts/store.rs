//! The table's writes to the kernel maps: a planned batch with its undo records, and the
//! deletion of one entry.

use aya::maps::MapError;
use guard_common::{V6Len, dynamic::V4Len};
use ipnet::IpNet;

use super::{
    DynError, DynamicTable, Entry, map_err,
    policy::Planned,
    scan::meta_key,
    undo::{Record, Undo},
};
use crate::lists::tables::v6_words;

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

//! What a batch wrote to the kernel, to put back if a later write fails: every change the
//! API makes is all or nothing. Each record holds the value a key had before (None: the key
//! was absent), and the records are undone newest first.

use aya::maps::MapError;
use guard_common::{
    V6Key,
    dynamic::{BanHistory, DynEntry, DynKeyV4, DynMeta, DynMetaKey},
};
use ipnet::IpNet;

use super::DynamicTable;

pub enum Record {
    V4(DynKeyV4, Option<DynEntry>),
    V6(V6Key, Option<DynEntry>),
    /// Boxed: a record is kept per entry of a bulk call, and most are new entries (None);
    /// inline, the metadata's 208 bytes made every record that big.
    Meta(DynMetaKey, Option<Box<DynMeta>>),
    Hist(DynMetaKey, Option<BanHistory>),
    /// The region bits of `net` were counted (and maybe written).
    Cover(IpNet),
}

#[derive(Default)]
pub struct Undo(Vec<Record>);

impl Undo {
    pub fn push(&mut self, r: Record) {
        self.0.push(r);
    }

    pub fn reserve(&mut self, n: usize) {
        self.0.reserve(n);
    }

    /// Puts every key back, newest first; returns the first failure (the rest are still
    /// tried).
    pub fn rollback(self, t: &mut DynamicTable) -> Result<(), MapError> {
        let mut first = Ok(());
        for r in self.0.into_iter().rev() {
            let res = match r {
                Record::V4(k, Some(v)) => t.maps.v4.insert(k, v, 0),
                Record::V4(k, None) => absent(t.maps.v4.remove(&k)),
                Record::V6(k, Some(v)) => t.maps.v6.insert(k, v, 0),
                Record::V6(k, None) => absent(t.maps.v6.remove(&k)),
                Record::Meta(k, Some(v)) => t.maps.meta.insert(k, *v, 0),
                Record::Meta(k, None) => absent(t.maps.meta.remove(&k)),
                Record::Hist(k, Some(v)) => t.maps.hist.insert(k, v, 0),
                Record::Hist(k, None) => absent(t.maps.hist.remove(&k)),
                Record::Cover(net) => t.regions.uncover(&mut t.region_map, &net),
            };
            if first.is_ok() {
                first = res;
            }
        }
        first
    }
}

/// A key already absent is what an undo of its insertion wants.
fn absent(res: Result<(), MapError>) -> Result<(), MapError> {
    match res {
        Err(MapError::KeyNotFound) => Ok(()),
        other => other,
    }
}

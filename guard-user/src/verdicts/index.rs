//! The table's index of what the kernel holds: entries, expiry order, the lengths the kernel
//! probes (all, and those of entries other nodes made), the allows a ban may not enter.

use super::{DynamicTable, Entry, Kind, length_of};
use crate::kernel::verdict_maps::VerdictMaps;
use ipnet::IpNet;

impl<M: VerdictMaps> DynamicTable<M> {
    /// Names this host (the origin of entries made here); entries of other origins are
    /// counted as remote from here on.
    pub fn set_node(&mut self, node: String) {
        self.node = node;
        self.remote_lengths.clear();
        for e in self.entries.values().filter(|e| *e.origin != *self.node) {
            *self.remote_lengths.entry(length_of(&e.net)).or_default() += 1;
        }
    }

    pub(super) fn index(&mut self, e: Entry) {
        match e.kind {
            Kind::Ban => self.bans += 1,
            Kind::Allow => {
                self.allows += 1;
                self.allow_nets.insert(e.net);
            }
            Kind::Vouch => self.vouches += 1,
        }
        *self.lengths.entry(length_of(&e.net)).or_default() += 1;
        if *e.origin != *self.node {
            *self.remote_lengths.entry(length_of(&e.net)).or_default() += 1;
        }
        if e.expires_mono_ns != 0 {
            self.expiry.insert((e.expires_mono_ns, e.net));
        }
        self.entries.insert(e.net, e);
    }

    pub(super) fn unindex(&mut self, net: &IpNet) -> Option<Entry> {
        let e = self.entries.remove(net)?;
        match e.kind {
            Kind::Ban => self.bans -= 1,
            Kind::Allow => {
                self.allows -= 1;
                self.allow_nets.remove(net);
            }
            Kind::Vouch => self.vouches -= 1,
        }
        let length = length_of(net);
        let remote = *e.origin != *self.node;
        for (counts, of_it) in [
            (&mut self.lengths, true),
            (&mut self.remote_lengths, remote),
        ] {
            if let Some(n) = counts.get_mut(&length).filter(|_| of_it) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(&length);
                }
            }
        }
        self.expiry.remove(&(e.expires_mono_ns, e.net));
        Some(e)
    }
}

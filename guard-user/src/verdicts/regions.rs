//! The daemon's side of `DYN_REGIONS` (layout in `guard_common::dynamic`): how many bans and
//! temporary allows cover each region, and the bitmap the kernel reads before probing the
//! entry hashes. A bit is set before the first entry of its region is written and cleared
//! after the last one is deleted, so the kernel never skips a region with a live entry.
//! Nothing here writes: `covering` and `uncovering` say which elements change, for the
//! table's plans, and the counts follow once the kernel has them.

use std::collections::{BTreeSet, HashMap};

use guard_common::{
    dynamic::{DYN_REGION_ELEMS, V4_REGIONS, v4_region, v6_region},
    lists::Bitmap512,
};
use ipnet::IpNet;

use crate::kernel::verdict_maps::{self, Writes};

type RegionWrites = Writes<verdict_maps::Regions>;

/// Regions are whole /16s (IPv4) and hashed /32s (IPv6).
const V4_REGION_PREFIX: u8 = 16;
const V6_REGION_PREFIX: u8 = 32;
const FIRST_V6_ELEM: u32 = V4_REGIONS / 512;

#[derive(Clone)]
pub struct Regions {
    /// What the kernel's bitmap holds.
    shadow: Vec<Bitmap512>,
    v4: Vec<u32>,
    v6: HashMap<u32, u32>,
    /// IPv6 entries shorter than a region: while there is one, every IPv6 bit is set.
    v6_wide: u32,
}

/// The regions an entry covers.
enum Cover {
    Bits(std::ops::Range<u32>),
    AllV6,
}

fn cover_of(net: &IpNet) -> Cover {
    match net {
        IpNet::V4(n) => {
            let first = v4_region(u32::from(n.network()));
            let count = 1u32 << V4_REGION_PREFIX.saturating_sub(n.prefix_len());
            Cover::Bits(first..first + count)
        }
        IpNet::V6(n) if n.prefix_len() >= V6_REGION_PREFIX => {
            let top = u32::from_be_bytes(n.network().octets()[..4].try_into().expect("4 bytes"));
            let bit = v6_region(top);
            Cover::Bits(bit..bit + 1)
        }
        IpNet::V6(_) => Cover::AllV6,
    }
}

impl Default for Regions {
    fn default() -> Self {
        Regions {
            shadow: vec![Bitmap512::ZERO; DYN_REGION_ELEMS as usize],
            v4: vec![0; V4_REGIONS as usize],
            v6: HashMap::new(),
            v6_wide: 0,
        }
    }
}

impl Regions {
    /// Counts `nets` (the entries adopted at start).
    pub fn rebuild<'a>(nets: impl Iterator<Item = &'a IpNet>) -> Regions {
        let mut r = Regions::default();
        for net in nets {
            r.count(net);
        }
        r
    }

    /// Every element, replacing whatever an earlier daemon left.
    pub fn all(&self) -> RegionWrites {
        let mut w = Writes::with_capacity(self.shadow.len());
        for (elem, bits) in self.shadow.iter().enumerate() {
            w.push(elem as u32, *bits, true);
        }
        w
    }

    /// The elements that change when entries of `nets` are added, as they will be. The
    /// counts stay as they are until `cover`.
    pub fn covering<'a>(&self, nets: impl Iterator<Item = &'a IpNet>) -> RegionWrites {
        let mut next: HashMap<u32, Bitmap512> = HashMap::new();
        for net in nets {
            match cover_of(net) {
                Cover::Bits(bits) => {
                    for bit in bits {
                        let (elem, pos) = (bit / 512, bit % 512);
                        // Most entries of a bulk call land in regions already marked.
                        if !self.shadow[elem as usize].bit(pos) {
                            let e = next.entry(elem).or_insert(self.shadow[elem as usize]);
                            e.set_bit(pos);
                        }
                    }
                }
                Cover::AllV6 => {
                    for elem in FIRST_V6_ELEM..DYN_REGION_ELEMS {
                        next.insert(elem, Bitmap512([u64::MAX; 8]));
                    }
                }
            }
        }
        let mut changed: Vec<(u32, Bitmap512)> = next
            .into_iter()
            .filter(|(elem, bits)| *bits != self.shadow[*elem as usize])
            .collect();
        changed.sort_unstable_by_key(|(elem, _)| *elem);
        let mut w = Writes::with_capacity(changed.len());
        for (elem, bits) in changed {
            w.push(elem, bits, true);
        }
        w
    }

    /// What the kernel's elements `elems` hold now.
    pub fn now(&self, elems: &[u32]) -> Vec<Bitmap512> {
        elems.iter().map(|&e| self.shadow[e as usize]).collect()
    }

    /// Counts an entry the kernel now holds (its bits were written by `covering`'s plan).
    pub fn cover(&mut self, net: &IpNet) {
        self.count(net);
    }

    /// The regions once the entries of `nets` are gone, and the elements that change.
    pub fn uncovering<'a>(&self, nets: impl Iterator<Item = &'a IpNet>) -> (Regions, RegionWrites) {
        let mut after = self.clone();
        let mut dirty = BTreeSet::new();
        for net in nets {
            after.uncount(net, &mut dirty);
        }
        let mut w = Writes::with_capacity(dirty.len());
        for elem in dirty {
            w.push(elem, after.shadow[elem as usize], true);
        }
        (after, w)
    }

    fn uncount(&mut self, net: &IpNet, dirty: &mut BTreeSet<u32>) {
        match cover_of(net) {
            Cover::Bits(bits) => {
                for bit in bits {
                    let left = if bit < V4_REGIONS {
                        let c = &mut self.v4[bit as usize];
                        *c = c.saturating_sub(1);
                        *c
                    } else {
                        let c = self.v6.entry(bit).or_insert(1);
                        *c -= 1;
                        let left = *c;
                        if left == 0 {
                            self.v6.remove(&bit);
                        }
                        left + self.v6_wide
                    };
                    if left == 0 {
                        self.shadow[(bit / 512) as usize].clear_bit(bit % 512);
                        dirty.insert(bit / 512);
                    }
                }
            }
            Cover::AllV6 => {
                self.v6_wide = self.v6_wide.saturating_sub(1);
                if self.v6_wide == 0 {
                    for e in FIRST_V6_ELEM..DYN_REGION_ELEMS {
                        self.shadow[e as usize] = Bitmap512::ZERO;
                        dirty.insert(e);
                    }
                    for &bit in self.v6.keys() {
                        self.shadow[(bit / 512) as usize].set_bit(bit % 512);
                    }
                }
            }
        }
    }

    fn count(&mut self, net: &IpNet) {
        match cover_of(net) {
            Cover::Bits(bits) => {
                for bit in bits {
                    let c = if bit < V4_REGIONS {
                        &mut self.v4[bit as usize]
                    } else {
                        self.v6.entry(bit).or_insert(0)
                    };
                    *c += 1;
                    let elem = &mut self.shadow[(bit / 512) as usize];
                    elem.set_bit(bit % 512);
                }
            }
            Cover::AllV6 => {
                self.v6_wide += 1;
                if self.v6_wide == 1 {
                    for e in FIRST_V6_ELEM..DYN_REGION_ELEMS {
                        self.shadow[e as usize] = Bitmap512([u64::MAX; 8]);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bit(r: &Regions, b: u32) -> bool {
        r.shadow[(b / 512) as usize].bit(b % 512)
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn counting_keeps_a_bit_while_any_entry_covers_it() {
        let mut r = Regions::default();
        let a = u32::from_be_bytes([198, 18, 0, 0]);
        r.cover(&net("198.18.0.7/32"));
        r.cover(&net("198.18.9.0/24"));
        r.cover(&net("198.0.0.0/8"));
        assert!(bit(&r, v4_region(a)));
        assert!(bit(&r, v4_region(u32::from_be_bytes([198, 200, 1, 1]))));
        assert!(!bit(&r, v4_region(u32::from_be_bytes([199, 0, 0, 1]))));
        assert_eq!(r.v4[v4_region(a) as usize], 3);
        assert_eq!(r.v4.iter().filter(|c| **c > 0).count(), 256);
    }

    #[test]
    fn short_ipv6_entries_set_every_ipv6_region() {
        let mut r = Regions::default();
        let nets = [net("2001:db8::/20"), net("2001:db8:1::/48")];
        let w = r.covering(nets.iter());
        assert_eq!(w.len() as u32, DYN_REGION_ELEMS - FIRST_V6_ELEM);
        r.cover(&nets[0]);
        assert!(bit(&r, v6_region(0x3fff_0000)));
        assert!(!bit(&r, v4_region(1)));
        r.cover(&nets[1]);
        assert_eq!(r.v6.len(), 1);
    }

    #[test]
    fn cover_of_ipv6_uses_the_top_32_bits() {
        let Cover::Bits(b) = cover_of(&net("2001:db8:ffff::/48")) else {
            panic!("one region")
        };
        assert_eq!(b.collect::<Vec<_>>(), vec![v6_region(0x2001_0db8)]);
        assert!(matches!(cover_of(&net("2001:d00::/24")), Cover::AllV6));
    }

    #[test]
    fn covering_and_uncovering_say_what_the_counts_will_hold() {
        let nets = [
            net("198.18.0.7/32"),
            net("198.0.0.0/8"),
            net("2001:db8::/48"),
            net("2001::/16"),
        ];
        let mut r = Regions::default();
        let w = r.covering(nets.iter());
        for n in &nets {
            r.cover(n);
        }
        let changed: Vec<u32> = (0..DYN_REGION_ELEMS)
            .filter(|&e| r.shadow[e as usize] != Bitmap512::ZERO)
            .collect();
        assert_eq!(w.keys, changed, "every element that changed, once");
        for (elem, bits) in w.keys.iter().zip(&w.values) {
            assert_eq!(r.shadow[*elem as usize], *bits);
        }
        // Uncovering all but the /8 leaves its bits and clears the IPv6 ones.
        let (after, w) = r.uncovering(nets.iter().filter(|n| n.prefix_len() != 8));
        assert!(bit(&after, v4_region(u32::from_be_bytes([198, 18, 0, 7]))));
        assert!(!bit(&after, v6_region(0x2001_0db8)));
        assert!(w.keys.iter().all(|&e| e >= FIRST_V6_ELEM), "{:?}", w.keys);
        assert_eq!(
            r.v4[v4_region(u32::from_be_bytes([198, 18, 0, 7])) as usize],
            2
        );
        assert_eq!(
            after.v4[v4_region(u32::from_be_bytes([198, 18, 0, 7])) as usize],
            1
        );
    }
}

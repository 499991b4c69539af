//! The daemon's side of `DYN_REGIONS` (layout in `guard_common::dynamic`): how many bans and
//! temporary allows cover each region, and the bitmap the kernel reads before probing the
//! entry hashes. A bit is set before the first entry of its region is written and cleared
//! after the last one is deleted, so the kernel never skips a region with a live entry.

use std::collections::{BTreeSet, HashMap};

use aya::maps::{Array, MapData, MapError};
use guard_common::{
    dynamic::{DYN_REGION_ELEMS, V4_REGIONS, v4_region, v6_region},
    lists::Bitmap512,
};
use ipnet::IpNet;

/// Regions are whole /16s (IPv4) and hashed /32s (IPv6).
const V4_REGION_PREFIX: u8 = 16;
const V6_REGION_PREFIX: u8 = 32;
const FIRST_V6_ELEM: u32 = V4_REGIONS / 512;

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
    Bits(Vec<u32>),
    AllV6,
}

fn cover_of(net: &IpNet) -> Cover {
    match net {
        IpNet::V4(n) => {
            let first = v4_region(u32::from(n.network()));
            let count = 1u32 << V4_REGION_PREFIX.saturating_sub(n.prefix_len());
            Cover::Bits((first..first + count).collect())
        }
        IpNet::V6(n) if n.prefix_len() >= V6_REGION_PREFIX => {
            let top = u32::from_be_bytes(n.network().octets()[..4].try_into().expect("4 bytes"));
            Cover::Bits(vec![v6_region(top)])
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
    /// Counts `nets` (the entries adopted at start) and writes the whole bitmap, replacing
    /// whatever an earlier daemon left.
    pub fn rebuild<'a>(
        map: &mut Array<MapData, Bitmap512>,
        nets: impl Iterator<Item = &'a IpNet>,
    ) -> Result<Regions, MapError> {
        let mut r = Regions::default();
        let mut dirty = BTreeSet::new();
        for net in nets {
            r.count(net, &mut dirty);
        }
        for elem in 0..DYN_REGION_ELEMS {
            map.set(elem, r.shadow[elem as usize], 0)?;
        }
        Ok(r)
    }

    /// Before the entry `net` is written to the kernel.
    pub fn cover(
        &mut self,
        map: &mut Array<MapData, Bitmap512>,
        net: &IpNet,
    ) -> Result<(), MapError> {
        let mut dirty = BTreeSet::new();
        self.count(net, &mut dirty);
        self.write(map, dirty)
    }

    /// After the entry `net` was deleted from the kernel.
    pub fn uncover(
        &mut self,
        map: &mut Array<MapData, Bitmap512>,
        net: &IpNet,
    ) -> Result<(), MapError> {
        let mut dirty = BTreeSet::new();
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
        self.write(map, dirty)
    }

    fn count(&mut self, net: &IpNet, dirty: &mut BTreeSet<u32>) {
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
                    if !elem.bit(bit % 512) {
                        elem.set_bit(bit % 512);
                        dirty.insert(bit / 512);
                    }
                }
            }
            Cover::AllV6 => {
                self.v6_wide += 1;
                if self.v6_wide == 1 {
                    for e in FIRST_V6_ELEM..DYN_REGION_ELEMS {
                        self.shadow[e as usize] = Bitmap512([u64::MAX; 8]);
                        dirty.insert(e);
                    }
                }
            }
        }
    }

    fn write(
        &self,
        map: &mut Array<MapData, Bitmap512>,
        dirty: BTreeSet<u32>,
    ) -> Result<(), MapError> {
        for elem in dirty {
            map.set(elem, self.shadow[elem as usize], 0)?;
        }
        Ok(())
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
        let mut d = BTreeSet::new();
        let a = u32::from_be_bytes([198, 18, 0, 0]);
        r.count(&net("198.18.0.7/32"), &mut d);
        r.count(&net("198.18.9.0/24"), &mut d);
        r.count(&net("198.0.0.0/8"), &mut d);
        assert!(bit(&r, v4_region(a)));
        assert!(bit(&r, v4_region(u32::from_be_bytes([198, 200, 1, 1]))));
        assert!(!bit(&r, v4_region(u32::from_be_bytes([199, 0, 0, 1]))));
        assert_eq!(r.v4[v4_region(a) as usize], 3);
        assert_eq!(r.v4.iter().filter(|c| **c > 0).count(), 256);
    }

    #[test]
    fn short_ipv6_entries_set_every_ipv6_region() {
        let mut r = Regions::default();
        let mut d = BTreeSet::new();
        r.count(&net("2001:db8::/20"), &mut d);
        assert!(bit(&r, v6_region(0x3fff_0000)));
        assert!(!bit(&r, v4_region(1)));
        r.count(&net("2001:db8:1::/48"), &mut d);
        assert_eq!(r.v6.len(), 1);
        assert_eq!(d.len() as u32, DYN_REGION_ELEMS - FIRST_V6_ELEM);
    }

    #[test]
    fn cover_of_ipv6_uses_the_top_32_bits() {
        let Cover::Bits(b) = cover_of(&net("2001:db8:ffff::/48")) else {
            panic!("one region")
        };
        assert_eq!(b, vec![v6_region(0x2001_0db8)]);
        assert!(matches!(cover_of(&net("2001:d00::/24")), Cover::AllV6));
    }
}

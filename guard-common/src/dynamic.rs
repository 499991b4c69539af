//! Bans and temporary allows: entries the daemon adds at run time, each with a TTL the
//! kernel checks itself (so a ban expires on time while the daemon is down).
//!
//! One hash per family keyed by (prefix length, masked address); the kernel probes the
//! lengths in use, listed in [`crate::RuntimeConfig`], longest first. An allow anywhere wins
//! over a ban, as the static lists do.

use crate::V6Len;

/// Prefix lengths in use per family, at most.
pub const MAX_DYN_LENS: usize = 8;
/// Capacity of each dynamic map in the object; the daemon sizes them at load from
/// `[bans] max_entries` (a hash map's bucket array is allocated for its whole capacity).
pub const DYN_CAPACITY: u32 = 1024;

/// `DYN_REGIONS`: one bit per region that holds (or may hold) an entry, so most packets skip
/// the hash probes. IPv4 regions are the 65,536 /16s; IPv6 regions are 2^20 buckets of a
/// multiplicative hash of the top 32 bits (a /32, an allocation). An entry shorter than its
/// family's region sets every region it covers (IPv6: all of them).
pub const V4_REGIONS: u32 = 1 << 16;
pub const V6_REGION_HASH_BITS: u32 = 20;
pub const V6_REGIONS: u32 = 1 << V6_REGION_HASH_BITS;
/// Elements of `DYN_REGIONS` (512 bits each): the IPv4 regions, then the IPv6 ones.
pub const DYN_REGION_ELEMS: u32 = (V4_REGIONS + V6_REGIONS) / 512;

/// The region bit of an IPv4 address (host order).
#[inline(always)]
pub const fn v4_region(addr: u32) -> u32 {
    addr >> 16
}

/// The region bit of an IPv6 address, from its top 32 bits (host order).
#[inline(always)]
pub const fn v6_region(top32: u32) -> u32 {
    V4_REGIONS + (top32.wrapping_mul(0x9E37_79B1) >> (32 - V6_REGION_HASH_BITS))
}

pub const KIND_ALLOW: u32 = 1;
pub const KIND_BAN: u32 = 2;
/// An address the application vouches for: it passes a rule's empty endpoint budget.
pub const KIND_VOUCH: u32 = 3;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DynKeyV4 {
    pub prefix_len: u32,
    /// Host order, masked to `prefix_len`.
    pub addr: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DynEntry {
    /// CLOCK_MONOTONIC ns after which the entry no longer applies; 0 = never.
    pub expires_ns: u64,
    pub kind: u32,
    pub _reserved: u32,
}

impl DynEntry {
    #[inline(always)]
    pub const fn live(&self, now_ns: u64) -> bool {
        self.expires_ns == 0 || self.expires_ns > now_ns
    }
}

/// An IPv4 prefix length and its host-order mask.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct V4Len {
    pub prefix_len: u32,
    pub mask: u32,
}

impl V4Len {
    pub const EMPTY: V4Len = V4Len {
        prefix_len: 0,
        mask: 0,
    };

    pub const fn new(prefix_len: u32) -> V4Len {
        V4Len {
            prefix_len,
            mask: crate::siphash::mask_v4(u32::MAX, prefix_len as u8),
        }
    }

    #[inline(always)]
    pub const fn key(&self, addr: u32) -> DynKeyV4 {
        DynKeyV4 {
            prefix_len: self.prefix_len,
            addr: addr & self.mask,
        }
    }
}

/// The prefix lengths the kernel probes, written into [`crate::RuntimeConfig`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DynLens {
    pub v4_count: u32,
    pub v6_count: u32,
    pub v4: [V4Len; MAX_DYN_LENS],
    pub v6: [V6Len; MAX_DYN_LENS],
}

impl DynLens {
    pub const EMPTY: DynLens = DynLens {
        v4_count: 0,
        v6_count: 0,
        v4: [V4Len::EMPTY; MAX_DYN_LENS],
        v6: [V6Len::EMPTY; MAX_DYN_LENS],
    };
}

/// Daemon-only metadata of an entry (`DYN_META`, keyed like [`DynMetaKey`]): never read by
/// the kernel, pinned so reasons survive restarts.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DynMeta {
    pub created_unix_ns: u64,
    pub reason_len: u32,
    pub kind: u32,
    pub reason: [u8; REASON_MAX],
    pub origin_len: u32,
    /// `META_LOCAL`: made with `"local": true`, never shared with the fleet;
    /// `META_UNVERIFIED`: an automatic ban of a source that never proved its address real.
    pub flags: u32,
    /// The fleet node that made the verdict.
    pub origin: [u8; ORIGIN_MAX],
}

pub const REASON_MAX: usize = 120;
/// Bytes of a fleet node name.
pub const ORIGIN_MAX: usize = 64;
pub const META_LOCAL: u32 = 1;
pub const META_UNVERIFIED: u32 = 2;

/// Key of `DYN_META` and `BAN_HIST`: family (4 or 6), prefix length, address bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DynMetaKey {
    pub family: u32,
    pub prefix_len: u32,
    pub addr: [u8; 16],
}

/// Escalation history of a source (`BAN_HIST`): bans counted while they follow each other
/// within 24 h.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BanHistory {
    pub last_unix_ns: u64,
    pub count: u32,
    pub _reserved: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_len_masks() {
        let a = u32::from_be_bytes([198, 18, 7, 9]);
        assert_eq!(
            V4Len::new(24).key(a).addr,
            u32::from_be_bytes([198, 18, 7, 0])
        );
        assert_eq!(V4Len::new(32).key(a).addr, a);
        assert_eq!(
            V4Len::new(8).key(a),
            DynKeyV4 {
                prefix_len: 8,
                addr: 198 << 24
            }
        );
    }

    #[test]
    fn entries_expire() {
        let e = DynEntry {
            expires_ns: 100,
            kind: KIND_BAN,
            _reserved: 0,
        };
        assert!(e.live(99));
        assert!(!e.live(100));
        assert!(DynEntry { expires_ns: 0, ..e }.live(u64::MAX));
    }

    #[test]
    fn regions_are_disjoint_and_in_range() {
        assert_eq!(v4_region(u32::MAX), V4_REGIONS - 1);
        assert_eq!(
            v4_region(u32::from_be_bytes([198, 18, 255, 1])),
            198 * 256 + 18
        );
        for top in [0u32, 1, 0x2001_0db8, 0x3fff_0000, u32::MAX] {
            let r = v6_region(top);
            assert!(
                (V4_REGIONS..V4_REGIONS + V6_REGIONS).contains(&r),
                "{top:x}"
            );
        }
        assert_ne!(v6_region(0x2001_0db8), v6_region(0x2001_0db9));
        assert_eq!(DYN_REGION_ELEMS * 512, V4_REGIONS + V6_REGIONS);
    }

    #[test]
    fn layouts() {
        assert_eq!(core::mem::size_of::<DynKeyV4>(), 8);
        assert_eq!(core::mem::size_of::<DynEntry>(), 16);
        assert_eq!(
            core::mem::size_of::<DynMeta>(),
            24 + REASON_MAX + ORIGIN_MAX
        );
        assert_eq!(core::mem::size_of::<DynMetaKey>(), 24);
        assert_eq!(core::mem::size_of::<DynLens>(), 8 + 8 * 8 + 8 * 20);
    }
}

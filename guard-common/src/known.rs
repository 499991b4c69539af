//! `KNOWN`: sources that proved themselves real by completing a TCP handshake with this host,
//! in a fixed-size table (`[known] slots`) indexed by a secret-keyed SipHash of the address.
//!
//! A slot is one u64: the top 32 bits a fingerprint of the address (the hash's other half),
//! the low 32 bits when the proof lapses, in `TIME_SHIFT` units of CLOCK_MONOTONIC. A source
//! is known when its slot holds its fingerprint and a time not yet past. Nothing is allocated
//! per source: a newer proof that lands in the same slot replaces an older one. A packet with
//! a forged source can only pass as known when its address lands in a live slot *and*
//! matches that slot's 32-bit fingerprint: with a fraction `f` of the slots live, one forged
//! address in `f x 2^32`.

/// Slot times are CLOCK_MONOTONIC ns shifted right by this (units of ~1.07 s): a shift, not
/// a division, in the kernel, and 32 bits of it last 146 years.
pub const TIME_SHIFT: u32 = 30;

/// `[known] slots` bounds (powers of two): the table is 8 bytes a slot.
pub const MIN_SLOTS: u32 = 1 << 10;
pub const MAX_SLOTS: u32 = 1 << 26;

/// The table's key is the bucket key with these bits flipped: one secret, two independent
/// hash functions (a source's bucket says nothing about its slot).
const KEY_TWEAK: [u64; 2] = [0x6b6e_6f77_6e2d_736c, 0x6f74_2d6b_6579_2d31];

#[inline(always)]
pub const fn key(bucket_key: &[u64; 2]) -> [u64; 2] {
    [bucket_key[0] ^ KEY_TWEAK[0], bucket_key[1] ^ KEY_TWEAK[1]]
}

/// The slot index (under `mask`) and the fingerprint a hash gives.
#[inline(always)]
pub const fn place(hash: u64, mask: u32) -> (u32, u32) {
    (hash as u32 & mask, (hash >> 32) as u32)
}

/// The hash of a source under the table's key: `src` as the parser gives it (IPv6: the four
/// network-order words; IPv4: the host-order address, then zeros), the family in the key.
/// One hash for both families: one path for the kernel's verifier.
#[inline(always)]
pub const fn hash(table_key: &[u64; 2], src: &[u32; 4], family: u8) -> u64 {
    let k = [table_key[0] ^ family as u64, table_key[1]];
    crate::siphash::hash_v6_masked(&k, src)
}

/// [`hash`] of an address.
pub fn hash_addr(table_key: &[u64; 2], addr: core::net::IpAddr) -> u64 {
    match addr {
        core::net::IpAddr::V4(a) => hash(table_key, &[u32::from(a), 0, 0, 0], 4),
        core::net::IpAddr::V6(a) => {
            let o = a.octets();
            let w = |i: usize| u32::from_ne_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            hash(table_key, &[w(0), w(4), w(8), w(12)], 6)
        }
    }
}

/// A slot's value: `fingerprint` known until `until` (in `TIME_SHIFT` units).
#[inline(always)]
pub const fn slot(fingerprint: u32, until: u32) -> u64 {
    ((fingerprint as u64) << 32) | until as u64
}

/// Whether `value` says the source of `fingerprint` is known at `now_ns`.
#[inline(always)]
pub const fn holds(value: u64, fingerprint: u32, now_ns: u64) -> bool {
    (value >> 32) as u32 == fingerprint && (value as u32) as u64 > now_ns >> TIME_SHIFT
}

/// Whether a proof in `value` for `fingerprint` still has more than half of `verified_for`
/// to run at `now_ns`: then a new proof is not worth a socket lookup.
#[inline(always)]
pub const fn fresh(value: u64, fingerprint: u32, now_ns: u64, verified_for: u32) -> bool {
    (value >> 32) as u32 == fingerprint
        && (value as u32) as u64 > (now_ns >> TIME_SHIFT) + (verified_for as u64 >> 1)
}

/// A proof at `now_ns` lasts until this (in `TIME_SHIFT` units).
#[inline(always)]
pub const fn until(now_ns: u64, verified_for: u32) -> u32 {
    ((now_ns >> TIME_SHIFT) + verified_for as u64) as u32
}

/// `verified_for` in `TIME_SHIFT` units, rounded up (at least one).
pub const fn units(verified_for_ns: u64) -> u32 {
    let u = verified_for_ns.div_ceil(1 << TIME_SHIFT);
    if u == 0 {
        1
    } else if u > u32::MAX as u64 / 2 {
        u32::MAX / 2
    } else {
        u as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_holds_its_source_until_it_lapses() {
        let now = 5_000 << TIME_SHIFT;
        let v = slot(0xabcd, until(now, units(3_600_000_000_000)));
        assert!(holds(v, 0xabcd, now));
        assert!(!holds(v, 0xabce, now), "another fingerprint");
        assert!(!holds(v, 0xabcd, now + (3_600 << TIME_SHIFT)), "lapsed");
        assert!(!holds(0, 0, now), "an empty slot holds nobody");
        assert!(fresh(v, 0xabcd, now, units(3_600_000_000_000)));
        assert!(!fresh(
            v,
            0xabcd,
            now + (3_000 << TIME_SHIFT),
            units(3_600_000_000_000)
        ));
        assert_eq!(units(1), 1);
        assert_eq!(units(1 << TIME_SHIFT), 1);
    }

    #[test]
    fn the_table_key_differs_from_the_bucket_key() {
        let k = [1, 2];
        let a = core::net::IpAddr::V4(core::net::Ipv4Addr::new(198, 18, 0, 7));
        assert_ne!(
            hash_addr(&key(&k), a),
            crate::siphash::hash_v4_masked(&k, 0xc612_0007)
        );
        assert_eq!(
            hash_addr(&key(&k), a),
            hash(&key(&k), &[0xc612_0007, 0, 0, 0], 4)
        );
        assert_ne!(
            hash(&key(&k), &[7, 0, 0, 0], 4),
            hash(&key(&k), &[7, 0, 0, 0], 6)
        );
        let (i, _) = place(hash_addr(&key(&k), a), 1023);
        assert!(i < 1024);
    }
}

//! SipHash-1-3 over a masked source address: the bucket index of a source in a rule.
//!
//! Written for the two message sizes guard hashes (4 and 16 bytes) so the kernel runs a
//! short straight line; the host tests check it against the `siphasher` crate.

#[inline(always)]
const fn round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13);
    v[1] ^= v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16);
    v[3] ^= v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21);
    v[3] ^= v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17);
    v[1] ^= v[2];
    v[2] = v[2].rotate_left(32);
}

#[inline(always)]
const fn init(key: &[u64; 2]) -> [u64; 4] {
    [
        key[0] ^ 0x736f_6d65_7073_6575,
        key[1] ^ 0x646f_7261_6e64_6f6d,
        key[0] ^ 0x6c79_6765_6e65_7261,
        key[1] ^ 0x7465_6462_7974_6573,
    ]
}

#[inline(always)]
const fn compress(v: &mut [u64; 4], m: u64) {
    v[3] ^= m;
    round(v);
    v[0] ^= m;
}

#[inline(always)]
const fn finish(v: &mut [u64; 4]) -> u64 {
    v[2] ^= 0xff;
    round(v);
    round(v);
    round(v);
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

/// SipHash-1-3 of 4 bytes given as a little-endian u32 (`u32::from_le_bytes(bytes)`).
#[inline(always)]
pub const fn sip13_4(key: &[u64; 2], m: u32) -> u64 {
    let mut v = init(key);
    compress(&mut v, (4u64 << 56) | m as u64);
    finish(&mut v)
}

/// SipHash-1-3 of 8 bytes given as a little-endian u64 word.
#[inline(always)]
pub const fn sip13_8(key: &[u64; 2], m: u64) -> u64 {
    let mut v = init(key);
    compress(&mut v, m);
    compress(&mut v, 8u64 << 56);
    finish(&mut v)
}

/// SipHash-1-3 of 16 bytes given as two little-endian u64 words.
#[inline(always)]
pub const fn sip13_16(key: &[u64; 2], m0: u64, m1: u64) -> u64 {
    let mut v = init(key);
    compress(&mut v, m0);
    compress(&mut v, m1);
    compress(&mut v, 16u64 << 56);
    finish(&mut v)
}

/// IPv4 address (host order) masked to `prefix` (1..=32).
#[inline(always)]
pub const fn mask_v4(addr: u32, prefix: u8) -> u32 {
    if prefix >= 32 {
        addr
    } else if prefix == 0 {
        0
    } else {
        addr & (u32::MAX << (32 - prefix))
    }
}

/// Hash of an IPv4 source (host order) masked to `prefix`: the bytes hashed are the
/// masked address in network order.
#[inline(always)]
pub const fn hash_v4(key: &[u64; 2], addr: u32, prefix: u8) -> u64 {
    hash_v4_masked(key, mask_v4(addr, prefix))
}

/// [`hash_v4`] of an address already masked (host order).
#[inline(always)]
pub const fn hash_v4_masked(key: &[u64; 2], masked: u32) -> u64 {
    sip13_4(key, u32::from_le_bytes(masked.to_be_bytes()))
}

/// Hash of an IPv6 source given as raw network-order words, masked to `prefix`.
#[inline(always)]
pub const fn hash_v6(key: &[u64; 2], words: &[u32; 4], prefix: u8) -> u64 {
    hash_v6_masked(key, &crate::V6Len::new(prefix as u32).key(words).addr)
}

/// [`hash_v6`] of an address already masked (raw network-order words). The bytes hashed
/// are the upper 8 when the lower 8 are zero (every prefix of /64 or shorter: one SipHash
/// block less on the hot path), else all 16.
#[inline(always)]
pub const fn hash_v6_masked(key: &[u64; 2], masked: &[u32; 4]) -> u64 {
    // Raw words hold the address bytes in memory order; as little-endian u64s that is
    // exactly the byte stream SipHash reads.
    let m0 = masked[0] as u64 | ((masked[1] as u64) << 32);
    let m1 = masked[2] as u64 | ((masked[3] as u64) << 32);
    if m1 == 0 {
        sip13_8(key, m0)
    } else {
        sip13_16(key, m0, m1)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use core::hash::Hasher;

    use siphasher::sip::SipHasher13;

    use super::*;

    fn reference(key: &[u64; 2], bytes: &[u8]) -> u64 {
        let mut h = SipHasher13::new_with_keys(key[0], key[1]);
        h.write(bytes);
        h.finish()
    }

    const KEYS: [[u64; 2]; 3] = [
        [0, 0],
        [0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908],
        [u64::MAX, 0x1234_5678_9abc_def0],
    ];

    #[test]
    fn matches_siphasher_for_ipv4() {
        for key in &KEYS {
            for octets in [
                [198, 18, 0, 7],
                [0, 0, 0, 0],
                [255, 255, 255, 255],
                [1, 2, 3, 4],
            ] {
                let addr = u32::from_be_bytes(octets);
                assert_eq!(
                    hash_v4(key, addr, 32),
                    reference(key, &octets),
                    "{octets:?}"
                );
            }
        }
    }

    #[test]
    fn matches_siphasher_for_ipv6() {
        for key in &KEYS {
            let octets: [u8; 16] = [
                0x20, 0x01, 0x0d, 0xb8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
            ];
            let words = [0, 1, 2, 3].map(|i| {
                u32::from_ne_bytes([
                    octets[4 * i],
                    octets[4 * i + 1],
                    octets[4 * i + 2],
                    octets[4 * i + 3],
                ])
            });
            assert_eq!(hash_v6(key, &words, 128), reference(key, &octets));
            // /64 and shorter: the upper 8 bytes only.
            assert_eq!(hash_v6(key, &words, 64), reference(key, &octets[..8]));
            let mut masked = octets;
            masked[6..].fill(0);
            assert_eq!(hash_v6(key, &words, 48), reference(key, &masked[..8]));
        }
    }

    #[test]
    fn masking_aggregates_prefixes() {
        let key = KEYS[1];
        let a = u32::from_be_bytes([198, 18, 7, 1]);
        let b = u32::from_be_bytes([198, 18, 7, 254]);
        let c = u32::from_be_bytes([198, 18, 8, 1]);
        assert_eq!(hash_v4(&key, a, 24), hash_v4(&key, b, 24));
        assert_ne!(hash_v4(&key, a, 24), hash_v4(&key, c, 24));
        assert_ne!(hash_v4(&key, a, 32), hash_v4(&key, b, 32));
        assert_eq!(mask_v4(a, 24), u32::from_be_bytes([198, 18, 7, 0]));
        assert_eq!(mask_v4(a, 1), 0x8000_0000);
        assert_eq!(mask_v4(a, 32), a);
    }

    #[test]
    fn different_keys_give_different_indices() {
        let a = u32::from_be_bytes([198, 18, 0, 7]);
        assert_ne!(hash_v4(&KEYS[1], a, 32), hash_v4(&KEYS[2], a, 32));
    }
}

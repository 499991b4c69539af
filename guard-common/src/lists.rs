//! Layout of the allow/deny tables.
//!
//! IPv4 uses a DIR-24-8 table (as DPDK's LPM): `V4_DIR24` holds a 2-bit [`ListCode`] for
//! every /24, packed 256 to a 64-byte array element (4 MiB in all), so most lookups are one
//! inlined array access. A /24 that holds prefixes longer than /24 is coded
//! [`ListCode::Split`] and its 256 host codes live in the `V4_TBL8` hash, keyed by the /24.
//!
//! IPv6 uses a 2 MiB bitmap over the first 24 address bits (`V6_TOP24`, set where any listed
//! prefix may match) in front of a multibit trie of the prefixes up to /64: `V6_ROOT` holds
//! an entry per /16, and each [`V6Node`] of `V6_NODES` the 16 entries of the next 4 bits.
//! An entry is a code, or [`V6_NODE`] and a child's index; codes are pushed down to the
//! leaves, so a lookup reads entries until the first code: one per 4 bits of the longest
//! prefix on the address's path, whatever the number of prefixes or lengths listed (a /48
//! is 8 reads past the root). Prefixes longer than /64 (hosts, mostly) are exact-match
//! hashes, one per length (`V6_PREFIX`, lengths longest first in [`crate::RuntimeConfig`]),
//! probed only when the trie's leaf says some lie under it ([`V6_LONGER`]). The daemon
//! writes a new trie's nodes in the half of `V6_NODES` the old one does not use, then
//! points the roots at them, so a reload never shows a half-built trie.
//!
//! The daemon flattens the lists before writing them: every entry carries its *effective*
//! code (allow when any allow entry covers it), so the longest match decides alone and the
//! kernel never needs a second lookup to see whether an allow overrides a deny.

/// What the lists say about an address (2 bits in the tables).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ListCode {
    None = 0,
    Allow = 1,
    Deny = 2,
    /// Only in `V4_DIR24`: this /24 has per-host codes in `V4_TBL8`.
    Split = 3,
}

impl ListCode {
    #[inline(always)]
    pub const fn from_bits(bits: u64) -> ListCode {
        match bits & 3 {
            0 => ListCode::None,
            1 => ListCode::Allow,
            2 => ListCode::Deny,
            _ => ListCode::Split,
        }
    }
}

/// 512 bits: 256 two-bit codes, or 512 one-bit flags.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bitmap512(pub [u64; 8]);

impl Bitmap512 {
    pub const ZERO: Bitmap512 = Bitmap512([0; 8]);

    /// The 2-bit code at `pos` (0..256).
    #[inline(always)]
    pub const fn code(&self, pos: u32) -> ListCode {
        let word = self.0[((pos >> 5) & 7) as usize];
        ListCode::from_bits(word >> ((pos & 31) * 2))
    }

    pub fn set_code(&mut self, pos: u32, code: ListCode) {
        let w = ((pos >> 5) & 7) as usize;
        let shift = (pos & 31) * 2;
        self.0[w] = (self.0[w] & !(3 << shift)) | ((code as u64) << shift);
    }

    /// The flag at `pos` (0..512).
    #[inline(always)]
    pub const fn bit(&self, pos: u32) -> bool {
        (self.0[((pos >> 6) & 7) as usize] >> (pos & 63)) & 1 == 1
    }

    pub fn set_bit(&mut self, pos: u32) {
        self.0[((pos >> 6) & 7) as usize] |= 1 << (pos & 63);
    }

    pub fn clear_bit(&mut self, pos: u32) {
        self.0[((pos >> 6) & 7) as usize] &= !(1 << (pos & 63));
    }
}

/// Elements in `V4_DIR24`: 2^24 /24s, 256 per element.
pub const V4_DIR24_ENTRIES: u32 = 1 << 16;
/// Capacity of `V4_TBL8`: /24s that hold prefixes longer than /24.
pub const V4_TBL8_ENTRIES: u32 = 1 << 18;
/// Elements in `V6_TOP24`: 2^24 bits, 512 per element.
pub const V6_TOP24_ENTRIES: u32 = 1 << 15;
/// Entries in `V6_ROOT`: one per /16.
pub const V6_ROOT_ENTRIES: u32 = 1 << 16;
/// Bits of the address the root covers; each level below adds [`V6_STRIDE`].
pub const V6_ROOT_BITS: u32 = 16;
pub const V6_STRIDE: u32 = 4;
/// Levels below the root at most: (128 - 16) / 4.
pub const V6_MAX_LEVELS: u32 = (128 - V6_ROOT_BITS) / V6_STRIDE;
/// Nodes in `V6_NODES` (64 bytes each: 8 MiB): two generations of
/// [`V6_NODES_PER_GENERATION`], the lists in force and the ones being written.
pub const V6_NODES_ENTRIES: u32 = 1 << 17;
pub const V6_NODES_PER_GENERATION: u32 = V6_NODES_ENTRIES / 2;
/// A trie entry holding a child node's index (in the low bits) rather than a code.
pub const V6_NODE: u32 = 1 << 31;
/// On a trie leaf: prefixes longer than the trie's (/64) lie in its range, probe `V6_PREFIX`.
pub const V6_LONGER: u32 = 1 << 30;
/// The longest prefix the trie holds; longer ones are in `V6_PREFIX`.
pub const V6_TRIE_MAX_LEN: u8 = 64;
/// Capacity of `V6_PREFIX`.
pub const V6_PREFIX_ENTRIES: u32 = 1 << 18;
/// Distinct IPv6 prefix lengths longer than /64 the kernel probes at most.
pub const MAX_V6_LENS: usize = 16;

/// 16 trie entries: the next 4 bits of the address below a node.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct V6Node(pub [u32; 16]);

impl V6Node {
    pub const fn filled(entry: u32) -> V6Node {
        V6Node([entry; 16])
    }
}

/// The 4 bits of an address at bit `depth` (a multiple of 4), from its words in host byte
/// order.
#[inline(always)]
pub const fn v6_nibble(words: &[u32; 4], depth: u32) -> u32 {
    (words[((depth >> 5) & 3) as usize] >> (28 - (depth & 31))) & 0xf
}

/// Where the code of an IPv4 address (host byte order) lives in `V4_DIR24`:
/// (array element, position in the element).
#[inline(always)]
pub const fn v4_dir24_slot(addr: u32) -> (u32, u32) {
    let slash24 = addr >> 8;
    (slash24 >> 8, slash24 & 0xff)
}

/// Key of `V4_TBL8` for an IPv4 address (host byte order) and the host's position.
#[inline(always)]
pub const fn v4_tbl8_slot(addr: u32) -> (u32, u32) {
    (addr >> 8, addr & 0xff)
}

/// Where the flag for an IPv6 address lives in `V6_TOP24`, from its first 32 bits
/// (host byte order): (array element, bit position).
#[inline(always)]
pub const fn v6_top24_slot(first_word: u32) -> (u32, u32) {
    let top24 = first_word >> 8;
    (top24 >> 9, top24 & 0x1ff)
}

/// Key of `V6_PREFIX`: a prefix length and the address masked to it, in network byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct V6Key {
    pub prefix_len: u32,
    pub addr: [u32; 4],
}

/// One prefix length to probe and its mask, in network byte order like the packet.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct V6Len {
    pub prefix_len: u32,
    pub mask: [u32; 4],
}

impl V6Len {
    pub const EMPTY: V6Len = V6Len {
        prefix_len: 0,
        mask: [0; 4],
    };

    /// The mask for `prefix_len` (0..=128), as raw network-order words.
    pub const fn new(prefix_len: u32) -> V6Len {
        let mut mask = [0u32; 4];
        let mut i = 0;
        while i < 4 {
            let start = i as u32 * 32;
            let bits = if prefix_len >= start + 32 {
                32
            } else {
                prefix_len.saturating_sub(start)
            };
            let host: u32 = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            mask[i] = host.to_be();
            i += 1;
        }
        V6Len { prefix_len, mask }
    }

    #[inline(always)]
    pub const fn key(&self, addr: &[u32; 4]) -> V6Key {
        V6Key {
            prefix_len: self.prefix_len,
            addr: [
                addr[0] & self.mask[0],
                addr[1] & self.mask[1],
                addr[2] & self.mask[2],
                addr[3] & self.mask[3],
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_bit_codes_round_trip_at_every_position() {
        let codes = [
            ListCode::None,
            ListCode::Allow,
            ListCode::Deny,
            ListCode::Split,
        ];
        let mut b = Bitmap512::ZERO;
        for pos in 0..256 {
            b.set_code(pos, codes[(pos % 4) as usize]);
        }
        for pos in 0..256 {
            assert_eq!(b.code(pos), codes[(pos % 4) as usize], "pos {pos}");
        }
        b.set_code(17, ListCode::None);
        assert_eq!(b.code(17), ListCode::None);
        assert_eq!(b.code(16), ListCode::None);
        assert_eq!(b.code(18), ListCode::Deny);
    }

    #[test]
    fn bits_cover_512_positions() {
        let mut b = Bitmap512::ZERO;
        b.set_bit(0);
        b.set_bit(63);
        b.set_bit(64);
        b.set_bit(511);
        for pos in 0..512 {
            assert_eq!(b.bit(pos), matches!(pos, 0 | 63 | 64 | 511), "pos {pos}");
        }
    }

    #[test]
    fn v4_slots_split_the_address() {
        let addr = u32::from_be_bytes([198, 18, 7, 9]);
        let (elem, pos) = v4_dir24_slot(addr);
        assert_eq!(elem, (198 << 8) | 18);
        assert_eq!(pos, 7);
        assert_eq!(v4_tbl8_slot(addr), ((198 << 16) | (18 << 8) | 7, 9));
        assert_eq!(v4_dir24_slot(u32::MAX), (V4_DIR24_ENTRIES - 1, 255));
    }

    #[test]
    fn v6_top24_slot_is_in_range() {
        let (elem, bit) = v6_top24_slot(u32::MAX);
        assert_eq!(elem, V6_TOP24_ENTRIES - 1);
        assert_eq!(bit, 511);
        // 2001:0db8 -> top 24 bits 0x20010d
        let (elem, bit) = v6_top24_slot(0x2001_0db8);
        assert_eq!((elem << 9) | bit, 0x20010d);
    }

    #[test]
    fn v6_masks_in_network_order() {
        let words = |b: [u8; 16]| {
            [0, 1, 2, 3]
                .map(|i| u32::from_ne_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]))
        };
        let addr = words([
            0x20, 0x01, 0x0d, 0xb8, 0xab, 0xcd, 0xef, 0x12, 1, 2, 3, 4, 5, 6, 7, 8,
        ]);
        let k = V6Len::new(36).key(&addr);
        assert_eq!(k.prefix_len, 36);
        assert_eq!(
            k.addr,
            words([
                0x20, 0x01, 0x0d, 0xb8, 0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
            ])
        );
        assert_eq!(V6Len::new(128).key(&addr).addr, addr);
        assert_eq!(V6Len::new(0).key(&addr).addr, [0; 4]);
        let k64 = V6Len::new(64).key(&addr);
        assert_eq!(k64.addr[..2], addr[..2]);
        assert_eq!(k64.addr[2..], [0, 0]);
    }
}

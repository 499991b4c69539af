//! Attack shape: per rule, a HyperLogLog sketch of the sources the rule matched, per window.
//!
//! The kernel adds every packet a rule matches to the rule's sketch for the window in force:
//! one register of `REGISTERS`, chosen by the top `INDEX_BITS` of the source's bucket hash
//! (SipHash under the secret bucket key, at the rule's prefix: a sender cannot steer which
//! register it lands in), raised to the rank of the hash's other bits (`register_of`). The
//! registers are shared by all CPUs: a register is written only when a packet raises it,
//! which after the first few thousand sources is rare, so no line is written per packet.
//! The packet count is per CPU.
//!
//! Two windows alternate (`slot`): the daemon flips `STATE_WINDOW` at a window's end, reads
//! the finished window's sketch and count, and clears them before the flip that reuses them.

use crate::rules::MAX_RULES;

/// Registers are indexed by this many bits of the hash: 4,096 one-byte registers, a standard
/// error of 1.04 / sqrt(4096) = 1.6% (so 95% of estimates within 3.2%).
pub const INDEX_BITS: u32 = 12;
pub const REGISTERS: usize = 1 << INDEX_BITS;
/// The highest rank a register takes: the 52 bits below the index, all zero, plus one.
pub const MAX_RANK: u8 = (64 - INDEX_BITS + 1) as u8;

/// Sketch slots in `SHAPE_SKETCH` and counters in `SHAPE_PACKETS`: two windows per rule.
pub const SLOTS: u32 = MAX_RULES as u32 * 2;

/// Words of `SHAPE_STATE`.
pub const STATE_WINDOW: u32 = 0;
/// Bit i: rule i's endpoint budget is engaged (`budget_mode = "under_attack"`).
pub const STATE_ENGAGED: u32 = 1;
pub const STATE_WORDS: u32 = 2;
/// `STATE_WINDOW` when no daemon reads the sketches: the kernel skips them.
pub const WINDOW_OFF: u64 = 2;

/// One window's registers for one rule.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Sketch {
    pub registers: [u8; REGISTERS],
}

impl Sketch {
    pub const EMPTY: Sketch = Sketch {
        registers: [0; REGISTERS],
    };
}

/// The slot of rule `rule`'s sketch (and packet count) in window `window` (0 or 1).
#[inline(always)]
pub const fn slot(rule: u32, window: u32) -> u32 {
    rule * 2 + (window & 1)
}

/// The register a source hash lands in and the rank it offers: one more than the leading
/// zeros of the bits below the index (a hash of all zeros there gives `MAX_RANK`).
#[inline(always)]
pub const fn register_of(hash: u64) -> (usize, u8) {
    let index = (hash >> (64 - INDEX_BITS)) as usize;
    let rest = (hash << INDEX_BITS) | (1 << (INDEX_BITS - 1));
    (index, rest.leading_zeros() as u8 + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_cover_one_to_max() {
        assert_eq!(register_of(u64::MAX), (REGISTERS - 1, 1));
        assert_eq!(register_of(0), (0, MAX_RANK));
        // The first bit below the index set: rank 1; the second: rank 2.
        assert_eq!(register_of(1 << 51), (0, 1));
        assert_eq!(register_of(1 << 50), (0, 2));
        assert_eq!(register_of(1), (0, 52));
    }

    #[test]
    fn windows_alternate_within_a_rule() {
        assert_eq!(slot(3, 0), 6);
        assert_eq!(slot(3, 1), 7);
        assert_eq!(slot(3, 2), 6);
        assert!(slot(MAX_RULES as u32 - 1, 1) < SLOTS);
    }
}

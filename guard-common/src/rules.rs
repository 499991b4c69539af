//! Rate rules as the kernel sees them: one [`RuleSpec`] per rule in the `RULES` array, its
//! destination ports as a 65536-bit bitmap in `RULE_PORTS`, its buckets a slice of `BUCKETS`.

use crate::lists::Bitmap512;

pub const MAX_RULES: usize = 16;
/// `RULE_PORTS` elements per rule: 65536 ports, 512 to an element.
pub const PORT_ELEMS_PER_RULE: u32 = 128;

/// Protocol numbers a rule can name; `PROTO_ANY` matches every packet.
pub const PROTO_ANY: u8 = 0;
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;

/// [`RuleSpec::flags`] bits.
pub mod rule_flags {
    /// Only destination ports set in the rule's port bitmap match.
    pub const PORTS: u8 = 1 << 0;
    /// Only TCP segments with SYN and without ACK match.
    pub const SYN_ONLY: u8 = 1 << 1;
    /// Would-drops are counted as `monitor` and passed.
    pub const MONITOR: u8 = 1 << 2;
    /// The rule has `ban_after`: the first limited packet of each bucket in each second
    /// is reported (`LIMIT_REPORTS`), enforcing or monitoring.
    pub const REPORT_LIMITED: u8 = 1 << 3;
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleSpec {
    /// `PROTO_*`; `PROTO_ICMP` also matches ICMPv6.
    pub proto: u8,
    pub flags: u8,
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
    /// Buckets - 1 (a power of two minus one).
    pub bucket_mask: u32,
    /// Index of the rule's first bucket in `BUCKETS`.
    pub bucket_base: u32,
    /// `ipv4_prefix` as a host-order mask, precomputed so the kernel does not branch on it.
    pub v4_mask: u32,
    /// `ipv6_prefix` as raw network-order words.
    pub v6_mask: [u32; 4],
    /// The bucket size in units.
    pub burst_units: u64,
    /// The rate as `tokens::accrual` gives it: units per ns, `accrue_shift` fraction bits.
    pub accrue_mul: u64,
    pub accrue_shift: u32,
    /// log2 of the rule's bucket count: `tokens::slice_of` finds a bucket's refill slice.
    pub bucket_shift: u32,
}

/// `PER_RULE_STATS` slots: passed and limited packets per rule.
pub const RULE_STATS_LEN: u32 = MAX_RULES as u32 * 2;

#[inline(always)]
pub const fn rule_stat_passed(rule: u32) -> u32 {
    rule * 2
}

#[inline(always)]
pub const fn rule_stat_limited(rule: u32) -> u32 {
    rule * 2 + 1
}

/// Where a rule's port lives in `RULE_PORTS`: (element, bit).
#[inline(always)]
pub const fn port_slot(rule: u32, port: u16) -> (u32, u32) {
    (
        rule * PORT_ELEMS_PER_RULE + (port as u32 >> 9),
        port as u32 & 0x1ff,
    )
}

/// Sets `port` in a rule's 128-element port bitmap.
pub fn set_port(bitmap: &mut [Bitmap512], port: u16) {
    let (elem, bit) = port_slot(0, port);
    bitmap[elem as usize].set_bit(bit);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_slots_cover_all_ports_per_rule() {
        assert_eq!(port_slot(0, 0), (0, 0));
        assert_eq!(port_slot(0, 65535), (127, 511));
        assert_eq!(port_slot(3, 443), (3 * 128, 443));
        let mut b = [Bitmap512::ZERO; PORT_ELEMS_PER_RULE as usize];
        set_port(&mut b, 8080);
        let (e, bit) = port_slot(0, 8080);
        assert!(b[e as usize].bit(bit));
        assert_eq!(core::mem::size_of::<RuleSpec>(), 56);
    }
}

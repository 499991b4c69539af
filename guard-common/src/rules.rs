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
    /// The rule has an endpoint budget (`total_rate`): `budget_bucket` in `BUCKETS`.
    pub const BUDGET: u8 = 1 << 4;
    /// `budget_mode = "under_attack"`: the budget is enforced only while the rule's bit in
    /// `SHAPE_STATE`'s engaged word is set; otherwise an empty budget is counted as monitor.
    pub const UNDER_ATTACK: u8 = 1 << 5;
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
    /// With `rule_flags::BUDGET`: the index in `BUCKETS` of the rule's endpoint budget (after
    /// every rule's per-source buckets), refilled by the daemon on every tick.
    pub budget_bucket: u32,
    /// Tokens a CPU takes from the budget at a time into its own pool (`BUDGET_POOL`), so the
    /// shared budget is written once per `budget_chunk` packets, not on every packet.
    pub budget_chunk: u32,
}

/// The budget's chunk for `total_rate` tokens per second on `cpus` CPUs: at most 1/64 s of the
/// rate over all CPUs together, so what the pools hold (and what two CPUs taking a chunk at
/// once may overdraw) stays within 1/32 s of the rate; at least one token.
pub const fn budget_chunk(total_rate: u64, cpus: u32) -> u32 {
    let cpus = if cpus == 0 { 1 } else { cpus as u64 };
    let c = total_rate / (64 * cpus);
    if c == 0 {
        1
    } else if c > MAX_BUDGET_CHUNK as u64 {
        MAX_BUDGET_CHUNK
    } else {
        c as u32
    }
}

/// The largest budget chunk: beyond it the shared line is written rarely enough already.
pub const MAX_BUDGET_CHUNK: u32 = 256;

/// `RULE_STATS` slots per rule: packets passed, limited (its bucket empty), and dropped
/// for its empty endpoint budget.
const RULE_STAT_SLOTS: u32 = 3;
pub const RULE_STATS_LEN: u32 = MAX_RULES as u32 * RULE_STAT_SLOTS;

#[inline(always)]
pub const fn rule_stat_passed(rule: u32) -> u32 {
    rule * RULE_STAT_SLOTS
}

#[inline(always)]
pub const fn rule_stat_limited(rule: u32) -> u32 {
    rule * RULE_STAT_SLOTS + 1
}

#[inline(always)]
pub const fn rule_stat_overload(rule: u32) -> u32 {
    rule * RULE_STAT_SLOTS + 2
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
        assert_eq!(core::mem::size_of::<RuleSpec>(), 64);
        assert_eq!(budget_chunk(5000, 2), 39);
        assert_eq!(budget_chunk(10, 64), 1);
        assert_eq!(budget_chunk(10_000_000, 1), MAX_BUDGET_CHUNK);
    }
}

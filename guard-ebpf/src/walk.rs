//! The rate stage's walk over the rules: what it keeps of the packet, whether a rule
//! matches it, and which of the rule's buckets is the source's.

use aya_ebpf::helpers::bpf_ktime_get_coarse_ns;
use guard_common::{
    rules::{PROTO_ANY, PROTO_ICMP, PROTO_ICMPV6, RuleSpec, port_slot, rule_flags},
    siphash,
};
use guard_ebpf::parse::{TCP_FLAG_ACK, TCP_FLAG_SYN};

/// What the per-rule step needs from the packet, and the state it keeps between rules. It
/// lives on the program's stack; `guard_rule` gets a pointer to it.
#[repr(C)]
pub struct Walk {
    pub key: [u64; 2],
    pub src_v6: [u32; 4],
    pub src_v4: u32,
    pub is_v6: u32,
    pub dport: u32,
    pub proto: u8,
    pub has_l4: u8,
    pub tcp_flags: u8,
    pub global_monitor: u8,
    /// The last source hash and the mask it was computed under: rules that aggregate
    /// sources the same way (the usual case) share one SipHash per packet.
    pub hash: u64,
    pub hashed_v6_mask: [u32; 4],
    pub hashed_v4_mask: u32,
    pub hash_valid: u32,
    /// The coarse clock, once read (0: not yet).
    pub now: u64,
    pub accrue_max_ns: u64,
    pub refill_ticks: u32,
    /// Rules that took a token of their budget, and rules whose budget was empty: written
    /// and read by `guard_rule` only (see `step`).
    pub budget_taken: u32,
    pub budget_empty: u32,
    pub _pad: u32,
}

impl Walk {
    #[inline(always)]
    pub fn now(&mut self) -> u64 {
        if self.now == 0 {
            self.now = unsafe { bpf_ktime_get_coarse_ns() };
        }
        self.now
    }
}

#[inline(always)]
pub fn matches(rule: &RuleSpec, index: u32, walk: &Walk) -> bool {
    match rule.proto {
        PROTO_ANY => {}
        PROTO_ICMP => {
            if walk.proto != PROTO_ICMP && walk.proto != PROTO_ICMPV6 {
                return false;
            }
        }
        p => {
            if walk.proto != p {
                return false;
            }
        }
    }
    if rule.flags & (rule_flags::PORTS | rule_flags::SYN_ONLY) == 0 {
        return true;
    }
    // Port and flag matches need the transport header (not in non-first fragments).
    if walk.has_l4 == 0 {
        return false;
    }
    if rule.flags & rule_flags::SYN_ONLY != 0
        && walk.tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK) != TCP_FLAG_SYN
    {
        return false;
    }
    if rule.flags & rule_flags::PORTS != 0 {
        let (elem, bit) = port_slot(index, walk.dport as u16);
        return crate::rate::RULE_PORTS
            .get(elem)
            .is_some_and(|ports| ports.bit(bit));
    }
    true
}

#[inline(always)]
pub fn bucket_index(rule: &RuleSpec, walk: &mut Walk) -> u32 {
    // Word by word: array comparisons and copies become byte-loop calls on BPF.
    let m = &rule.v6_mask;
    let h = &walk.hashed_v6_mask;
    let cached = walk.hash_valid != 0
        && if walk.is_v6 != 0 {
            (h[0] ^ m[0]) | (h[1] ^ m[1]) | (h[2] ^ m[2]) | (h[3] ^ m[3]) == 0
        } else {
            walk.hashed_v4_mask == rule.v4_mask
        };
    if !cached {
        let s = &walk.src_v6;
        walk.hash = if walk.is_v6 != 0 {
            siphash::hash_v6_masked(
                &walk.key,
                &[s[0] & m[0], s[1] & m[1], s[2] & m[2], s[3] & m[3]],
            )
        } else {
            siphash::hash_v4_masked(&walk.key, walk.src_v4 & rule.v4_mask)
        };
        walk.hashed_v6_mask[0] = m[0];
        walk.hashed_v6_mask[1] = m[1];
        walk.hashed_v6_mask[2] = m[2];
        walk.hashed_v6_mask[3] = m[3];
        walk.hashed_v4_mask = rule.v4_mask;
        walk.hash_valid = 1;
    }
    rule.bucket_base
        .wrapping_add(walk.hash as u32 & rule.bucket_mask)
}

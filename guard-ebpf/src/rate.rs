//! Step 4 of the pipeline: rate rules.
//!
//! Every rule whose match fits the packet is charged one token from the source's bucket
//! (SipHash-1-3 of the masked source, in the rule's slice of `BUCKETS`). The kernel only
//! adds to a bucket's `spent`; the daemon only raises its `credit` (guard_common::tokens).
//! Between refills a bucket also holds what its rate earned since the daemon last credited
//! it (`tokens::charge`); the coarse clock is read only for a bucket too low to take the
//! packet from its credit alone, or full (what it earned while full is burned). If an enforcing rule's bucket is empty the packet is a would-drop and the
//! other rules' charges are refunded, unless the daemon's refill heartbeat is stale: then
//! the rules fail open.

use core::intrinsics::AtomicOrdering;

use aya_ebpf::{
    bindings::BPF_F_MMAPABLE,
    cty::c_void,
    helpers::{bpf_ktime_get_coarse_ns, bpf_loop},
    macros::map,
    maps::{Array, PerCpuArray},
};
use guard_common::{
    RuntimeConfig,
    lists::Bitmap512,
    rules::{
        MAX_RULES, PORT_ELEMS_PER_RULE, PROTO_ANY, PROTO_ICMP, PROTO_ICMPV6, RULE_STATS_LEN,
        RuleSpec, port_slot, rule_flags, rule_stat_limited, rule_stat_passed,
    },
    siphash,
    tokens::{
        Bucket, HEARTBEAT_WORDS, TOKEN_SCALE, accrued, available, charge, slice_of,
        takes_without_clock,
    },
};
use guard_ebpf::parse::{Packet, Source, TCP_FLAG_ACK, TCP_FLAG_SYN};

#[map(name = "RULES")]
static RULES: Array<RuleSpec> = Array::with_max_entries(MAX_RULES as u32, 0);

#[map(name = "RULE_PORTS")]
static RULE_PORTS: Array<Bitmap512> =
    Array::with_max_entries(MAX_RULES as u32 * PORT_ELEMS_PER_RULE, 0);

#[map(name = "RULE_STATS")]
static RULE_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(RULE_STATS_LEN, 0);

/// Sized by the daemon at load time (the sum of the rules' bucket counts).
#[map(name = "BUCKETS")]
static BUCKETS: Array<Bucket> = Array::with_max_entries(1, BPF_F_MMAPABLE);

/// CLOCK_MONOTONIC ns of the daemon's last refill tick, written through an mmap.
#[map(name = "HEARTBEAT")]
static HEARTBEAT: Array<u64> = Array::with_max_entries(HEARTBEAT_WORDS, BPF_F_MMAPABLE);

pub enum Outcome {
    /// No rule limited the packet.
    Pass,
    /// An enforcing rule's bucket is empty; `now` is the coarse clock read to check the
    /// heartbeat, handed on so the drop path reads the clock once.
    Limited { now: u64 },
    /// Only monitoring rules (or global monitor mode) would have dropped it.
    Monitored,
    /// A rule would drop it, but the refill heartbeat is stale: fail open.
    Stale,
}

/// What the per-rule callback needs from the packet, and what it reports back. It lives on
/// the program's stack; `bpf_loop` hands the callback a pointer to it.
#[repr(C)]
struct Walk {
    key: [u64; 2],
    src_v6: [u32; 4],
    src_v4: u32,
    is_v6: u32,
    dport: u32,
    proto: u8,
    has_l4: u8,
    tcp_flags: u8,
    global_monitor: u8,
    /// Bit i: rule i charged a token for this packet.
    charged: u32,
    limited: u32,
    monitored: u32,
    /// What `rule_step` does: charge (0) or refund (1). One callback for both bpf_loop calls:
    /// Linux 6.1 mishandles two bpf_loop call sites with different callbacks (the second
    /// loop's work was lost there, found by `cargo xtask vm-test`).
    phase: u32,
    /// The last source hash and the mask it was computed under: rules that aggregate
    /// sources the same way (the usual case) share one SipHash per packet.
    hash: u64,
    hashed_v6_mask: [u32; 4],
    hashed_v4_mask: u32,
    hash_valid: u32,
    /// The coarse clock, once read (0: not yet).
    now: u64,
    accrue_max_ns: u64,
    refill_ticks: u32,
}

impl Walk {
    #[inline(always)]
    fn now(&mut self) -> u64 {
        if self.now == 0 {
            self.now = unsafe { bpf_ktime_get_coarse_ns() };
        }
        self.now
    }
}

#[inline(always)]
pub fn apply(pkt: &Packet, cfg: &RuntimeConfig, global_monitor: bool) -> Outcome {
    let n = cfg.rule_count;
    if n == 0 {
        return Outcome::Pass;
    }
    let (src_v4, src_v6, is_v6) = match pkt.src {
        Source::V4(a) => (a, [0; 4], 0),
        Source::V6(w) => (0, w, 1),
    };
    let mut walk = Walk {
        key: cfg.key,
        src_v6,
        src_v4,
        is_v6,
        dport: pkt.l4.dport as u32,
        proto: pkt.proto,
        has_l4: pkt.l4.present,
        tcp_flags: pkt.l4.tcp_flags,
        global_monitor: global_monitor as u8,
        // Zero, from a map word the verifier cannot know: Linux 6.1 otherwise keeps assuming
        // the initial constants after bpf_loop (whose callback changes them) and prunes the
        // refund as dead code (found by `cargo xtask vm-test`).
        charged: cfg._reserved,
        limited: cfg._reserved,
        monitored: cfg._reserved,
        phase: 0,
        hash: 0,
        // Word stores of a runtime zero: a literal zero array becomes a byte-loop memset.
        hashed_v6_mask: [cfg._reserved; 4],
        hashed_v4_mask: 0,
        hash_valid: cfg._reserved,
        now: cfg._reserved as u64,
        accrue_max_ns: cfg.accrue_max_ns,
        refill_ticks: cfg.refill_ticks,
    };
    // bpf_loop: the verifier checks the callback once instead of every unrolled path.
    let ctx = (&raw mut walk).cast();
    unsafe { bpf_loop(n.min(MAX_RULES as u32), rule_step as *mut c_void, ctx, 0) };
    if walk.limited != 0 {
        let now = walk.now();
        if heartbeat_stale(cfg, now) {
            return Outcome::Stale;
        }
        if walk.charged != 0 {
            // Through the pointer the callback uses (a direct write looks dead to rustc).
            unsafe { (*ctx.cast::<Walk>()).phase = 1 };
            unsafe { bpf_loop(n.min(MAX_RULES as u32), rule_step as *mut c_void, ctx, 0) };
        }
        return Outcome::Limited { now };
    }
    if walk.monitored != 0 {
        Outcome::Monitored
    } else {
        Outcome::Pass
    }
}

/// The bpf_loop callback: one rule, in the walk's phase.
extern "C" fn rule_step(index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the `Walk` on `apply`'s stack.
    let walk = unsafe { &mut *ctx.cast::<Walk>() };
    if walk.phase == 0 {
        charge_rule(index, walk)
    } else {
        refund_rule(index, walk)
    }
}

/// Rule `index`: if it matches, take a token from the source's bucket or note it empty.
#[inline(always)]
fn charge_rule(index: u64, walk: &mut Walk) -> i64 {
    let i = index as u32;
    let Some(rule) = RULES.get(i) else { return 1 };
    if !matches(rule, i, walk) {
        return 0;
    }
    let bucket = bucket_index(rule, walk);
    let Some(b) = BUCKETS.get_ptr_mut(bucket) else {
        return 0;
    };
    let (spent, credit) = unsafe { (&raw mut (*b).spent, &raw mut (*b).credit) };
    let avail = available(load(credit), load(spent));
    let cost = if takes_without_clock(avail, rule.burst_units) {
        Some(TOKEN_SCALE)
    } else {
        // The bucket's slice was stamped before it was credited (`Refill::tick`): a new
        // stamp with an old credit is a moment's under-admission, never the reverse.
        let offset = bucket.wrapping_sub(rule.bucket_base);
        let slice = slice_of(offset, walk.refill_ticks, rule.bucket_shift);
        let at = HEARTBEAT
            .get_ptr_mut(2u32.wrapping_add(slice))
            .map_or(u64::MAX, load);
        let elapsed = walk.now().saturating_sub(at);
        let elapsed = if elapsed < walk.accrue_max_ns {
            elapsed
        } else {
            walk.accrue_max_ns
        };
        charge(
            avail,
            accrued(rule.accrue_mul, rule.accrue_shift, elapsed),
            rule.burst_units,
        )
    };
    if let Some(cost) = cost {
        add(spent, cost);
        walk.charged |= 1 << (i & 31);
        bump(rule_stat_passed(i), 1);
    } else {
        bump(rule_stat_limited(i), 1);
        if rule.flags & rule_flags::REPORT_LIMITED != 0 {
            let now = walk.now();
            crate::events::report_limited(
                bucket,
                i,
                walk.src_v4,
                &walk.src_v6,
                walk.is_v6 != 0,
                now,
            );
        }
        if walk.global_monitor != 0 || rule.flags & rule_flags::MONITOR != 0 {
            walk.monitored = 1;
        } else {
            walk.limited = 1;
        }
    }
    0
}

/// Rule `index`: give back the token taken for a packet another rule drops.
#[inline(always)]
fn refund_rule(index: u64, walk: &mut Walk) -> i64 {
    let i = index as u32;
    if walk.charged & (1 << (i & 31)) == 0 {
        return 0;
    }
    let Some(rule) = RULES.get(i) else { return 1 };
    if let Some(b) = BUCKETS.get_ptr_mut(bucket_index(rule, walk)) {
        // Adding the two's complement keeps `spent` add-only.
        add(unsafe { &raw mut (*b).spent }, TOKEN_SCALE.wrapping_neg());
    }
    bump(rule_stat_passed(i), u64::MAX);
    0
}

#[inline(always)]
fn matches(rule: &RuleSpec, index: u32, walk: &Walk) -> bool {
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
        return RULE_PORTS.get(elem).is_some_and(|ports| ports.bit(bit));
    }
    true
}

#[inline(always)]
fn bucket_index(rule: &RuleSpec, walk: &mut Walk) -> u32 {
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

#[inline(always)]
fn heartbeat_stale(cfg: &RuntimeConfig, now: u64) -> bool {
    let Some(beat) = HEARTBEAT.get_ptr_mut(0) else {
        return true;
    };
    let beat = load(beat);
    // `now` is the coarse clock: staleness is counted in seconds, and the precise clock
    // costs 20-30 ns on a VM's clock source. It may lag the daemon's precise beat by a
    // jiffy, hence the saturating difference.
    beat == 0 || now.saturating_sub(beat) > cfg.stale_after_ns
}

/// A load of a word another CPU (or the daemon, through an mmap) writes: an aligned 8-byte
/// BPF load is single-copy atomic, and LLVM has no BPF lowering for atomic loads at the
/// generic CPU level, so a volatile read.
#[inline(always)]
fn load(p: *mut u64) -> u64 {
    // SAFETY: `p` points into a map value, 8-byte aligned.
    unsafe { core::ptr::read_volatile(p) }
}

/// An atomic add (BPF_ATOMIC_ADD): the BPF target has no `fetch_add`, so the intrinsic.
#[inline(always)]
fn add(p: *mut u64, n: u64) {
    // SAFETY: `p` points into a map value; every writer of this word adds atomically.
    unsafe { core::intrinsics::atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(p, n) };
}

/// Adds `n` (wrapping: u64::MAX takes one back) to a per-rule counter of this CPU.
#[inline(always)]
fn bump(slot: u32, n: u64) {
    if let Some(c) = RULE_STATS.get_ptr_mut(slot) {
        unsafe { *c = (*c).wrapping_add(n) };
    }
}

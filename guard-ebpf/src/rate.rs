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

use aya_ebpf::{
    bindings::BPF_F_MMAPABLE,
    macros::map,
    maps::{Array, PerCpuArray},
};
use guard_common::{
    RuntimeConfig,
    lists::Bitmap512,
    rules::{
        MAX_RULES, PORT_ELEMS_PER_RULE, RULE_STATS_LEN, RuleSpec, rule_flags, rule_stat_limited,
        rule_stat_overload, rule_stat_passed,
    },
    runtime::flags,
    tokens::{
        Bucket, HEARTBEAT_WORDS, TOKEN_SCALE, accrued, available, charge, slice_of,
        takes_without_clock,
    },
};
use guard_ebpf::parse::Packet;

use crate::{
    walk::{Walk, bucket_index, matches},
    words::{add, load},
};

#[map]
static RULES: Array<RuleSpec> = Array::with_max_entries(MAX_RULES as u32, 0);

#[map]
pub(crate) static RULE_PORTS: Array<Bitmap512> =
    Array::with_max_entries(MAX_RULES as u32 * PORT_ELEMS_PER_RULE, 0);

#[map]
static RULE_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(RULE_STATS_LEN, 0);

/// Sized by the daemon at load time (the sum of the rules' bucket counts).
#[map]
static BUCKETS: Array<Bucket> = Array::with_max_entries(1, BPF_F_MMAPABLE);

/// CLOCK_MONOTONIC ns of the daemon's last refill tick, written through an mmap.
#[map]
static HEARTBEAT: Array<u64> = Array::with_max_entries(HEARTBEAT_WORDS, BPF_F_MMAPABLE);

/// What the rate stage answers.
pub mod outcome {
    /// No rule limited the packet.
    pub const PASS: u32 = 0;
    /// An enforcing rule's bucket is empty.
    pub const LIMITED: u32 = 1;
    /// Only monitoring rules (or global monitor mode) would have dropped it.
    pub const MONITORED: u32 = 2;
    /// A rule would drop it, but the refill heartbeat is stale: fail open.
    pub const STALE: u32 = 3;
    /// An enforcing rule's endpoint budget is empty and the source is not known.
    pub const OVERLOAD: u32 = 4;
    /// Only monitoring rules would have dropped it for an empty budget.
    pub const OVERLOAD_MONITORED: u32 = 5;
    /// The outcome's bits (the others are flags).
    pub const MASK: u32 = 7;
    /// Flag: a rule with `ban_after` reported this packet's source limited.
    pub const REPORTED: u32 = 8;
}

/// What `guard_rule` reports for a rule, as bits of its return value. Results come back
/// in the return value, not through `Walk`: a caller's stack written by a global function
/// is, to some kernels' verifiers (6.1), still what the caller wrote before the call.
mod step {
    pub const CHARGED: u32 = 1;
    pub const LIMITED: u32 = 2;
    pub const MONITORED: u32 = 4;
    pub const REPORTED: u32 = 8;
    /// The rule's endpoint budget is empty (enforcing, or only monitoring).
    pub const OVERLOAD: u32 = 16;
    pub const OVERLOAD_MONITORED: u32 = 32;
    /// `guard_rule`'s phases: charge; give back for a packet dropped for its rate; give back
    /// for a packet dropped for an empty budget.
    pub const CHARGE: u32 = 0;
    pub const REFUND: u32 = 1;
    pub const REFUND_OVERLOAD: u32 = 2;
}

/// Every rule whose match fits charges the source (one `guard_rule` call per rule); an
/// `outcome`. `now` receives the coarse clock when it was read (the drop path reads it
/// once). `known` answers, at the clock it is given, whether the source passes an empty
/// budget (vouched or verified); it is asked only when a budget is empty.
#[inline(always)]
pub fn apply(
    pkt: &Packet,
    cfg: &RuntimeConfig,
    now: &mut u64,
    known: impl FnOnce(u64) -> bool,
) -> u32 {
    let n = cfg.rule_count;
    if n == 0 {
        return outcome::PASS;
    }
    // Zero, from a map word the verifier cannot know: `guard_rule` writes these words, and
    // a caller's stack written by a global function is, to Linux 6.1's verifier, still what
    // the caller wrote (`now()` below must not be verified as if it held a constant).
    let zero = cfg._reserved;
    let mut walk = Walk {
        key: cfg.key,
        src_v6: if pkt.family == 6 { pkt.src } else { [zero; 4] },
        src_v4: if pkt.family == 6 { zero } else { pkt.src[0] },
        is_v6: (pkt.family == 6) as u32,
        dport: pkt.dport as u32,
        proto: pkt.proto,
        has_l4: pkt.l4_present,
        tcp_flags: pkt.tcp_flags,
        global_monitor: (cfg.flags & flags::MONITOR != 0) as u8,
        hash: zero as u64,
        // Word stores of a runtime zero: a literal zero array becomes a byte-loop memset.
        hashed_v6_mask: [zero; 4],
        hashed_v4_mask: zero,
        hash_valid: zero,
        now: zero as u64,
        accrue_max_ns: cfg.accrue_max_ns,
        refill_ticks: cfg.refill_ticks,
        budget_taken: zero,
        budget_empty: zero,
        _pad: zero,
    };
    let n = n.min(MAX_RULES as u32);
    let (mut charged, mut limited, mut monitored, mut reported) = (0u32, 0u32, 0u32, 0u32);
    let mut over = 0u32;
    for i in 0..MAX_RULES as u32 {
        if i >= n {
            break;
        }
        // SAFETY: `walk` lives on this frame.
        let r = unsafe { guard_rule(i, step::CHARGE, &raw mut walk) };
        charged |= (r & step::CHARGED) << i;
        limited |= r & step::LIMITED;
        monitored |= r & step::MONITORED;
        reported |= r & step::REPORTED;
        over |= r & (step::OVERLOAD | step::OVERLOAD_MONITORED);
    }
    // The flag rides along: `step::REPORTED` and `outcome::REPORTED` differ.
    let reported = if reported != 0 { outcome::REPORTED } else { 0 };
    let (phase, result) = if limited != 0 {
        let t = walk.now();
        *now = t;
        if heartbeat_stale(cfg, t) {
            return outcome::STALE | reported;
        }
        (step::REFUND, outcome::LIMITED)
    } else if over != 0 {
        let t = walk.now();
        *now = t;
        if known(t) {
            return outcome::PASS;
        }
        if over & step::OVERLOAD == 0 {
            return outcome::OVERLOAD_MONITORED | reported;
        }
        // A dead daemon refills no budget: the rules fail open, as for their buckets.
        if heartbeat_stale(cfg, t) {
            return outcome::STALE | reported;
        }
        (step::REFUND_OVERLOAD, outcome::OVERLOAD)
    } else if monitored != 0 {
        return outcome::MONITORED | reported;
    } else {
        return outcome::PASS;
    };
    // SAFETY: `walk` lives on this frame.
    unsafe { guard_refund(charged, phase, &raw mut walk) };
    result | reported
}

/// The charged rules (bit i: rule i) give back what they took, in `phase`: a global
/// function, so the verifier walks this loop once, not once per way of reaching it.
///
/// # Safety
/// As for `guard_rule`.
#[unsafe(no_mangle)]
#[inline(never)]
pub unsafe extern "C" fn guard_refund(charged: u32, phase: u32, walk: *mut Walk) -> u32 {
    for i in 0..MAX_RULES as u32 {
        if charged >> i == 0 {
            break;
        }
        if charged & (1 << i) != 0 {
            // SAFETY: as the caller promises.
            unsafe { guard_rule(i, phase, walk) };
        }
    }
    0
}

/// One rule in a phase, a global function (verified once, whatever the rule count): in
/// `CHARGE`, a token from the source's bucket if the rule matches; in `REFUND`, that token
/// given back. `step` bits.
///
/// # Safety
/// Its pointers are null or valid for the call (the verifier checks each caller).
#[unsafe(no_mangle)]
#[inline(never)]
pub unsafe extern "C" fn guard_rule(index: u32, phase: u32, walk: *mut Walk) -> u32 {
    // SAFETY: a maybe-null pointer to the rate stage's `Walk`; checked here.
    let Some(walk) = (unsafe { walk.as_mut() }) else {
        return 0;
    };
    if index >= MAX_RULES as u32 {
        return 0;
    }
    if phase == step::CHARGE {
        charge_rule(index, walk)
    } else {
        refund_rule(index, phase, walk);
        0
    }
}

/// Rule `index`: if it matches, take a token from the source's bucket or note it empty.
#[inline(always)]
fn charge_rule(i: u32, walk: &mut Walk) -> u32 {
    let Some(rule) = RULES.get(i) else { return 0 };
    if !matches(rule, i, walk) {
        return 0;
    }
    let bucket = bucket_index(rule, walk);
    crate::shape::note(i, walk.hash);
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
        bump(rule_stat_passed(i), 1);
        if rule.flags & rule_flags::BUDGET == 0 {
            return step::CHARGED;
        }
        if BUCKETS
            .get_ptr_mut(rule.budget_bucket)
            .is_some_and(|b| crate::budget::take(i, b, rule.budget_chunk))
        {
            walk.budget_taken |= 1 << i;
            return step::CHARGED;
        }
        walk.budget_empty |= 1 << i;
        if walk.global_monitor != 0
            || rule.flags & rule_flags::MONITOR != 0
            || (rule.flags & rule_flags::UNDER_ATTACK != 0 && !crate::shape::engaged(i))
        {
            step::CHARGED | step::OVERLOAD_MONITORED
        } else {
            step::CHARGED | step::OVERLOAD
        }
    } else {
        bump(rule_stat_limited(i), 1);
        let mut reported = 0;
        if rule.flags & rule_flags::REPORT_LIMITED != 0 {
            let now = walk.now();
            let src = (walk.src_v4, &walk.src_v6, walk.is_v6 != 0);
            if crate::events::report_limited(bucket, i, src.0, src.1, src.2, now) {
                reported = step::REPORTED;
            }
        }
        if walk.global_monitor != 0 || rule.flags & rule_flags::MONITOR != 0 {
            step::MONITORED | reported
        } else {
            step::LIMITED | reported
        }
    }
}

/// Rule `index`: give back the token (and the budget's) taken for a packet dropped after
/// all; for an empty budget's drop, count it.
#[inline(always)]
fn refund_rule(i: u32, phase: u32, walk: &mut Walk) {
    let Some(rule) = RULES.get(i) else { return };
    if let Some(b) = BUCKETS.get_ptr_mut(bucket_index(rule, walk)) {
        // Adding the two's complement keeps `spent` add-only.
        add(unsafe { &raw mut (*b).spent }, TOKEN_SCALE.wrapping_neg());
    }
    bump(rule_stat_passed(i), u64::MAX);
    if walk.budget_taken & (1 << i) != 0 {
        crate::budget::give_back(i);
    }
    if phase == step::REFUND_OVERLOAD && walk.budget_empty & (1 << i) != 0 {
        bump(rule_stat_overload(i), 1);
    }
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

/// Adds `n` (wrapping: u64::MAX takes one back) to a per-rule counter of this CPU.
#[inline(always)]
fn bump(slot: u32, n: u64) {
    if let Some(c) = RULE_STATS.get_ptr_mut(slot) {
        unsafe { *c = (*c).wrapping_add(n) };
    }
}

//! Steps 2 and 3 for a frame cut short after its source address (a tiny first fragment, a
//! segment whose header does not fit): the lists and bans judge it like any other, so a
//! banned source's cut frames are dropped; then it is dropped as `malformed` when configured
//! or when a rule needs its transport header to judge it, else passed, counted `malformed`
//! (the stack discards it). No rule charges it.
//!
//! A global function: such frames are rare, and the parse can cut a frame in a dozen places;
//! inlined, the verifier would walk the list and ban lookups once for each.

use aya_ebpf::bindings::xdp_action;
use guard_common::{Reason, Verdict};
use guard_ebpf::parse::Packet;

use crate::{CONFIG, JUDGE_ON, count, drop_from, judge_source, unjudgeable};

/// The action for the cut frame `pkt`.
///
/// # Safety
/// `pkt` is null or valid (the verifier checks each caller).
#[unsafe(no_mangle)]
#[inline(never)]
pub unsafe extern "C" fn guard_cut(pkt: *const Packet) -> u32 {
    // SAFETY: as the caller promises.
    let (Some(pkt), Some(cfg)) = (unsafe { pkt.as_ref() }, CONFIG.get(0)) else {
        return xdp_action::XDP_PASS;
    };
    let judged = judge_source(cfg, pkt);
    if judged != JUDGE_ON {
        return judged;
    }
    if unjudgeable(cfg, pkt) {
        return drop_from(cfg, Reason::Malformed, pkt, 0);
    }
    count(Verdict::Pass, Reason::Malformed)
}

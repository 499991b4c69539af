//! `lru_ref`: the straightforward per-source limiter, for comparison only. One LRU hash
//! entry per source with a token count and a timestamp, refilled from bpf_ktime_get_ns on
//! every packet. Its cost grows with the number of sources: each new one evicts another.

use aya_ebpf::{
    bindings::xdp_action,
    helpers::bpf_ktime_get_ns,
    macros::{map, xdp},
    maps::LruHashMap,
    programs::XdpContext,
};
use guard_ebpf::parse::{self, Parsed, Source};

/// Same room as guard's default rule (131,072 buckets).
pub const LRU_ENTRIES: u32 = 1 << 17;
/// 1000 tokens/s, burst 2000 (guard's default rule), in nanotokens.
const RATE_PER_S: u64 = 1000;
const BURST: u64 = 2000 * 1_000_000_000;
const COST: u64 = 1_000_000_000;

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Limiter {
    tokens: u64,
    last_ns: u64,
}

#[map]
static LRU_REF: LruHashMap<[u32; 4], Limiter> = LruHashMap::with_max_entries(LRU_ENTRIES, 0);

#[xdp]
pub fn lru_ref(ctx: XdpContext) -> u32 {
    let Parsed::Ip(pkt) = parse::parse(&ctx) else {
        return xdp_action::XDP_PASS;
    };
    let key = match pkt.source() {
        Source::V4(a) => [0, 0, 0xffff, a],
        Source::V6(a) => a,
    };
    let now = unsafe { bpf_ktime_get_ns() };
    let Some(l) = LRU_REF.get_ptr_mut(key) else {
        let fresh = Limiter {
            tokens: BURST - COST,
            last_ns: now,
        };
        let _ = LRU_REF.insert(key, fresh, 0);
        return xdp_action::XDP_PASS;
    };
    let l = unsafe { &mut *l };
    // Two seconds refill the whole burst; capping keeps the product in 64 bits.
    let earned = now.saturating_sub(l.last_ns).min(2_000_000_000) * RATE_PER_S;
    l.last_ns = now;
    l.tokens = l.tokens.saturating_add(earned).min(BURST);
    if l.tokens < COST {
        return xdp_action::XDP_DROP;
    }
    l.tokens -= COST;
    xdp_action::XDP_PASS
}

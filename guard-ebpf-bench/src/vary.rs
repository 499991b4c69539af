//! `vary_v4`: steps the IPv4 source of the test frame through 2^k addresses, then tail
//! calls `NEXT[0]` (guard, the LRU reference, or `xdp_pass` to measure the stepping
//! itself). BPF_PROG_TEST_RUN reruns the same buffer, so each run sees the next source.

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{Array, ProgramArray},
    programs::XdpContext,
};
use guard_common::bench::VARY_STEP;

/// Offset of the IPv4 source in an untagged frame.
const SRC_OFF: usize = 14 + 12;

#[map]
static NEXT: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// The number of low source bits to vary.
#[map]
static VARY_BITS: Array<u32> = Array::with_max_entries(1, 0);

#[xdp]
pub fn vary_v4(ctx: XdpContext) -> u32 {
    let start = ctx.data();
    if start + SRC_OFF + 4 > ctx.data_end() {
        return xdp_action::XDP_ABORTED;
    }
    let bits = VARY_BITS.get(0).copied().unwrap_or(0).min(31);
    let mask = (1u32 << bits) - 1;
    let src = (start + SRC_OFF) as *mut [u8; 4];
    unsafe {
        let addr = u32::from_be_bytes(*src);
        let low = addr.wrapping_add(VARY_STEP) & mask;
        *src = ((addr & !mask) | low).to_be_bytes();
        NEXT.tail_call(&ctx, 0);
    }
    xdp_action::XDP_ABORTED
}

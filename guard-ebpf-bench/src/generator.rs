//! `gen_tx`: the traffic generator of the whole-path benchmark. Run through
//! BPF_PROG_TEST_RUN in live-frames mode on the sender's veth, it rewrites the source
//! (and port and UDP checksum) of the 64-byte frame and sends it with XDP_TX.

use aya_ebpf::{
    bindings::xdp_action,
    helpers::bpf_get_prandom_u32,
    macros::{map, xdp},
    maps::{Array, PerCpuArray},
    programs::XdpContext,
};
use guard_common::bench::*;

#[map]
static GEN: Array<u32> = Array::with_max_entries(gen_cfg::LEN, 0);

#[map]
static GEN_SEQ: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn cfg(i: u32) -> u32 {
    GEN.get(i).copied().unwrap_or(0)
}

#[xdp]
pub fn gen_tx(ctx: XdpContext) -> u32 {
    let start = ctx.data();
    if start + GEN_FRAME_LEN > ctx.data_end() {
        return xdp_action::XDP_ABORTED;
    }
    let Some(seq) = GEN_SEQ.get_ptr_mut(0) else {
        return xdp_action::XDP_ABORTED;
    };
    let n = unsafe {
        *seq += 1;
        *seq
    };
    let every = cfg(gen_cfg::ATTACKER_EVERY) as u64;
    let frame = start as *mut u8;
    let put16 = |off: usize, v: u16| unsafe {
        let b = v.to_be_bytes();
        *frame.add(off) = b[0];
        *frame.add(off + 1) = b[1];
    };
    if every != 0 && n % every == 0 {
        for (i, w) in GEN_ATTACKER.iter().enumerate() {
            put16(GEN_SRC_OFF + 2 * i, *w);
        }
        put16(GEN_DPORT_OFF, GEN_ATTACKER_PORT);
    } else {
        let bits = cfg(gen_cfg::BITS);
        let mask = if bits >= 32 {
            u32::MAX
        } else {
            (1u32 << bits) - 1
        };
        let low = if cfg(gen_cfg::RANDOM) != 0 {
            unsafe { bpf_get_prandom_u32() }
        } else {
            (n as u32).wrapping_mul(VARY_STEP)
        } & mask;
        for (i, w) in GEN_SOURCE_PREFIX.iter().enumerate() {
            put16(GEN_SRC_OFF + 2 * i, *w);
        }
        put16(GEN_SRC_OFF + 12, (low >> 16) as u16);
        put16(GEN_SRC_OFF + 14, low as u16);
        put16(GEN_DPORT_OFF, GEN_CROWD_PORT);
    }
    put16(GEN_CSUM_OFF, 0);
    // UDP over IPv6: the checksum is mandatory. Pseudo-header (addresses, length, next
    // header) plus the UDP header and payload, which run from the addresses to the end.
    let mut sum: u32 = 8 + 2 + 17;
    let mut off = GEN_SRC_OFF;
    while off < GEN_FRAME_LEN {
        sum += unsafe { u16::from_be_bytes([*frame.add(off), *frame.add(off + 1)]) } as u32;
        off += 2;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let csum = !(sum as u16);
    put16(GEN_CSUM_OFF, if csum == 0 { 0xffff } else { csum });
    xdp_action::XDP_TX
}

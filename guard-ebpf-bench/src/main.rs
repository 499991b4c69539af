//! Reference programs for fixtures and benchmarks, in a crate of their own: never part of
//! what guardd loads or ships.
//!
//! - `xdp_pass`, `xdp_drop`: the baselines every cost is measured against.
//! - `lpm_ref`: the same parse and allow/deny decision as `guard`, with the lists in BPF
//!   LPM tries (the straightforward design guard's direct tables are measured against).
//! - `hash_ref`: guard's previous IPv6 list lookup, measured against its trie: the same
//!   top-24 filter, then an exact-match hash probe per prefix length, longest first.
//! - `lru_ref`: a per-source limiter on an LRU hash (what fixed memory is measured against).
//! - `vary_v4`: steps the source, then tail calls the program under test.
//! - `gen_tx`: the whole-path benchmark's traffic generator.
#![no_std]
#![no_main]

mod generator;
mod lru;
mod vary;

use aya_ebpf::{
    bindings::{BPF_F_NO_PREALLOC, xdp_action},
    macros::{map, xdp},
    maps::{Array, HashMap, LpmTrie, lpm_trie::Key},
    programs::XdpContext,
};
use guard_common::{
    ListCode, V6Key, V6Len,
    lists::{self, Bitmap512, MAX_V6_LENS, V6_TOP24_ENTRIES},
};
use guard_ebpf::parse::{self, Parsed, Source};

#[map]
static LPM_V4: LpmTrie<u32, u32> = LpmTrie::with_max_entries(1 << 20, 0);

#[map]
static LPM_V6: LpmTrie<[u32; 4], u32> = LpmTrie::with_max_entries(1 << 18, 0);

#[map]
static HREF_TOP24: Array<Bitmap512> = Array::with_max_entries(V6_TOP24_ENTRIES, 0);

#[map]
static HREF_V6: HashMap<V6Key, u32> = HashMap::with_max_entries(1 << 18, BPF_F_NO_PREALLOC);

/// The lengths longest first; element `MAX_V6_LENS` holds their count in `prefix_len`.
#[map]
static HREF_LENS: Array<V6Len> = Array::with_max_entries(MAX_V6_LENS as u32 + 1, 0);

#[xdp]
pub fn xdp_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[xdp]
pub fn xdp_drop(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_DROP
}

#[xdp]
pub fn lpm_ref(ctx: XdpContext) -> u32 {
    let Parsed::Ip(pkt) = parse::parse(&ctx) else {
        return xdp_action::XDP_PASS;
    };
    let code = match pkt.source() {
        // LPM keys are in network byte order.
        Source::V4(addr) => LPM_V4.get(Key::new(32, addr.to_be())),
        Source::V6(addr) => LPM_V6.get(Key::new(128, addr)),
    };
    match code.map(|c| ListCode::from_bits(*c as u64)) {
        Some(ListCode::Deny) => xdp_action::XDP_DROP,
        _ => xdp_action::XDP_PASS,
    }
}

#[xdp]
pub fn hash_ref(ctx: XdpContext) -> u32 {
    let Parsed::Ip(pkt) = parse::parse(&ctx) else {
        return xdp_action::XDP_PASS;
    };
    let Source::V6(addr) = pkt.source() else {
        return xdp_action::XDP_PASS;
    };
    let (elem, bit) = lists::v6_top24_slot(u32::from_be(addr[0]));
    match HREF_TOP24.get(elem) {
        Some(bits) if bits.bit(bit) => {}
        _ => return xdp_action::XDP_PASS,
    }
    let count = HREF_LENS
        .get(MAX_V6_LENS as u32)
        .map_or(0, |l| l.prefix_len);
    for i in 0..MAX_V6_LENS as u32 {
        if i >= count {
            break;
        }
        let Some(len) = HREF_LENS.get(i) else { break };
        // SAFETY: read-only use of a u32 value.
        if let Some(code) = unsafe { HREF_V6.get(&len.key(&addr)) } {
            return match ListCode::from_bits(*code as u64) {
                ListCode::Deny => xdp_action::XDP_DROP,
                _ => xdp_action::XDP_PASS,
            };
        }
    }
    xdp_action::XDP_PASS
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

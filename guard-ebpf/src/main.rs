//! guard's XDP program: the verdict pipeline.
//!
//! 1. malformed or truncated headers: counted, passed (dropped when configured);
//! 2. allow list: pass, bypassing everything below;
//! 3. deny list: drop;
//! 4. (bans and rate rules are later steps of this pipeline, between 3 and 5);
//! 5. otherwise pass.
//! Monitor mode turns every drop into a counted pass.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{BPF_F_NO_PREALLOC, xdp_action},
    macros::{map, xdp},
    maps::{Array, HashMap, PerCpuArray},
    programs::XdpContext,
};
use guard_common::{
    ListCode, Reason, RuntimeConfig, V6Key, Verdict,
    lists::{
        self, Bitmap512, MAX_V6_LENS, V4_DIR24_ENTRIES, V4_TBL8_ENTRIES, V6_PREFIX_ENTRIES,
        V6_TOP24_ENTRIES, flags,
    },
    stats::{STATS_LEN, stat_index},
};
use guard_ebpf::parse::{self, Parsed, Source};

#[map(name = "CONFIG")]
static CONFIG: Array<RuntimeConfig> = Array::with_max_entries(1, 0);

#[map(name = "STATS")]
static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STATS_LEN, 0);

#[map(name = "V4_DIR24")]
static V4_DIR24: Array<Bitmap512> = Array::with_max_entries(V4_DIR24_ENTRIES, 0);

#[map(name = "V4_TBL8")]
static V4_TBL8: HashMap<u32, Bitmap512> =
    HashMap::with_max_entries(V4_TBL8_ENTRIES, BPF_F_NO_PREALLOC);

#[map(name = "V6_TOP24")]
static V6_TOP24: Array<Bitmap512> = Array::with_max_entries(V6_TOP24_ENTRIES, 0);

#[map(name = "V6_PREFIX")]
static V6_PREFIX: HashMap<V6Key, u32> =
    HashMap::with_max_entries(V6_PREFIX_ENTRIES, BPF_F_NO_PREALLOC);

#[xdp]
pub fn guard(ctx: XdpContext) -> u32 {
    // The config element always exists (array map); a missing one would mean a broken
    // object, and the safe answer for a filter in front of production traffic is to pass.
    match CONFIG.get(0) {
        Some(cfg) => try_guard(&ctx, cfg),
        None => xdp_action::XDP_PASS,
    }
}

#[inline(always)]
fn try_guard(ctx: &XdpContext, cfg: &RuntimeConfig) -> u32 {
    let pkt = match parse::parse(ctx) {
        Parsed::NotIp => return count(Verdict::Pass, Reason::None),
        Parsed::Malformed if cfg.flags & flags::DROP_MALFORMED != 0 => {
            return drop(cfg, Reason::Malformed);
        }
        Parsed::Malformed => return count(Verdict::Pass, Reason::Malformed),
        Parsed::Ip(pkt) => pkt,
    };
    let code = match pkt.src {
        Source::V4(addr) => v4_code(addr),
        Source::V6(addr) => v6_code(&addr, cfg),
    };
    match code {
        ListCode::Allow => count(Verdict::Pass, Reason::Allow),
        ListCode::Deny => drop(cfg, Reason::Deny),
        // Steps 3b (bans) and 4 (rate rules) go here.
        ListCode::None | ListCode::Split => count(Verdict::Pass, Reason::None),
    }
}

/// A would-drop: dropped, or counted as `monitor` and passed in monitor mode.
#[inline(always)]
fn drop(cfg: &RuntimeConfig, reason: Reason) -> u32 {
    if cfg.flags & flags::MONITOR != 0 {
        count(Verdict::Monitor, reason)
    } else {
        count(Verdict::Drop, reason)
    }
}

#[inline(always)]
fn count(verdict: Verdict, reason: Reason) -> u32 {
    if let Some(n) = STATS.get_ptr_mut(stat_index(verdict, reason)) {
        // Per-CPU slot: no other writer, a plain add is exact.
        unsafe { *n += 1 };
    }
    match verdict {
        Verdict::Drop => xdp_action::XDP_DROP,
        Verdict::Pass | Verdict::Monitor => xdp_action::XDP_PASS,
    }
}

#[inline(always)]
fn v4_code(addr: u32) -> ListCode {
    let (elem, pos) = lists::v4_dir24_slot(addr);
    let Some(codes) = V4_DIR24.get(elem) else {
        return ListCode::None;
    };
    match codes.code(pos) {
        ListCode::Split => {
            let (key, host) = lists::v4_tbl8_slot(addr);
            // SAFETY: the value is only read, and a concurrent update replaces 2-bit codes
            // that are each either the old or the new answer.
            match unsafe { V4_TBL8.get(&key) } {
                Some(hosts) => hosts.code(host),
                None => ListCode::None,
            }
        }
        code => code,
    }
}

#[inline(always)]
fn v6_code(addr: &[u32; 4], cfg: &RuntimeConfig) -> ListCode {
    let (elem, bit) = lists::v6_top24_slot(u32::from_be(addr[0]));
    match V6_TOP24.get(elem) {
        Some(bits) if bits.bit(bit) => {}
        _ => return ListCode::None,
    }
    for i in 0..MAX_V6_LENS {
        if i as u32 >= cfg.v6_len_count {
            break;
        }
        let key = cfg.v6_lens[i].key(addr);
        // SAFETY: read-only use of a u32 value.
        if let Some(code) = unsafe { V6_PREFIX.get(&key) } {
            return ListCode::from_bits(*code as u64);
        }
    }
    ListCode::None
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

//! guard's XDP program: the verdict pipeline.
//!
//! 1. malformed or truncated headers: counted, passed (dropped when configured);
//! 2. allow list, then temporary allows: pass, bypassing everything below;
//! 3. deny list, then active bans (TTL checked here): drop;
//!    a segment of an established connection with a fleet server: pass (`fleet`);
//! 4. rate rules: every matching rule charges the source's bucket; an empty one drops;
//!    a source a rule with `ban_after` reports limited is checked for proof that it is
//!    real (a segment of a TCP connection this host established, `proof`);
//! 5. otherwise pass.
//! Monitor mode turns every drop into a counted pass.
//!
//! What the kernel's verifier spends on it is held far below its limit by one rule: a loop
//! whose body branches a lot runs that body as a global function (`rate::guard_rule`, one
//! call per rule), which the verifier checks once, on its own, instead of once per state
//! each iteration can reach. The other stages are inlined: their loops carry little state,
//! and on CPUs that protect returns (AMD's SRSO "safe RET") every call costs 6-10 ns.
#![no_std]
#![no_main]
// Atomic add on BPF: the target has no atomic read-modify-write methods.
#![allow(internal_features)]
#![feature(core_intrinsics)]

mod dynamic;
mod events;
mod fleet;
mod lists;
mod proof;
mod rate;

use aya_ebpf::{
    bindings::xdp_action,
    helpers::bpf_ktime_get_coarse_ns,
    macros::{map, xdp},
    maps::{Array, PerCpuArray},
    programs::XdpContext,
};
use guard_common::{
    ListCode, Reason, RuntimeConfig, Verdict,
    lists::flags,
    stats::{STATS_LEN, stat_index},
};
use guard_ebpf::parse::{self, Packet, Parsed};

use crate::{dynamic::Dynamic, rate::outcome};

#[map(name = "CONFIG")]
static CONFIG: Array<RuntimeConfig> = Array::with_max_entries(1, 0);

#[map(name = "STATS")]
static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STATS_LEN, 0);

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
        Parsed::Ip(pkt) => pkt,
        Parsed::NotIp => return count(Verdict::Pass, Reason::None),
        _ if cfg.flags & flags::DROP_MALFORMED != 0 => return drop(cfg, Reason::Malformed),
        _ => return count(Verdict::Pass, Reason::Malformed),
    };
    let listed = lists::code(&pkt.source(), cfg);
    if listed == ListCode::Allow {
        return count(Verdict::Pass, Reason::Allow);
    }
    let dynamic = if cfg.dyn_any == 0 {
        Dynamic::None
    } else {
        dynamic::lookup(&pkt.source(), cfg)
    };
    if dynamic == Dynamic::Allow {
        return count(Verdict::Pass, Reason::Allow);
    }
    if listed == ListCode::Deny {
        return drop_from(cfg, Reason::Deny, &pkt, 0);
    }
    if dynamic == Dynamic::Ban {
        return drop_from(cfg, Reason::Ban, &pkt, 0);
    }
    if cfg.flags & flags::FLEET_PEERS != 0
        && pkt.proto == guard_common::rules::PROTO_TCP
        && fleet::maybe_peer(&pkt)
        // SAFETY: the program's context, and a packet on this frame.
        && unsafe { fleet::guard_fleet_peer(ctx.ctx, &raw const pkt) } != 0
    {
        return count(Verdict::Pass, Reason::None);
    }
    let mut now = 0;
    let rated = rate::apply(&pkt, cfg, &mut now);
    if rated & outcome::REPORTED != 0 {
        if now == 0 {
            now = unsafe { bpf_ktime_get_coarse_ns() };
        }
        // SAFETY: the program's context, and a packet on this frame.
        unsafe { proof::guard_proof(ctx.ctx, &raw const pkt, now) };
    }
    match rated & outcome::MASK {
        outcome::PASS => count(Verdict::Pass, Reason::None),
        outcome::LIMITED => drop_from(cfg, Reason::Rate, &pkt, now),
        outcome::MONITORED => count(Verdict::Monitor, Reason::Rate),
        _ => count(Verdict::Pass, Reason::StaleRefill),
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

/// A would-drop with a known source: dropped ones are sampled for `/v1/top`. `now` is the
/// coarse clock when the caller already read it (0: not read); otherwise it is read only
/// for a drop.
#[inline(always)]
fn drop_from(cfg: &RuntimeConfig, reason: Reason, pkt: &Packet, now: u64) -> u32 {
    let action = drop(cfg, reason);
    if action == xdp_action::XDP_DROP {
        let now = if now == 0 {
            unsafe { bpf_ktime_get_coarse_ns() }
        } else {
            now
        };
        events::sample(&pkt.source(), reason as u8, now);
    }
    action
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

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

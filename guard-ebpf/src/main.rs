//! guard's XDP program: the verdict pipeline.
//!
//! 1. a frame whose source address cannot be read: counted `malformed`, passed (dropped
//!    when configured);
//! 2. allow list, then temporary allows: pass, bypassing everything below;
//! 3. deny list, then active bans (TTL checked here): drop;
//!    a frame cut short after its source address takes steps 2 and 3 too, then is dropped
//!    as `malformed` when configured or when a rule needs its transport header to judge it,
//!    else passed (the stack discards it) (`cut`); an IPv6 chain longer than the walk is
//!    dropped the same way, else goes on through the rules that need no transport header;
//!    a segment of an established connection with a fleet server: pass (`fleet`);
//! 4. rate rules: every matching rule charges the source's bucket; an empty one drops;
//!    a source a rule with `ban_after` reports limited is checked for proof that it is
//!    real (a segment of a TCP connection this host established, `proof`);
//!    a rule with an endpoint budget charges it too; an empty budget drops the packet
//!    (`overload`) unless its source is vouched for (3b) or verified (`known`);
//! 5. otherwise pass; an ACK segment on a host with budgets teaches `known` its source.
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

mod budget;
mod cut;
mod dynamic;
mod events;
mod fleet;
mod known;
mod lists;
mod proof;
mod rate;
mod shape;
mod walk;
mod words;

use aya_ebpf::{
    bindings::xdp_action,
    helpers::bpf_ktime_get_coarse_ns,
    macros::{map, xdp},
    maps::{Array, PerCpuArray},
    programs::XdpContext,
};
use guard_common::{
    ListCode, Reason, RuntimeConfig, Verdict,
    runtime::flags,
    stats::{STATS_LEN, stat_index},
};
use guard_ebpf::parse::{self, Packet, Parsed};

use crate::{dynamic::Dynamic, rate::outcome};

#[map]
pub(crate) static CONFIG: Array<RuntimeConfig> = Array::with_max_entries(1, 0);

#[map]
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
        Parsed::Ip(pkt) if pkt.truncated == parse::CUT => {
            // SAFETY: a packet on this frame.
            return unsafe { cut::guard_cut(&raw const pkt) };
        }
        Parsed::Ip(pkt) => pkt,
        Parsed::NotIp => return count(Verdict::Pass, Reason::None),
        _ if cfg.flags & flags::DROP_MALFORMED != 0 => return drop(cfg, Reason::Malformed),
        _ => return count(Verdict::Pass, Reason::Malformed),
    };
    let judged = judge_source(cfg, &pkt);
    if judged != JUDGE_ON && judged != JUDGE_ON_VOUCHED {
        return judged;
    }
    let vouched = judged == JUDGE_ON_VOUCHED;
    // A chain longer than the walk hides the transport header.
    if pkt.truncated != 0 && unjudgeable(cfg, &pkt) {
        return drop_from(cfg, Reason::Malformed, &pkt, 0);
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
    let rated = rate::apply(&pkt, cfg, &mut now, |now| {
        // SAFETY: the program's context and a packet on this frame.
        vouched || unsafe { known::guard_known(ctx.ctx, &raw const pkt, now) } != 0
    });
    if rated & outcome::REPORTED != 0 {
        if now == 0 {
            now = unsafe { bpf_ktime_get_coarse_ns() };
        }
        // SAFETY: the program's context, and a packet on this frame.
        unsafe { proof::guard_proof(ctx.ctx, &raw const pkt, now) };
    }
    match rated & outcome::MASK {
        outcome::PASS if pkt.truncated != 0 => count(Verdict::Pass, Reason::Malformed),
        outcome::PASS => {
            // SAFETY: as above.
            unsafe { known::guard_learn(ctx.ctx, &raw const pkt, now) };
            count(Verdict::Pass, Reason::None)
        }
        outcome::LIMITED => drop_from(cfg, Reason::Rate, &pkt, now),
        outcome::MONITORED => count(Verdict::Monitor, Reason::Rate),
        outcome::OVERLOAD => drop_from(cfg, Reason::Overload, &pkt, now),
        outcome::OVERLOAD_MONITORED => count(Verdict::Monitor, Reason::Overload),
        _ => count(Verdict::Pass, Reason::StaleRefill),
    }
}

/// `judge_source`: no list or verdict decides; on to the rules.
const JUDGE_ON: u32 = u32::MAX;
/// `judge_source`: on to the rules, and the source is vouched for.
const JUDGE_ON_VOUCHED: u32 = u32::MAX - 1;

/// Steps 2 and 3: the allow list and temporary allows pass, the deny list and bans drop;
/// `JUDGE_ON` (or `JUDGE_ON_VOUCHED`) when none applies. (A sentinel, not an `Option`: see `parse::Packet`.)
#[inline(always)]
fn judge_source(cfg: &RuntimeConfig, pkt: &Packet) -> u32 {
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
        return drop_from(cfg, Reason::Deny, pkt, 0);
    }
    if dynamic == Dynamic::Ban {
        return drop_from(cfg, Reason::Ban, pkt, 0);
    }
    if dynamic == Dynamic::Vouch {
        JUDGE_ON_VOUCHED
    } else {
        JUDGE_ON
    }
}

/// A truncated packet no rule can pass judgement on: malformed ones are dropped, or a rule
/// names ports or `tcp_syn_only` for its protocol (any, when the chain hid the protocol).
#[inline(always)]
fn unjudgeable(cfg: &RuntimeConfig, pkt: &Packet) -> bool {
    let needs = match pkt.proto {
        guard_common::rules::PROTO_TCP => flags::L4_RULES_TCP,
        guard_common::rules::PROTO_UDP => flags::L4_RULES_UDP,
        0 => flags::L4_RULES_TCP | flags::L4_RULES_UDP,
        _ => 0,
    };
    cfg.flags & (needs | flags::DROP_MALFORMED) != 0
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

//! Step 4c: sources that proved themselves real (layout in `guard_common::known`). A source
//! that completed a TCP handshake with this host is remembered in `KNOWN` for `[known]
//! verified_for`; a rule's empty endpoint budget lets it through (and vouched sources).
//!
//! Only a segment of a connection past its handshake (`proof::established`, a socket
//! lookup) writes a slot: a forged SYN, ACK or RST finds no connection, so a forged flood
//! cannot enter the table. The lookup runs for an ACK segment only when its source's slot
//! is not fresh (more than half of `verified_for` left), so a connection's stream costs one
//! lookup per half period, not one per segment.
//!
//! A global function, verified once: it holds a SipHash and the socket lookup.

use aya_ebpf::{
    bindings::{BPF_F_MMAPABLE, xdp_md},
    helpers::bpf_ktime_get_coarse_ns,
    macros::map,
    maps::Array,
    programs::XdpContext,
};
use guard_common::{
    known::{self, fresh, holds, place, slot, until},
    rules::PROTO_TCP,
};
use guard_ebpf::parse::{Packet, TCP_FLAG_ACK, TCP_FLAG_RST, TCP_FLAG_SYN};

/// Sized by the daemon at load (`[known] slots`); mapped by it to count the live slots.
#[map]
static KNOWN: Array<u64> = Array::with_max_entries(1, BPF_F_MMAPABLE);

/// 1 when `pkt`'s source is verified at `now`: its slot holds it, or this very packet is a
/// segment of an established connection (then the slot is written).
///
/// # Safety
/// `ctx` is the program's context, `pkt` null or valid (the verifier checks each caller).
#[unsafe(no_mangle)]
#[inline(never)]
pub unsafe extern "C" fn guard_known(ctx: *mut xdp_md, pkt: *const Packet, now: u64) -> u32 {
    // SAFETY: as the caller promises.
    let (Some(pkt), Some(cfg)) = (unsafe { pkt.as_ref() }, crate::CONFIG.get(0)) else {
        return 0;
    };
    let key = known::key(&cfg.key);
    let (index, fingerprint) = place(known::hash(&key, &pkt.src, pkt.family), cfg.known_mask);
    let Some(s) = KNOWN.get_ptr_mut(index) else {
        return 0;
    };
    // SAFETY: a map value, 8-byte aligned; other CPUs store whole words.
    let value = unsafe { core::ptr::read_volatile(s) };
    let segment = pkt.proto == PROTO_TCP
        && pkt.l4_present != 0
        && pkt.tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_RST | TCP_FLAG_ACK) == TCP_FLAG_ACK;
    if !segment || fresh(value, fingerprint, now, cfg.verified_for) {
        return holds(value, fingerprint, now) as u32;
    }
    if !crate::proof::established(&XdpContext::new(ctx), pkt) {
        return holds(value, fingerprint, now) as u32;
    }
    // SAFETY: as above; a whole-word store (a racing proof of another source in the same
    // slot replaces this one, as a later proof would).
    unsafe { core::ptr::write_volatile(s, slot(fingerprint, until(now, cfg.verified_for))) };
    1
}

/// A passed packet teaches the table its source when it is an ACK segment on a host with a
/// budget (`now`: the coarse clock, or 0 when not read yet). Called on every pass, with no
/// branch in the caller: a branch there is walked once per way of reaching it.
///
/// # Safety
/// As for `guard_known`.
#[unsafe(no_mangle)]
#[inline(never)]
pub unsafe extern "C" fn guard_learn(ctx: *mut xdp_md, pkt: *const Packet, now: u64) -> u32 {
    // SAFETY: as the caller promises.
    let (Some(p), Some(cfg)) = (unsafe { pkt.as_ref() }, crate::CONFIG.get(0)) else {
        return 0;
    };
    if cfg.flags & guard_common::runtime::flags::KNOWN == 0
        || p.proto != PROTO_TCP
        || p.tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_RST | TCP_FLAG_ACK) != TCP_FLAG_ACK
    {
        return 0;
    }
    let now = if now == 0 {
        unsafe { bpf_ktime_get_coarse_ns() }
    } else {
        now
    };
    // SAFETY: as the caller promises.
    unsafe { guard_known(ctx, pkt, now) }
}

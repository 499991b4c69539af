//! Step 4b: is a limited source real? Only for a packet a rule with `ban_after` just
//! reported (at most once per bucket per second): when it is a segment of a TCP connection
//! this host established, its source received what the host sent it, so nobody forged it.
//! The daemon bans automatically only on that evidence (unless the rule opts out).
//!
//! The evidence is the socket: `bpf_skc_lookup_tcp` finds the connection of the segment's
//! 4-tuple in the receiving interface's network namespace. A listener or a half-open
//! connection is no evidence (anyone can send a SYN or a stray ACK to a listening port);
//! a connection past its handshake is.
//!
//! A global function (verified once, on its own): inlined, its branches multiplied the
//! states of the whole program past half a million instructions.

use aya_ebpf::{
    bindings::{BPF_F_CURRENT_NETNS, bpf_sock_tuple, xdp_md},
    helpers::{bpf_sk_release, bpf_skc_lookup_tcp},
    programs::XdpContext,
};
use guard_common::rules::PROTO_TCP;
use guard_ebpf::parse::{Packet, TCP_FLAG_ACK, TCP_FLAG_RST, TCP_FLAG_SYN};

/// TCP states of a connection past its handshake (include/net/tcp_states.h): established,
/// FIN_WAIT1/2, TIME_WAIT, CLOSE_WAIT, LAST_ACK, CLOSING.
const PROVEN_STATES: u32 =
    (1 << 1) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 8) | (1 << 9) | (1 << 11);

/// Reports `pkt`'s source as proven when the packet belongs to a connection this host has.
///
/// # Safety
/// `ctx` is the program's context and `pkt` null or valid (the verifier checks each caller).
#[unsafe(no_mangle)]
#[inline(never)]
pub unsafe extern "C" fn guard_proof(ctx: *mut xdp_md, pkt: *const Packet, now: u64) -> u32 {
    // SAFETY: as the caller promises.
    let Some(pkt) = (unsafe { pkt.as_ref() }) else {
        return 0;
    };
    check(&XdpContext::new(ctx), pkt, now);
    0
}

#[inline(always)]
fn check(ctx: &XdpContext, pkt: &Packet, now: u64) {
    if established(ctx, pkt) {
        crate::events::report_proof(pkt.family, &pkt.src, now);
    }
}

/// Whether `pkt` is a segment (ACK set, no SYN, no RST: SYNs and resets prove nothing) of a
/// TCP connection this host has past its handshake. Every stage asks through here, so the
/// lookup's branches are verified once.
#[inline(always)]
pub fn established(ctx: &XdpContext, pkt: &Packet) -> bool {
    // SAFETY: the program's context and a packet the caller holds.
    unsafe { guard_established(ctx.ctx, pkt) != 0 }
}

/// 1 when `pkt` is a segment of a connection past its handshake (`established`).
///
/// # Safety
/// `ctx` is the program's context and `pkt` null or valid (the verifier checks each caller).
#[unsafe(no_mangle)]
#[inline(never)]
pub unsafe extern "C" fn guard_established(ctx: *mut xdp_md, pkt: *const Packet) -> u32 {
    // SAFETY: as the caller promises.
    let Some(pkt) = (unsafe { pkt.as_ref() }) else {
        return 0;
    };
    lookup(&XdpContext::new(ctx), pkt) as u32
}

#[inline(always)]
fn lookup(ctx: &XdpContext, pkt: &Packet) -> bool {
    if pkt.proto != PROTO_TCP
        || pkt.l4_present == 0
        || pkt.tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_RST | TCP_FLAG_ACK) != TCP_FLAG_ACK
    {
        return false;
    }
    // SAFETY: the tuple is plain data, all zero to start.
    let mut tuple: bpf_sock_tuple = unsafe { core::mem::zeroed() };
    let Some(size) = fill(ctx, pkt, &mut tuple) else {
        return false;
    };
    // SAFETY: the helper reads `size` bytes of the tuple; a non-null socket is released
    // below on every path.
    let sk = unsafe {
        bpf_skc_lookup_tcp(
            ctx.ctx.cast(),
            &raw mut tuple,
            size,
            BPF_F_CURRENT_NETNS as u64,
            0,
        )
    };
    if sk.is_null() {
        return false;
    }
    // SAFETY: a socket the lookup returned; `state` is readable on any socket it returns.
    let state = unsafe { (*sk).state };
    unsafe { bpf_sk_release(sk.cast()) };
    state < 32 && PROVEN_STATES & (1 << state) != 0
}

/// The source port of `pkt` (a TCP or UDP header), host order.
#[inline(always)]
pub fn source_port(ctx: &XdpContext, pkt: &Packet) -> Option<u16> {
    at::<u16>(ctx, (pkt.l4_off & 0x3fff) as usize).map(u16::from_be)
}

/// The lookup's tuple from the packet (addresses and ports as on the wire); its size.
#[inline(always)]
fn fill(ctx: &XdpContext, pkt: &Packet, tuple: &mut bpf_sock_tuple) -> Option<u32> {
    // Masks that keep every offset the parser makes (VLAN tags: 22 at most; six IPv6
    // extension headers: under 13 KiB) and tell the verifier the packet pointer stays
    // within its 64 KiB bound.
    let l3 = (pkt.l3_off & 0xff) as usize;
    let l4 = (pkt.l4_off & 0x3fff) as usize;
    // Source and destination ports, as they are in the header.
    let ports = at::<[u16; 2]>(ctx, l4)?;
    if pkt.family == 6 {
        // Source and destination address: 32 bytes from offset 8.
        let addrs = at::<[[u32; 4]; 2]>(ctx, l3 + 8)?;
        // SAFETY: writing the union's IPv6 view, the one the size below names.
        let t = unsafe { &mut tuple.__bindgen_anon_1.ipv6 };
        t.saddr = addrs[0];
        t.daddr = addrs[1];
        t.sport = ports[0];
        t.dport = ports[1];
        Some(size_of_val(t) as u32)
    } else {
        let addrs = at::<[u32; 2]>(ctx, l3 + 12)?;
        // SAFETY: as above, the IPv4 view.
        let t = unsafe { &mut tuple.__bindgen_anon_1.ipv4 };
        t.saddr = addrs[0];
        t.daddr = addrs[1];
        t.sport = ports[0];
        t.dport = ports[1];
        Some(size_of_val(t) as u32)
    }
}

/// A bounds-checked copy of a `T` at `off` in the packet.
#[inline(always)]
fn at<T: Copy>(ctx: &XdpContext, off: usize) -> Option<T> {
    let p = ctx.data() + off;
    if p + size_of::<T>() > ctx.data_end() {
        return None;
    }
    // SAFETY: in bounds, checked above; packet data has no alignment.
    Some(unsafe { (p as *const T).read_unaligned() })
}

//! Step 3b: the fleet's own connections skip the rules. A TCP segment from one of the
//! fleet's NATS servers (`FLEET_PEERS`: address and port) on a connection this host
//! established is passed uncharged: a catch-up of 100,000 records arrives at tens of
//! thousands of packets a second from one source. Lists and bans still apply (the servers
//! are protected from bans), and a forged segment must hit the connection's exact 4-tuple.
//!
//! A global function, called only when the source sets a bit of `FLEET_HINT` (one array
//! read on the pass path of TCP packets, on hosts with a fleet).

use aya_ebpf::{
    bindings::xdp_md,
    macros::map,
    maps::{Array, HashMap},
    programs::XdpContext,
};
use guard_common::fleet::{FleetPeer, MAX_FLEET_PEERS, hint_bit};
use guard_ebpf::parse::Packet;

#[map]
static FLEET_PEERS: HashMap<FleetPeer, u32> = HashMap::with_max_entries(MAX_FLEET_PEERS, 0);

#[map]
static FLEET_HINT: Array<u64> = Array::with_max_entries(1, 0);

/// Whether the source may be a fleet server (no false negatives).
#[inline(always)]
pub fn maybe_peer(pkt: &Packet) -> bool {
    FLEET_HINT
        .get(0)
        .is_some_and(|hint| hint & hint_bit(&pkt.src) != 0)
}

/// 1 when `pkt` is a segment of an established connection with a fleet server.
///
/// # Safety
/// `ctx` is the program's context and `pkt` null or valid (the verifier checks each caller).
#[unsafe(no_mangle)]
#[inline(never)]
pub unsafe extern "C" fn guard_fleet_peer(ctx: *mut xdp_md, pkt: *const Packet) -> u32 {
    // SAFETY: as the caller promises.
    let Some(pkt) = (unsafe { pkt.as_ref() }) else {
        return 0;
    };
    let ctx = XdpContext::new(ctx);
    let Some(port) = crate::proof::source_port(&ctx, pkt) else {
        return 0;
    };
    let peer = FleetPeer {
        addr: pkt.src,
        port,
        family: pkt.family,
        _pad: 0,
    };
    // SAFETY: a map lookup; the value is not kept.
    if unsafe { FLEET_PEERS.get(&peer) }.is_none() {
        return 0;
    }
    crate::proof::established(&ctx, pkt) as u32
}

//! The fleet's own connections: a TCP segment from one of the fleet's NATS servers on a
//! connection this host established is not charged to the rules (a catch-up of 100,000
//! records would otherwise be throttled like a flood). The daemon writes the servers into
//! `FLEET_PEERS` and a 64-bit hint of their addresses into `FLEET_HINT`, so that the
//! program calls its lookup only for packets whose source may be one of them.

/// Servers at most (a cluster lists a handful).
pub const MAX_FLEET_PEERS: u32 = 64;

/// Key of `FLEET_PEERS`: a server's address as `Packet::src` holds it (IPv4 in host order
/// in the first word, IPv6 as raw network-order words) and its port (host order).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FleetPeer {
    pub addr: [u32; 4],
    pub port: u16,
    /// 4 or 6.
    pub family: u8,
    pub _pad: u8,
}

/// The bit of `FLEET_HINT` a source address sets: a multiplicative hash of its words to
/// 6 bits, the same on both sides.
#[inline(always)]
pub fn hint_bit(addr: &[u32; 4]) -> u64 {
    let folded = addr[0] ^ addr[1] ^ addr[2] ^ addr[3];
    1u64 << (folded.wrapping_mul(0x9e37_79b1) >> 26)
}

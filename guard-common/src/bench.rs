//! Layout shared by the bench-only programs (crate `guard-ebpf-bench`) and the benchmarks.
//! Nothing in guardd uses these.

/// The frame `gen_tx` sends: Ethernet + IPv6 + UDP + 2 bytes of payload, 64 bytes.
pub const GEN_FRAME_LEN: usize = 64;
/// Offsets in that frame.
pub const GEN_SRC_OFF: usize = 14 + 8;
pub const GEN_DPORT_OFF: usize = 14 + 40 + 2;
pub const GEN_CSUM_OFF: usize = 14 + 40 + 6;

/// Sources: `2001:db8:100::<low 32 bits>`; the attacker is `2001:db8:200::1`.
/// Sources outside the receiver's on-link /64 and no default route: the receiver's
/// ICMPv6 errors fail at the route lookup instead of flooding neighbour discovery.
pub const GEN_SOURCE_PREFIX: [u16; 6] = [0x2001, 0xdb8, 0x100, 0, 0, 0];
pub const GEN_ATTACKER: [u16; 8] = [0x2001, 0xdb8, 0x200, 0, 0, 0, 0, 1];
/// Destination ports: 9000 for the crowd, 9001 for the attacker (counted apart).
pub const GEN_CROWD_PORT: u16 = 9000;
pub const GEN_ATTACKER_PORT: u16 = 9001;

/// Indexes in the `GEN` array (u32 values).
pub mod gen_cfg {
    /// Bits of the source that vary (0: one source; at most 32).
    pub const BITS: u32 = 0;
    /// 1: random sources (bpf_get_prandom_u32); 0: a full cycle through 2^BITS sources.
    pub const RANDOM: u32 = 1;
    /// Every N-th frame comes from the attacker (0: never; 1: always).
    pub const ATTACKER_EVERY: u32 = 2;
    pub const LEN: u32 = 3;
}

/// An odd step: adding it modulo 2^k visits every k-bit value once per cycle, in an
/// order no cache can predict.
pub const VARY_STEP: u32 = 0x9E37_79B1;

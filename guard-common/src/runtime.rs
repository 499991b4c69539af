//! `CONFIG`'s one element: what the daemon changes at run time (flags, rule count, refill
//! timing, the SipHash key, the lengths the program probes), laid out so that the first cache
//! line holds what every packet reads.

use crate::lists::{MAX_V6_LENS, V6Len};

/// Flag bits of [`RuntimeConfig::flags`].
pub mod flags {
    /// Global monitor mode: count would-drops, drop nothing.
    pub const MONITOR: u32 = 1 << 0;
    /// Drop packets with malformed or truncated headers instead of passing them.
    pub const DROP_MALFORMED: u32 = 1 << 1;
    /// `FLEET_PEERS` holds servers: their connections' segments skip the rules.
    pub const FLEET_PEERS: u32 = 1 << 2;
    /// A rule (not in monitor mode) names ports or `tcp_syn_only` and covers TCP: a TCP
    /// packet whose transport header cannot be read (a tiny first fragment, a cut segment)
    /// is dropped as `malformed`, since that rule cannot tell whether it matches; so is a
    /// packet whose IPv6 header chain is longer than the walk, whatever it carries.
    pub const L4_RULES_TCP: u32 = 1 << 3;
    /// The same for UDP.
    pub const L4_RULES_UDP: u32 = 1 << 4;
    /// A rule has an endpoint budget: sources that complete a TCP handshake are learned into
    /// `KNOWN` (`crate::known`).
    pub const KNOWN: u32 = 1 << 5;
}

/// The single element of the `CONFIG` array: settings the daemon can change at run time.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuntimeConfig {
    pub flags: u32,
    /// How many entries of `v6_lens` are in use.
    pub v6_len_count: u32,
    /// How many entries of `RULES` are in use.
    pub rule_count: u32,
    pub _reserved: u32,
    /// Rate rules fail open once the refill heartbeat is older than this.
    pub stale_after_ns: u64,
    /// The kernel accrues at most this long since a bucket's last refill: the heartbeat's
    /// staleness bound (capped at `tokens::MAX_ACCRUAL_NS`), so a restart, whose refill
    /// resumes late, costs no rate.
    pub accrue_max_ns: u64,
    /// Refill slices per period: a bucket's last refill is `HEARTBEAT[2 + its slice]`.
    pub refill_ticks: u32,
    /// `dyn_lens.v4_count | dyn_lens.v6_count`, here in the first cache line, which every
    /// packet reads anyway: a packet with no ban or temporary allow to look up reads no other.
    pub dyn_any: u32,
    /// SipHash key of the bucket index: random, kept across restarts, never exported.
    pub key: [u64; 2],
    /// IPv6 prefix lengths longer than /64 present in `V6_PREFIX`, longest first.
    pub v6_lens: [V6Len; MAX_V6_LENS],
    /// Prefix lengths of the bans and temporary allows, longest first.
    pub dyn_lens: crate::dynamic::DynLens,
    /// `KNOWN`'s slots - 1 (a power of two minus one).
    pub known_mask: u32,
    /// How long a source stays verified after its last proof (`[known] verified_for`), in
    /// `known::TIME_SHIFT` units.
    pub verified_for: u32,
}

impl RuntimeConfig {
    pub const DEFAULT: RuntimeConfig = RuntimeConfig {
        flags: 0,
        v6_len_count: 0,
        rule_count: 0,
        _reserved: 0,
        stale_after_ns: 0,
        accrue_max_ns: 0,
        refill_ticks: 0,
        dyn_any: 0,
        key: [0; 2],
        v6_lens: [V6Len::EMPTY; MAX_V6_LENS],
        dyn_lens: crate::dynamic::DynLens::EMPTY,
        known_mask: 0,
        verified_for: 0,
    };
}

//! Sampled drop events: the kernel reports some dropped packets' sources through the
//! `DROP_EVENTS` ring buffer, at most [`EVENTS_PER_WINDOW`] per CPU per window, so a flood
//! can never flood the daemon. They feed `/v1/top` and the per-minute summary.

pub const EVENT_WINDOW_NS: u64 = 100_000_000;
pub const EVENTS_PER_WINDOW: u64 = 256;
pub const DROP_EVENTS_BYTES: u32 = 256 * 1024;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropEvent {
    /// The source as the packet holds it (`addr_of`): raw network-order words, IPv4 in the
    /// first. Words, not bytes: the kernel stores four words instead of sixteen bytes.
    pub addr: [u32; 4],
    /// 4 or 6.
    pub family: u8,
    /// A `Reason` as u8.
    pub reason: u8,
    pub _reserved: [u8; 6],
}

/// Per-CPU sampling state (`EVENT_BUDGET`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EventBudget {
    pub window_start_ns: u64,
    pub emitted: u64,
}

/// `LIMIT_REPORTS`: room for a second of reports from ~30,000 limited buckets before the
/// daemon drains it.
pub const LIMIT_REPORTS_BYTES: u32 = 1024 * 1024;

/// Nanoseconds per report window: a bucket of a rule with `ban_after` reports its first
/// limited packet of each second (`LIMIT_SEEN` holds the last second reported, plus one).
pub const LIMIT_WINDOW_NS: u64 = 1_000_000_000;

/// A rule with `ban_after` found this source's bucket empty, first time this second. Not
/// sampled: one per limited bucket per second, so a source limited for a whole second
/// is reported in it (unless the ring is full, which the daemon counts as lost). A `PROOF`
/// report follows one whose packet proved its source real.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LimitReport {
    /// The source (not masked), as in [`DropEvent::addr`].
    pub addr: [u32; 4],
    /// The kernel's coarse CLOCK_MONOTONIC when the packet came.
    pub at_ns: u64,
    /// `at_ns / LIMIT_WINDOW_NS`.
    pub second: u32,
    /// 4 or 6.
    pub family: u8,
    /// The rule's index in `RULES` (a `PROOF` report: none, 0).
    pub rule: u8,
    /// `LIMITED` or `PROOF`.
    pub kind: u8,
    pub _reserved: u8,
}

/// What a [`LimitReport`] says.
pub mod report_kind {
    /// A rule with `ban_after` found the source's bucket empty.
    pub const LIMITED: u8 = 0;
    /// The packet just reported limited is a segment of a TCP connection this host has
    /// established (a socket lookup found it): its source address is real, not forged.
    pub const PROOF: u8 = 1;
}

/// The address of an event's `addr` and `family` (4 or 6; None otherwise).
pub fn addr_of(family: u8, words: &[u32; 4]) -> Option<core::net::IpAddr> {
    let b = |i: usize| words[i].to_ne_bytes();
    match family {
        4 => Some(core::net::IpAddr::from(b(0))),
        6 => {
            let mut o = [0u8; 16];
            for i in 0..4 {
                o[i * 4..i * 4 + 4].copy_from_slice(&b(i));
            }
            Some(core::net::IpAddr::from(o))
        }
        _ => None,
    }
}

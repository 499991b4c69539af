//! Sampled drop events: the kernel reports some dropped packets' sources through the
//! `DROP_EVENTS` ring buffer, at most [`EVENTS_PER_WINDOW`] per CPU per window, so a flood
//! can never flood the daemon. They feed `/v1/top` and the per-minute summary.

pub const EVENT_WINDOW_NS: u64 = 100_000_000;
pub const EVENTS_PER_WINDOW: u64 = 256;
pub const DROP_EVENTS_BYTES: u32 = 256 * 1024;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropEvent {
    /// IPv4 addresses in the first 4 bytes.
    pub addr: [u8; 16],
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

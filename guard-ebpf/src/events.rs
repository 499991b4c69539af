//! Sampled drop events (layout in `guard_common::events`): only on the drop path, and at
//! most a fixed number per CPU per window, so the clock read and the ring-buffer write
//! never touch passing traffic and a flood cannot flood userspace. The window uses the
//! coarse clock (Linux 5.11+).

use aya_ebpf::{
    macros::map,
    maps::{Array, PerCpuArray, RingBuf},
};
use guard_common::events::{
    DROP_EVENTS_BYTES, DropEvent, EVENT_WINDOW_NS, EVENTS_PER_WINDOW, EventBudget,
    LIMIT_REPORTS_BYTES, LIMIT_WINDOW_NS, LimitReport, report_kind,
};
use guard_ebpf::parse::Source;

#[map]
static DROP_EVENTS: RingBuf = RingBuf::with_byte_size(DROP_EVENTS_BYTES, 0);

#[map]
static EVENT_BUDGET: PerCpuArray<EventBudget> = PerCpuArray::with_max_entries(1, 0);

#[map]
static LIMIT_REPORTS: RingBuf = RingBuf::with_byte_size(LIMIT_REPORTS_BYTES, 0);

/// Per bucket (sized like `BUCKETS` at load): the last second a limited packet of the
/// bucket was reported, plus one (0: never).
#[map]
static LIMIT_SEEN: Array<u32> = Array::with_max_entries(1, 0);

/// A rule with `ban_after` found `bucket` empty for this source: reported once per bucket
/// per second, whatever the rate, so the daemon sees every second a source stays limited.
/// Racing CPUs may both report a second: the daemon counts seconds, not reports. True
/// when it reported.
#[inline(always)]
pub fn report_limited(
    bucket: u32,
    rule: u32,
    src_v4: u32,
    src_v6: &[u32; 4],
    is_v6: bool,
    now: u64,
) -> bool {
    let Some(seen) = LIMIT_SEEN.get_ptr_mut(bucket) else {
        return false;
    };
    let second = (now / LIMIT_WINDOW_NS) as u32;
    // SAFETY: a map value; a plain u32 store (a lost race only repeats a report).
    unsafe {
        if *seen == second.wrapping_add(1) {
            return false;
        }
        *seen = second.wrapping_add(1);
    }
    let mut r = LimitReport {
        at_ns: now,
        second,
        rule: rule as u8,
        ..LimitReport::default()
    };
    if is_v6 {
        r.family = 6;
        r.addr = *src_v6;
    } else {
        r.family = 4;
        r.addr[0] = src_v4.to_be();
    }
    LIMIT_REPORTS.output::<LimitReport>(&r, 0).is_ok()
}

/// The packet just reported limited came on a connection this host established
/// (`proof`): its source is real.
#[inline(always)]
pub fn report_proof(family: u8, src: &[u32; 4], now: u64) {
    let mut r = LimitReport {
        at_ns: now,
        second: (now / LIMIT_WINDOW_NS) as u32,
        kind: report_kind::PROOF,
        ..LimitReport::default()
    };
    // From the packet's own words, not a `Source`: the enum's payload is a stack copy that
    // only the IPv6 arm writes, and LLVM tests the family twice around it; Linux 6.1.0-50's
    // verifier cannot tell the two tests agree and refuses the read of the unwritten copy.
    if family == 6 {
        r.family = 6;
        r.addr = *src;
    } else {
        r.family = 4;
        r.addr[0] = src[0].to_be();
    }
    let _ = LIMIT_REPORTS.output::<LimitReport>(&r, 0);
}

/// Samples a dropped packet's source for `/v1/top`: `now` is the coarse clock.
#[inline(always)]
pub fn sample(src: &Source, reason: u8, now: u64) {
    let Some(budget) = EVENT_BUDGET.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's own slot.
    let budget = unsafe { &mut *budget };
    // `now`: the coarse clock, plenty for a 100 ms window; the drop path reads it once.
    if now.wrapping_sub(budget.window_start_ns) > EVENT_WINDOW_NS {
        budget.window_start_ns = now;
        budget.emitted = 0;
    }
    if budget.emitted >= EVENTS_PER_WINDOW {
        return;
    }
    budget.emitted += 1;
    let mut e = DropEvent {
        reason,
        ..DropEvent::default()
    };
    match src {
        Source::V4(a) => {
            e.family = 4;
            e.addr[0] = a.to_be();
        }
        Source::V6(w) => {
            e.family = 6;
            e.addr = *w;
        }
    }
    let _ = DROP_EVENTS.output::<DropEvent>(&e, 0);
}

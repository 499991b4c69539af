//! Sampled drop events (layout in `guard_common::events`): only on the drop path, and at
//! most a fixed number per CPU per window, so the clock read and the ring-buffer write
//! never touch passing traffic and a flood cannot flood userspace. The window uses the
//! coarse clock (Linux 5.11+).

use aya_ebpf::{
    macros::map,
    maps::{PerCpuArray, RingBuf},
};
use guard_common::{
    Reason,
    events::{DROP_EVENTS_BYTES, DropEvent, EVENT_WINDOW_NS, EVENTS_PER_WINDOW, EventBudget},
};
use guard_ebpf::parse::Source;

#[map(name = "DROP_EVENTS")]
static DROP_EVENTS: RingBuf = RingBuf::with_byte_size(DROP_EVENTS_BYTES, 0);

#[map(name = "EVENT_BUDGET")]
static EVENT_BUDGET: PerCpuArray<EventBudget> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
pub fn sample(src: &Source, reason: Reason, now: u64) {
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
        reason: reason as u8,
        ..DropEvent::default()
    };
    match src {
        Source::V4(a) => {
            e.family = 4;
            e.addr[..4].copy_from_slice(&a.to_be_bytes());
        }
        Source::V6(w) => {
            e.family = 6;
            for (i, word) in w.iter().enumerate() {
                e.addr[i * 4..i * 4 + 4].copy_from_slice(&word.to_ne_bytes());
            }
        }
    }
    let _ = DROP_EVENTS.output::<DropEvent>(&e, 0);
}

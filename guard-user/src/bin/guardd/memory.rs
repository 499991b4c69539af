//! Gives freed heap back to the kernel after the daemon's bursts of allocation: start-up
//! (parsing the object file, building list tables), reloads and bulk API calls. glibc keeps
//! freed memory for reuse, so without this RSS would stay at the high-water mark of the
//! largest request ever served.

use std::sync::atomic::{AtomicU8, Ordering};

/// Requests at least this large trim afterwards; smaller ones are not worth the call.
pub const BULK: usize = 1000;

/// Ticks that still trim. Two: a tick may come while the call's answer is still being
/// written to the socket (its buffers are freed after that trim); the next one gets them.
/// One trim too early left 100 MiB of a 100,000-ban call resident.
static PENDING: AtomicU8 = AtomicU8::new(0);
const TICKS: u8 = 2;

/// A bulk request was served: trim at the next ticks, once its answer is sent and freed.
pub fn after_bulk() {
    PENDING.store(TICKS, Ordering::Relaxed);
}

/// Called every second by the daemon's housekeeping tick.
pub fn trim_if_pending() {
    let left = PENDING.load(Ordering::Relaxed);
    if left > 0 {
        // A bulk call in between set it to TICKS again: no harm, one more trim.
        let _ = PENDING.compare_exchange(left, left - 1, Ordering::Relaxed, Ordering::Relaxed);
        release_freed();
    }
}

pub fn release_freed() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

//! Gives freed heap back to the kernel after the daemon's bursts of allocation: start-up
//! (parsing the object file, building list tables), reloads and bulk API calls. glibc keeps
//! freed memory for reuse, so without this RSS would stay at the high-water mark of the
//! largest request ever served.

use std::sync::atomic::{AtomicBool, Ordering};

/// Requests at least this large trim afterwards; smaller ones are not worth the call.
pub const BULK: usize = 1000;

static PENDING: AtomicBool = AtomicBool::new(false);

/// A bulk request was served: trim at the next tick, once its response is sent and freed.
pub fn after_bulk() {
    PENDING.store(true, Ordering::Relaxed);
}

/// Called every second by the daemon's housekeeping tick.
pub fn trim_if_pending() {
    if PENDING.swap(false, Ordering::Relaxed) {
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

//! Words shared between CPUs (and with the daemon, through an mmap): how they are read and
//! added to.

use core::intrinsics::AtomicOrdering;

/// A load of a word another CPU (or the daemon, through an mmap) writes: an aligned 8-byte
/// BPF load is single-copy atomic, and LLVM has no BPF lowering for atomic loads at the
/// generic CPU level, so a volatile read.
#[inline(always)]
pub fn load(p: *mut u64) -> u64 {
    // SAFETY: `p` points into a map value, 8-byte aligned.
    unsafe { core::ptr::read_volatile(p) }
}

/// An atomic add (BPF_ATOMIC_ADD): the BPF target has no `fetch_add`, so the intrinsic.
#[inline(always)]
pub fn add(p: *mut u64, n: u64) {
    // SAFETY: `p` points into a map value; every writer of this word adds atomically.
    unsafe { core::intrinsics::atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(p, n) };
}

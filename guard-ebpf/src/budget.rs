//! Step 4 (with the rate rules): a rule's endpoint budget, one more bucket in `BUCKETS`
//! that every packet the rule matches is charged to, whatever its source. The daemon
//! refills it on every tick (no accrual here).
//!
//! Every CPU takes the budget a chunk at a time into its own pool (`BUDGET_POOL`): the
//! shared budget's line is written once per chunk, not on every packet. Two CPUs that find
//! the same tokens may both take them, overdrawing by a chunk at most;
//! `guard_common::rules::budget_chunk` bounds both that and what the pools hold to 1/32 s of
//! the rate.

use aya_ebpf::{macros::map, maps::PerCpuArray};
use guard_common::{
    rules::MAX_RULES,
    tokens::{Bucket, TOKEN_SCALE, available},
};

use crate::words::{add, load};

/// Per rule, per CPU: budget tokens this CPU took from the shared budget and has not used.
#[map]
static BUDGET_POOL: PerCpuArray<u64> = PerCpuArray::with_max_entries(MAX_RULES as u32, 0);

/// A token of rule `rule`'s budget `b`: from this CPU's pool, else a chunk (or the last
/// token) from the shared budget. False when the budget is empty.
#[inline(always)]
pub fn take(rule: u32, b: *mut Bucket, chunk: u32) -> bool {
    let Some(pool) = BUDGET_POOL.get_ptr_mut(rule) else {
        return false;
    };
    // SAFETY: this CPU's slot of a per-CPU array; nothing else writes it.
    unsafe {
        if *pool != 0 {
            *pool -= 1;
            return true;
        }
    }
    // SAFETY: `b` points into `BUCKETS`.
    let (spent, credit) = unsafe { (&raw mut (*b).spent, &raw mut (*b).credit) };
    let avail = available(load(credit), load(spent));
    let chunk = chunk as u64;
    let take = if avail >= (chunk * TOKEN_SCALE) as i64 {
        chunk
    } else if avail >= TOKEN_SCALE as i64 {
        1
    } else {
        return false;
    };
    add(spent, take * TOKEN_SCALE);
    // SAFETY: as above.
    unsafe { *pool += take - 1 };
    true
}

/// Gives a token taken for a packet dropped after all back to this CPU's pool.
#[inline(always)]
pub fn give_back(rule: u32) {
    if let Some(pool) = BUDGET_POOL.get_ptr_mut(rule) {
        // SAFETY: this CPU's slot.
        unsafe { *pool += 1 };
    }
}

//! Step 4 (with the rate rules): every packet a rule matches goes into the rule's sketch of
//! distinct sources for the window in force (`guard_common::shape`), and its packet count.
//! The daemon owns the window word and the engaged bits; the kernel only reads them.

use aya_ebpf::{
    macros::map,
    maps::{Array, PerCpuArray},
};
use guard_common::shape::{
    MAX_RANK, SLOTS, STATE_ENGAGED, STATE_WINDOW, STATE_WORDS, Sketch, WINDOW_OFF, register_of,
    slot,
};

/// Per rule, two windows of registers, shared by all CPUs (written only when raised).
#[map]
static SHAPE_SKETCH: Array<Sketch> = Array::with_max_entries(SLOTS, 0);

/// Per rule, two windows of matched packets, per CPU.
#[map]
static SHAPE_PACKETS: PerCpuArray<u64> = PerCpuArray::with_max_entries(SLOTS, 0);

/// The window in force (0, 1, or `WINDOW_OFF`) and the engaged budgets' bits.
#[map]
static SHAPE_STATE: Array<u64> = Array::with_max_entries(STATE_WORDS, 0);

/// Counts a packet rule `rule` matched, from a source whose bucket hash is `hash`.
#[inline(always)]
pub fn note(rule: u32, hash: u64) {
    let window = match SHAPE_STATE.get(STATE_WINDOW) {
        Some(&w) if w < WINDOW_OFF => w as u32,
        _ => return,
    };
    let at = slot(rule, window);
    if let Some(c) = SHAPE_PACKETS.get_ptr_mut(at) {
        // SAFETY: this CPU's counter.
        unsafe { *c += 1 };
    }
    let (index, rank) = register_of(hash);
    if let Some(s) = SHAPE_SKETCH.get_ptr_mut(at) {
        // SAFETY: `index` < REGISTERS (the hash's top bits). Two CPUs raising one register
        // at once may leave the lower rank: an estimate a hair low, never a wrong window.
        unsafe {
            let r = &raw mut (*s).registers[index];
            if *r < rank && rank <= MAX_RANK {
                *r = rank;
            }
        }
    }
}

/// Whether rule `rule`'s endpoint budget is engaged (its shape is `distributed`).
#[inline(always)]
pub fn engaged(rule: u32) -> bool {
    SHAPE_STATE
        .get(STATE_ENGAGED)
        .is_some_and(|&bits| bits >> (rule & 63) & 1 != 0)
}

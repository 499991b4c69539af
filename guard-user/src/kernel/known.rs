//! `KNOWN`, the table of verified sources (`guard_common::known`), mapped into the daemon's
//! memory (BPF_F_MMAPABLE) to count its live slots without a syscall per slot. Only the
//! kernel writes it.

use aya::maps::MapData;
use guard_common::known::TIME_SHIFT;

use super::buckets::MappedWords;

pub struct KnownTable(MappedWords, u32);

impl KnownTable {
    pub fn new(data: MapData, slots: u32) -> std::io::Result<KnownTable> {
        Ok(KnownTable(MappedWords::new(data, slots as usize)?, slots))
    }

    pub fn slots(&self) -> u32 {
        self.1
    }

    /// Slots whose proof has not lapsed at `now_ns` (CLOCK_MONOTONIC): the verified sources,
    /// less those a newer proof replaced in the same slot.
    pub fn live(&self, now_ns: u64) -> u64 {
        let now = now_ns >> TIME_SHIFT;
        self.0
            .iter()
            .filter(|&v| v as u32 as u64 > now && v >> 32 != 0)
            .count() as u64
    }
}

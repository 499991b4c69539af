//! `KNOWN`, the table of verified sources (`guard_common::known`), mapped into the daemon's
//! memory (BPF_F_MMAPABLE) to count its live slots without a syscall per slot. Only the
//! kernel writes it.

use std::sync::Mutex;

use aya::maps::MapData;
use guard_common::known::TIME_SHIFT;

use super::buckets::MappedWords;

pub struct KnownTable {
    words: MappedWords,
    slots: u32,
    /// The last count and when it was made: a scrape reads the whole table at most once a
    /// second (8 MiB by default).
    counted: Mutex<(u64, u64)>,
}

/// How long a count of the live slots is reused.
const COUNT_EVERY_NS: u64 = 1_000_000_000;

impl KnownTable {
    pub fn new(data: MapData, slots: u32) -> std::io::Result<KnownTable> {
        Ok(KnownTable {
            words: MappedWords::new(data, slots as usize)?,
            slots,
            counted: Mutex::new((0, 0)),
        })
    }

    /// Writes the slot of `addr` as the kernel does for a proof at `now_ns`: what benchmarks
    /// and tests use in place of a real connection. guardd never calls it.
    pub fn stand_in_proof(
        &self,
        bucket_key: &[u64; 2],
        addr: std::net::IpAddr,
        now_ns: u64,
        verified_for: u32,
    ) {
        let key = guard_common::known::key(bucket_key);
        let (i, fp) =
            guard_common::known::place(guard_common::known::hash_addr(&key, addr), self.slots - 1);
        let value = guard_common::known::slot(fp, guard_common::known::until(now_ns, verified_for));
        self.words.store(i as usize, value);
    }

    /// Slots whose proof has not lapsed at `now_ns` (CLOCK_MONOTONIC): the verified sources,
    /// less those a newer proof replaced in the same slot. Counted at most once a second.
    pub fn live(&self, now_ns: u64) -> u64 {
        let mut counted = self.counted.lock().expect("known count");
        if counted.0 == 0 || now_ns.saturating_sub(counted.0) >= COUNT_EVERY_NS {
            let now = now_ns >> TIME_SHIFT;
            let n = self
                .words
                .iter()
                .filter(|&v| v as u32 as u64 > now && v >> 32 != 0)
                .count() as u64;
            *counted = (now_ns, n);
        }
        counted.1
    }
}

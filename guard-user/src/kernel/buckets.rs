//! The `BUCKETS` and `HEARTBEAT` maps mapped into the daemon's memory (BPF_F_MMAPABLE).
//!
//! The refill writes `credit` words with plain atomic stores: no syscall per bucket, and
//! never a write to the `spent` words the kernel adds to.

use std::{
    fs::File,
    os::fd::AsFd,
    sync::atomic::{AtomicU64, Ordering},
};

use aya::maps::MapData;
use guard_common::tokens::{Bucket, HEARTBEAT_WORDS};
use memmap2::{MmapMut, MmapOptions};

/// A mmapped array of u64 words.
pub struct MappedWords {
    // Field order: the mapping goes before the map it maps.
    map: MmapMut,
    _data: MapData,
    words: usize,
}

impl MappedWords {
    /// Maps `words` u64 words of an mmapable array map.
    pub fn new(data: MapData, words: usize) -> std::io::Result<MappedWords> {
        let fd = data.fd().as_fd().try_clone_to_owned()?;
        // SAFETY: the kernel keeps the map alive while mapped; every access below goes
        // through atomics, as the kernel side does.
        let map = unsafe { MmapOptions::new().len(words * 8).map_mut(&File::from(fd))? };
        Ok(MappedWords {
            map,
            _data: data,
            words,
        })
    }

    fn words(&self) -> &[AtomicU64] {
        // SAFETY: the mapping is `words * 8` bytes, page-aligned, and lives as long as self.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().cast::<AtomicU64>(), self.words) }
    }

    /// Stores word `i`.
    pub fn store(&self, i: usize, value: u64) {
        self.words()[i].store(value, Ordering::Relaxed);
    }

    /// Every word, read once each.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.words().iter().map(|w| w.load(Ordering::Relaxed))
    }
}

/// `BUCKETS`: [`Bucket`]s, two words each.
pub struct Buckets(MappedWords);

/// u64 words per [`Bucket`].
const WORDS: usize = size_of::<Bucket>() / 8;

impl Buckets {
    pub fn new(data: MapData, buckets: u32) -> std::io::Result<Buckets> {
        Ok(Buckets(MappedWords::new(data, buckets as usize * WORDS)?))
    }

    pub fn len(&self) -> u32 {
        (self.0.words / WORDS) as u32
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn bucket(&self, i: u32) -> &[AtomicU64] {
        let at = i as usize * WORDS;
        &self.0.words()[at..at + WORDS]
    }

    pub fn get(&self, i: u32) -> Bucket {
        let w = self.bucket(i);
        Bucket {
            credit: w[0].load(Ordering::Relaxed),
            spent: w[1].load(Ordering::Relaxed),
        }
    }

    /// Only the daemon writes `credit`; after the slice's refill stamp (`Refill::tick`).
    pub fn set_credit(&self, i: u32, credit: u64) {
        self.bucket(i)[0].store(credit, Ordering::Release);
    }

    /// Adds to `spent`, as the kernel does (penalties and tests).
    pub fn add_spent(&self, i: u32, units: u64) {
        self.bucket(i)[1].fetch_add(units, Ordering::Relaxed);
    }
}

/// `HEARTBEAT`: CLOCK_MONOTONIC ns of the last refill tick.
pub struct Heartbeat(MappedWords);

impl Heartbeat {
    pub fn new(data: MapData) -> std::io::Result<Heartbeat> {
        Ok(Heartbeat(MappedWords::new(data, HEARTBEAT_WORDS as usize)?))
    }

    /// Records that `slice` (of `ticks`) was refilled at `at_ns`.
    /// The kernel's accrual for the slice's buckets counts from it, so it is written before
    /// their credits.
    pub fn save_slice(&self, ticks: u32, slice: u32, at_ns: u64) {
        let w = self.0.words();
        w[1].store(ticks as u64, Ordering::Relaxed);
        w[2 + slice as usize].store(at_ns, Ordering::Release);
    }

    /// When each slice was last refilled (0: not known), if the previous daemon used `ticks`
    /// slices.
    pub fn slices(&self, ticks: u32) -> Option<Vec<u64>> {
        let w = self.0.words();
        if w[1].load(Ordering::Relaxed) != ticks as u64 {
            return None;
        }
        Some(
            w[2..2 + ticks as usize]
                .iter()
                .map(|t| t.load(Ordering::Relaxed))
                .collect(),
        )
    }

    pub fn beat(&self, now_ns: u64) {
        self.0.words()[0].store(now_ns, Ordering::Relaxed);
    }

    pub fn last(&self) -> u64 {
        self.0.words()[0].load(Ordering::Relaxed)
    }
}

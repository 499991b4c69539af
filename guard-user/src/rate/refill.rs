//! The batched refill: every bucket is topped up once per `refill_period`, the work spread
//! over `refill_batches_per_second` ticks, as a hashed timer wheel would (tick k of a
//! period refills slice k of every rule). Each tick also stamps the heartbeat the kernel
//! checks before failing open.
//!
//! Increments are computed from the time since the slice's last refill, as differences of
//! cumulative earnings (`tokens::earned_between`), so late ticks lose nothing and rates
//! below one token per period stay exact.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use guard_common::tokens::{earned_between, refilled, slice_bounds};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

use crate::{
    kernel::buckets::{Buckets, Heartbeat},
    model::clock::monotonic_ns,
    rate::rules::RuleSet,
};

/// What the refill needs of one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleRefill {
    pub base: u32,
    pub count: u32,
    pub rate_units: u64,
    pub burst_units: u64,
    /// The rule's endpoint budget: its bucket and refill, refilled on every tick.
    pub budget: Option<(u32, crate::model::rules::BudgetRefill)>,
}

pub fn refill_params(rules: &RuleSet) -> Vec<RuleRefill> {
    rules
        .rules
        .iter()
        .map(|r| RuleRefill {
            base: r.spec.bucket_base,
            count: r.buckets(),
            rate_units: r.rate_units,
            burst_units: r.burst_units,
            budget: r.budget.map(|b| (r.spec.budget_bucket, b)),
        })
        .collect()
}

/// Ticks per refill period: at least one.
pub fn ticks_per_period(period: Duration, batches_per_second: u32) -> u32 {
    ((period.as_secs_f64() * batches_per_second as f64).round() as u32).max(1)
}

/// The refill work itself, separate from its timer so it can be tested and measured.
pub struct Refill {
    rules: Vec<RuleRefill>,
    ticks: u32,
    /// Per slice: CLOCK_MONOTONIC ns of its last refill.
    last: Vec<u64>,
    next_slice: u32,
    /// CLOCK_MONOTONIC ns of the budgets' last refill (every tick refills them all).
    budgets_last: u64,
}

impl Refill {
    /// A refill whose slices were last refilled at `last` (one time per tick of a period).
    /// The rotation resumes at the slice refilled longest ago, so restarts never starve the
    /// slices late in the rotation.
    pub fn new(rules: Vec<RuleRefill>, last: Vec<u64>) -> Refill {
        let last = if last.is_empty() { vec![0] } else { last };
        let next_slice = last
            .iter()
            .enumerate()
            .min_by_key(|(_, t)| **t)
            .map_or(0, |(i, _)| i as u32);
        // The budgets were refilled on the last tick of the previous daemon, at the latest.
        let budgets_last = last.iter().copied().max().unwrap_or(0);
        Refill {
            rules,
            ticks: last.len() as u32,
            last,
            next_slice,
            budgets_last,
        }
    }

    /// A refill starting now: nothing is owed to any bucket yet.
    pub fn starting_at(rules: Vec<RuleRefill>, ticks: u32, now_ns: u64) -> Refill {
        Refill::new(rules, vec![now_ns; ticks.max(1) as usize])
    }

    pub fn ticks(&self) -> u32 {
        self.ticks
    }

    pub fn set_rules(&mut self, rules: Vec<RuleRefill>) {
        self.rules = rules;
    }

    /// Fills every bucket to its burst at `now_ns` (a new bucket array starts full), and
    /// records that as every slice's refill.
    pub fn fill_all(&mut self, buckets: &Buckets, heartbeat: &Heartbeat, now_ns: u64) {
        for slice in 0..self.ticks {
            heartbeat.save_slice(self.ticks, slice, now_ns);
            self.last[slice as usize] = now_ns;
        }
        self.budgets_last = now_ns;
        for r in &self.rules {
            let budget = r.budget.map(|(i, b)| (i, b.burst_units));
            for (i, burst) in (r.base..r.base + r.count)
                .map(|i| (i, r.burst_units))
                .chain(budget)
            {
                let b = buckets.get(i);
                if let Some(c) = refilled(b.credit, b.spent, burst, burst) {
                    buckets.set_credit(i, c);
                }
            }
        }
    }

    /// Refills every endpoint budget for the time since the last tick.
    fn refill_budgets(&mut self, buckets: &Buckets, now_ns: u64) {
        let from = std::mem::replace(&mut self.budgets_last, now_ns).min(now_ns);
        for (i, budget) in self.rules.iter().filter_map(|r| r.budget) {
            let inc = earned_between(budget.rate_units, from, now_ns);
            let b = buckets.get(i);
            if let Some(c) = refilled(b.credit, b.spent, inc, budget.burst_units) {
                buckets.set_credit(i, c);
            }
        }
    }

    /// Writes every slice's last refill time to `heartbeat`, where the kernel reads it.
    pub fn save_slices(&self, heartbeat: &Heartbeat) {
        for (slice, t) in self.last.iter().enumerate() {
            heartbeat.save_slice(self.ticks, slice as u32, *t);
        }
    }

    /// Refills the next slice; returns the slice and how many buckets it touched. The slice's
    /// time goes to `heartbeat` first: the kernel adds what a bucket earned since then, so a
    /// credit must never be seen with the time before it.
    pub fn tick(&mut self, buckets: &Buckets, heartbeat: &Heartbeat, now_ns: u64) -> (u32, u64) {
        let slice = self.next_slice;
        self.next_slice = (slice + 1) % self.ticks;
        let now = now_ns;
        let from = std::mem::replace(&mut self.last[slice as usize], now).min(now);
        heartbeat.save_slice(self.ticks, slice, now);
        let mut touched = 0u64;
        for r in &self.rules {
            let inc = earned_between(r.rate_units, from, now);
            // The buckets the kernel maps to this slice (`tokens::slice_of`).
            let (lo, hi) = slice_bounds(r.count, self.ticks, slice);
            let (lo, hi) = (r.base + lo, r.base + hi);
            for i in lo..hi {
                let b = buckets.get(i);
                if let Some(c) = refilled(b.credit, b.spent, inc, r.burst_units) {
                    buckets.set_credit(i, c);
                }
            }
            touched += (hi - lo) as u64;
        }
        self.refill_budgets(buckets, now);
        (slice, touched)
    }
}

/// Counters the API and metrics read.
#[derive(Debug)]
pub struct RefillStats {
    pub ticks: AtomicU64,
    pub last_duration_ns: AtomicU64,
    pub max_duration_ns: AtomicU64,
    pub busy_ns: AtomicU64,
    pub buckets_touched: AtomicU64,
    /// `guard_refill_duration_seconds`: one observation per tick.
    pub duration: Histogram,
}

impl Default for RefillStats {
    fn default() -> Self {
        RefillStats {
            ticks: AtomicU64::default(),
            last_duration_ns: AtomicU64::default(),
            max_duration_ns: AtomicU64::default(),
            busy_ns: AtomicU64::default(),
            buckets_touched: AtomicU64::default(),
            // 10 us .. ~0.3 s
            duration: Histogram::new(exponential_buckets(1e-5, 2.0, 16)),
        }
    }
}

/// The refill thread: stops (and stops the heartbeat) when the handle is dropped.
pub struct Refiller {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub stats: Arc<RefillStats>,
    work: Arc<Mutex<Refill>>,
}

impl Refiller {
    pub fn start(
        work: Refill,
        buckets: Arc<Buckets>,
        heartbeat: Arc<Heartbeat>,
        period: Duration,
    ) -> std::io::Result<Refiller> {
        let interval = period / work.ticks;
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(RefillStats::default());
        let work = Arc::new(Mutex::new(work));
        let (s, st, w) = (stop.clone(), stats.clone(), work.clone());
        let thread = std::thread::Builder::new()
            .name("guard-refill".into())
            .spawn(move || {
                let mut next = std::time::Instant::now();
                while !s.load(Ordering::Relaxed) {
                    let start = monotonic_ns();
                    let (_, touched) = w
                        .lock()
                        .expect("refill lock")
                        .tick(&buckets, &heartbeat, start);
                    heartbeat.beat(start);
                    let took = monotonic_ns() - start;
                    st.ticks.fetch_add(1, Ordering::Relaxed);
                    st.last_duration_ns.store(took, Ordering::Relaxed);
                    st.max_duration_ns.fetch_max(took, Ordering::Relaxed);
                    st.busy_ns.fetch_add(took, Ordering::Relaxed);
                    st.buckets_touched.fetch_add(touched, Ordering::Relaxed);
                    st.duration.observe(took as f64 / 1e9);
                    next += interval;
                    let now = std::time::Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    } else {
                        next = now; // fell behind: do not burst to catch up, increments do
                    }
                }
            })?;
        Ok(Refiller {
            stop,
            thread: Some(thread),
            stats,
            work,
        })
    }

    /// New rates and bursts (same layout) from a reload.
    pub fn set_rules(&self, rules: Vec<RuleRefill>) {
        self.work.lock().expect("refill lock").set_rules(rules);
    }
}

impl Drop for Refiller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_counts() {
        assert_eq!(ticks_per_period(Duration::from_secs(1), 32), 32);
        assert_eq!(ticks_per_period(Duration::from_millis(100), 32), 3);
        assert_eq!(ticks_per_period(Duration::from_millis(100), 1), 1);
        assert_eq!(ticks_per_period(Duration::from_secs(10), 32), 320);
    }
}

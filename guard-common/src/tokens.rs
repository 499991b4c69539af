//! Fixed-point token buckets shared by the kernel (which spends) and the daemon (which
//! refills).
//!
//! A bucket is two monotonically growing u64 counters in [`TOKEN_SCALE`] units: `credit`,
//! raised only by the daemon, and `spent`, added to only by the kernel. The tokens available
//! are `credit - spent`, computed with wrapping arithmetic, so neither counter ever needs a
//! reset and the two writers never write the same word.
//!
//! The daemon credits a bucket once per refill period, a slice of every rule per tick, and
//! stamps the slice's refill time in `HEARTBEAT` first. Between two refills the kernel adds
//! what the rate has earned since that stamp ([`accrued`]) without
//! writing it, so a rule gives its full rate even when `burst < rate x refill_period`. What
//! a bucket earned while it stayed full is burned (added to `spent`) when the next packet
//! is charged ([`charge`]). A source flooding from a full bucket gets `burst + rate x T`
//! packets over T seconds; any source at most `burst + rate x (T + refill_period)` (a bucket
//! partly spent earlier in the period keeps what it earns since) while the daemon refills.

/// Units per token: rates down to 0.001/s keep three significant digits per 100 ms refill.
pub const TOKEN_SCALE: u64 = 1 << 20;

/// Refill ticks per period at most (10 s x 1000 ticks/s, the config's bounds).
pub const MAX_TICKS: u32 = 10_000;
/// `HEARTBEAT` words: [0] the last tick (CLOCK_MONOTONIC ns, the only word the kernel
/// reads), [1] ticks per period, [2 + k] when slice k was last refilled. The per-slice times
/// let a restarted daemon resume the refill exactly where the previous one stopped.
pub const HEARTBEAT_WORDS: u32 = 2 + MAX_TICKS;

/// The longest refill period the config accepts.
pub const MAX_REFILL_PERIOD_NS: u64 = 10_000_000_000;

/// The longest the kernel accrues for since a bucket's last refill, which bounds its
/// fixed-point arithmetic: an hour (it stops at `refill_stale_after` anyway, when the rules
/// fail open).
pub const MAX_ACCRUAL_NS: u64 = 3_600_000_000_000;

/// One bucket in the `BUCKETS` array: 16 bytes, four to a cache line.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bucket {
    /// Raised only by the daemon.
    pub credit: u64,
    /// Added to only by the kernel (and penalties).
    pub spent: u64,
}

/// The refill slice of the bucket at `offset` in a rule of `2^bucket_shift` buckets, when a
/// refill period has `ticks` slices: `floor(offset x ticks / buckets)`, a multiply and a
/// shift in the kernel. The slice's refill time is `HEARTBEAT[2 + slice]`.
#[inline(always)]
pub const fn slice_of(offset: u32, ticks: u32, bucket_shift: u32) -> u32 {
    ((offset as u64 * ticks as u64) >> (bucket_shift & 31)) as u32
}

/// The buckets (offsets `lo..hi` in the rule) of slice `k` in a rule of `count` buckets:
/// exactly those `slice_of` maps to `k`.
pub const fn slice_bounds(count: u32, ticks: u32, k: u32) -> (u32, u32) {
    (
        slice_start(count, ticks, k),
        slice_start(count, ticks, k + 1),
    )
}

const fn slice_start(count: u32, ticks: u32, k: u32) -> u32 {
    (count as u64 * k as u64).div_ceil(ticks as u64) as u32
}

/// Tokens available (in units), negative when a penalty left the bucket in debt.
#[inline(always)]
pub const fn available(credit: u64, spent: u64) -> i64 {
    credit.wrapping_sub(spent) as i64
}

/// Whether a bucket holds at least one whole token.
#[inline(always)]
pub const fn has_token(credit: u64, spent: u64) -> bool {
    available(credit, spent) >= TOKEN_SCALE as i64
}

/// The new `credit` after adding `inc` units, capped so that at most `burst` units are
/// available; `None` when nothing changes. Credit never goes down.
#[inline]
pub const fn refilled(credit: u64, spent: u64, inc: u64, burst: u64) -> Option<u64> {
    let avail = available(credit, spent);
    if avail >= burst as i64 || inc == 0 {
        return None;
    }
    let room = (burst as i64 - avail) as u64;
    let add = if inc < room { inc } else { room };
    Some(credit.wrapping_add(add))
}

/// Units earned at `rate_units_per_sec` over `elapsed_ns`.
#[inline]
pub const fn earned(rate_units_per_sec: u64, elapsed_ns: u64) -> u64 {
    ((rate_units_per_sec as u128 * elapsed_ns as u128) / 1_000_000_000) as u64
}

/// Units earned between two instants (ns since a fixed origin). Differences of cumulative
/// earnings never drift: truncating each increment alone would lose a unit per refill.
#[inline]
pub const fn earned_between(rate_units_per_sec: u64, from_ns: u64, to_ns: u64) -> u64 {
    earned(rate_units_per_sec, to_ns) - earned(rate_units_per_sec, from_ns)
}

/// The accrual multiplier of a rate: units per ns as a fixed-point number with `shift`
/// fraction bits, the most that keep `MAX_ACCRUAL_NS x mul` within 63 bits. Returns
/// `(mul, shift)`.
pub const fn accrual(rate_units_per_sec: u64) -> (u64, u32) {
    let mut shift = 40u32;
    loop {
        let mul = ((rate_units_per_sec as u128) << shift) / 1_000_000_000;
        if shift == 0 || mul * (MAX_ACCRUAL_NS as u128) < (1u128 << 63) {
            return (mul as u64, shift);
        }
        shift -= 1;
    }
}

/// Units earned over `elapsed_ns` (at most `MAX_ACCRUAL_NS`) at the rate whose
/// [`accrual`] is `(mul, shift)`.
#[inline(always)]
pub const fn accrued(mul: u64, shift: u32, elapsed_ns: u64) -> u64 {
    elapsed_ns.wrapping_mul(mul) >> (shift & 63)
}

/// What one packet costs a bucket that holds `available` units and has earned `accrued`
/// more since its last refill; `None` when the two make less than one token (the packet is
/// limited). A bucket that still holds its whole burst has been full since that refill, so
/// all it earned since, and anything above the burst, is burned with the token, as a
/// classic bucket loses what it earns while full; one below its burst keeps its earnings.
#[inline(always)]
pub const fn charge(available: i64, accrued: u64, burst: u64) -> Option<u64> {
    if available >= burst as i64 {
        return Some(TOKEN_SCALE + (available - burst as i64) as u64 + accrued);
    }
    if available.saturating_add(accrued as i64) < TOKEN_SCALE as i64 {
        return None;
    }
    Some(TOKEN_SCALE)
}

/// Whether a bucket can take a packet without its accrual, so without reading the clock:
/// at least a token and below its burst (nothing to burn).
#[inline(always)]
pub const fn takes_without_clock(available: i64, burst: u64) -> bool {
    available >= TOKEN_SCALE as i64 && available < burst as i64
}

/// A rate in tokens per second as units per second.
pub fn rate_units(tokens_per_sec: f64) -> u64 {
    // Rates are positive: adding a half and truncating rounds (no_std has no f64::round).
    (tokens_per_sec * TOKEN_SCALE as f64 + 0.5) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = TOKEN_SCALE;

    #[test]
    fn take_until_empty() {
        let (credit, mut spent) = (5 * T, 0);
        let mut taken = 0;
        while has_token(credit, spent) {
            spent += T;
            taken += 1;
        }
        assert_eq!(taken, 5);
        assert_eq!(available(credit, spent), 0);
    }

    #[test]
    fn refill_caps_at_burst() {
        // Empty bucket, burst 10, a refill worth 4 tokens: 4 available.
        let c = refilled(0, 0, 4 * T, 10 * T).unwrap();
        assert_eq!(available(c, 0), 4 * T as i64);
        // A refill worth 100 tokens fills only to the burst.
        let c = refilled(c, 0, 100 * T, 10 * T).unwrap();
        assert_eq!(available(c, 0), 10 * T as i64);
        // Full: nothing to write.
        assert_eq!(refilled(c, 0, T, 10 * T), None);
        // Spending makes room again.
        let c2 = refilled(c, 3 * T, 100 * T, 10 * T).unwrap();
        assert_eq!(available(c2, 3 * T), 10 * T as i64);
        assert!(c2 > c, "credit only rises");
    }

    #[test]
    fn fractional_rates_accumulate() {
        // 0.5 tokens/s refilled every 100 ms: one token every 2 s.
        let rate = rate_units(0.5);
        let (mut credit, spent) = (0u64, 0u64);
        let mut seconds_to_token = None;
        for step in 1..=40u64 {
            let inc = earned_between(rate, (step - 1) * 100_000_000, step * 100_000_000);
            credit = refilled(credit, spent, inc, 10 * T).unwrap_or(credit);
            if seconds_to_token.is_none() && has_token(credit, spent) {
                seconds_to_token = Some(step as f64 / 10.0);
            }
        }
        assert_eq!(seconds_to_token, Some(2.0));
        assert_eq!(available(credit, spent), 2 * T as i64);
        // The smallest rate the config accepts still earns something per 100 ms.
        assert!(earned(rate_units(0.001), 100_000_000) > 100);
    }

    #[test]
    fn debt_is_repaid_before_tokens_return() {
        // A penalty of 5 tokens on a full bucket of 2: 3 tokens of debt.
        let (credit, spent) = (2 * T, 5 * T);
        assert_eq!(available(credit, spent), -3 * T as i64);
        assert!(!has_token(credit, spent));
        let c = refilled(credit, spent, 3 * T, 10 * T).unwrap();
        assert!(!has_token(c, spent), "debt repaid, still nothing available");
        let c = refilled(c, spent, T, 10 * T).unwrap();
        assert!(has_token(c, spent));
    }

    #[test]
    fn counters_wrap() {
        // Both counters near u64::MAX: arithmetic is modular, answers unchanged.
        let spent = u64::MAX - T / 2;
        let credit = spent.wrapping_add(3 * T);
        assert_eq!(available(credit, spent), 3 * T as i64);
        let c = refilled(credit, spent, 10 * T, 5 * T).unwrap();
        assert_eq!(available(c, spent), 5 * T as i64);
        let spent = spent.wrapping_add(5 * T);
        assert!(!has_token(c, spent));
    }

    /// A bucket charged by packets at the given times (ns), refilled by the daemon every
    /// `period`: how many packets pass. Mirrors what the kernel and the refill do.
    fn admitted(rate: f64, burst: u64, period: u64, packets: impl Iterator<Item = u64>) -> u64 {
        let r = rate_units(rate);
        let (mul, shift) = accrual(r);
        let burst = burst * T;
        let (mut credit, mut spent, mut at) = (burst, 0u64, 0u64);
        let mut passed = 0;
        for t in packets {
            while at + period <= t {
                let next = at + period;
                if let Some(c) = refilled(credit, spent, earned_between(r, at, next), burst) {
                    credit = c;
                }
                at = next;
            }
            let avail = available(credit, spent);
            let cost = if takes_without_clock(avail, burst) {
                Some(T)
            } else {
                charge(avail, accrued(mul, shift, t - at), burst)
            };
            if let Some(c) = cost {
                spent += c;
                passed += 1;
            }
        }
        passed
    }

    #[test]
    fn floods_get_burst_plus_rate_whatever_the_period() {
        const S: u64 = 1_000_000_000;
        // (rate, burst): the rules of the rate tests, at refill periods of 100 ms and 1 s.
        for (rate, burst) in [
            (100.0f64, 50u64),
            (10.0, 1),
            (0.5, 1),
            (5000.0, 100),
            (1000.0, 2000),
        ] {
            for period in [S / 10, S] {
                // A flood at 10x the rate (at least 100/s), starting at every phase of the
                // refill, for 5 s.
                let gap = (S as f64 / (rate * 10.0).max(100.0)) as u64;
                for phase in [0, period / 3, period - 1] {
                    let n = 5 * S / gap;
                    let got = admitted(rate, burst, period, (0..n).map(|k| phase + 7 + k * gap));
                    let want = burst as f64 + rate * 5.0;
                    assert!(
                        (got as f64 - want).abs() <= (want * 0.02).max(1.0),
                        "rate {rate} burst {burst} period {period}: {got} passed, {want} due"
                    );
                }
            }
        }
    }

    #[test]
    fn a_full_bucket_loses_what_it_earns() {
        const S: u64 = 1_000_000_000;
        // 100/s burst 50, period 1 s: idle for 0.9 s after a refill, then a burst of 1,000
        // packets within a millisecond: only the burst passes, not burst + 90.
        let got = admitted(100.0, 50, S, (0..1000).map(|k| S + 900_000_000 + k * 1000));
        assert_eq!(got, 50);
    }

    #[test]
    fn slices_partition_the_buckets_as_the_kernel_finds_them() {
        for (shift, ticks) in [
            (4u32, 1u32),
            (4, 3),
            (4, 32),
            (10, 7),
            (17, 32),
            (4, 10_000),
        ] {
            let count = 1u32 << shift;
            let mut next = 0;
            for k in 0..ticks {
                let (lo, hi) = slice_bounds(count, ticks, k);
                assert_eq!(lo, next, "slices are contiguous");
                for j in lo..hi {
                    assert_eq!(
                        slice_of(j, ticks, shift),
                        k,
                        "bucket {j} of {count}, {ticks} ticks"
                    );
                }
                next = hi;
            }
            assert_eq!(next, count, "every bucket is in a slice");
        }
    }

    #[test]
    fn accrual_is_exact_over_the_longest_absence() {
        for rate in [0.001, 0.5, 100.0, 12_345.678, 10_000_000.0] {
            let r = rate_units(rate);
            let (mul, shift) = accrual(r);
            let got = accrued(mul, shift, MAX_ACCRUAL_NS);
            let want = earned(r, MAX_ACCRUAL_NS);
            assert!(
                got <= want && want - got <= want / 10_000 + 1,
                "rate {rate}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn largest_config_values_do_not_overflow() {
        // rate 10M/s, burst 100M, refill period 10 s (the config's bounds).
        let rate = rate_units(10_000_000.0);
        let burst = 100_000_000 * T;
        let inc = earned(rate, 10_000_000_000);
        assert_eq!(inc, 100_000_000 * T);
        let c = refilled(0, 0, inc, burst).unwrap();
        assert_eq!(available(c, 0), burst as i64);
        // Even a 60 s refill at the top rate fits the arithmetic.
        assert_eq!(earned(rate, 60_000_000_000), 600_000_000 * T);
        assert!((600_000_000 * T) < i64::MAX as u64);
    }
}

//! Fixed-point token buckets shared by the kernel (which spends) and the daemon (which
//! refills).
//!
//! A bucket is two monotonically growing u64 counters in [`TOKEN_SCALE`] units: `credit`,
//! raised only by the daemon, and `spent`, added to only by the kernel. The tokens available
//! are `credit - spent`, computed with wrapping arithmetic, so neither counter ever needs a
//! reset and the two writers never write the same word.

/// Units per token: rates down to 0.001/s keep three significant digits per 100 ms refill.
pub const TOKEN_SCALE: u64 = 1 << 20;

/// Refill ticks per period at most (10 s x 1000 ticks/s, the config's bounds).
pub const MAX_TICKS: u32 = 10_000;
/// `HEARTBEAT` words: [0] the last tick (CLOCK_MONOTONIC ns, the only word the kernel
/// reads), [1] ticks per period, [2 + k] when slice k was last refilled. The per-slice times
/// let a restarted daemon resume the refill exactly where the previous one stopped.
pub const HEARTBEAT_WORDS: u32 = 2 + MAX_TICKS;

/// One bucket in the `BUCKETS` array.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bucket {
    pub credit: u64,
    pub spent: u64,
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

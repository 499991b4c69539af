//! Penalties: the application charges tokens to a source's bucket ("it sent junk: 50
//! tokens"), bounded so no bucket is ever more than a minute of its rule's refill in debt
//! (a source that stops sending is back within that minute).

use guard_common::tokens::{TOKEN_SCALE, available};

/// How deep in debt a penalty may take a bucket: this many seconds of its refill.
pub const MAX_DEBT_SECS: u64 = 60;

/// The token units a penalty of `tokens` charges to a bucket of `credit` and `spent` in a
/// rule earning `rate_units` per second.
pub fn charge(credit: u64, spent: u64, rate_units: u64, tokens: u64) -> u64 {
    let floor = -((rate_units as i128 * MAX_DEBT_SECS as i128).min(i64::MAX as i128));
    let room = (available(credit, spent) as i128 - floor).max(0) as u64;
    tokens.saturating_mul(TOKEN_SCALE).min(room)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = TOKEN_SCALE;

    #[test]
    fn a_charge_stops_at_a_minute_of_debt() {
        // 10 tokens/s, 80 tokens in the bucket: 80 + 600 of debt at most.
        assert_eq!(charge(80 * S, 0, 10 * S, 5_000), 680 * S);
        assert_eq!(charge(80 * S, 0, 10 * S, 50), 50 * S);
    }

    #[test]
    fn a_bucket_deep_in_debt_takes_nothing_more() {
        assert_eq!(charge(0, 700 * S, 10 * S, 1), 0);
        assert_eq!(charge(0, 600 * S, 10 * S, 1), 0);
        assert_eq!(charge(0, 599 * S, 10 * S, 5), S);
    }

    #[test]
    fn huge_charges_saturate() {
        assert_eq!(charge(80 * S, 0, 10 * S, u64::MAX), 680 * S);
        assert_eq!(charge(0, 0, u64::MAX, 1), S);
    }
}

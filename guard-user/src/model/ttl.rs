//! The bounds of a TTL, the same for every channel (API, config, fleet).

use std::time::Duration;

/// The longest TTL anything may set: 30 days.
pub const MAX_TTL_SECS: u64 = 30 * 24 * 3600;

/// Whole seconds from 1 s to 30 days.
pub fn ttl_duration(d: Duration) -> Result<Duration, String> {
    if d.subsec_nanos() != 0 || ttl(d.as_secs()).is_err() {
        return Err("must be whole seconds between 1s and 30 days".into());
    }
    Ok(d)
}

/// `secs` as a TTL, if within the bounds.
pub fn ttl(secs: u64) -> Result<Duration, String> {
    if (1..=MAX_TTL_SECS).contains(&secs) {
        Ok(Duration::from_secs(secs))
    } else {
        Err(format!(
            "ttl_secs {secs}: must be between 1 and {MAX_TTL_SECS} (30 days)"
        ))
    }
}

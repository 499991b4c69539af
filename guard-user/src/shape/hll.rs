//! The number of distinct sources a window's sketch saw: Ertl's improved estimator for
//! HyperLogLog ("New cardinality estimation algorithms for HyperLogLog sketches", 2017),
//! unbiased from a handful of sources to far beyond 10 million without the switch between
//! linear counting and the raw estimate (and its bias near the switch) of the original.

use guard_common::shape::{INDEX_BITS, MAX_RANK, REGISTERS};

/// Estimated distinct hashes the registers saw.
pub fn estimate(registers: &[u8; REGISTERS]) -> f64 {
    let m = REGISTERS as f64;
    let q = MAX_RANK as usize - 1; // 64 - INDEX_BITS
    let mut counts = [0u32; MAX_RANK as usize + 1];
    for &r in registers {
        counts[(r as usize).min(q + 1)] += 1;
    }
    let mut z = m * tau(1.0 - counts[q + 1] as f64 / m);
    for k in (1..=q).rev() {
        z = 0.5 * (z + counts[k] as f64);
    }
    z += m * sigma(counts[0] as f64 / m);
    // alpha_inf = 1 / (2 ln 2).
    let alpha = 0.5 / std::f64::consts::LN_2;
    alpha * m * m / z
}

fn sigma(mut x: f64) -> f64 {
    if x >= 1.0 {
        return f64::INFINITY;
    }
    let (mut y, mut z) = (1.0, x);
    loop {
        x *= x;
        let before = z;
        z += x * y;
        y += y;
        if z == before {
            return z;
        }
    }
}

fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let (mut y, mut z) = (1.0, 1.0 - x);
    loop {
        x = x.sqrt();
        let before = z;
        y *= 0.5;
        z -= (1.0 - x).powi(2) * y;
        if z == before {
            return z / 3.0;
        }
    }
}

const _: () = assert!(
    INDEX_BITS == 12,
    "the accuracy tests below assume 4,096 registers"
);

#[cfg(test)]
mod tests {
    use guard_common::shape::register_of;

    use super::*;

    /// SplitMix64: a stand-in for SipHash's output (any 64-bit hash of distinct inputs looks
    /// like this to the registers).
    fn mix(mut x: u64) -> u64 {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }

    fn sketch(n: u64, seed: u64, mut hash: impl FnMut(u64, u64) -> u64) -> Box<[u8; REGISTERS]> {
        let mut regs = Box::new([0u8; REGISTERS]);
        for i in 0..n {
            let (idx, rank) = register_of(hash(seed, i));
            regs[idx] = regs[idx].max(rank);
        }
        regs
    }

    /// The 95th percentile of |estimate / truth - 1| over `seeds` sketches of `n` sources.
    fn p95_error(n: u64, seeds: u64) -> f64 {
        let mut errors: Vec<f64> = (0..seeds)
            .map(|s| {
                let regs = sketch(n, s, |seed, i| mix(i ^ mix(seed)));
                (estimate(&regs) / n as f64 - 1.0).abs()
            })
            .collect();
        errors.sort_by(f64::total_cmp);
        errors[(errors.len() * 95).div_ceil(100) - 1]
    }

    #[test]
    fn an_empty_sketch_saw_nothing() {
        assert_eq!(estimate(&[0; REGISTERS]), 0.0);
    }

    #[test]
    fn within_five_percent_at_p95_from_a_thousand_to_ten_million() {
        for (n, seeds) in [
            (1_000, 200),
            (10_000, 200),
            (50_000, 100),
            (1_000_000, 40),
            (10_000_000, 20),
        ] {
            let e = p95_error(n, seeds);
            println!(
                "{n} sources: p95 error {:.2}% over {seeds} seeds",
                e * 100.0
            );
            assert!(e < 0.05, "{n} sources: p95 error {e}");
        }
    }

    #[test]
    fn the_kernels_hash_of_real_addresses_estimates_as_well() {
        // The hash guard-ebpf uses (SipHash-1-3 of the masked address, under a random key).
        for (n, key) in [(1_000u64, [7u64, 9]), (100_000, [0x1234, 0x5678])] {
            let regs = sketch(n, 0, |_, i| {
                guard_common::siphash::hash_v4_masked(&key, 0xc612_0000u32 + i as u32)
            });
            let e = estimate(&regs) / n as f64 - 1.0;
            assert!(e.abs() < 0.05, "{n} addresses: error {e}");
        }
    }
}

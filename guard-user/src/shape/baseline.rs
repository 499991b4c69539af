//! What a rule's traffic usually looks like: for packets N, distinct sources D and packets
//! per source N/D, a mean that follows the last hour and a high percentile of the last day.
//! Both are counted in windows (`HOUR`, `DAY`), so shortening the window compresses the day
//! (the tests do, see docs/SHAPE.md).
//!
//! Only windows the classifier found calm (`normal` or `growth`) are learned: an attack's
//! windows never enter it, so a flood cannot raise the baseline until it looks usual.

/// Windows in an hour and a day at the default window of 10 s.
pub const HOUR: f64 = 360.0;
pub const DAY: f64 = 8_640.0;
/// Windows learned before a rule is classified at all.
pub const WARMUP: u64 = 30;

/// The day's histogram: 8 bins per doubling from 1 to 2^40, and one below 1.
const PER_OCTAVE: f64 = 8.0;
const BINS: usize = 1 + 40 * PER_OCTAVE as usize;
/// The high percentile the classifier compares with.
const HIGH: f64 = 0.95;

/// One figure's baseline.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    pub mean: f64,
    /// Weights of the values seen, by bin, decayed by a day.
    bins: Vec<f32>,
}

impl Figure {
    fn new() -> Figure {
        Figure {
            mean: 0.0,
            bins: vec![0.0; BINS],
        }
    }

    fn learn(&mut self, value: f64, alpha: f64, decay: f32) {
        self.mean += alpha * (value - self.mean);
        for w in &mut self.bins {
            *w *= decay;
        }
        self.bins[bin(value)] += 1.0;
    }

    /// The day's 95th percentile (the upper edge of its bin: never below it).
    pub fn high(&self) -> f64 {
        let total: f64 = self.bins.iter().map(|&w| w as f64).sum();
        if total == 0.0 {
            return 0.0;
        }
        let mut above = 0.0;
        for (i, &w) in self.bins.iter().enumerate().rev() {
            above += w as f64;
            if above >= total * (1.0 - HIGH) {
                return upper_edge(i);
            }
        }
        0.0
    }
}

fn bin(value: f64) -> usize {
    if value < 1.0 {
        return 0;
    }
    (1 + (value.log2() * PER_OCTAVE) as usize).min(BINS - 1)
}

fn upper_edge(bin: usize) -> f64 {
    if bin == 0 {
        return 1.0;
    }
    (bin as f64 / PER_OCTAVE).exp2()
}

/// A rule's baseline: N, D and N/D.
#[derive(Debug, Clone, PartialEq)]
pub struct Baseline {
    /// Windows learned.
    pub windows: u64,
    pub packets: Figure,
    pub sources: Figure,
    pub per_source: Figure,
}

impl Default for Baseline {
    fn default() -> Baseline {
        Baseline {
            windows: 0,
            packets: Figure::new(),
            sources: Figure::new(),
            per_source: Figure::new(),
        }
    }
}

impl Baseline {
    pub fn warming_up(&self) -> bool {
        self.windows < WARMUP
    }

    /// Learns a calm window. The mean starts as a plain mean, then follows the last hour.
    pub fn learn(&mut self, packets: f64, sources: f64) {
        self.windows += 1;
        let alpha = (1.0 / self.windows as f64).max(1.0 - (-1.0 / HOUR).exp());
        let decay = (-1.0 / DAY).exp() as f32;
        self.packets.learn(packets, alpha, decay);
        self.sources.learn(sources, alpha, decay);
        // An empty window has no packets per source: it teaches N and D only.
        if sources >= 1.0 {
            self.per_source.learn(packets / sources, alpha, decay);
        }
    }

    /// The bytes kept in the state database: a version, the count, then per figure its
    /// mean and bins, little-endian.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(9 + 3 * (8 + 4 * BINS));
        out.push(1);
        out.extend_from_slice(&self.windows.to_le_bytes());
        for f in [&self.packets, &self.sources, &self.per_source] {
            out.extend_from_slice(&f.mean.to_le_bytes());
            for w in &f.bins {
                out.extend_from_slice(&w.to_le_bytes());
            }
        }
        out
    }

    /// Refuses anything `encode` did not make (another version, length, a value that is
    /// not a finite non-negative number).
    pub fn decode(bytes: &[u8]) -> Result<Baseline, String> {
        let want = 9 + 3 * (8 + 4 * BINS);
        if bytes.len() != want || bytes[0] != 1 {
            return Err(format!(
                "a shape baseline of {} bytes, version {:?} (want {want} bytes, version 1)",
                bytes.len(),
                bytes.first()
            ));
        }
        let mut at = 1;
        let mut take = |n: usize| {
            let s = &bytes[at..at + n];
            at += n;
            s
        };
        let windows = u64::from_le_bytes(take(8).try_into().expect("8 bytes"));
        let mut figure = || -> Result<Figure, String> {
            let mean = f64::from_le_bytes(take(8).try_into().expect("8 bytes"));
            let bins: Vec<f32> = (0..BINS)
                .map(|_| f32::from_le_bytes(take(4).try_into().expect("4 bytes")))
                .collect();
            let sane = |v: f64| v.is_finite() && v >= 0.0;
            if !sane(mean) || !bins.iter().all(|&w| sane(w as f64)) {
                return Err("a shape baseline holds a negative or non-finite value".into());
            }
            Ok(Figure { mean, bins })
        };
        Ok(Baseline {
            windows,
            packets: figure()?,
            sources: figure()?,
            per_source: figure()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_high_percentile_ignores_the_top_twentieth() {
        let mut b = Baseline::default();
        for i in 0..100 {
            // 96 windows of 100 sources, 4 of 10,000.
            b.learn(1000.0, if i % 25 == 0 { 10_000.0 } else { 100.0 });
        }
        let high = b.sources.high();
        assert!((100.0..=110.0).contains(&high), "{high}");
        assert!(!b.warming_up());
        let back = Baseline::decode(&b.encode()).unwrap();
        assert_eq!(back, b);
    }

    #[test]
    fn hostile_bytes_are_refused() {
        let mut bytes = Baseline::default().encode();
        assert!(Baseline::decode(&bytes[1..]).is_err());
        bytes[9..17].copy_from_slice(&f64::NAN.to_le_bytes());
        assert!(Baseline::decode(&bytes).unwrap_err().contains("non-finite"));
        bytes[0] = 2;
        assert!(Baseline::decode(&bytes).is_err());
    }
}

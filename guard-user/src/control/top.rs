//! Top talkers: the sources with the most sampled drops in the last minute.
//!
//! Fed by the kernel's sampled drop events (`guard_common::events`), so counts are samples,
//! not totals (the exact totals are the per-reason counters). Six 10-second slots make the
//! window slide without keeping every event.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    time::{Duration, Instant},
};

use guard_common::{Reason, events::DropEvent};
use serde::{Deserialize, Serialize};

const SLOT: Duration = Duration::from_secs(10);
const SLOTS: usize = 6;
/// Distinct sources remembered per slot, so a forged flood cannot grow memory without bound.
const MAX_SOURCES_PER_SLOT: usize = 65_536;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopEntry {
    pub source: String,
    /// Sampled drops in the window.
    pub dropped: u64,
    pub reasons: BTreeMap<String, u64>,
}

/// `GET /v1/top`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Top {
    pub window_secs: u64,
    /// Sampled drop events in the window (all sources).
    pub sampled_drops: u64,
    pub sources: Vec<TopEntry>,
}

#[derive(Default)]
struct Slot {
    started: Option<Instant>,
    by_source: HashMap<IpAddr, [u64; Reason::COUNT as usize]>,
}

#[derive(Default)]
pub struct TopTalkers {
    slots: [Slot; SLOTS],
    current: usize,
}

/// The source and reason of a raw event, if it is well formed.
pub fn decode(e: &DropEvent) -> Option<(IpAddr, usize)> {
    let addr = guard_common::events::addr_of(e.family, &e.addr)?;
    let reason = e.reason as usize;
    (reason < Reason::COUNT as usize).then_some((addr, reason))
}

impl TopTalkers {
    pub fn record(&mut self, src: IpAddr, reason: usize, now: Instant) {
        let slot = &mut self.slots[self.current];
        if slot.started.is_none_or(|s| now.duration_since(s) >= SLOT) {
            self.current = (self.current + 1) % SLOTS;
            self.slots[self.current] = Slot {
                started: Some(now),
                by_source: HashMap::new(),
            };
        }
        let slot = &mut self.slots[self.current];
        if slot.by_source.len() >= MAX_SOURCES_PER_SLOT && !slot.by_source.contains_key(&src) {
            return;
        }
        slot.by_source.entry(src).or_default()[reason] += 1;
    }

    pub fn top(&self, n: usize, now: Instant) -> Top {
        let window = SLOT * SLOTS as u32;
        let mut sum: HashMap<IpAddr, [u64; Reason::COUNT as usize]> = HashMap::new();
        for slot in &self.slots {
            if slot.started.is_none_or(|s| now.duration_since(s) >= window) {
                continue;
            }
            for (src, counts) in &slot.by_source {
                let total = sum.entry(*src).or_default();
                for (t, c) in total.iter_mut().zip(counts) {
                    *t += c;
                }
            }
        }
        let sampled_drops = sum.values().flatten().sum();
        let mut sources: Vec<TopEntry> = sum
            .into_iter()
            .map(|(src, counts)| TopEntry {
                source: src.to_string(),
                dropped: counts.iter().sum(),
                reasons: Reason::ALL
                    .iter()
                    .zip(counts)
                    .filter(|(_, c)| *c > 0)
                    .map(|(r, c)| (r.as_str().to_string(), c))
                    .collect(),
            })
            .collect();
        sources.sort_by(|a, b| {
            b.dropped
                .cmp(&a.dropped)
                .then_with(|| a.source.cmp(&b.source))
        });
        sources.truncate(n);
        Top {
            window_secs: window.as_secs(),
            sampled_drops,
            sources,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_sources_and_forgets_old_slots() {
        let mut t = TopTalkers::default();
        let t0 = Instant::now();
        let a: IpAddr = "198.18.0.3".parse().unwrap();
        let b: IpAddr = "2001:db8::3".parse().unwrap();
        for _ in 0..5 {
            t.record(a, Reason::Deny as usize, t0);
        }
        t.record(b, Reason::Rate as usize, t0);
        t.record(a, Reason::Ban as usize, t0 + Duration::from_secs(15));
        let top = t.top(10, t0 + Duration::from_secs(20));
        assert_eq!(top.sources[0].source, "198.18.0.3");
        assert_eq!(top.sources[0].dropped, 6);
        assert_eq!(top.sources[0].reasons.get("deny"), Some(&5));
        assert_eq!(top.sources[1].source, "2001:db8::3");
        assert_eq!(top.sampled_drops, 7);
        assert_eq!(t.top(1, t0 + Duration::from_secs(20)).sources.len(), 1);
        // Past the window only the later slot counts.
        let later = t.top(10, t0 + Duration::from_secs(65));
        assert_eq!(later.sources.len(), 1);
        assert_eq!(later.sources[0].dropped, 1);
    }

    #[test]
    fn decodes_events() {
        let mut e = DropEvent {
            family: 4,
            reason: Reason::Deny as u8,
            ..Default::default()
        };
        e.addr[0] = u32::from_ne_bytes([198, 18, 0, 3]);
        assert_eq!(
            decode(&e),
            Some(("198.18.0.3".parse().unwrap(), Reason::Deny as usize))
        );
        e.family = 9;
        assert_eq!(decode(&e), None);
    }
}

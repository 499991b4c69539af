//! The sampled drop events: a task reads the ring buffer into the top-talkers window, and
//! another logs one summary line per minute while guard is dropping (never one per packet).

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use aya::maps::{MapData, RingBuf};
use guard_common::events::DropEvent;
use guard_user::control::top::{TopTalkers, decode};
use tokio::io::unix::AsyncFd;
use tracing::{info, warn};

use crate::state::Shared;

/// Reads drop events until the ring buffer fails.
pub async fn read(ring: RingBuf<MapData>, top: Arc<Mutex<TopTalkers>>) {
    // SAFETY: the ring buffer owns its map fd and keeps it open and unchanged while the
    // AsyncFd owns the ring buffer.
    let mut fd =
        match unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) } {
            Ok(fd) => fd,
            Err(e) => return warn!(error = %e, "drop events unavailable: /v1/top stays empty"),
        };
    // The kernel wakes a reader only when it had caught up: events written while no daemon
    // ran would never be announced, so drain what is there before waiting.
    drain(fd.get_mut(), &top);
    loop {
        let Ok(mut guard) = fd.readable_mut().await else {
            return;
        };
        drain(guard.get_inner_mut(), &top);
        guard.clear_ready();
    }
}

/// Once a minute, when anything was dropped: totals by reason (exact) and the top sources
/// (sampled).
pub async fn summarize(daemon: Shared, top: Arc<Mutex<TopTalkers>>) {
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    tick.tick().await;
    loop {
        tick.tick().await;
        let Ok(counters) = daemon.engine.with_datapath(|d| d.counters()) else {
            continue;
        };
        let now: BTreeMap<String, u64> = counters
            .packets
            .iter()
            .filter(|p| p.verdict == "drop")
            .map(|p| (p.reason.clone(), p.packets))
            .collect();
        let delta: Vec<(String, u64)> = now
            .iter()
            .map(|(r, n)| (r.clone(), n - last.get(r).copied().unwrap_or(0).min(*n)))
            .filter(|(_, n)| *n > 0)
            .collect();
        last = now;
        if delta.is_empty() {
            continue;
        }
        let total: u64 = delta.iter().map(|(_, n)| n).sum();
        let reasons = delta
            .iter()
            .map(|(r, n)| format!("{r} {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let t = top.lock().expect("top lock").top(3, Instant::now());
        let sources = t
            .sources
            .iter()
            .map(|s| format!("{} ({})", s.source, s.dropped))
            .collect::<Vec<_>>()
            .join(", ");
        info!("last minute: dropped {total} ({reasons}); top sources by sampled drops: {sources}");
    }
}

fn drain(ring: &mut RingBuf<MapData>, top: &Mutex<TopTalkers>) {
    let now = Instant::now();
    let mut t = top.lock().expect("top lock");
    while let Some(item) = ring.next() {
        if item.len() >= size_of::<DropEvent>() {
            // SAFETY: the kernel wrote a DropEvent; read it unaligned from the ring.
            let e = unsafe { item.as_ptr().cast::<DropEvent>().read_unaligned() };
            if let Some((src, reason)) = decode(&e) {
                t.record(src, reason, now);
            }
        }
    }
}

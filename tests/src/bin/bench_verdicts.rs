//! Control-plane benchmarks against a real guardd (release build) in a testbed:
//! - verdict latency: from a ban call's return to the first packet dropped, over N bans;
//! - time to apply 100,000 bans in one call.
//!
//! Latency method: `guard_tests::latency` (the map is written before the API answers, so
//! the latency is often negative).

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use guard_tests::{
    bench_record::{percentile, record},
    daemon::{Guardd, bulk_bans_body},
    latency::DropClock,
    netns::Testbed,
    traffic::RawSender,
};

fn main() -> anyhow::Result<()> {
    let n: usize = guard_tests::arg_or(1, 1000);
    let bed = Testbed::new();
    // Every verdict is durable: guardd keeps them in its state database (the harness gives it
    // a state_dir of its own).
    let mut g = Guardd::start(&bed.server, &bed.server_if, "");
    // At rest: after a few refill periods have touched every bucket.
    std::thread::sleep(Duration::from_secs(3));
    let rest_kib = g.rss_kib() as f64;
    println!(
        "guardd RSS at rest, default rule (131,072 buckets), no bans: {:.1} MiB",
        rest_kib / 1024.0
    );
    record(
        "control",
        "guardd RSS at rest (default rule)",
        "MiB",
        &[rest_kib / 1024.0],
    );
    let clock = DropClock::start(&bed.server);
    let tx = RawSender::open(&bed.client, &bed.client_if);
    let mut latencies = Vec::with_capacity(n);
    let mut calls = Vec::with_capacity(n);
    for i in 0..n {
        let src = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 32, 0)) + i as u32);
        let latency = clock.measure(&tx, src, Duration::from_millis(20), || {
            let t0 = Instant::now();
            let (code, _) = g.api(
                "POST",
                "/v1/bans",
                Some(&format!(r#"{{"cidr":"{src}","ttl_secs":600}}"#)),
            );
            let t1 = Instant::now();
            assert_eq!(code, 200);
            calls.push(t1 - t0);
            t1
        });
        latencies.push(latency.map_err(|e| anyhow::anyhow!("ban {i}: {e}"))?);
    }
    let mut us: Vec<f64> = latencies.iter().map(|l| l * 1e6).collect();
    let mut call_us: Vec<f64> = calls.iter().map(|d| d.as_secs_f64() * 1e6).collect();
    let before = latencies.iter().filter(|l| **l < 0.0).count();
    println!("verdict latency over {n} bans (AF_PACKET stream at 20k pps, release guardd)");
    println!(
        "  call return -> first dropped packet: p50 {:.0} us, p99 {:.0} us, max {:.0} us \
         (negative: in force before the answer arrived; {before} of {n}; a sender preempted \
         between a send and its timestamp shows as a late outlier)",
        percentile(&mut us, 0.5),
        percentile(&mut us, 0.99),
        us[us.len() - 1]
    );
    println!(
        "  API call round trip: p50 {:.0} us, p99 {:.0} us",
        percentile(&mut call_us, 0.5),
        percentile(&mut call_us, 0.99)
    );

    let base = u32::from(Ipv4Addr::new(198, 19, 0, 0)) - 50_000;
    let body = bulk_bans_body(Ipv4Addr::from(base), 100_000, 600);
    // From the request to the whole answer received (what a caller waits for; parsing
    // the answer is the caller's own business).
    let t = Instant::now();
    let (code, answer) = g.api_raw("POST", "/v1/bans", Some(&body));
    let bulk = t.elapsed().as_secs_f64();
    anyhow::ensure!(code == 200, "bulk ban: HTTP {code}");
    let applied: serde_json::Value = serde_json::from_slice(&answer)?;
    let n_applied = applied["applied"].as_array().map_or(0, Vec::len);
    anyhow::ensure!(n_applied == 100_000, "applied {n_applied}");
    anyhow::ensure!(
        applied["durable"] == true,
        "not durable: {}",
        applied["durable"]
    );
    println!(
        "100,000 bans in one call: {bulk:.3} s ({} bytes of JSON in, {} out; durable)",
        body.len(),
        answer.len()
    );
    // The daemon returns the call's transient memory at its next housekeeping tick.
    std::thread::sleep(Duration::from_secs(2));
    let rss_kib = g.rss_kib() as f64;
    println!(
        "guardd RSS with the default rule and {} bans, 2 s later: {:.1} MiB",
        n + 100_000,
        rss_kib / 1024.0
    );
    record(
        "control",
        "verdict latency, call return to first drop",
        "us",
        &us,
    );
    record("control", "API call round trip", "us", &call_us);
    record("control", "100,000 bans in one call", "s", &[bulk]);
    record(
        "control",
        "guardd RSS (default rule, 100,000+ bans)",
        "MiB",
        &[rss_kib / 1024.0],
    );
    // A reboot: guardd gone, the pins gone; the state database restores every ban before
    // guardd serves (its API answers once start-up, restore included, is done).
    let held = n + 100_000;
    anyhow::ensure!(g.stop().success(), "guardd did not stop");
    std::fs::remove_dir_all(&g.pin_dir)?;
    let t = Instant::now();
    g.spawn(&bed.server, &bed.server_if);
    let restore = t.elapsed().as_secs_f64();
    let active = g.ctl_json(&["stats"])["bans_active"].as_u64().unwrap_or(0) as usize;
    anyhow::ensure!(active == held, "restored {active} of {held} bans");
    println!("after a reboot: {held} bans restored, guardd ready in {restore:.3} s");
    record(
        "control",
        "start after a reboot, 100,000+ bans restored",
        "s",
        &[restore],
    );
    Ok(())
}

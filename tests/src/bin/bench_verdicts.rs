//! Control-plane benchmarks against a real guardd (release build) in a testbed:
//! - verdict latency: from a ban call's return to the first packet dropped, over N bans;
//! - time to apply 100,000 bans in one call.
//!
//! Latency method: a source streams sequence-numbered frames (AF_PACKET, 20k pps) while it
//! is banned; the first sequence number that never arrives is the first packet dropped, and
//! its send time minus the call's return time is the latency (negative: the ban was in
//! force before the answer reached the caller, as the map is written before it answers).

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, UdpSocket},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use guard_tests::{
    bench_record::{percentile, record},
    daemon::{Guardd, bulk_bans_body},
    netns::Testbed,
    packet::udp4,
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
    let sock = bed
        .server
        .run(|| UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("bind"));
    let port = sock.local_addr()?.port();
    sock.set_read_timeout(Some(Duration::from_millis(20)))?;
    // Highest sequence number seen per source.
    let seen: Arc<Mutex<HashMap<IpAddr, u32>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (seen, stop) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 256];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((len, from)) = sock.recv_from(&mut buf)
                    && len >= 4
                {
                    let seq = u32::from_be_bytes(buf[..4].try_into().unwrap());
                    let mut s = seen.lock().unwrap();
                    let e = s.entry(from.ip()).or_insert(0);
                    *e = (*e).max(seq);
                }
            }
        })
    };
    let tx = RawSender::open(&bed.client, &bed.client_if);
    let mut latencies = Vec::with_capacity(n);
    let mut calls = Vec::with_capacity(n);
    for i in 0..n {
        let src = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 32, 0)) + i as u32);
        let frame = |seq: u32| {
            let mut f = udp4(src, port);
            f[42..46].copy_from_slice(&seq.to_be_bytes());
            f[40..42].copy_from_slice(&[0, 0]); // IPv4 UDP: checksum 0 means none
            f
        };
        let done = AtomicBool::new(false);
        let (sends, returned) = std::thread::scope(|s| {
            let sender = s.spawn(|| {
                let mut sends = Vec::new();
                let start = Instant::now();
                let mut seq = 1u32;
                // 20k pps, until 20 ms after the call returned (bounded to 2 s).
                while !done.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(2) {
                    let due = (start.elapsed().as_secs_f64() * 20_000.0) as u32 + 1;
                    while seq <= due {
                        tx.send(&frame(seq));
                        sends.push(Instant::now());
                        seq += 1;
                    }
                    std::hint::spin_loop();
                }
                sends
            });
            std::thread::sleep(Duration::from_millis(5));
            let t0 = Instant::now();
            let (code, _) = g.api(
                "POST",
                "/v1/bans",
                Some(&format!(r#"{{"cidr":"{src}","ttl_secs":600}}"#)),
            );
            let t1 = Instant::now();
            assert_eq!(code, 200);
            calls.push(t1 - t0);
            std::thread::sleep(Duration::from_millis(20));
            done.store(true, Ordering::Relaxed);
            (sender.join().unwrap(), t1)
        });
        std::thread::sleep(Duration::from_millis(10));
        let last = seen
            .lock()
            .unwrap()
            .get(&IpAddr::V4(src))
            .copied()
            .unwrap_or(0);
        let first_dropped = last as usize; // sends[k] is seq k + 1
        anyhow::ensure!(first_dropped < sends.len(), "ban {i}: every packet arrived");
        let at = sends[first_dropped];
        latencies.push(if at >= returned {
            (at - returned).as_secs_f64()
        } else {
            -(returned - at).as_secs_f64()
        });
    }
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
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
    let t = Instant::now();
    let (code, _) = g.api("POST", "/v1/bans", Some(&body));
    anyhow::ensure!(code == 200, "bulk ban: HTTP {code}");
    let bulk = t.elapsed().as_secs_f64();
    println!(
        "100,000 bans in one call: {bulk:.3} s ({} bytes of JSON)",
        body.len()
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

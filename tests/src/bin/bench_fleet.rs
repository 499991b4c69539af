//! Fleet benchmarks: release guardd hosts in namespaces of their own sharing verdicts through
//! a real nats-server (Debian's 2.9, JetStream, file storage) in a hub namespace.
//! - propagation: a ban's API return on host A to the first packet dropped on host C (the
//!   `latency` method, the stream sent to C), over N bans;
//! - sustained bans: A and B each ban 1,000 sources a second for 10 s; C must hold them all;
//! - NATS down: A's local verdict latency against a host without a fleet, in the same run;
//!   then a backlog of 10,000 bans made while it was down, until C holds them;
//! - a host joining a fleet that holds 100,000+ bans: start to every ban in its kernel.

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use guard_tests::{
    bed::GuardBed,
    bench_record::{percentile, record},
    daemon::bulk_bans_body,
    fleet::{FleetBed, within},
    latency::DropClock,
};

fn main() -> anyhow::Result<()> {
    let n: usize = guard_tests::arg_or(1, 1000);
    let mut f = FleetBed::new(false);
    for node in ["a", "b", "c"] {
        f.add_host(node, "");
    }
    f.wait_in_sync(Duration::from_secs(20));
    propagation(&f, n)?;
    join(&mut f)?;
    sustained(&f)?;
    nats_down(&mut f)?;
    Ok(())
}

fn bans_active(h: &GuardBed) -> u64 {
    h.g.api("GET", "/v1/stats", None).1["bans_active"]
        .as_u64()
        .unwrap_or(0)
}

fn outbox(h: &GuardBed) -> u64 {
    h.g.api("GET", "/v1/status", None).1["fleet"]["outbox"]
        .as_u64()
        .unwrap_or(u64::MAX)
}

/// A ban call on `h`; returns when it returned.
fn ban(h: &GuardBed, src: Ipv4Addr) -> Instant {
    let (code, body) = h.g.api(
        "POST",
        "/v1/bans",
        Some(&format!(r#"{{"cidr":"{src}","ttl_secs":600}}"#)),
    );
    let t = Instant::now();
    assert_eq!(code, 200, "{body}");
    t
}

/// Bans of `count` IPv6 addresses in 2001:db8:<net>::/64, one hour each.
fn v6_bans_body(net: u16, count: u32) -> String {
    v6_bans_body_from(net, 0, count)
}

/// As `v6_bans_body`, from the `first`-th address.
fn v6_bans_body_from(net: u16, first: u32, count: u32) -> String {
    let one = |i: u32| {
        format!(
            r#"{{"cidr":"2001:db8:{net:x}::{:x}:{:x}","ttl_secs":3600}}"#,
            i >> 16,
            i & 0xffff
        )
    };
    format!(
        "[{}]",
        (first..first + count)
            .map(one)
            .collect::<Vec<_>>()
            .join(",")
    )
}

fn nth(base: [u8; 4], i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::from(base)) + i as u32)
}

fn propagation(f: &FleetBed, n: usize) -> anyhow::Result<()> {
    let (a, c) = (&f.hosts[0], &f.hosts[2]);
    let clock = DropClock::start(&c.bed.server);
    let mut us = Vec::with_capacity(n);
    for i in 0..n {
        let src = nth([198, 18, 32, 0], i);
        let l = clock.measure(&c.tx, src, Duration::from_millis(60), || ban(a, src));
        us.push(l.map_err(|e| anyhow::anyhow!("ban {i} on A, seen on C: {e}"))? * 1e6);
    }
    println!(
        "fleet: propagation over {n} bans, one nats-server (JetStream file storage), release guardd"
    );
    println!(
        "  ban's API return on A -> first packet dropped on C: p50 {:.0} us, p99 {:.0} us, max {:.0} us",
        percentile(&mut us, 0.5),
        percentile(&mut us, 0.99),
        us[us.len() - 1]
    );
    record(
        "fleet",
        "propagation, API return on A to first drop on C",
        "us",
        &us,
    );
    Ok(())
}

fn sustained(f: &FleetBed) -> anyhow::Result<()> {
    let (secs, per_sec, per_call) = (10usize, 1000usize, 100usize);
    let c = &f.hosts[2];
    // C has applied everything made so far (A's 100,000 arrive as live changes).
    let settled = within(Duration::from_secs(60), || {
        bans_active(c) == bans_active(&f.hosts[0])
    });
    anyhow::ensure!(settled.is_some(), "C does not hold what A holds");
    let before = bans_active(c) as usize;
    let rss_before = c.g.rss_kib() as f64 / 1024.0;
    let start = Instant::now();
    std::thread::scope(|s| {
        for (h, host) in f.hosts[..2].iter().enumerate() {
            s.spawn(move || {
                let calls = secs * per_sec / per_call;
                for k in 0..calls {
                    let due = Duration::from_secs_f64(k as f64 * per_call as f64 / per_sec as f64);
                    if let Some(wait) = due.checked_sub(start.elapsed()) {
                        std::thread::sleep(wait);
                    }
                    let first = nth([198, 18, 64, 0], h * secs * per_sec + k * per_call);
                    host.ok(
                        "POST",
                        "/v1/bans",
                        &bulk_bans_body(first, per_call as u32, 600),
                    );
                }
            });
        }
    });
    let made = Instant::now();
    let rate = (2 * secs * per_sec) as f64 / (made - start).as_secs_f64();
    let want = (before + 2 * secs * per_sec) as u64;
    let all = within(Duration::from_secs(30), || bans_active(c) == want);
    let held = bans_active(c);
    anyhow::ensure!(all.is_some(), "C holds {held} of {want} bans");
    let rss_after = c.g.rss_kib() as f64 / 1024.0;
    println!(
        "fleet: A and B each banning 1,000 sources/s for {secs} s ({per_call} per call; {rate:.0} bans/s made across the fleet): \
         C held all {held} {:.2} s after the last call ({:.1} s of load); C's RSS {rss_before:.1} -> {rss_after:.1} MiB",
        all.unwrap().as_secs_f64(),
        (made - start).as_secs_f64(),
    );
    record(
        "fleet",
        "sustained bans: rate made across the fleet",
        "bans/s",
        &[rate],
    );
    record(
        "fleet",
        "2,000 bans/s for 10 s: C complete after the last call",
        "s",
        &[all.unwrap().as_secs_f64()],
    );
    record(
        "fleet",
        "2,000 bans/s for 10 s: C's RSS after",
        "MiB",
        &[rss_after],
    );
    Ok(())
}

fn nats_down(f: &mut FleetBed) -> anyhow::Result<()> {
    let m = 500;
    /// One ban on `h` through its API, seen dropping on the wire; the call's round trip.
    fn one(h: &GuardBed, clock: &DropClock, src: Ipv4Addr) -> anyhow::Result<f64> {
        let mut call = 0.0;
        clock.measure(&h.tx, src, Duration::from_millis(20), || {
            let t0 = Instant::now();
            let t = ban(h, src);
            call = (t - t0).as_secs_f64() * 1e6;
            t
        })?;
        Ok(call)
    }
    let a = &f.hosts[0];
    let a_clock = DropClock::start(&a.bed.server);
    let mut up = (0..m)
        .map(|i| one(a, &a_clock, nth([198, 18, 48, 0], i)))
        .collect::<anyhow::Result<Vec<f64>>>()?;
    let published = within(Duration::from_secs(10), || outbox(a) == 0);
    anyhow::ensure!(published.is_some(), "A did not publish its bans");
    let c = &f.hosts[2];
    let c_before = within(Duration::from_secs(10), || bans_active(c) == bans_active(a))
        .map(|_| bans_active(c));
    let c_before = c_before.ok_or_else(|| anyhow::anyhow!("C does not hold what A holds"))?;
    // The reference, in the same run: a host without a fleet holding as many bans as A (a
    // commit's cost grows with the database), its bans interleaved with A's.
    let alone = GuardBed::start("");
    let held = bans_active(a) as u32;
    for first in (0..held).step_by(100_000) {
        let count = (held - first).min(100_000);
        alone.ok("POST", "/v1/bans", &v6_bans_body_from(0xe, first, count));
    }
    let alone_clock = DropClock::start(&alone.bed.server);
    for s in &mut f.nats {
        s.stop();
    }
    let a = &f.hosts[0];
    let gone = within(Duration::from_secs(10), || {
        a.g.api("GET", "/v1/status", None).1["fleet"]["connected"] == false
    });
    anyhow::ensure!(gone.is_some(), "A still connected with NATS down");
    let (mut reference, mut down) = (Vec::with_capacity(m), Vec::with_capacity(m));
    for i in 0..m {
        reference.push(one(&alone, &alone_clock, nth([198, 18, 40, 0], i))?);
        down.push(one(a, &a_clock, nth([198, 18, 44, 0], i))?);
    }
    drop(alone_clock);
    drop(alone);
    let p = |v: &mut Vec<f64>| (percentile(v, 0.5), percentile(v, 0.99));
    let ((r50, r99), (u50, u99), (d50, d99)) = (p(&mut reference), p(&mut up), p(&mut down));
    println!(
        "fleet: a durable ban through the API, round trip over {m} bans, {held} bans held: \
         NATS up p50 {u50:.0} us p99 {u99:.0} us; then, interleaved ban by ban, NATS down \
         p50 {d50:.0} us p99 {d99:.0} us and a host without a fleet p50 {r50:.0} us p99 {r99:.0} us \
         (p99 down / no fleet {:.2})",
        d99 / r99
    );
    record("fleet", "NATS down: local ban round trip", "us", &down);
    record("fleet", "NATS up: local ban round trip", "us", &up);
    record("fleet", "no fleet: local ban round trip", "us", &reference);
    // A backlog made while NATS is down.
    f.hosts[0].ok(
        "POST",
        "/v1/bans",
        &bulk_bans_body(Ipv4Addr::new(198, 19, 64, 0), 10_000, 3600),
    );
    let queued = outbox(&f.hosts[0]);
    for s in &mut f.nats {
        s.resume();
    }
    let back = Instant::now();
    let want = c_before + m as u64 + 10_000;
    let flushed = within(Duration::from_secs(60), || bans_active(&f.hosts[2]) == want);
    let held = bans_active(&f.hosts[2]);
    anyhow::ensure!(
        flushed.is_some(),
        "C holds {held} of {want} after NATS returned"
    );
    let secs = back.elapsed().as_secs_f64();
    println!(
        "fleet: {queued} bans queued on A while NATS was down, all on C {secs:.2} s after nats-server was ready again"
    );
    record(
        "fleet",
        "backlog of 10,000+ bans on C after NATS returns",
        "s",
        &[secs],
    );
    Ok(())
}

fn join(f: &mut FleetBed) -> anyhow::Result<()> {
    f.hosts[0].ok("POST", "/v1/bans", &v6_bans_body(0xf, 100_000));
    let published = within(Duration::from_secs(60), || outbox(&f.hosts[0]) == 0);
    anyhow::ensure!(published.is_some(), "A did not publish its 100,000 bans");
    let held = bans_active(&f.hosts[0]);
    let start = Instant::now();
    let e = f.add_host("e", "");
    let api = start.elapsed();
    let all = within(Duration::from_secs(60), || bans_active(&f.hosts[e]) == held);
    let got = bans_active(&f.hosts[e]);
    anyhow::ensure!(all.is_some(), "the new host holds {got} of {held}");
    let secs = start.elapsed().as_secs_f64();
    println!(
        "fleet: a host joining a fleet holding {held} bans: all in its kernel {secs:.2} s after it was started \
         (its API up at {:.2} s)",
        api.as_secs_f64()
    );
    let log = f.hosts[e].g.log();
    let steps = [
        "listening",
        "connected to NATS",
        "catch-up",
        "caught up",
        "in sync",
    ];
    for line in log.lines().filter(|l| steps.iter().any(|s| l.contains(s))) {
        println!("  host e: {line}");
    }
    record(
        "fleet",
        "a host joining 100,000+ bans: all in its kernel",
        "s",
        &[secs],
    );
    Ok(())
}

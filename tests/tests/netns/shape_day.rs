//! Attack shape: a compressed day of traffic through a rule whose budget engages itself
//! (`budget_mode = "under_attack"`): steady visitors, a flash crowd, a botnet, calm, one
//! heavy source, a restart.
//!
//! The day is compressed by `GUARD_SHAPE_WINDOW=2s` (docs/SHAPE.md): the baseline counts in
//! windows, so its warm-up (30 windows) takes a minute and its "hour" 12 minutes.

use std::{
    net::{IpAddr, Ipv4Addr},
    sync::atomic::{AtomicBool, AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use guard_tests::{
    bed::GuardBed,
    connections::Connections,
    netns::{Testbed, client4},
    packet::udp_from,
    shape::{forged, rule, shape, wait_for, windows},
    traffic::RawSender,
};
use serde_json::Value;

/// A rule whose budget the crowd exceeds: engaged, it would drop the crowd too.
const DAY: &str = "[[rules]]\nname = \"collector\"\nprotocol = \"udp\"\nrate = 50.0\nburst = 100\n\
     total_rate = 400.0\ntotal_burst = 800\nbudget_mode = \"under_attack\"\n";

/// Regular visitors (198.18.16.0/20) and bots (198.19.x), each at 5 packets/s (one per
/// 200 ms tick); the heavy one is visitor 0 at 100 times that.
struct Scene {
    visitors: AtomicUsize,
    bots: AtomicUsize,
    heavy: AtomicBool,
    stop: AtomicBool,
}

const TICK: Duration = Duration::from_millis(200);
const BOTNET: usize = 3_200;

fn visitor(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(
        u32::from(Ipv4Addr::new(198, 18, 16, 0)) + i as u32,
    ))
}

fn play(scene: &Scene, b: &GuardBed) {
    let tx = RawSender::open(&b.bed.client, &b.bed.client_if);
    let port = b.rx.port;
    let visitors: Vec<Vec<u8>> = (0..200).map(|i| udp_from(visitor(i), port)).collect();
    let bots: Vec<Vec<u8>> = (0..BOTNET).map(|i| udp_from(forged(i), port)).collect();
    let start = Instant::now();
    let mut next = start;
    // Bounded: the test's phases take under seven minutes.
    while !scene.stop.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(480) {
        let v = scene.visitors.load(Ordering::Relaxed).min(visitors.len());
        for f in &visitors[..v] {
            tx.send(f);
        }
        if scene.heavy.load(Ordering::Relaxed) {
            for _ in 1..100 {
                tx.send(&visitors[0]);
            }
        }
        for f in &bots[..scene.bots.load(Ordering::Relaxed).min(BOTNET)] {
            tx.send(f);
        }
        next += TICK;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
}

struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// What the test saw, for the note: seconds, windows, class, raw class, D, N/D, engaged.
fn line(t0: Instant, s: &Value) -> String {
    let r = rule(s);
    let w = &r["window"];
    format!(
        "{:>6.1}s w{:<4} {:<13} raw {:<13} D {:>7.1} N/D {:>6.2} engaged {}",
        t0.elapsed().as_secs_f64(),
        windows(s),
        r["class"].as_str().unwrap_or("?"),
        w["class"].as_str().unwrap_or("-"),
        w["sources"].as_f64().unwrap_or(0.0),
        w["packets_per_source"].as_f64().unwrap_or(0.0),
        r["budget_engaged"]
    )
}

#[test]
fn a_compressed_day_tells_a_crowd_from_a_botnet_and_engages_the_budget_only_for_the_botnet() {
    let bed = Testbed::new();
    let ifaces = [bed.server_if.clone()];
    let mut b = GuardBed::start_with_env(bed, &ifaces, DAY, &[("GUARD_SHAPE_WINDOW", "2s")]);
    let scene = Scene {
        visitors: AtomicUsize::new(16),
        bots: AtomicUsize::new(0),
        heavy: AtomicBool::new(false),
        stop: AtomicBool::new(false),
    };
    let t0 = Instant::now();
    let mut timeline: Vec<String> = Vec::new();
    std::thread::scope(|scope| {
        let player = scope.spawn(|| play(&scene, &b));
        // A failed step stops the traffic too (else the scope waits out its bound).
        let _stop = StopOnDrop(&scene.stop);
        let mut seen = |s: &Value| {
            let l = line(t0, s);
            if timeline.last().is_none_or(|last| last[8..] != l[8..]) {
                timeline.push(l);
            }
        };
        // Steady: 16 visitors until the baseline has warmed up (30 windows).
        let s = wait_for(&b, Duration::from_secs(120), "the warm-up", |s| {
            rule(s)["baseline"]["warming_up"] == false
        });
        seen(&s);
        assert_eq!(rule(&s)["class"], "normal", "{s:#}");
        // A flash crowd: ten times the visitors over 60 s, each at the usual rate.
        let ramp = Instant::now();
        let mut classes = std::collections::BTreeSet::new();
        while ramp.elapsed() < Duration::from_secs(70) {
            let f = (ramp.elapsed().as_secs_f64() / 60.0).min(1.0);
            scene
                .visitors
                .store(16 + (144.0 * f) as usize, Ordering::Relaxed);
            let s = shape(&b);
            seen(&s);
            let r = rule(&s);
            classes.insert(r["class"].as_str().unwrap_or("?").to_string());
            assert_ne!(r["class"], "distributed", "a crowd is not an attack: {s:#}");
            assert_eq!(r["budget_engaged"], false, "{s:#}");
            std::thread::sleep(Duration::from_millis(500));
        }
        assert!(
            classes.contains("growth"),
            "the crowd was seen as growth: {classes:?}"
        );
        assert_eq!(
            b.g.packets("drop", "overload"),
            0,
            "no visitor of the crowd was dropped for the budget"
        );
        assert!(
            b.g.packets("monitor", "overload") > 0,
            "the crowd exceeded the budget: counted, not dropped"
        );
        let before = shape(&b);
        let high_before = rule(&before)["baseline"]["sources"]["high"]
            .as_f64()
            .expect("high");
        // A verified client (a real TCP connection) and a vouched one.
        let conns = Connections::open(&b.bed, &[client4(3)], 8080);
        // A segment of the established connection proves the source (the handshake's last
        // ACK is judged before the connection is established).
        for ack in conns.acks() {
            b.tx.send(&ack);
        }
        let start = Instant::now();
        while b.metric("guard_known_sources{kind=\"verified\"}") < 1.0 {
            assert!(start.elapsed() < Duration::from_secs(5), "verified");
            std::thread::sleep(Duration::from_millis(100));
        }
        b.ok(
            "POST",
            "/v1/vouches",
            r#"{"cidr":"198.18.0.5","ttl_secs":3600,"reason":"solved the challenge"}"#,
        );
        // The botnet: twenty times the sources within one tick, each at the usual rate.
        let w0 = windows(&shape(&b));
        scene.bots.store(BOTNET, Ordering::Relaxed);
        let s = wait_for(&b, Duration::from_secs(12), "distributed", |s| {
            rule(s)["class"] == "distributed"
        });
        seen(&s);
        eprintln!(
            "distributed {} windows after the botnet began",
            windows(&s) - w0
        );
        assert!(windows(&s) - w0 <= 2, "within two windows: {s:#}");
        assert_eq!(rule(&s)["budget_engaged"], true, "{s:#}");
        assert!(
            b.g.log().contains("its endpoint budget is engaged"),
            "logged"
        );
        guard_tests::tools::promtool_check(&b.scrape());
        assert_eq!(
            b.metric("guard_rule_shape{rule=\"collector\",class=\"distributed\"}"),
            1.0
        );
        assert_eq!(
            b.metric("guard_rule_shape{rule=\"collector\",class=\"normal\"}"),
            0.0
        );
        assert!(b.metric("guard_rule_sources{rule=\"collector\"}") > 1000.0);
        assert!(b.metric("guard_rule_shape_distributed_total{rule=\"collector\"}") >= 1.0);
        let out = b.g.ctl(&["shape"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        assert!(
            text.lines().any(|l| l.starts_with("collector")
                && l.contains("distributed")
                && l.contains("under_attack (enforced)")),
            "{text}"
        );
        std::thread::sleep(Duration::from_secs(1));
        let overload_before = b.g.packets("drop", "overload");
        let clients: Vec<Vec<u8>> = [client4(3), client4(5)]
            .iter()
            .map(|a| udp_from(*a, b.rx.port))
            .collect();
        let (sent, got) = std::thread::scope(|s| {
            let rx = s.spawn(|| b.rx.collect(Duration::from_secs(1), Duration::from_secs(4)));
            // The receiver drains what the budget let in meanwhile: a full socket buffer
            // would drop the clients' first packets after guard passed them.
            std::thread::sleep(Duration::from_millis(300));
            let tx = RawSender::open(&b.bed.client, &b.bed.client_if);
            let (sent, _) = tx.flood(&clients, 100, Duration::from_secs(2));
            (sent, rx.join().expect("receiver"))
        });
        let n = |a: IpAddr| got.get(&a).copied().unwrap_or(0);
        eprintln!(
            "engaged: verified {} of {}, vouched {} of {}, bots' packets dropped for overload {}",
            n(client4(3)),
            sent[0],
            n(client4(5)),
            sent[1],
            b.g.packets("drop", "overload") - overload_before
        );
        assert_eq!(n(client4(3)), sent[0], "the verified client passes");
        assert_eq!(n(client4(5)), sent[1], "the vouched client passes");
        assert!(
            b.g.packets("drop", "overload") > overload_before,
            "bots dropped"
        );
        // The botnet goes on for six more windows: still distributed, never learned.
        let until = windows(&shape(&b)) + 6;
        loop {
            let s = shape(&b);
            seen(&s);
            assert_eq!(rule(&s)["class"], "distributed", "{s:#}");
            if windows(&s) >= until {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        scene.bots.store(0, Ordering::Relaxed);
        // Calm: released after six calm windows.
        let w1 = windows(&shape(&b));
        let s = wait_for(&b, Duration::from_secs(30), "released", |s| {
            seen(s);
            rule(s)["class"] != "distributed"
        });
        eprintln!(
            "released {} windows after the botnet stopped",
            windows(&s) - w1
        );
        assert!(windows(&s) - w1 >= 6, "six calm windows first: {s:#}");
        assert_eq!(rule(&s)["budget_engaged"], false, "{s:#}");
        let high_after = rule(&s)["baseline"]["sources"]["high"]
            .as_f64()
            .expect("high");
        eprintln!(
            "baseline sources p95: {high_before:.0} before the botnet, {high_after:.0} after"
        );
        assert!(
            high_after <= high_before * 1.25,
            "the botnet did not raise the baseline: {high_before} -> {high_after}"
        );
        // The crowd leaves; then one visitor at 100 times its rate.
        scene.visitors.store(16, Ordering::Relaxed);
        let w2 = windows(&shape(&b)) + 3;
        wait_for(&b, Duration::from_secs(10), "calm", |s| windows(s) >= w2);
        scene.heavy.store(true, Ordering::Relaxed);
        let s = wait_for(&b, Duration::from_secs(10), "concentrated", |s| {
            seen(s);
            rule(s)["class"] == "concentrated"
        });
        assert_eq!(rule(&s)["budget_engaged"], false, "{s:#}");
        scene.heavy.store(false, Ordering::Relaxed);
        scene.stop.store(true, Ordering::Relaxed);
        player.join().expect("player");
        drop(conns);
    });
    for l in &timeline {
        eprintln!("{l}");
    }
    // A restart keeps the baseline: no warm-up again.
    let before = rule(&shape(&b))["baseline"].clone();
    b.g.stop();
    let iface = b.bed.server_if.clone();
    b.g.spawn(&b.bed.server, &iface);
    let after = rule(&shape(&b))["baseline"].clone();
    eprintln!("baseline before the restart {before}, after {after}");
    assert_eq!(after["warming_up"], false, "{after}");
    assert_eq!(after["windows"], before["windows"], "{after}");
    assert_eq!(after["sources"], before["sources"], "{after}");
}

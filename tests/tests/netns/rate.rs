//! Rate rules under real floods: AF_PACKET frames (forged sources from 198.18.0.0/15 and
//! 2001:db8::/32) from the client namespace into guardd's veth, counted at a UDP socket on
//! the server. Every flood is bounded in packets and time.

use std::{
    collections::{HashMap, HashSet},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use guard_tests::{
    bed::GuardBed,
    daemon::Guardd,
    netns::{Testbed, client4},
    packet::udp_from,
    traffic::{RawSender, Receiver},
};
use guard_user::{config::Config, rate::rules::RuleSet};

/// A config with fast refills (100 ms, 30 ticks/s) so short tests see many refills.
fn config(rules: &str, extra: &str) -> String {
    format!(
        "refill_period = \"100ms\"\nrefill_batches_per_second = 30\nrefill_stale_after = \"1s\"\n{extra}\n{rules}"
    )
}

fn within(got: f64, want: f64, tolerance: f64) -> bool {
    (got - want).abs() <= want * tolerance
}

#[test]
fn one_source_at_ten_times_the_rate_gets_rate_times_t_plus_burst() {
    let rules = "[[rules]]\nname = \"per-source\"\nrate = 200.0\nburst = 100\nbuckets = 4096\n";
    let b = GuardBed::start(&config(rules, ""));
    let (guardd, rx, tx) = (&b.g, &b.rx, &b.tx);
    let src = client4(2);
    let (sent, elapsed) = tx.flood(&[udp_from(src, rx.port)], 2000, Duration::from_secs(3));
    let got = rx.collect(Duration::from_millis(400), Duration::from_secs(10));
    let delivered = got.get(&src).copied().unwrap_or(0) as f64;
    let want = 200.0 * elapsed.as_secs_f64() + 100.0;
    eprintln!(
        "rate accuracy: sent {} in {:.2}s, delivered {delivered}, expected {want:.0} ({:+.1}%)",
        sent[0],
        elapsed.as_secs_f64(),
        (delivered - want) / want * 100.0
    );
    assert!(sent[0] >= 5000, "the flood ran at ~2000 pps: {sent:?}");
    assert!(
        within(delivered, want, 0.10),
        "delivered {delivered}, expected {want:.0} ± 10%"
    );
    // The rule also charges the client's own link-local IPv6 chatter (ND, MLD): a handful.
    let (_, passed, limited) = guardd.rule_counts()[0].clone();
    assert!(
        passed as f64 >= delivered && passed as f64 <= delivered + 10.0,
        "rule passed {passed}, delivered {delivered}"
    );
    assert!(
        passed + limited >= sent[0] as u64,
        "every flood packet was charged or limited"
    );
}

/// (rate, burst) of the rules whose long-run rate must hold at every refill period: burst
/// below one period's earnings (100/s burst 50 at 1 s), tiny bursts, a rate below one token
/// per period, a high rate, and the default rule.
const RATE_CASES: [(f64, u32); 5] = [
    (100.0, 50),
    (10.0, 1),
    (0.5, 1),
    (5000.0, 100),
    (1000.0, 2000),
];

/// One source floods each rule of `RATE_CASES` at 10x its rate (at least 100 pps) for 5 s
/// under `settings`; what reaches the server's socket is within 2% (or one packet) of
/// `burst + rate x T` and never above the admission bound `burst + rate x (T + period)`.
fn floods_get_burst_plus_rate(settings: &str, period: f64) {
    let bed = Testbed::new();
    let rx = Receiver::bind(&bed.server);
    let tx = RawSender::open(&bed.client, &bed.client_if);
    let mut failures = Vec::new();
    for (i, (rate, burst)) in RATE_CASES.into_iter().enumerate() {
        let rule = format!("[[rules]]\nname = \"r\"\nrate = {rate:?}\nburst = {burst}\n");
        let guardd = Guardd::start(&bed.server, &bed.server_if, &format!("{settings}\n{rule}"));
        // A source of its own per case: no bucket state carries over.
        let src = client4(10 + i as u8);
        let pps = (rate * 10.0).max(100.0) as u32;
        // Quiet for longer than the gap between two admitted packets.
        let quiet = Duration::from_secs_f64(0.5 + 2.0 / rate);
        let ((sent, elapsed), got) = std::thread::scope(|s| {
            let counting = s.spawn(|| rx.collect(quiet, Duration::from_secs(15)));
            let flood = tx.flood(&[udp_from(src, rx.port)], pps, Duration::from_secs(5));
            (flood, counting.join().unwrap())
        });
        drop(guardd);
        // From the first frame to the last: the flood sends frame k at k / pps (elapsed also
        // holds the loop's last pause).
        let t = if sent[0] as f64 >= pps as f64 * 5.0 {
            (sent[0] - 1) as f64 / pps as f64
        } else {
            elapsed.as_secs_f64()
        };
        let delivered = got.get(&src).copied().unwrap_or(0) as f64;
        let want = burst as f64 + rate * t;
        let bound = burst as f64 + rate * (t + period);
        eprintln!(
            "rate {rate}/s burst {burst}, refill_period {period}s: sent {} in {t:.3}s, \
             delivered {delivered}, burst + rate x T = {want:.1} ({:+.2}%), bound {bound:.1}",
            sent[0],
            (delivered - want) / want * 100.0
        );
        assert!(
            sent[0] as f64 >= 2.0 * bound,
            "the flood kept the bucket empty: sent {}",
            sent[0]
        );
        if (delivered - want).abs() > (want * 0.02).max(1.0) || delivered > bound {
            failures.push(format!(
                "rate {rate} burst {burst}: delivered {delivered}, expected {want:.1} ± 2% \
                 (at most {bound:.1})"
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn every_rule_gives_its_rate_at_the_default_refill_period() {
    // The default settings: refill_period 1 s, 32 ticks per second.
    floods_get_burst_plus_rate("", 1.0);
}

#[test]
fn every_rule_gives_its_rate_at_a_100ms_refill_period() {
    floods_get_burst_plus_rate(&config("", ""), 0.1);
}

#[test]
fn thousand_sources_under_the_rate_pass_except_for_bucket_collisions() {
    // 4096 buckets so that collisions happen and can be checked; see the note for 2^17.
    let rules = "[[rules]]\nname = \"per-source\"\nrate = 10.0\nburst = 10\nbuckets = 4096\n";
    let b = GuardBed::start(&config(rules, ""));
    let (guardd, rx, tx) = (&b.g, &b.rx, &b.tx);
    let sources: Vec<IpAddr> = (0..1000u32)
        .map(|i| IpAddr::V4(Ipv4Addr::from(0xc612_0400 + i)))
        .collect();
    let frames: Vec<Vec<u8>> = sources.iter().map(|s| udp_from(*s, rx.port)).collect();
    // 15 packets per source in 1.5 s: 10 burst + 15 refilled cover one source, not two.
    let (sent, _) = tx.flood(&frames, 10_000, Duration::from_millis(1500));
    let got = rx.collect(Duration::from_millis(400), Duration::from_secs(10));

    let set = RuleSet::compile(&Config::parse(rules, "rules").unwrap().rules);
    let key = guardd.pinned_key();
    let mut per_bucket: HashMap<u32, usize> = HashMap::new();
    for s in &sources {
        *per_bucket
            .entry(set.bucket_of(0, &key, *s).unwrap())
            .or_default() += 1;
    }
    let collided: HashSet<IpAddr> = sources
        .iter()
        .copied()
        .filter(|s| per_bucket[&set.bucket_of(0, &key, *s).unwrap()] > 1)
        .collect();
    let mut lost_sources = 0;
    let mut lost_packets = 0;
    for (i, s) in sources.iter().enumerate() {
        let delivered = got.get(s).copied().unwrap_or(0);
        if delivered < sent[i] {
            lost_sources += 1;
            lost_packets += sent[i] - delivered;
            assert!(
                collided.contains(s),
                "{s} lost {} packets but has a bucket to itself",
                sent[i] - delivered
            );
        }
    }
    eprintln!(
        "1000 sources, 4096 buckets: {} sources share a bucket ({:.1}%; expected {:.1}%), \
         {lost_sources} sources lost {lost_packets} packets, all of them in shared buckets",
        collided.len(),
        collided.len() as f64 / 10.0,
        (1.0 - (1.0 - 1.0 / 4096f64).powi(999)) * 100.0
    );
    assert!(sent.iter().all(|&n| n == 15), "each source sent 15");
    let solo_delivered: usize = sources
        .iter()
        .filter(|s| !collided.contains(s))
        .map(|s| got[s])
        .sum();
    assert_eq!(
        solo_delivered,
        15 * (1000 - collided.len()),
        "every source alone in its bucket got all through"
    );
}

#[test]
fn slash24_and_slash64_floods_share_one_bucket() {
    let rules = "[[rules]]\nname = \"per-net\"\nipv4_prefix = 24\nipv6_prefix = 64\nrate = 100.0\nburst = 50\nbuckets = 4096\n";
    let b = GuardBed::start(&config(rules, ""));
    let (rx, tx) = (&b.rx, &b.tx);
    let legit = client4(2);
    let forged4: Vec<IpAddr> = (0..256u32)
        .map(|i| IpAddr::V4(Ipv4Addr::new(198, 18, 7, i as u8)))
        .collect();
    let forged6: Vec<IpAddr> = (0..256u64)
        .map(|i| {
            IpAddr::V6(Ipv6Addr::from(
                (0x2001_0db8_0001_0002u128 << 64) | i.wrapping_mul(0x9e37_79b9_7f4a_7c15) as u128,
            ))
        })
        .collect();
    for (family, forged) in [("IPv4 /24", &forged4), ("IPv6 /64", &forged6)] {
        let frames: Vec<Vec<u8>> = forged.iter().map(|s| udp_from(*s, rx.port)).collect();
        let legit_frame = [udp_from(legit, rx.port)];
        let ((_, elapsed), (legit_sent, _)) = std::thread::scope(|s| {
            let flood = s.spawn(|| tx.flood(&frames, 2000, Duration::from_secs(2)));
            let steady = tx.flood(&legit_frame, 40, Duration::from_secs(2));
            (flood.join().unwrap(), steady)
        });
        let got = rx.collect(Duration::from_millis(400), Duration::from_secs(10));
        let delivered: usize = forged
            .iter()
            .map(|s| got.get(s).copied().unwrap_or(0))
            .sum();
        let want = 100.0 * elapsed.as_secs_f64() + 50.0;
        eprintln!(
            "{family} flood from {} sources: delivered {delivered}, expected {want:.0}",
            forged.len()
        );
        assert!(
            within(delivered as f64, want, 0.10),
            "{family}: delivered {delivered}, expected {want:.0} ± 10%"
        );
        assert_eq!(
            got.get(&legit).copied().unwrap_or(0),
            legit_sent[0],
            "{family}: the legitimate client is untouched"
        );
    }
}

#[test]
fn killed_daemon_fails_open_after_stale_but_deny_holds() {
    let bed = Testbed::new();
    let dir = guard_tests::daemon::workdir();
    let deny = dir.path().join("deny.txt");
    std::fs::write(&deny, "198.18.0.3\n").unwrap();
    let rules = "[[rules]]\nname = \"per-source\"\nrate = 10.0\nburst = 10\nbuckets = 4096\n";
    let mut guardd = Guardd::start(
        &bed.server,
        &bed.server_if,
        &config(rules, &format!("[lists]\ndeny = [{deny:?}]\n")),
    );
    let rx = Receiver::bind(&bed.server);
    let tx = RawSender::open(&bed.client, &bed.client_if);
    let (limited_src, denied_src) = (client4(2), client4(3));
    let frames = [
        udp_from(limited_src, rx.port),
        udp_from(denied_src, rx.port),
    ];

    // Under a flood, the limited source gets ~burst + rate x t through.
    let (sent, _) = tx.flood(&frames, 1000, Duration::from_secs(1));
    let got = rx.collect(Duration::from_millis(300), Duration::from_secs(5));
    let during = got.get(&limited_src).copied().unwrap_or(0);
    assert!(
        during < sent[0] / 5,
        "limited while guardd runs: {during} of {}",
        sent[0]
    );

    guardd.kill();
    // Within refill_stale_after (1 s) the rule still limits: buckets stay as they were.
    let (sent, _) = tx.flood(&frames, 1000, Duration::from_millis(300));
    let got = rx.collect(Duration::from_millis(300), Duration::from_secs(5));
    let limited_right_after = got.get(&limited_src).copied().unwrap_or(0);
    assert!(
        limited_right_after < sent[0],
        "still limited right after the kill: {limited_right_after}"
    );

    std::thread::sleep(Duration::from_millis(1200));
    let (sent, _) = tx.flood(&frames, 1000, Duration::from_millis(500));
    let got = rx.collect(Duration::from_millis(300), Duration::from_secs(5));
    assert_eq!(
        got.get(&limited_src).copied().unwrap_or(0),
        sent[0],
        "fail open once the heartbeat is stale"
    );
    assert_eq!(
        got.get(&denied_src).copied().unwrap_or(0),
        0,
        "the deny list still drops"
    );
    // All passed; the first few on what the bucket earned until the heartbeat went stale
    // (the kernel accrues up to refill_stale_after: 1 s x 10/s), the rest as stale_refill.
    let stale = guardd.packets("pass", "stale_refill");
    assert!(
        stale + 10 >= sent[0] as u64,
        "counted as stale_refill: {stale} of {}",
        sent[0]
    );
}

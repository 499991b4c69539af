//! `ban_after` as a forger would use it: floods with a chosen victim's address (UDP, bare
//! SYNs, ACKs of no connection) at ten times a rule's rate for twice `ban_after` never get
//! the victim banned, though the victim has a real connection to the host; the same client
//! flooding over its real connection is banned as before; forged members of a range make
//! no aggregate even where the rule bans unproven sources.

use std::{
    net::{IpAddr, Ipv4Addr},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use guard_tests::{
    bed::GuardBed,
    connections::Connections,
    packet::{tcp_from, udp_from},
};
use serde_json::Value;

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const PORT: u16 = 8090;

fn bans(b: &GuardBed) -> Vec<Value> {
    let list = b.ok("GET", "/v1/bans", "");
    list["entries"].as_array().expect("entries").clone()
}

const UNVERIFIED: &str = "guard_auto_bans_skipped_total{kind=\"rule\",reason=\"unverified\"} ";

/// Floods `frames` at `pps` until `cidr` is banned or `limit` passes; the time it took.
fn flood(
    b: &GuardBed,
    frames: &[Vec<u8>],
    pps: u32,
    limit: Duration,
    cidr: &str,
) -> Option<Duration> {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let start = Instant::now();
        let f = s.spawn(|| b.tx.flood_until(frames, pps, limit, &stop));
        let banned = loop {
            if bans(b).iter().any(|e| e["cidr"] == cidr) {
                break Some(start.elapsed());
            }
            if start.elapsed() > limit {
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        stop.store(true, Ordering::Relaxed);
        f.join().expect("flood");
        banned
    })
}

#[test]
fn forged_floods_with_a_victims_address_never_get_it_banned() {
    // Any protocol, so UDP, SYNs and ACKs all meet it; 100/s, ban_after 2 s, proof wanted.
    let b = GuardBed::start(
        "[[rules]]\nname = \"per-source\"\nrate = 100.0\nburst = 100\nban_after = \"2s\"\n",
    );
    let victim = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 5));
    // The victim is a real client: it has a connection to the host.
    let real = Connections::open(&b.bed, &[victim], PORT);
    let (_, real_port) = real.tuples[0];
    let forged: [(&str, Vec<u8>); 3] = [
        ("UDP", udp_from(victim, b.rx.port)),
        ("bare SYNs", tcp_from(victim, 40_000, PORT, SYN)),
        // The victim's address and the host's port, but no connection's 4-tuple.
        (
            "ACKs of no connection",
            tcp_from(victim, real_port.wrapping_add(1), PORT, ACK),
        ),
    ];
    for (what, frame) in &forged {
        let skipped = b.count(UNVERIFIED);
        let rate_drops = b.g.packets("drop", "rate");
        // Ten times the rule's rate, for twice ban_after.
        let banned = flood(
            &b,
            std::slice::from_ref(frame),
            1000,
            Duration::from_secs(4),
            "198.18.0.5/32",
        );
        eprintln!("forged {what}: banned after {banned:?}");
        assert_eq!(
            banned,
            None,
            "forged {what} got the victim banned: {:?}",
            bans(&b)
        );
        assert!(
            b.count(UNVERIFIED) > skipped,
            "forged {what}: counted as an unproven streak:\n{}",
            b.scrape()
        );
        assert!(
            b.g.packets("drop", "rate") > rate_drops + 2000,
            "forged {what} was limited"
        );
        // Quiet long enough that a whole second of the kernel's clock passes without a
        // report, which ends the streak: the next flood starts one of its own. (1.5 s was
        // not: a flood that stopped early in a second and the next one starting 1.5 s later
        // report in consecutive seconds, and the real flooder was banned early.)
        std::thread::sleep(Duration::from_millis(2100));
    }
    // The same client flooding over its real connection is banned, ban_after after.
    let took = flood(
        &b,
        &real.acks(),
        1000,
        Duration::from_secs(6),
        "198.18.0.5/32",
    )
    .unwrap_or_else(|| panic!("the real flooder was not banned:\n{}", b.g.log()));
    eprintln!(
        "real flooder over its connection: banned after {:.2}s",
        took.as_secs_f64()
    );
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_millis(4000),
        "banned {took:?} after the flood started"
    );
    let e = bans(&b)
        .into_iter()
        .find(|e| e["cidr"] == "198.18.0.5/32")
        .expect("the ban");
    assert!(e.get("unverified").is_none(), "a proven ban: {e}");
    assert_eq!(b.count("guard_auto_bans_total{kind=\"rule\"} "), 1);
}

#[test]
fn forged_members_of_a_range_make_no_aggregate() {
    // Even where the rule bans unproven sources, they do not count towards a range.
    let b = GuardBed::start(
        "[[rules]]\nname = \"per-source\"\nrate = 100.0\nburst = 100\nban_after = \"2s\"\n\
         ban_unverified = true\n\n[bans]\naggregate_sources = 8\n",
    );
    let frames: Vec<Vec<u8>> = (1..=8u8)
        .map(|i| udp_from(IpAddr::V4(Ipv4Addr::new(198, 18, 60, i * 10)), b.rx.port))
        .collect();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let f = s.spawn(|| {
            b.tx.flood_until(&frames, 8000, Duration::from_secs(8), &stop)
        });
        let start = Instant::now();
        while bans(&b).len() < 8 && start.elapsed() < Duration::from_secs(7) {
            std::thread::sleep(Duration::from_millis(50));
        }
        stop.store(true, Ordering::Relaxed);
        f.join().expect("flood");
    });
    let all = bans(&b);
    assert_eq!(all.len(), 8, "eight unproven bans, no aggregate: {all:?}");
    assert!(
        all.iter()
            .all(|e| e["unverified"] == true
                && e["cidr"].as_str().is_some_and(|c| c.ends_with("/32"))),
        "{all:?}"
    );
    assert_eq!(b.count("guard_auto_bans_total{kind=\"aggregate\"} "), 0);
    assert!(
        b.g.log().contains(
            "ban_unverified = true: anyone who can send packets with a forged source address"
        ),
        "the start says what the setting allows:\n{}",
        b.g.log()
    );
}

//! The fleet's own traffic through the interface guard guards: a host joining a fleet
//! whose NATS replies cross its XDP program under the default rule catches up with 100,000
//! bans as a host beside NATS does, and segments forged with the server's address are still
//! held to the rules.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use guard_tests::{
    fleet::{FleetBed, within},
    packet::tcp_from,
};

/// The packaged default rule: 1000 packets/s, burst 2000, per /32 and /64.
const DEFAULT_RULE: &str = "[[rules]]\nname = \"per-source\"\nrate = 1000.0\nburst = 2000\n";
const BANS: usize = 100_000;

fn bulk_v6(count: usize) -> String {
    let entries: Vec<String> = (0..count)
        .map(|i| {
            format!(
                r#"{{"cidr":"2001:db8:100:{:x}::{:x}","ttl_secs":3600}}"#,
                i >> 16,
                i & 0xffff
            )
        })
        .collect();
    format!("[{}]", entries.join(","))
}

fn joined(f: &FleetBed, i: usize) -> Option<Duration> {
    let h = &f.hosts[i];
    within(Duration::from_secs(120), || {
        let (code, s) = h.g.api("GET", "/v1/status", None);
        code == 200 && s["fleet"]["in_sync"] == true
    })
}

#[test]
fn a_host_catches_up_with_100_000_bans_through_its_guarded_interface() {
    let mut f = FleetBed::new(false);
    f.add_host("a", DEFAULT_RULE);
    f.wait_in_sync(Duration::from_secs(20));
    f.hosts[0].ok("POST", "/v1/bans", &bulk_v6(BANS));
    let published = within(Duration::from_secs(120), || {
        f.hosts[0].g.api("GET", "/v1/status", None).1["fleet"]["outbox"] == 0
    });
    assert!(published.is_some(), "a published its bans");
    // The reference: a host that reaches NATS beside the guarded interface.
    let t = Instant::now();
    let c = f.add_host("c", DEFAULT_RULE);
    let beside = joined(&f, c).map(|_| t.elapsed()).expect("c in sync");
    // A host whose NATS traffic crosses its XDP program and the default rule.
    let t = Instant::now();
    let b = f.add_host_guarding_nats("b", DEFAULT_RULE);
    let through = joined(&f, b).map(|_| t.elapsed()).expect("b in sync");
    let stats = f.hosts[b].g.api("GET", "/v1/stats", None).1;
    eprintln!(
        "catch-up of {BANS} bans: {:.2} s beside NATS, {:.2} s through the guarded interface; \
         b's packets: {}",
        beside.as_secs_f64(),
        through.as_secs_f64(),
        stats["packets"]
    );
    assert_eq!(stats["bans_active"], BANS, "all of them: {stats}");
    let h = &f.hosts[b];
    assert_eq!(
        h.g.packets("drop", "rate"),
        0,
        "no segment of the fleet's was limited"
    );
    assert!(
        through < beside * 3 / 2 + Duration::from_secs(2),
        "the guarded link slowed the catch-up: {through:?} against {beside:?}"
    );
    // Not an open door: segments forged with the server's address and port, on no
    // connection, are held to the rule like any others.
    let server: IpAddr = format!("198.19.{}.1", b + 1).parse().expect("address");
    let forged = [tcp_from(server, 4222, 9999, 0x10)];
    let (sent, _) = h.tx.flood(&forged, 6000, Duration::from_secs(1));
    let limited = h.g.packets("drop", "rate");
    eprintln!(
        "forged as the NATS server: {} sent, {limited} limited",
        sent[0]
    );
    assert!(
        limited >= 2000,
        "forged segments were limited: {limited} of {}",
        sent[0]
    );
}

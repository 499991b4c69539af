//! The fleet: guardd hosts in namespaces of their own sharing verdicts through real NATS
//! servers (Debian's nats-server 2.9 with JetStream) in a hub namespace. A verdict made on
//! one host is enforced on the others; a host that starts or comes back catches up; NATS
//! down leaves every host enforcing, and what was made meanwhile arrives when it is back.

use std::time::{Duration, Instant};

use guard_tests::{
    bed::GuardBed,
    daemon::bulk_bans_body,
    fleet::{FleetBed, within},
    netns::client4,
};

const SYNC: Duration = Duration::from_secs(20);
const PROPAGATE: Duration = Duration::from_secs(5);

/// The entry for `cidr` in a host's bans (or allows), if any.
fn entry(h: &GuardBed, route: &str, cidr: &str) -> Option<serde_json::Value> {
    let (code, list) = h.g.api("GET", route, None);
    assert_eq!(code, 200, "{list}");
    list["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["cidr"] == cidr)
        .cloned()
}

fn bans_active(h: &GuardBed) -> u64 {
    h.g.api("GET", "/v1/stats", None).1["bans_active"]
        .as_u64()
        .expect("bans_active")
}

fn wait_for(h: &GuardBed, route: &str, cidr: &str, present: bool) {
    let ok = within(PROPAGATE, || entry(h, route, cidr).is_some() == present);
    assert!(
        ok.is_some(),
        "{cidr} {} in {route} within {PROPAGATE:?}:\n{}",
        if present { "not" } else { "still" },
        h.g.log()
    );
}

fn status(h: &GuardBed) -> serde_json::Value {
    h.g.api("GET", "/v1/status", None).1
}

#[test]
fn a_verdict_made_on_one_host_is_enforced_on_every_host() {
    let mut f = FleetBed::new(false);
    for node in ["a", "b", "c"] {
        f.add_host(node, "");
    }
    f.wait_in_sync(SYNC);
    let (junk, legit) = (client4(3), client4(2));
    for h in &f.hosts {
        assert_eq!(h.deliver(junk, 20), 20, "before any ban");
    }
    f.hosts[0].ok(
        "POST",
        "/v1/bans",
        r#"{"cidr":"198.18.0.3","ttl_secs":600,"reason":"junk payload"}"#,
    );
    for h in &f.hosts[1..] {
        wait_for(h, "/v1/bans", "198.18.0.3/32", true);
        let e = entry(h, "/v1/bans", "198.18.0.3/32").unwrap();
        assert_eq!(e["origin"], "a", "{e}");
        assert_eq!(e["reason"], "junk payload", "{e}");
        let left = e["ttl_remaining_secs"].as_u64().unwrap();
        assert!(
            (590..=600).contains(&left),
            "the origin's expiry, not a new TTL: {e}"
        );
        assert_eq!(h.deliver(junk, 20), 0, "banned on A, dropped here");
        assert_eq!(h.deliver(legit, 20), 20);
    }
    // A local verdict stays on its host.
    f.hosts[0].ok(
        "POST",
        "/v1/bans",
        r#"{"cidr":"198.18.0.4","ttl_secs":600,"local":true}"#,
    );
    // Lifted on A: lifted everywhere.
    let (code, body) = f.hosts[0].g.api("DELETE", "/v1/bans/198.18.0.3%2F32", None);
    assert_eq!(code, 200, "{body}");
    for h in &f.hosts[1..] {
        wait_for(h, "/v1/bans", "198.18.0.3/32", false);
        assert_eq!(h.deliver(junk, 20), 20, "unbanned on A, passes here");
        // Made before the unban, which has arrived: had it been shared, it would be here.
        assert!(
            entry(h, "/v1/bans", "198.18.0.4/32").is_none(),
            "local stays local"
        );
    }
    assert_eq!(
        f.hosts[0].deliver(client4(4), 20),
        0,
        "the local ban holds on A"
    );
    // An allow made on B overrides a ban from A, on B as it would locally, and everywhere.
    f.hosts[0].ok(
        "POST",
        "/v1/bans",
        r#"{"cidr":"198.18.0.5","ttl_secs":600}"#,
    );
    wait_for(&f.hosts[1], "/v1/bans", "198.18.0.5/32", true);
    assert_eq!(f.hosts[1].deliver(client4(5), 20), 0);
    f.hosts[1].ok(
        "POST",
        "/v1/allows",
        r#"{"cidr":"198.18.0.5","reason":"a partner"}"#,
    );
    for h in &f.hosts {
        wait_for(h, "/v1/allows", "198.18.0.5/32", true);
        assert!(entry(h, "/v1/bans", "198.18.0.5/32").is_none());
        assert_eq!(h.deliver(client4(5), 20), 20, "allowed on B, passes");
    }
    // A vouch made on A is everywhere, with its expiry; withdrawn on A, it goes everywhere.
    f.hosts[0].ok(
        "POST",
        "/v1/vouches",
        r#"{"cidr":"198.18.0.9","ttl_secs":900,"reason":"solved the challenge"}"#,
    );
    for h in &f.hosts[1..] {
        wait_for(h, "/v1/vouches", "198.18.0.9/32", true);
        let e = entry(h, "/v1/vouches", "198.18.0.9/32").unwrap();
        assert_eq!(
            (&e["origin"], &e["reason"]),
            (&"a".into(), &"solved the challenge".into()),
            "{e}"
        );
        assert!(e["ttl_remaining_secs"].as_u64().unwrap() > 880, "{e}");
    }
    f.hosts[0].ok("DELETE", "/v1/vouches/198.18.0.9", "");
    for h in &f.hosts[1..] {
        wait_for(h, "/v1/vouches", "198.18.0.9/32", false);
    }
    // Counted: B applied A's two bans and the unban; C also B's allow; both the vouch.
    let metrics = f.hosts[2].scrape();
    guard_tests::tools::promtool_check(&metrics);
    for line in [
        "guard_fleet_connected 1",
        "guard_fleet_outbox_entries 0",
        "guard_fleet_applied_total{kind=\"ban\"} 2",
        "guard_fleet_applied_total{kind=\"unban\"} 1",
        "guard_fleet_applied_total{kind=\"allow\"} 1",
        "guard_fleet_applied_total{kind=\"vouch\"} 1",
        "guard_fleet_applied_total{kind=\"unvouch\"} 1",
        "guard_fleet_propagation_seconds_count 4",
    ] {
        assert!(metrics.contains(line), "{line} in:\n{metrics}");
    }
    let s = status(&f.hosts[2]);
    assert_eq!(s["fleet"]["node"], "c", "{s}");
    assert!(s["fleet"]["last_applied"].is_string(), "{s}");
}

#[test]
fn a_host_that_starts_later_catches_up_and_escalation_counts_fleet_wide() {
    let mut f = FleetBed::new(false);
    f.add_host("a", "");
    f.wait_in_sync(SYNC);
    let first = std::net::Ipv4Addr::new(198, 18, 64, 0);
    f.hosts[0].ok("POST", "/v1/bans", &bulk_bans_body(first, 10_000, 3600));
    f.hosts[0].ok(
        "POST",
        "/v1/bans",
        r#"{"cidr":"198.18.0.3","ttl_secs":3600}"#,
    );
    // Banned and lifted before C exists: C must not have it.
    f.hosts[0].ok(
        "POST",
        "/v1/bans",
        r#"{"cidr":"198.18.0.6","ttl_secs":3600}"#,
    );
    f.hosts[0].g.api("DELETE", "/v1/bans/198.18.0.6%2F32", None);
    let outbox_empty = within(Duration::from_secs(10), || {
        status(&f.hosts[0])["fleet"]["outbox"] == 0
    });
    assert!(outbox_empty.is_some(), "A published its bans");
    let started = Instant::now();
    f.add_host("c", "");
    let synced =
        within(SYNC, || status(&f.hosts[1])["fleet"]["in_sync"] == true).expect("C in sync");
    assert_eq!(
        bans_active(&f.hosts[1]),
        10_001,
        "all of A's bans in C's kernel"
    );
    eprintln!(
        "a host joining 10,001 bans: in sync {:.2} s after its API answered, {:.2} s after start",
        synced.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    for l in f.hosts[1].g.log().lines().filter(|l| l.contains("fleet")) {
        eprintln!("C: {l}");
    }
    assert!(entry(&f.hosts[1], "/v1/bans", "198.18.0.6/32").is_none());
    assert_eq!(f.hosts[1].deliver(client4(3), 20), 0, "caught up, enforced");
    // Escalation is fleet-wide: a second ban on C of a source banned once on A.
    let first_ban = f.hosts[0].ok("POST", "/v1/bans", r#"{"cidr":"198.18.0.7"}"#);
    assert_eq!(first_ban["applied"][0]["ban_number"], 1);
    wait_for(&f.hosts[1], "/v1/bans", "198.18.0.7/32", true);
    f.hosts[0].g.api("DELETE", "/v1/bans/198.18.0.7%2F32", None);
    wait_for(&f.hosts[1], "/v1/bans", "198.18.0.7/32", false);
    let second = f.hosts[1].ok("POST", "/v1/bans", r#"{"cidr":"198.18.0.7"}"#);
    assert_eq!(second["applied"][0]["ban_number"], 2, "{second}");
    let ttl = second["applied"][0]["ttl_remaining_secs"].as_u64().unwrap();
    assert!(
        (3590..=3600).contains(&ttl),
        "the second escalation TTL (1h): {second}"
    );
    // C away (stopped; its pins keep enforcing) while A lifts one ban and makes another.
    let c = &mut f.hosts[1];
    assert!(c.g.stop().success());
    f.hosts[0].g.api("DELETE", "/v1/bans/198.18.0.3%2F32", None);
    f.hosts[0].ok(
        "POST",
        "/v1/bans",
        r#"{"cidr":"198.18.0.8","ttl_secs":600}"#,
    );
    let c = &mut f.hosts[1];
    c.g.spawn(&c.bed.server, &c.bed.server_if);
    f.wait_in_sync(SYNC);
    let c = &f.hosts[1];
    assert!(
        entry(c, "/v1/bans", "198.18.0.8/32").is_some(),
        "made while C was away"
    );
    assert!(
        entry(c, "/v1/bans", "198.18.0.3/32").is_none(),
        "lifted while C was away"
    );
    assert_eq!(c.deliver(client4(3), 20), 20);
    assert_eq!(c.deliver(client4(8), 20), 0);
}

#[test]
fn with_nats_down_hosts_enforce_alone_and_nothing_made_meanwhile_is_lost() {
    let mut f = FleetBed::new(true);
    for node in ["a", "b", "c"] {
        f.add_host(node, "");
    }
    f.wait_in_sync(Duration::from_secs(40));
    let down = Instant::now();
    for n in &mut f.nats {
        n.stop();
    }
    let gone = within(Duration::from_secs(10), || {
        status(&f.hosts[0])["fleet"]["connected"] == false
    });
    assert!(gone.is_some(), "A sees NATS gone:\n{}", f.hosts[0].g.log());
    // A keeps answering and enforcing at once.
    let t = Instant::now();
    f.hosts[0].ok(
        "POST",
        "/v1/bans",
        r#"{"cidr":"198.18.0.3","ttl_secs":600}"#,
    );
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "the API does not wait for NATS"
    );
    assert_eq!(f.hosts[0].deliver(client4(3), 20), 0);
    f.hosts[0].ok(
        "POST",
        "/v1/bans",
        &bulk_bans_body(std::net::Ipv4Addr::new(198, 18, 64, 0), 100, 600),
    );
    assert_eq!(status(&f.hosts[0])["fleet"]["outbox"], 101);
    // A crashes and comes back while NATS is still down: its outbox is in its database.
    let a = &mut f.hosts[0];
    a.g.kill();
    a.g.spawn(&a.bed.server, &a.bed.server_if);
    assert_eq!(
        status(&f.hosts[0])["fleet"]["outbox"],
        101,
        "the outbox survived"
    );
    assert_eq!(f.hosts[0].deliver(client4(3), 20), 0);
    assert!(entry(&f.hosts[1], "/v1/bans", "198.18.0.3/32").is_none());
    std::thread::sleep(Duration::from_secs(10).saturating_sub(down.elapsed()));
    for n in &mut f.nats {
        n.resume();
    }
    let back = Instant::now();
    for h in &f.hosts[1..] {
        let ok = within(Duration::from_secs(15), || bans_active(h) == 101);
        assert!(
            ok.is_some(),
            "B and C got what A made while NATS was down:\n{}",
            h.g.log()
        );
        assert_eq!(h.deliver(client4(3), 20), 0);
    }
    eprintln!(
        "NATS back: A's 101 queued bans on B and C after {:.2} s",
        back.elapsed().as_secs_f64()
    );
    let flushed = within(Duration::from_secs(5), || {
        status(&f.hosts[0])["fleet"]["outbox"] == 0
    });
    assert!(flushed.is_some(), "A's outbox emptied");
}

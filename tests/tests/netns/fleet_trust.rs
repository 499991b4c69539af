//! The fleet's buckets as an attacker with NATS access writes them: raw puts no guard makes.
//! Each is refused and counted on every host, no verdict changes, nothing is restored later.

use std::time::Duration;

use guard_tests::{
    fleet::{FleetBed, within},
    netns::client4,
};

/// `guard_fleet_refused_total{reason}` on a host.
fn refused(metrics: &str, reason: &str) -> u64 {
    let needle = format!("guard_fleet_refused_total{{reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&needle))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

fn unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

#[test]
fn hostile_records_are_refused_counted_and_change_nothing() {
    let mut f = FleetBed::new(false);
    for node in ["a", "b"] {
        f.add_host(node, "");
    }
    f.wait_in_sync(Duration::from_secs(20));
    let now = unix_ns();
    let hour = 3_600 * 1_000_000_000u64;
    let record = |expires: u64, created: u64, ban_number: u32| {
        format!(
            r#"{{"origin":"mallory","reason":"forged","expires_unix_ns":{expires},"created_unix_ns":{created},"ban_number":{ban_number}}}"#
        )
    };
    let valid = record(now + hour, now, 1);
    // (key, value, the reason each host counts)
    let attacks: Vec<(&str, String, &str)> = vec![
        // All of IPv4 and all of IPv6, for ever: the hosts' own NATS replies with them.
        ("0.0.0.0/0", record(0, now, 1), "key"),
        ("--/0", record(0, now, 1), "key"),
        // A key that is not how guard writes the prefix: a twin of 198.18.0.2/32.
        ("198.18.0.2", valid.clone(), "key"),
        // A ban that never expires, one expired before it was made, one past the longest TTL.
        ("198.18.0.5/32", record(0, now, 1), "expiry"),
        ("198.18.0.6/32", record(now - hour, now, 1), "expiry"),
        (
            "198.18.0.7/32",
            record(now + 400 * 24 * hour, now, 1),
            "expiry",
        ),
        // Made in the future, or before any guard existed.
        (
            "198.18.0.8/32",
            record(now + 2 * hour, now + hour, 1),
            "created",
        ),
        ("198.18.0.9/32", record(1_000, 1, 1), "created"),
        (
            "198.18.0.10/32",
            record(now + hour, now, u32::MAX),
            "ban_number",
        ),
        ("198.18.0.11/32", "not json".into(), "malformed"),
        // Valid records against the hosts' own addresses (each host's guarded interface
        // has 198.18.0.1 and 2001:db8::1): cut off from its own network.
        ("198.18.0.1/32", valid.clone(), "protected"),
        ("198.18.0.0/24", valid.clone(), "protected"),
        ("2001-db8--/64", valid.clone(), "protected"),
    ];
    let nats = &f.nats[0];
    for (key, value, _) in &attacks {
        let answer = nats.raw_publish(&f.hub, &format!("$KV.guard_bans.{key}"), value.as_bytes());
        assert!(
            answer.contains("\"seq\""),
            "{key}: JetStream stored it: {answer}"
        );
    }
    // Too large for the stream guard creates: JetStream itself refuses it.
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(100_000));
    let answer = nats.raw_publish(&f.hub, "$KV.guard_bans.198.18.0.12/32", big.as_bytes());
    assert!(
        answer.contains("message size exceeds maximum allowed"),
        "a 100 kB record is refused by the stream: {answer}"
    );
    // What the hosts made of them (the figures the note compares with a guard without checks).
    std::thread::sleep(Duration::from_millis(1500));
    for (i, h) in f.hosts.iter().enumerate() {
        let applied = h.g.api("GET", "/v1/stats", None).1["bans_active"]
            .as_u64()
            .unwrap_or(0);
        eprintln!(
            "host {i}: {applied} of {} hostile records applied; an unrelated source: {} of 20 pass",
            attacks.len(),
            h.deliver(client4(3), 20)
        );
        let counted = within(Duration::from_secs(5), || {
            let m = h.scrape();
            [
                "key",
                "expiry",
                "created",
                "ban_number",
                "malformed",
                "protected",
            ]
            .iter()
            .all(|r| {
                let want = attacks.iter().filter(|a| a.2 == *r).count() as u64;
                refused(&m, r) >= want
            })
        });
        assert!(
            counted.is_some(),
            "host {i}: every attack counted:\n{}\n{}",
            h.scrape()
                .lines()
                .filter(|l| l.starts_with("guard_fleet_refused_total"))
                .collect::<Vec<_>>()
                .join("\n"),
            h.g.log()
        );
        let stats = h.g.api("GET", "/v1/stats", None).1;
        assert_eq!(stats["bans_active"], 0, "host {i}: no ban applied: {stats}");
        // The forged /0 would have cut everyone off; an unrelated source still passes.
        assert_eq!(
            h.deliver(client4(3), 20),
            20,
            "host {i}: an unrelated source passes"
        );
        // Logged, but not once per record: once per reason a minute.
        let log = h.g.log();
        let lines = log.matches("fleet: refused a record").count();
        let reasons = 7;
        assert!(
            (1..=reasons).contains(&lines),
            "host {i}: {lines} refusal lines for {} records:\n{log}",
            attacks.len()
        );
    }
    // Nine prefix lengths of valid bans: the kernel probes eight per family, so whoever
    // writes the bucket could take them all and leave every host unable to ban at another.
    // The fleet gets four; the rest are refused, and each host still bans at its own.
    for len in 17u8..=25 {
        let key = format!("198.18.128.0/{len}");
        let answer = nats.raw_publish(&f.hub, &format!("$KV.guard_bans.{key}"), valid.as_bytes());
        assert!(answer.contains("\"seq\""), "{key}: {answer}");
    }
    for (i, h) in f.hosts.iter().enumerate() {
        let counted = within(Duration::from_secs(5), || {
            refused(&h.scrape(), "lengths") >= 5
        });
        assert!(
            counted.is_some(),
            "host {i}: lengths past four refused:\n{}",
            h.scrape()
        );
        let bans = h.g.api("GET", "/v1/bans", None).1;
        let n = bans["entries"].as_array().map_or(0, Vec::len);
        assert_eq!(n, 4, "host {i}: four lengths from the fleet: {bans}");
        // This host's own bans, at lengths the fleet does not use, still go in.
        for cidr in ["198.18.77.7", "198.18.78.0/24", "198.18.80.0/20"] {
            let (code, json) = h.g.api(
                "POST",
                "/v1/bans",
                Some(&format!(
                    r#"{{"cidr":"{cidr}","ttl_secs":60,"local":true}}"#
                )),
            );
            assert_eq!(code, 200, "host {i}: ban {cidr}: {json}");
        }
    }
    // A host that starts afresh (a new state directory, nothing pinned) catches up with the
    // same bucket: it refuses the same records and restores nothing.
    f.add_host("c", "");
    f.wait_in_sync(Duration::from_secs(20));
    let c = &f.hosts[2];
    // Only the four prefix-length records of valid bans.
    assert_eq!(c.g.api("GET", "/v1/stats", None).1["bans_active"], 4);
    assert!(refused(&c.scrape(), "key") >= 3, "{}", c.scrape());
    assert_eq!(c.deliver(client4(3), 20), 20);
}

#[test]
fn a_bucket_made_otherwise_is_reported_and_its_deletions_are_not_trusted() {
    let f0 = FleetBed::new(false);
    // Someone made the bans' bucket before any guard did, with records that expire after
    // 3 s: once they have, a catch-up would find the bucket empty and lift every ban.
    let config = r#"{"name":"KV_guard_bans","subjects":["$KV.guard_bans.>"],"max_msgs_per_subject":1,"max_age":3000000000,"deny_delete":true,"allow_rollup_hdrs":true,"storage":"file","num_replicas":1,"discard":"new","retention":"limits","max_consumers":-1,"max_msgs":-1,"max_bytes":-1}"#;
    let answer = f0.nats[0].raw_publish(
        &f0.hub,
        "$JS.API.STREAM.CREATE.KV_guard_bans",
        config.as_bytes(),
    );
    assert!(
        answer.contains("\"config\""),
        "the stream was made: {answer}"
    );
    let mut f = f0;
    for node in ["a", "b"] {
        f.add_host(node, "");
    }
    f.wait_in_sync(Duration::from_secs(20));
    let (a, b) = (&f.hosts[0], &f.hosts[1]);
    assert!(
        b.g.wait_for_log(
            "the bucket was not made as guard makes it (records expire after 3s)",
            Duration::from_secs(5)
        ),
        "{}",
        b.g.log()
    );
    a.ok(
        "POST",
        "/v1/bans",
        r#"{"cidr":"198.18.0.5","ttl_secs":600}"#,
    );
    let has = |h: &guard_tests::bed::GuardBed| {
        h.g.api("GET", "/v1/bans", None).1["entries"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["cidr"] == "198.18.0.5/32"))
    };
    assert!(
        within(Duration::from_secs(5), || has(b)).is_some(),
        "{}",
        b.g.log()
    );
    // The record ages out of the stream; b restarts and catches up with an empty bucket
    // (a whole catch-up: a new guardd resumes from nothing).
    std::thread::sleep(Duration::from_secs(4));
    let b = &mut f.hosts[1];
    assert!(b.g.stop().success(), "{}", b.g.log());
    b.g.spawn(&b.bed.server, &b.bed.server_if);
    let caught = within(Duration::from_secs(20), || {
        b.g.log()
            .matches("fleet: caught up with the bucket")
            .count()
            >= 4
    });
    assert!(caught.is_some(), "b caught up again:\n{}", b.g.log());
    assert!(
        has(b),
        "the ban stays: the bucket's silence lifts nothing:\n{}",
        b.g.log()
    );
    assert_eq!(b.deliver(client4(5), 20), 0);
}

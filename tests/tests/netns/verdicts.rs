//! The application verdict loop end to end: API calls on guardd's socket, enforcement seen
//! by real frames from another namespace (AF_PACKET), counted at a UDP socket.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use guard_tests::{
    bed::GuardBed,
    netns::{client4, client6},
    packet::udp_from,
};
use guard_user::kernel::pins::PinLayout;

fn start(config: &str) -> GuardBed {
    GuardBed::start(config)
}

#[test]
fn ban_drops_and_unban_restores_for_ipv4_and_ipv6_prefixes() {
    let b = start("");
    let (v4, v6) = (client4(2), client6(2));
    assert_eq!(b.deliver(v4, 50), 50);
    b.ok("POST", "/v1/bans", r#"[{"cidr":"198.18.0.2","ttl_secs":600,"reason":"junk"},{"cidr":"2001:db8::2/127","ttl_secs":600}]"#);
    assert_eq!(b.deliver(v4, 50), 0, "banned /32");
    assert_eq!(b.deliver(v6, 50), 0, "inside the banned /127");
    assert_eq!(b.deliver(client4(5), 50), 50, "others pass");
    assert_eq!(b.g.packets("drop", "ban"), 100);
    b.ok("DELETE", "/v1/bans/198.18.0.2%2F32", "");
    assert_eq!(b.deliver(v4, 50), 50, "unbanned");
    let out = b.g.ctl(&["unban", "2001:db8::2/127"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(b.deliver(v6, 50), 50);
    // guardctl: refused requests exit 1 with the reason.
    let out = b.g.ctl(&["unban", "2001:db8::2/127"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no ban for 2001:db8::2/127"));
}

#[test]
fn bans_expire_in_the_kernel_while_the_daemon_is_dead() {
    let mut b = start("");
    let src = client4(3);
    b.ok("POST", "/v1/bans", r#"{"cidr":"198.18.0.3","ttl_secs":2}"#);
    let banned_at = Instant::now();
    b.g.kill();
    assert_eq!(b.deliver(src, 40), 0, "banned, daemon dead");
    std::thread::sleep(Duration::from_millis(2300).saturating_sub(banned_at.elapsed()));
    assert_eq!(
        b.deliver(src, 40),
        40,
        "the TTL passed: the kernel lets it through"
    );
}

#[test]
fn repeated_bans_escalate() {
    let b = start("[bans]\nescalation = [\"2s\", \"5s\", \"9s\"]\n");
    let mut seen = Vec::new();
    for _ in 0..4 {
        let a = b.ok(
            "POST",
            "/v1/bans",
            r#"{"cidr":"198.18.0.4","reason":"repeat"}"#,
        );
        let e = &a["applied"][0];
        seen.push((
            e["ban_number"].as_u64().unwrap(),
            e["ttl_remaining_secs"].as_u64().unwrap(),
        ));
        b.ok("DELETE", "/v1/bans/198.18.0.4", "");
    }
    // ttl_remaining rounds down: 2 s shows as 1 or 2.
    let want = [(1, 2), (2, 5), (3, 9), (4, 9)];
    for ((n, ttl), (wn, wttl)) in seen.iter().zip(want) {
        assert_eq!(*n, wn, "{seen:?}");
        assert!(
            *ttl == wttl || *ttl + 1 == wttl,
            "ban {n}: ttl {ttl}, wanted {wttl}: {seen:?}"
        );
    }
    // An explicit TTL wins over escalation but still counts.
    let a = b.ok(
        "POST",
        "/v1/bans",
        r#"{"cidr":"198.18.0.4","ttl_secs":100}"#,
    );
    assert_eq!(a["applied"][0]["ban_number"], 5);
    assert!(a["applied"][0]["ttl_remaining_secs"].as_u64().unwrap() >= 99);
}

#[test]
fn allow_bypasses_a_dropping_rule_and_the_deny_list() {
    let b = start(
        "[lists]\ndeny = [\"{dir}/deny.txt\"]\n[[rules]]\nname = \"tight\"\nrate = 1.0\nburst = 1\nbuckets = 1024\n",
    );
    std::fs::write(b.dir.path().join("deny.txt"), "198.18.0.6\n").unwrap();
    b.ok("POST", "/v1/reload", "");
    let (limited, denied) = (client4(2), client4(6));
    assert!(b.deliver(limited, 100) <= 3, "the rule limits");
    assert_eq!(b.deliver(denied, 20), 0, "the deny list drops");
    b.ok(
        "POST",
        "/v1/allows",
        r#"[{"cidr":"198.18.0.2","ttl_secs":60,"reason":"proved itself"},{"cidr":"198.18.0.6"}]"#,
    );
    assert_eq!(b.deliver(limited, 100), 100, "allowed past the rule");
    assert_eq!(b.deliver(denied, 20), 20, "allowed past the deny list");
    let allows = b.g.ctl_json(&["allows"]);
    assert_eq!(allows["entries"].as_array().unwrap().len(), 2);
    b.ok("DELETE", "/v1/allows/198.18.0.2", "");
    assert!(b.deliver(limited, 100) <= 3, "limited again");
}

#[test]
fn a_penalty_makes_the_next_packets_drop() {
    let b = start("[[rules]]\nname = \"api\"\nrate = 10.0\nburst = 100\nbuckets = 1024\n");
    let src = client4(2);
    assert_eq!(b.deliver(src, 20), 20);
    let out = b.g.ctl_json(&["penalize", "198.18.0.2", "5000"]);
    let p = &out["rules"][0];
    // About 80 tokens left (less what the full bucket earned since its refill, at most a
    // period's 10, burned with the first packet; plus what refilled meanwhile), and at most
    // 60 s x 10/s of debt: the charge stops exactly at 600 owed.
    let charged = p["tokens_charged"].as_f64().unwrap();
    assert!((670.0..=700.0).contains(&charged), "{out}");
    assert_eq!(p["tokens_available"].as_f64(), Some(-600.0), "{out}");
    assert_eq!(b.deliver(src, 50), 0, "in debt: limited");
    assert!(b.g.packets("drop", "rate") >= 50);
    assert_eq!(
        b.deliver(client4(3), 20),
        20,
        "another source is not affected"
    );
}

#[test]
fn reload_swaps_deny_lists_without_a_gap() {
    let b = start("[lists]\ndeny = [\"{dir}/deny.txt\"]\n");
    let deny = b.dir.path().join("deny.txt");
    // Both lists deny .3; they differ elsewhere, so every reload rewrites tables.
    let lists = [
        "198.18.0.3\n198.18.0.7\n203.0.113.0/24\n",
        "198.18.0.2/31\n2001:db8::3\n198.51.100.9\n",
    ];
    std::fs::write(&deny, lists[0]).unwrap();
    b.ok("POST", "/v1/reload", "");
    let src = client4(3);
    let frames = [udp_from(src, b.rx.port)];
    // A fixed number of reloads, with the flood running until they are done: a debug
    // guardd on a slow machine takes longer per reload, and must not make the test pass
    // with fewer swaps or fail on a count.
    const RELOADS: usize = 10;
    let stop = AtomicBool::new(false);
    let (sent, took) = std::thread::scope(|s| {
        let flood = s.spawn(|| {
            b.tx.flood_until(&frames, 3000, Duration::from_secs(60), &stop)
                .0
        });
        let start = Instant::now();
        for i in 0..RELOADS {
            std::fs::write(&deny, lists[i % 2]).unwrap();
            b.ok("POST", "/v1/reload", "");
        }
        let took = start.elapsed();
        // Frames sent after the last reload are checked against its tables too.
        std::thread::sleep(Duration::from_millis(100));
        stop.store(true, Ordering::Relaxed);
        (flood.join().unwrap(), took)
    });
    let got =
        b.rx.collect(Duration::from_millis(250), Duration::from_secs(5));
    eprintln!(
        "{} frames from a source in both lists during {RELOADS} reloads in {:.2}s",
        sent[0],
        took.as_secs_f64()
    );
    // 3000 pps over the reloads: at least one frame per millisecond of them.
    assert!(
        sent[0] as f64 >= took.as_secs_f64() * 1000.0,
        "the flood kept up with the reloads: sent {} in {:.2}s",
        sent[0],
        took.as_secs_f64()
    );
    assert_eq!(
        got.get(&src).copied().unwrap_or(0),
        0,
        "never let through during a reload"
    );
}

#[test]
fn bans_and_allows_survive_a_restart_with_their_reasons() {
    let mut b = start("");
    b.ok(
        "POST",
        "/v1/bans",
        r#"{"cidr":"198.18.0.5","ttl_secs":600,"reason":"spam signups"}"#,
    );
    b.ok(
        "POST",
        "/v1/allows",
        r#"{"cidr":"198.18.0.8","reason":"monitoring"}"#,
    );
    assert!(b.g.stop().success());
    // Offline: guardctl reads the pins.
    let bans = b.g.ctl_json(&["bans"]);
    assert_eq!(bans["entries"][0]["cidr"], "198.18.0.5/32");
    assert_eq!(bans["entries"][0]["reason"], "spam signups");
    let text = String::from_utf8(b.g.ctl(&["allows"]).stdout).unwrap();
    assert!(
        text.contains("198.18.0.8/32") && text.contains("monitoring") && text.contains("never"),
        "{text}"
    );
    assert_eq!(
        b.deliver(client4(5), 20),
        0,
        "the ban holds while guardd is down"
    );
    b.g.spawn(&b.bed.server, &b.bed.server_if);
    let bans = b.ok("GET", "/v1/bans", "");
    assert_eq!(bans["entries"][0]["reason"], "spam signups");
    assert!(bans["entries"][0]["ttl_remaining_secs"].as_u64().unwrap() > 590);
    assert_eq!(
        b.ok("GET", "/v1/allows", "")["entries"][0]["reason"],
        "monitoring"
    );
    assert_eq!(b.deliver(client4(5), 20), 0);
    assert_eq!(b.ok("GET", "/v1/stats", "")["bans_active"], 1);
}

/// Pins of an earlier guardd lack a map this one has (here `DYN_REGIONS`): the attached
/// program, though the same code, uses the old maps, so it is replaced, and bans made after
/// the restart are enforced.
#[test]
fn a_restart_onto_pins_missing_a_map_replaces_the_program() {
    let mut b = start("");
    b.ok(
        "POST",
        "/v1/bans",
        r#"{"cidr":"198.18.0.5","ttl_secs":600}"#,
    );
    assert!(b.g.stop().success());
    std::fs::remove_file(PinLayout::new(&b.g.pin_dir).map("DYN_REGIONS")).expect("DYN_REGIONS pin");
    b.g.spawn(&b.bed.server, &b.bed.server_if);
    assert!(
        b.g.wait_for_log(
            "replaced the program of the pinned link",
            Duration::from_secs(5)
        ),
        "{}",
        b.g.log()
    );
    assert_eq!(b.deliver(client4(5), 20), 0, "the old ban holds");
    b.ok(
        "POST",
        "/v1/bans",
        r#"{"cidr":"2001:db8::5","ttl_secs":600}"#,
    );
    assert_eq!(
        b.deliver(client6(5), 20),
        0,
        "a new ban in a new region holds"
    );
    assert_eq!(b.deliver(client6(6), 20), 20, "others pass");
}

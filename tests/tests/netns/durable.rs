//! Durable verdicts: bans, allows, vouches, reasons and escalation counts kept in the state database
//! come back after a reboot (the pins gone, as bpffs is memory), in force before guardd
//! serves; a restart keeps the database in step with the pins; a database that cannot be
//! read is kept aside and guardd starts without it.

use std::time::Duration;

use guard_tests::{bed::GuardBed, daemon::bulk_bans_body, disk::SmallDisk, netns::client4};

fn cidrs(list: &serde_json::Value) -> Vec<String> {
    let mut v: Vec<String> = list["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["cidr"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn bans_allows_and_escalation_survive_a_reboot() {
    let mut b = GuardBed::start("");
    b.ok(
        "POST",
        "/v1/bans",
        r#"[{"cidr":"198.18.0.2","ttl_secs":600,"reason":"junk payload"},{"cidr":"198.18.0.7","ttl_secs":1}]"#,
    );
    // Escalation: .5 banned twice.
    b.ok(
        "POST",
        "/v1/bans",
        r#"{"cidr":"198.18.0.5","ttl_secs":600}"#,
    );
    b.ok("DELETE", "/v1/bans/198.18.0.5", "");
    b.ok(
        "POST",
        "/v1/bans",
        r#"{"cidr":"198.18.0.5","ttl_secs":600}"#,
    );
    b.ok(
        "POST",
        "/v1/allows",
        r#"{"cidr":"198.18.0.6","reason":"proved itself"}"#,
    );
    b.ok(
        "POST",
        "/v1/vouches",
        r#"{"cidr":"2001:db8::8","reason":"solved the challenge"}"#,
    );
    assert_eq!(b.deliver(client4(2), 20), 0);
    b.reboot();
    assert_eq!(b.deliver(client4(2), 20), 20, "no guard while rebooted");
    // The 1 s ban expires while the host is down.
    std::thread::sleep(Duration::from_millis(1500));
    b.g.spawn(&b.bed.server, &b.bed.server_if);
    assert!(
        b.g.log()
            .contains("restored bans and allows from the state database"),
        "{}",
        b.g.log()
    );
    let bans = b.g.ctl_json(&["bans"]);
    assert_eq!(cidrs(&bans), ["198.18.0.2/32", "198.18.0.5/32"], "{bans}");
    let two = &bans["entries"][0];
    assert_eq!(two["reason"], "junk payload");
    assert!(two["ttl_remaining_secs"].as_u64().unwrap() > 590, "{two}");
    assert_eq!(bans["entries"][1]["ban_number"], 2, "{bans}");
    let allows = b.g.ctl_json(&["allows"]);
    assert_eq!(cidrs(&allows), ["198.18.0.6/32"]);
    assert_eq!(allows["entries"][0]["reason"], "proved itself");
    let vouches = b.g.ctl_json(&["vouches"]);
    assert_eq!(cidrs(&vouches), ["2001:db8::8/128"], "{vouches}");
    let left = vouches["entries"][0]["ttl_remaining_secs"]
        .as_u64()
        .unwrap();
    assert!(
        (3500..=3600).contains(&left),
        "[known] verified_for by default: {vouches}"
    );
    assert_eq!(b.deliver(client4(2), 20), 0, "the ban is enforced again");
    assert_eq!(b.deliver(client4(7), 20), 20, "the expired one is not");
    // The escalation count carried over: the next ban of .5 is its third.
    b.ok("DELETE", "/v1/bans/198.18.0.5", "");
    let again = b.ok("POST", "/v1/bans", r#"{"cidr":"198.18.0.5"}"#);
    assert_eq!(again["applied"][0]["ban_number"], 3, "{again}");
}

#[test]
fn a_restart_keeps_the_database_in_step_with_the_pins() {
    let mut b = GuardBed::start("");
    b.ok(
        "POST",
        "/v1/bans",
        r#"{"cidr":"198.18.0.2","ttl_secs":600}"#,
    );
    assert!(b.g.stop().success());
    b.g.spawn(&b.bed.server, &b.bed.server_if);
    b.ok(
        "POST",
        "/v1/bans",
        r#"{"cidr":"198.18.0.3","ttl_secs":600}"#,
    );
    b.ok("DELETE", "/v1/bans/198.18.0.2", "");
    b.reboot();
    b.g.spawn(&b.bed.server, &b.bed.server_if);
    assert_eq!(cidrs(&b.g.ctl_json(&["bans"])), ["198.18.0.3/32"]);
    assert_eq!(b.deliver(client4(3), 20), 0);
    assert_eq!(b.deliver(client4(2), 20), 20);
}

#[test]
fn a_database_that_cannot_be_read_is_kept_aside() {
    let mut b = GuardBed::start("");
    b.ok(
        "POST",
        "/v1/bans",
        r#"{"cidr":"198.18.0.2","ttl_secs":600}"#,
    );
    b.reboot();
    let db = b.g.state_dir().join("guard.redb");
    std::fs::write(&db, b"not a database, whatever it was".repeat(100)).unwrap();
    b.g.spawn(&b.bed.server, &b.bed.server_if);
    assert!(
        b.g.log().contains("the state database could not be read"),
        "{}",
        b.g.log()
    );
    let aside: Vec<_> = std::fs::read_dir(b.g.state_dir())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("guard.redb.broken-")
        })
        .collect();
    assert_eq!(aside.len(), 1, "the broken file is kept aside");
    assert!(
        std::fs::read(aside[0].path())
            .unwrap()
            .starts_with(b"not a database"),
        "unchanged"
    );
    // guardd runs, without the lost bans, and keeps new ones.
    assert_eq!(
        b.g.ctl_json(&["bans"])["entries"].as_array().unwrap().len(),
        0
    );
    b.ok(
        "POST",
        "/v1/bans",
        r#"{"cidr":"198.18.0.4","ttl_secs":600}"#,
    );
    b.reboot();
    b.g.spawn(&b.bed.server, &b.bed.server_if);
    assert_eq!(cidrs(&b.g.ctl_json(&["bans"])), ["198.18.0.4/32"]);
}

#[test]
fn a_full_disk_keeps_verdicts_enforced_and_writes_them_later() {
    let dir = guard_tests::daemon::workdir();
    let state = dir.path().join("state");
    let disk = SmallDisk::mount(&state, "8m");
    let mut b = GuardBed::start(&format!("state_dir = {state:?}\n"));
    let junk = disk.fill();
    // A bulk call first: its rows are staged while the kernel maps are written, and the
    // commit that cannot write is answered like any other.
    let bulk = bulk_bans_body(BULK_FIRST, BULK, 600);
    let answer = b.ok("POST", "/v1/bans", &bulk);
    assert_eq!(answer["durable"], false, "{}", answer["durable"]);
    assert_eq!(answer["applied"].as_array().unwrap().len(), BULK as usize);
    assert_eq!(
        b.deliver(std::net::IpAddr::V4(BULK_FIRST), 20),
        0,
        "the bulk is enforced all the same"
    );
    let answer = b.ok(
        "POST",
        "/v1/bans",
        r#"{"cidr":"198.18.0.2","ttl_secs":600,"reason":"while full"}"#,
    );
    assert_eq!(answer["durable"], false, "{answer}");
    assert_eq!(b.deliver(client4(2), 20), 0, "enforced all the same");
    assert!(
        b.g.wait_for_log("cannot write the state database", Duration::from_secs(5)),
        "{}",
        b.g.log()
    );
    let stats_unsaved = b.metric(UNSAVED);
    assert!(
        stats_unsaved >= 1.0,
        "guard_state_unsaved_changes {stats_unsaved}"
    );
    // Room again: the next retry (every second) writes it.
    std::fs::remove_file(junk).unwrap();
    assert!(
        b.g.wait_for_log(
            "the state database takes writes again",
            Duration::from_secs(10)
        ),
        "{}",
        b.g.log()
    );
    assert_eq!(b.metric(UNSAVED), 0.0);
    let later = b.ok(
        "POST",
        "/v1/bans",
        r#"{"cidr":"198.18.0.3","ttl_secs":600}"#,
    );
    assert_eq!(later["durable"], true, "{later}");
    b.reboot();
    b.g.spawn(&b.bed.server, &b.bed.server_if);
    let bans = b.g.ctl_json(&["bans"]);
    let restored = cidrs(&bans);
    assert_eq!(
        restored.len(),
        BULK as usize + 2,
        "the bulk and the two bans"
    );
    for (cidr, reason) in [("198.18.0.2/32", "while full"), ("198.18.0.3/32", "")] {
        let e = bans["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["cidr"] == cidr)
            .unwrap_or_else(|| panic!("{cidr} restored"));
        assert_eq!(e["reason"], reason, "{e}");
    }
    assert_eq!(
        b.deliver(std::net::IpAddr::V4(BULK_FIRST), 20),
        0,
        "the bulk restored"
    );
    drop(b);
}

const UNSAVED: &str = "guard_state_unsaved_changes ";

/// A bulk of the size that is staged on a second thread (`verdicts::BULK_FROM` is 1,024).
const BULK: u32 = 5000;
const BULK_FIRST: std::net::Ipv4Addr = std::net::Ipv4Addr::new(198, 18, 64, 0);

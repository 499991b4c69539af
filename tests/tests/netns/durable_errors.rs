//! The state database is set aside only when it is corrupt: a database guardd cannot open
//! for another reason (no permission, another guardd holding it) stops the start with the
//! reason and stays as it was, with every verdict in it; the file is its owner's only.

use std::{
    os::unix::fs::PermissionsExt,
    time::{Duration, Instant},
};

use guard_tests::{
    bed::GuardBed,
    daemon::{PinDir, run_guardd},
    disk::SmallDisk,
};

/// Starts another guardd on `b`'s config and state, with its own socket and pins; its exit
/// status and what it printed.
fn second_start(b: &GuardBed) -> (Option<i32>, String) {
    let dir = guard_tests::daemon::workdir();
    let socket = dir.path().join("second.sock");
    let pins = PinDir::new();
    let out = run_guardd(
        &b.bed.server,
        &[
            "--foreground",
            "--config",
            b.g.config.to_str().expect("utf-8"),
            "--iface",
            &b.bed.server_if,
            "--socket",
            socket.to_str().expect("utf-8"),
            "--pin-dir",
            pins.as_str(),
        ],
        Duration::from_secs(30),
    );
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn files(b: &GuardBed) -> Vec<String> {
    files_in(&b.g.state_dir())
}

fn files_in(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("state dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn a_database_another_guardd_holds_is_left_alone() {
    let b = GuardBed::start("");
    b.ok(
        "POST",
        "/v1/bans",
        r#"{"cidr":"198.18.0.2","ttl_secs":600}"#,
    );
    let db = b.g.state_dir().join("guard.redb");
    let mode = std::fs::metadata(&db)
        .expect("the database")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "owner-only: {:o}", mode & 0o777);
    let (code, err) = second_start(&b);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("left as it is"), "{err}");
    assert_eq!(files(&b), ["guard.redb"], "nothing renamed");
    // The first guardd goes on, its database with it.
    b.ok(
        "POST",
        "/v1/bans",
        r#"{"cidr":"198.18.0.3","ttl_secs":600}"#,
    );
    assert_eq!(b.deliver(guard_tests::netns::client4(2), 10), 0);
}

#[test]
fn a_database_guardd_may_not_read_stops_the_start_and_keeps_its_verdicts() {
    let mut b = GuardBed::start("");
    b.ok(
        "POST",
        "/v1/bans",
        r#"{"cidr":"198.18.0.2","ttl_secs":600}"#,
    );
    assert!(b.g.stop().success(), "{}", b.g.log());
    let db = b.g.state_dir().join("guard.redb");
    let before = std::fs::read(&db).expect("the database");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o000)).expect("chmod");
    let (code, err) = second_start(&b);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("guard.redb") && err.contains("left as it is"),
        "the reason names the file: {err}"
    );
    assert_eq!(files(&b), ["guard.redb"], "nothing renamed");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    assert_eq!(
        std::fs::read(&db).expect("the database"),
        before,
        "unchanged"
    );
    // Fixed: the next start has the ban.
    b.g.spawn(&b.bed.server, &b.bed.server_if);
    let bans = b.g.ctl_json(&["bans"]);
    assert!(bans.to_string().contains("198.18.0.2/32"), "{bans}");
}

const UNSAVED: &str = "guard_state_unsaved_changes ";

#[test]
fn ten_thousand_single_bans_on_a_full_disk_are_all_kept_and_the_file_never_renamed() {
    const BANS: u32 = 10_000;
    let dir = guard_tests::daemon::workdir();
    let state = dir.path().join("state");
    let disk = SmallDisk::mount(&state, "8m");
    let mut b = GuardBed::start(&format!("state_dir = {state:?}\n"));
    let junk = disk.fill();
    let first = u32::from(std::net::Ipv4Addr::new(198, 18, 128, 0));
    let t = Instant::now();
    for i in 0..BANS {
        let ip = std::net::Ipv4Addr::from(first + i);
        let answer = b.ok(
            "POST",
            "/v1/bans",
            &format!(r#"{{"cidr":"{ip}","ttl_secs":3600,"reason":"full disk"}}"#),
        );
        assert_eq!(answer["durable"], false, "ban {i} while full: {answer}");
    }
    let took = t.elapsed();
    // What waits is one change per row, however often a row changes: the same ban made
    // again and again adds nothing.
    let waiting = b.metric(UNSAVED);
    for _ in 0..500 {
        b.ok(
            "POST",
            "/v1/bans",
            r#"{"cidr":"198.18.128.1","ttl_secs":3600,"reason":"full disk"}"#,
        );
    }
    let again = b.metric(UNSAVED);
    eprintln!(
        "{BANS} single bans on a full disk in {:.1} s; {waiting} changes waiting, {again} after \
         500 more of one ban",
        took.as_secs_f64()
    );
    assert!(waiting >= f64::from(BANS), "every ban waits: {waiting}");
    assert!(
        again <= waiting + 2.0,
        "changes to the same row pile up: {waiting} then {again}"
    );
    assert_eq!(
        b.deliver(
            std::net::IpAddr::V4(std::net::Ipv4Addr::from(first + 9_999)),
            10
        ),
        0,
        "enforced while not durable"
    );
    std::fs::remove_file(junk).unwrap();
    assert!(
        b.g.wait_for_log(
            "the state database takes writes again",
            Duration::from_secs(20)
        ),
        "{}",
        b.g.log()
    );
    assert_eq!(b.metric(UNSAVED), 0.0);
    assert_eq!(files_in(&state), ["guard.redb"], "nothing renamed");
    b.reboot();
    b.g.spawn(&b.bed.server, &b.bed.server_if);
    let stats = b.g.api("GET", "/v1/stats", None).1;
    assert_eq!(
        stats["bans_active"], BANS,
        "every ban back after the reboot: {stats}"
    );
    assert_eq!(files_in(&state), ["guard.redb"], "nothing renamed");
    assert!(!b.g.log().contains("kept aside"), "{}", b.g.log());
}

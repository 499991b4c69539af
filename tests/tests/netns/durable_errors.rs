//! The state database is set aside only when it is corrupt: a database guardd cannot open
//! for another reason (no permission, another guardd holding it) stops the start with the
//! reason and stays as it was, with every verdict in it; the file is its owner's only.

use std::{os::unix::fs::PermissionsExt, time::Duration};

use guard_tests::{
    bed::GuardBed,
    daemon::{PinDir, run_guardd},
};

/// Starts another guardd on `b`'s config and state, with its own socket and pins; its exit
/// status and what it printed.
fn second_start(b: &GuardBed) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
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
    let mut v: Vec<String> = std::fs::read_dir(b.g.state_dir())
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

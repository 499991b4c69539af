//! guardctl's refusals: a TTL, address or CIDR outside the API's bounds is a usage error
//! (exit 2) whether or not guardd runs, `status` exits 3 when guardd is not running, a
//! guardd that never answers fails the command after `--timeout`, and `detach` removes the
//! pins only when it knows no daemon owns them.

use std::{
    io::{Read, Write},
    os::unix::net::UnixListener,
    process::{Command, Output},
};

use guard_tests::{
    daemon::{Guardd, bin},
    netns::Testbed,
};

fn guardctl(args: &[&str]) -> Output {
    Command::new(bin("guardctl"))
        .args(args)
        .output()
        .expect("guardctl")
}

#[test]
fn a_ttl_outside_the_bounds_is_a_usage_error() {
    for ttl in ["0s", "1500ms", "31days", "soon"] {
        let out = guardctl(&[
            "--socket",
            "/nonexistent.sock",
            "ban",
            "198.18.0.1",
            "--ttl",
            ttl,
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--ttl {ttl}: {err}");
        assert!(err.contains("--ttl"), "--ttl {ttl}: {err}");
    }
}

#[test]
fn a_bad_address_or_cidr_is_a_usage_error_whether_or_not_guardd_runs() {
    for args in [
        &["ban", "1.2.3.0/33"][..],
        &["ban", "198.18.0.1/24"],
        &["allow", "0.0.0.0/0"],
        &["unban", "not-an-ip"],
        &["unallow", "2001:db8::/129"],
        &["penalize", "198.18.0.0/24", "5"],
        &["penalize", "198.18.0.1", "0"],
    ] {
        // No guardd on that socket: the usage is still judged first.
        let mut all = vec!["--socket", "/nonexistent.sock"];
        all.extend_from_slice(args);
        let out = guardctl(&all);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(!err.contains("cannot reach guardd"), "{args:?}: {err}");
    }
}

#[test]
fn status_exits_3_when_guardd_is_not_running_and_says_what_the_pins_hold() {
    let bed = Testbed::new();
    let mut g = Guardd::start(&bed.server, &bed.server_if, "");
    assert_eq!(g.ctl(&["status"]).status.code(), Some(0), "running");
    assert!(g.stop().success());
    let out = g.ctl(&["--json", "status"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let offline: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON status");
    assert_eq!(offline["daemon"], "down");
}

#[test]
fn a_guardd_that_never_answers_fails_the_command_after_the_timeout() {
    let dir = guard_tests::daemon::workdir();
    let socket = dir.path().join("hung.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    // Accepts and reads, never answers: a hung daemon as the client sees it.
    let server = std::thread::spawn(move || {
        let (mut c, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let _ = c.read(&mut buf);
        std::thread::sleep(std::time::Duration::from_secs(3));
    });
    let started = std::time::Instant::now();
    let out = guardctl(&[
        "--socket",
        socket.to_str().unwrap(),
        "--timeout",
        "1s",
        "reload",
    ]);
    let took = started.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("did not answer within 1s"), "{err}");
    assert!(
        took < std::time::Duration::from_millis(2500),
        "gave up after {took:?}"
    );
    server.join().unwrap();
}

#[test]
fn status_and_the_log_show_what_the_program_cost_the_verifier() {
    let bed = Testbed::new();
    let g = Guardd::start(&bed.server, &bed.server_if, "");
    let insns = g.ctl_json(&["status"])["program"]["verified_insns"]
        .as_u64()
        .expect("verified_insns in status --json");
    let out = g.ctl(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!(
            "program: {insns} instructions processed by the verifier"
        )),
        "{text}"
    );
    // The start-up line carries the same figure.
    let log = g.log();
    let line = log
        .lines()
        .find(|l| l.contains("XDP program loaded"))
        .unwrap_or_else(|| panic!("no load line in the log:\n{log}"));
    assert!(line.contains(&format!("verified_insns={insns}")), "{line}");
}

#[test]
fn detach_refuses_while_a_guardd_on_another_socket_owns_the_pins() {
    let bed = Testbed::new();
    let g = Guardd::start(&bed.server, &bed.server_if, "");
    let pins = g.pin_dir.to_str().unwrap();
    let out = guardctl(&["--socket", "/nonexistent.sock", "--pin-dir", pins, "detach"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("process {}", g.pid())) && err.contains("holds guard's maps"),
        "{err}"
    );
    assert!(g.pin_dir.exists(), "the pins stay");
    assert!(g.ctl_json(&["status"])["interfaces"][0]["program_id"].is_u64());
}

#[test]
fn detach_refuses_when_something_else_answers_on_the_socket() {
    let bed = Testbed::new();
    let mut g = Guardd::start(&bed.server, &bed.server_if, "");
    assert!(g.stop().success());
    let dir = guard_tests::daemon::workdir();
    let socket = dir.path().join("other.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let server = std::thread::spawn(move || {
        let (mut c, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let _ = c.read(&mut buf);
        c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nnot json")
            .unwrap();
    });
    let pins = g.pin_dir.to_str().unwrap();
    let out = guardctl(&[
        "--socket",
        socket.to_str().unwrap(),
        "--pin-dir",
        pins,
        "detach",
    ]);
    server.join().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("not as guardd does"), "{err}");
    assert!(g.pin_dir.exists(), "the pins stay");
    // Nobody answers and nobody holds the maps: detach goes ahead.
    let out = guardctl(&[
        "--socket",
        socket.to_str().unwrap(),
        "--pin-dir",
        pins,
        "detach",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!g.pin_dir.exists());
}

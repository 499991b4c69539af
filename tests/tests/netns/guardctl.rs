//! guardctl's refusals: a TTL outside the API's bounds is a usage error (exit 2), and
//! `detach` removes the pins only when it knows no daemon owns them.

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
    let dir = tempfile::tempdir().unwrap();
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

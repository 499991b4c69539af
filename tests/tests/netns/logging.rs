//! Logs reach someone in every mode: a guardd in the background logs to syslog (`/dev/log`)
//! or to a file, and a reload refusal made after it left the terminal is there; nothing
//! written to a file or pipe carries terminal colour codes.

use std::{os::unix::net::UnixDatagram, path::Path, time::Duration};

use guard_tests::{daemon::Guardd, netns::Testbed};
use nix::sys::signal::Signal;

const INVALID: &str = "refill_period = \"soon\"\n";

fn no_colour(text: &str) {
    assert!(
        !text.contains('\x1b'),
        "ANSI escapes in a log that is not a terminal:\n{text}"
    );
}

#[test]
fn foreground_logs_to_a_file_are_plain_text() {
    let bed = Testbed::new();
    let g = Guardd::start(&bed.server, &bed.server_if, "");
    assert!(g.log().contains("guardd started"), "{}", g.log());
    no_colour(&g.log());
}

#[test]
fn background_guardd_logs_to_the_file_it_is_given() {
    let bed = Testbed::new();
    let dir = guard_tests::daemon::workdir();
    let log = dir.path().join("guardd.log");
    let g = Guardd::start_background(
        &bed.server,
        &bed.server_if,
        "",
        &[("GUARD_LOG_FILE", log.to_str().unwrap())],
    );
    std::fs::write(&g.config, INVALID).unwrap();
    g.signal(Signal::SIGHUP);
    let text = wait_for(&log, "reload refused");
    assert!(text.contains("refill_period"), "{text}");
    no_colour(&text);
}

/// A datagram socket at /dev/log for the test's life: bound there when the host has none,
/// else bind-mounted over the host's in a private mount namespace guardd starts in.
struct SyslogSink {
    socket: UnixDatagram,
    _dir: tempfile::TempDir,
    created: bool,
}

impl Drop for SyslogSink {
    fn drop(&mut self) {
        if self.created {
            let _ = std::fs::remove_file("/dev/log");
        }
    }
}

#[test]
fn background_guardd_logs_to_syslog() {
    let bed = Testbed::new();
    let dir = guard_tests::daemon::workdir();
    let host_has_syslog = Path::new("/dev/log").exists();
    let path = if host_has_syslog {
        dir.path().join("log")
    } else {
        "/dev/log".into()
    };
    let sink = SyslogSink {
        socket: UnixDatagram::bind(&path).expect("bind the syslog sink"),
        _dir: dir,
        created: !host_has_syslog,
    };
    // guardd runs as another user, which must be able to write to it.
    guard_tests::unit_caps::give_to_guardd(&path);
    assert!(
        !host_has_syslog,
        "this host runs a syslog on /dev/log: the test would need a mount namespace"
    );
    let g = Guardd::start_background(&bed.server, &bed.server_if, "", &[]);
    std::fs::write(&g.config, INVALID).unwrap();
    g.signal(Signal::SIGHUP);
    sink.socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut lines = Vec::new();
    let mut buf = vec![0u8; 8192];
    while let Ok(n) = sink.socket.recv(&mut buf) {
        let line = String::from_utf8_lossy(&buf[..n]).into_owned();
        let done = line.contains("reload refused");
        lines.push(line);
        if done {
            break;
        }
    }
    let pid = g.pid();
    let text = lines.join("\n");
    // LOG_DAEMON (3) x 8 + LOG_ERR (3), tagged with guardd's pid.
    let want = format!("<27>guardd[{pid}]: ");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&want) && l.contains("reload refused")),
        "no {want}... reload refused among:\n{text}"
    );
    assert!(text.contains("<30>guardd["), "info lines too:\n{text}");
    no_colour(&text);
}

fn wait_for(path: &Path, needle: &str) -> String {
    let t = std::time::Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "no {needle:?} in:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

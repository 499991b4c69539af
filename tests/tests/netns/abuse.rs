//! The control plane under abuse by local users: idle connections by the thousand on the
//! metrics port (any user), half-sent requests by the thousand on the API socket (a member
//! of its group), and four listings of a million bans at once. What the operator needs
//! (a ban, `guardctl status`, a scrape, a reload) still answers within a second.

use std::{
    io::{BufRead, BufReader, Read, Write},
    os::unix::fs::PermissionsExt,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use guard_tests::bed::GuardBed;

const BANS: u32 = 1_000_000;
const CONNECTIONS: usize = 1_100;
const HOLD_SECS: u64 = 30;
const NOBODY: u32 = 65534;

/// A `POST /v1/bans` body of `count` consecutive /128s from 2001:db8::(from).
fn v6_bans(from: u32, count: u32) -> String {
    let mut body = String::with_capacity(count as usize * 48);
    body.push('[');
    for i in from..from + count {
        if i > from {
            body.push(',');
        }
        let a = std::net::Ipv6Addr::new(0x2001, 0xdb8, 0xab, 0, 0, 0, (i >> 16) as u16, i as u16);
        body.push_str(&format!(r#"{{"cidr":"{a}","ttl_secs":3600}}"#));
    }
    body.push(']');
    body
}

/// A `guard-hold` run as an unprivileged user; its lines are read on a thread.
struct Holder {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Holder {
    fn spawn(mut cmd: Command) -> Holder {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn guard-hold");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Holder { child, lines }
    }

    /// The next line starting with `prefix` (within `limit`), without it.
    fn line(&self, prefix: &str, limit: Duration) -> String {
        let until = Instant::now() + limit;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("guard-hold printed no {prefix:?} line in {limit:?}"));
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.trim().to_string();
            }
            eprintln!("guard-hold: {line}");
        }
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `guard-hold` (at `hold`) with `args`, in the server's namespace, as nobody with no
/// group but nobody's (which the test gives the socket).
fn hold_as_nobody(b: &GuardBed, hold: &std::path::Path, args: &[&str]) -> Holder {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net={}", b.bed.server.path()))
        .arg("setpriv")
        .arg(format!("--reuid={NOBODY}"))
        .arg(format!("--regid={NOBODY}"))
        .arg("--clear-groups")
        .arg(hold)
        .args(args);
    Holder::spawn(cmd)
}

/// Lists every ban over a raw connection; the bytes of the answer.
fn list_bans(socket: &std::path::Path) -> Vec<u8> {
    let mut s = std::os::unix::net::UnixStream::connect(socket).expect("connect for a listing");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(b"GET /v1/bans HTTP/1.1\r\nHost: guard\r\nConnection: close\r\n\r\n")
        .expect("listing request");
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).expect("listing answer");
    answer
}

/// `f`'s time, asserting it succeeded.
fn timed(what: &str, f: impl FnOnce() -> bool) -> Duration {
    let t = Instant::now();
    assert!(f(), "{what} failed under abuse");
    t.elapsed()
}

#[test]
fn the_control_plane_answers_while_local_users_abuse_it() {
    let b = GuardBed::start("");
    for chunk in 0..BANS / 100_000 {
        b.ok("POST", "/v1/bans", &v6_bans(chunk * 100_000, 100_000));
    }
    let stats = b.g.api("GET", "/v1/stats", None).1;
    assert_eq!(stats["bans_active"], BANS, "{stats}");
    let quiet = [
        timed("a scrape", || b.scrape().contains("guard_bans_active")),
        timed("guardctl reload", || b.g.ctl(&["reload"]).status.success()),
    ];
    eprintln!(
        "before the abuse: scrape {:?}, reload {:?}",
        quiet[0], quiet[1]
    );
    let rss_before = b.g.rss_kib();
    let fds = || {
        std::fs::read_dir(format!("/proc/{}/fd", b.g.pid()))
            .expect("guardd's descriptors")
            .count()
    };
    let fds_before = fds();

    // The socket as its group's members reach it: nobody, in the socket's group.
    let dir = b.g.dir.path();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711)).unwrap();
    nix::unistd::chown(&b.g.socket, None, Some(nix::unistd::Gid::from_raw(NOBODY))).unwrap();
    let hold = dir.join("guard-hold");
    std::fs::copy(env!("CARGO_BIN_EXE_guard-hold"), &hold).expect("copy guard-hold");
    std::fs::set_permissions(&hold, std::fs::Permissions::from_mode(0o755)).unwrap();

    let (count, secs) = (CONNECTIONS.to_string(), HOLD_SECS.to_string());
    let idle = hold_as_nobody(&b, &hold, &["tcp:127.0.0.1:9752", &count, &secs]);
    let socket = format!("unix:{}", b.g.socket.display());
    let half = hold_as_nobody(&b, &hold, &[&socket, &count, &secs, "partial"]);
    let held_idle = idle.line("held", Duration::from_secs(20));
    let held_half = half.line("held", Duration::from_secs(20));
    let abuse_start = Instant::now();
    eprintln!("held: {held_idle} idle on metrics, {held_half} half-sent on the socket");
    assert_eq!(
        held_idle,
        CONNECTIONS.to_string(),
        "every idle connection was accepted"
    );
    assert_eq!(
        held_half,
        CONNECTIONS.to_string(),
        "every half-sent request was accepted"
    );

    // Four listings of the million, again and again while the abuse lasts.
    let stop = Arc::new(AtomicBool::new(false));
    let listed = Arc::new(AtomicUsize::new(0));
    let listers: Vec<_> = (0..4)
        .map(|_| {
            let (stop, listed, socket) = (stop.clone(), listed.clone(), b.g.socket.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let answer = list_bans(&socket);
                    let tail = String::from_utf8_lossy(&answer[answer.len().saturating_sub(64)..])
                        .to_string();
                    assert!(answer.starts_with(b"HTTP/1.1 200"), "listing status");
                    assert!(tail.contains("]}"), "a listing ended early: {tail:?}");
                    assert!(answer.len() > BANS as usize * 40, "a listing is short");
                    listed.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    // What the operator does, three times over the hold.
    let mut worst = [Duration::ZERO; 4];
    for round in 0..3u32 {
        std::thread::sleep(Duration::from_secs(6));
        let took = [
            timed("a ban", || {
                let body = format!(r#"{{"cidr":"2001:db8:ac::{round}","ttl_secs":600}}"#);
                b.g.api("POST", "/v1/bans", Some(&body)).0 == 200
            }),
            timed("guardctl status", || b.g.ctl(&["status"]).status.success()),
            timed("a scrape", || b.scrape().contains("guard_bans_active")),
            timed("guardctl reload", || b.g.ctl(&["reload"]).status.success()),
        ];
        for (w, t) in worst.iter_mut().zip(took) {
            *w = (*w).max(t);
        }
    }
    let fds_during = fds();
    let left = Duration::from_secs(HOLD_SECS + 5).saturating_sub(abuse_start.elapsed());
    let idle_closed = idle.line("closed_by_server", left + Duration::from_secs(10));
    let half_closed = half.line("closed_by_server", Duration::from_secs(10));
    stop.store(true, Ordering::Relaxed);
    for l in listers {
        l.join().expect("a listing failed");
    }
    eprintln!(
        "under abuse, worst of three: ban {:?}, guardctl status {:?}, scrape {:?}, reload {:?}; \
         {} full listings of {BANS} bans; descriptors {fds_before} before, {fds_during} during; \
         closed by guardd after {HOLD_SECS} s: idle {idle_closed}, half-sent {half_closed}",
        worst[0],
        worst[1],
        worst[2],
        worst[3],
        listed.load(Ordering::Relaxed)
    );
    for (what, t) in ["ban", "status", "scrape", "reload"].iter().zip(worst) {
        assert!(t < Duration::from_secs(1), "{what} took {t:?} under abuse");
    }
    assert!(
        listed.load(Ordering::Relaxed) >= 4,
        "each listing finished at least once"
    );
    // The half-sent requests outlived their head timeout: every one was closed.
    assert!(
        half_closed.starts_with(&format!("{CONNECTIONS} of")),
        "half-sent requests still open after {HOLD_SECS} s: {half_closed}"
    );
    let log = b.g.log();
    assert!(
        !log.contains("Too many open files") && !log.contains("EMFILE"),
        "guardd ran out of descriptors:\n{log}"
    );

    // A minute later, memory is back.
    let until = Instant::now() + Duration::from_secs(60);
    let mut rss = b.g.rss_kib();
    while rss > rss_before * 12 / 10 && Instant::now() < until {
        std::thread::sleep(Duration::from_secs(1));
        rss = b.g.rss_kib();
    }
    eprintln!("RSS: {rss_before} KiB before, {rss} KiB after");
    assert!(
        rss <= rss_before * 12 / 10,
        "RSS {rss} KiB a minute after the abuse, {rss_before} KiB before"
    );
}

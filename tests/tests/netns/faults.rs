//! Fault injection: what guardd does when its environment is not as it should be.

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use aya::{
    Ebpf,
    programs::{Xdp, XdpMode},
};
use guard_tests::{
    daemon::{Guardd, PinDir, run_guardd},
    netns::{Testbed, sh, unique_tag},
    packet::udp4,
    traffic::RawSender,
};
use guard_user::kernel::pins::PinLayout;

/// A second guardd on the testbed's interface with its own socket, pin directory and state
/// (not the host's /var/lib/guard): its exit code and stderr. Its pins are removed whatever
/// happened.
fn second_guardd(bed: &Testbed, socket: &str) -> (Option<i32>, String) {
    let pins = PinDir::new();
    let dir = guard_tests::daemon::workdir();
    let config = dir.path().join("guard.toml");
    std::fs::write(&config, "state_dir = \"\"\n").expect("config");
    let out = run_guardd(
        &bed.server,
        &[
            "--foreground",
            "--config",
            config.to_str().expect("utf-8"),
            "--iface",
            &bed.server_if,
            "--socket",
            socket,
            "--pin-dir",
            pins.as_str(),
        ],
        Duration::from_secs(20),
    );
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn pin_dir_off_bpffs_is_a_clear_error() {
    let bed = Testbed::new();
    let dir = guard_tests::daemon::workdir();
    let pin_dir = dir.path().join("pins");
    let out = run_guardd(
        &bed.server,
        &[
            "--foreground",
            "--iface",
            &bed.server_if,
            "--pin-dir",
            pin_dir.to_str().unwrap(),
        ],
        Duration::from_secs(20),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("is not on a BPF filesystem: mount one with `mount -t bpf bpf /sys/fs/bpf`"),
        "{err}"
    );
}

#[test]
fn a_stale_socket_file_is_replaced_but_a_live_daemon_is_not() {
    let bed = Testbed::new();
    let mut g = Guardd::start(&bed.server, &bed.server_if, "");
    // A live daemon on the socket: a second one refuses to take it over.
    let (code, err) = second_guardd(&bed, g.socket.to_str().unwrap());
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("another guardd is serving"), "{err}");
    // A crash leaves the socket file behind: the next guardd replaces it.
    g.kill();
    assert!(g.socket.exists(), "SIGKILL leaves the socket file");
    g.spawn(&bed.server, &bed.server_if);
    assert_eq!(g.api("GET", "/v1/status", None).0, 200);
}

#[test]
fn a_thousand_concurrent_api_clients_lose_no_ban() {
    let bed = Testbed::new();
    let g = Guardd::start(&bed.server, &bed.server_if, "");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let answers: Vec<u16> = rt.block_on(async {
        let tasks: Vec<_> = (0..1000u32)
            .map(|i| {
                let client = guard_user::control::client::Client::new(&g.socket);
                tokio::spawn(async move {
                    let body = format!(
                        r#"{{"cidr":"198.19.{}.{}","ttl_secs":600}}"#,
                        i / 256,
                        i % 256
                    );
                    match client
                        .raw(
                            guard_user::control::client::Method::POST,
                            "/v1/bans",
                            Some(body.into_bytes()),
                        )
                        .await
                    {
                        Ok((status, _)) => status.as_u16(),
                        Err(_) => 0,
                    }
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    let took = started.elapsed();
    assert!(
        answers.iter().all(|&c| c == 200),
        "{} of 1000 refused",
        answers.iter().filter(|&&c| c != 200).count()
    );
    let bans = g.api("GET", "/v1/bans", None).1;
    assert_eq!(
        bans["entries"].as_array().unwrap().len(),
        1000,
        "no ban lost"
    );
    // Still responsive, and its memory stays bounded.
    let t = Instant::now();
    assert_eq!(g.api("GET", "/v1/status", None).0, 200);
    assert!(t.elapsed() < Duration::from_secs(1));
    let rss_kib = g.rss_kib();
    eprintln!(
        "1000 concurrent ban calls in {:.2}s; guardd RSS {} MiB",
        took.as_secs_f64(),
        rss_kib / 1024
    );
    assert!(rss_kib < 200 * 1024, "RSS {rss_kib} KiB");
}

#[test]
fn an_interface_running_another_xdp_program_is_refused_clearly() {
    let bed = Testbed::new();
    let _g = Guardd::start(&bed.server, &bed.server_if, "");
    let dir = guard_tests::daemon::workdir();
    let socket = dir.path().join("other.sock");
    let (code, err) = second_guardd(&bed, socket.to_str().unwrap());
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("already runs another XDP program"), "{err}");
}

#[test]
fn sigterm_right_after_the_api_answers_stops_cleanly() {
    // A supervisor may stop guardd the moment its socket answers: the signal handlers must
    // be in place by then, or the default action kills it (exit by signal, not 0).
    let bed = Testbed::new();
    let mut g = Guardd::start(&bed.server, &bed.server_if, "");
    for round in 0..10 {
        let status = g.stop();
        assert!(status.success(), "round {round}: {status}\n{}", g.log());
        g.spawn(&bed.server, &bed.server_if);
    }
}

/// Polls `f` every 20 ms for up to `limit`.
fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

#[test]
fn an_interface_deleted_and_recreated_is_attached_again() {
    let t = SecondPair::start();
    let (bed, g, server_x, client_x) = (&t.bed, &t.g, &t.server_x, &t.client_x);
    let add_pair = || {
        veth_pair(bed, client_x, server_x);
        bring_up(bed, client_x, server_x);
    };
    let denied = udp4(Ipv4Addr::new(198, 18, 0, 3), 9);
    let send = |iface: &str| {
        let tx = RawSender::open(&bed.client, iface);
        for _ in 0..10 {
            assert!(tx.send(&denied), "sending on {iface}");
        }
    };
    let drops_reach =
        |n: u64| eventually(Duration::from_secs(3), || g.packets("drop", "deny") == n);

    send(client_x);
    assert!(drops_reach(10), "dropped on the second interface");
    bed.server.ip(&["link", "del", server_x]);
    assert!(
        g.wait_for_log("interface went away", Duration::from_secs(5)),
        "{}",
        g.log()
    );
    // The other interface is still protected and the daemon still answers.
    send(&bed.client_if);
    assert!(drops_reach(20), "dropped on the first interface meanwhile");
    assert_eq!(
        program_ids(g),
        [true, false],
        "status: a program on the first interface, none on the gone one"
    );

    add_pair();
    assert!(
        g.wait_for_log("interface is back: attached again", Duration::from_secs(5)),
        "{}",
        g.log()
    );
    send(client_x);
    assert!(
        drops_reach(30),
        "dropped on the re-created interface: {}",
        g.log()
    );
    assert_eq!(program_ids(g), [true, true]);
    // The pinned link is the new interface's.
    let links = std::fs::read_dir(PinLayout::new(&g.pin_dir).dir().join("links/driver"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(links, 2, "one pinned link per interface");
}

#[test]
fn an_interface_taken_by_another_program_while_away_is_retried_and_logged_once() {
    let t = SecondPair::start();
    let (bed, g, server_x, client_x) = (&t.bed, &t.g, &t.server_x, &t.client_x);
    bed.server.ip(&["link", "del", server_x]);
    assert!(
        g.wait_for_log("interface went away", Duration::from_secs(5)),
        "{}",
        g.log()
    );
    // It comes back under another name, gets another XDP program, and only then takes the
    // protected name (a down interface can be renamed): guardd cannot attach to it.
    let staging = format!("gt{}", t.tag);
    veth_pair(bed, client_x, &staging);
    let mut other =
        Ebpf::load(guard_user::kernel::objects::bench()).expect("loading the bench object");
    let prog: &mut Xdp = other
        .program_mut("xdp_pass")
        .expect("xdp_pass")
        .try_into()
        .expect("an XDP program");
    prog.load().expect("loading xdp_pass");
    let link = bed
        .server
        .run(|| prog.attach(&staging, XdpMode::Driver))
        .expect("attaching xdp_pass");
    bed.server.ip(&["link", "set", &staging, "name", server_x]);
    bring_up(bed, client_x, server_x);
    const FAILED: &str = "attaching again failed";
    assert!(
        g.wait_for_log(FAILED, Duration::from_secs(5)),
        "{}",
        g.log()
    );
    // Retried every second, and said once.
    std::thread::sleep(Duration::from_millis(2500));
    let log = g.log();
    assert_eq!(log.matches(FAILED).count(), 1, "{log}");
    assert!(log.contains("already runs another XDP program"), "{log}");
    assert_eq!(program_ids(g), [true, false]);

    // The other program goes: the next retry attaches guard and frames are dropped again.
    prog.detach(link).expect("detaching xdp_pass");
    assert!(
        g.wait_for_log("interface is back: attached again", Duration::from_secs(5)),
        "{}",
        g.log()
    );
    assert_eq!(program_ids(g), [true, true]);
    let tx = RawSender::open(&bed.client, client_x);
    let denied = udp4(Ipv4Addr::new(198, 18, 0, 3), 9);
    for _ in 0..10 {
        assert!(tx.send(&denied));
    }
    assert!(
        eventually(Duration::from_secs(3), || g.packets("drop", "deny") == 10),
        "dropped on the interface attached again: {}",
        g.log()
    );
}

/// The testbed plus a second veth pair, up, with guardd protecting both server ends and
/// denying 198.18.0.3. Dropped in field order: guardd first, the namespaces last.
struct SecondPair {
    g: Guardd,
    _dir: tempfile::TempDir,
    bed: Testbed,
    tag: String,
    server_x: String,
    client_x: String,
}

impl SecondPair {
    fn start() -> SecondPair {
        let bed = Testbed::new();
        let tag = unique_tag();
        let (server_x, client_x) = (format!("gx{tag}"), format!("cx{tag}"));
        veth_pair(&bed, &client_x, &server_x);
        bring_up(&bed, &client_x, &server_x);
        let dir = guard_tests::daemon::workdir();
        let deny = dir.path().join("deny.txt");
        std::fs::write(&deny, "198.18.0.3\n").unwrap();
        let g = Guardd::start_on(
            &bed.server,
            &[&bed.server_if, &server_x],
            &format!("[lists]\ndeny = [{deny:?}]\n"),
        );
        SecondPair {
            g,
            _dir: dir,
            bed,
            tag,
            server_x,
            client_x,
        }
    }
}

/// A second veth pair between the testbed's namespaces, down (deleting either end deletes
/// both; the namespaces' removal deletes it on failure).
fn veth_pair(bed: &Testbed, client: &str, server: &str) {
    sh(
        "ip",
        &[
            "link",
            "add",
            client,
            "netns",
            &bed.client.name,
            "type",
            "veth",
            "peer",
            "name",
            server,
            "netns",
            &bed.server.name,
        ],
    );
}

fn bring_up(bed: &Testbed, client: &str, server: &str) {
    bed.client.ip(&["link", "set", client, "up"]);
    bed.server.ip(&["link", "set", server, "up"]);
}

/// For each interface in /v1/status: whether a program runs there.
fn program_ids(g: &Guardd) -> Vec<bool> {
    let (code, status) = g.api("GET", "/v1/status", None);
    assert_eq!(code, 200, "{status}");
    status["interfaces"]
        .as_array()
        .expect("interfaces")
        .iter()
        .map(|i| i["program_id"].is_u64())
        .collect()
}

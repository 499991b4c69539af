//! A SYN budget (`tcp_syn_only` with `total_rate`) under forged SYN floods: the floods spend
//! the budget, and clients this host verified before (their earlier connections) still
//! connect. One flood is ours (AF_PACKET, IPv6 sources over 2^24 addresses of 2001:db8::/32,
//! as fast as this machine sends); one is hping3's (IPv4, its sources rewritten by nftables
//! into 198.18.128.0/17, the test network). Bounded in time; every connection is timed.

use std::{
    io::Write,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream},
    process::{Command, Stdio},
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::{Duration, Instant},
};

use guard_tests::{
    bed::GuardBed,
    netns::Netns,
    packet::{CLIENT_MAC, tcp_from},
};

const PORT: u16 = 8443;
const CLIENTS: u8 = 50;
/// hping3's fixed source port: the nftables rule rewrites only its SYNs.
const HPING_SPORT: u16 = 1000;

fn config() -> String {
    format!(
        "[[rules]]\nname = \"syn\"\nprotocol = \"tcp\"\nports = [{PORT}]\ntcp_syn_only = true\n\
         rate = 1000.0\nburst = 2000\ntotal_rate = 200.0\ntotal_burst = 400\n"
    )
}

fn client(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, 10 + i)
}

/// One connection from `src`: connect, a byte, close. Its connect time, or None.
fn connect(ns: &Netns, src: Ipv4Addr) -> Option<Duration> {
    let started = Instant::now();
    let stream = ns.run(|| {
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
        sock.bind(&SocketAddr::new(IpAddr::V4(src), 0).into())
            .ok()?;
        sock.connect_timeout(
            &SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)), PORT).into(),
            Duration::from_secs(4),
        )
        .ok()?;
        Some(TcpStream::from(sock))
    })?;
    let took = started.elapsed();
    let mut stream = stream;
    stream.write_all(b"x").ok()?;
    Some(took)
}

/// Every client connects `rounds` times while `flood` runs; (attempts, failures, p99).
fn clients_during(
    ns: &Netns,
    rounds: usize,
    flood: impl FnOnce() + Send,
) -> (usize, usize, Duration) {
    let times = std::sync::Mutex::new(Vec::new());
    let failed = AtomicU64::new(0);
    std::thread::scope(|s| {
        s.spawn(flood);
        std::thread::sleep(Duration::from_millis(500)); // the budget is empty by now
        let workers: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let (times, failed) = (&times, &failed);
                s.spawn(move || {
                    for _ in 0..rounds {
                        match connect(ns, client(i)) {
                            Some(t) => times.lock().unwrap().push(t),
                            None => {
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().expect("client");
        }
    });
    let mut t = times.into_inner().unwrap();
    t.sort();
    let p99 = t
        .get((t.len() * 99 / 100).min(t.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default();
    let failed = failed.load(Ordering::Relaxed) as usize;
    (t.len() + failed, failed, p99)
}

#[test]
fn verified_clients_connect_through_forged_syn_floods() {
    let b = GuardBed::start(&config());
    let mac: Vec<String> = CLIENT_MAC.iter().map(|b| format!("{b:02x}")).collect();
    let mac = mac.join(":");
    for i in 0..CLIENTS {
        let a = client(i).to_string();
        b.bed
            .client
            .ip(&["addr", "add", &format!("{a}/24"), "dev", &b.bed.client_if]);
        b.bed.server.ip(&[
            "neigh",
            "replace",
            &a,
            "lladdr",
            &mac,
            "dev",
            &b.bed.server_if,
            "nud",
            "permanent",
        ]);
    }
    let listener = b.bed.server.run(|| {
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        sock.set_reuse_address(true).expect("reuse");
        sock.bind(&SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)), PORT).into())
            .expect("bind");
        sock.listen(4096).expect("listen");
        TcpListener::from(sock)
    });
    listener.set_nonblocking(true).expect("nonblocking");
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        // Each client connects once before any flood: a segment of its connection verifies it.
        for i in 0..CLIENTS {
            assert!(
                connect(&b.bed.client, client(i)).is_some(),
                "client {i} connects"
            );
        }
        let verified = || b.metric("guard_known_sources{kind=\"verified\"}");
        let start = Instant::now();
        while verified() < CLIENTS as f64 && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(200));
        }
        assert!(
            verified() >= CLIENTS as f64,
            "the clients are verified: {}",
            verified()
        );

        // Our flood: IPv6 SYNs from 2^24 sources, as fast as one AF_PACKET socket sends.
        let flood_stop = AtomicBool::new(false);
        let sent = AtomicU64::new(0);
        let (attempts, failed, p99) = clients_during(&b.bed.client, 20, || {
            let (n, secs) =
                b.tx.flood_generated(5_000_000, Duration::from_secs(8), &flood_stop, |n| {
                    let n = (n as u32).wrapping_mul(2_654_435_761) & 0x00ff_ffff;
                    let src = Ipv6Addr::new(
                        0x2001,
                        0xdb8,
                        0x100 | (n >> 16) as u16,
                        n as u16,
                        0,
                        0,
                        0,
                        1,
                    );
                    tcp_from(IpAddr::V6(src), 1024 + (n % 60_000) as u16, PORT, 0x02)
                });
            sent.store(n as u64, Ordering::Relaxed);
            eprintln!(
                "AF_PACKET SYN flood: {n} SYNs in {:.1}s ({:.0} pps)",
                secs.as_secs_f64(),
                n as f64 / secs.as_secs_f64()
            );
        });
        flood_stop.store(true, Ordering::Relaxed);
        let overload = b.g.packets("drop", "overload");
        eprintln!(
            "verified clients during the flood: {} of {attempts} connected, p99 connect {:?}; {overload} SYNs dropped for overload",
            attempts - failed,
            p99
        );
        assert!(sent.load(Ordering::Relaxed) >= 100_000, "the flood ran");
        assert!(
            overload >= sent.load(Ordering::Relaxed) / 2,
            "the flood spent the budget"
        );
        assert!(attempts >= 1000);
        assert!(
            failed * 1000 <= attempts,
            "at least 99.9% connected: {failed} of {attempts} failed"
        );

        // hping3's flood, its sources rewritten into the test network.
        let before = b.g.packets("drop", "overload");
        nft(
            &b.bed.client,
            &format!(
                "table ip forge {{\n chain out {{\n type filter hook output priority 0;\n \
             tcp sport {HPING_SPORT} tcp flags syn ip saddr set numgen random mod 32768 offset {}\n }}\n}}\n",
                u32::from(Ipv4Addr::new(198, 18, 128, 0))
            ),
        );
        let (attempts, failed, p99) = clients_during(&b.bed.client, 20, || {
            let out = Command::new("timeout")
                .args([
                    "8",
                    "nsenter",
                    &format!("--net={}", b.bed.client.path()),
                    "hping3",
                    "-q",
                    "-S",
                    "--flood",
                ])
                .args([
                    "-s",
                    &HPING_SPORT.to_string(),
                    "-k",
                    "-p",
                    &PORT.to_string(),
                    "198.18.0.1",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .output()
                .expect("hping3");
            eprintln!("hping3: {}", String::from_utf8_lossy(&out.stderr).trim());
        });
        let overload = b.g.packets("drop", "overload") - before;
        eprintln!(
            "verified clients during hping3's flood: {} of {attempts} connected, p99 connect {:?}; {overload} SYNs dropped for overload",
            attempts - failed,
            p99
        );
        assert!(
            overload >= 100_000,
            "hping3's SYNs spent the budget: {overload}"
        );
        assert!(
            failed * 1000 <= attempts,
            "at least 99.9% connected: {failed} of {attempts} failed"
        );
        stop.store(true, Ordering::Relaxed);
    });
}

fn nft(ns: &Netns, rules: &str) {
    let mut child = Command::new("nsenter")
        .args([&format!("--net={}", ns.path()), "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("nft");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(rules.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "nft -f: {rules}");
}

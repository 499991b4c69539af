//! Endpoint budgets under distributed floods: AF_PACKET frames from tens of thousands of
//! forged sources, each under its own limit, into guardd's veth; what reaches a UDP socket
//! on the server, per source. Sources that proved themselves (a real TCP connection) or that
//! the application vouched for keep passing while the budget is empty; forged ones cannot
//! become either. Default refill settings; every flood bounded in packets and time.

use std::{
    collections::HashMap,
    io::{Read, Write},
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use guard_tests::{
    bed::GuardBed,
    netns::client4,
    packet::{tcp_from, udp_from},
    traffic::RawSender,
};

/// The botnet: 50,000 distinct sources, each at 1 packet/s, half its rule's limit (2/s). The
/// per-source burst (20) leaves room for a sender the machine's load stalls and that then
/// catches up: what a vouched client loses must be the budget's doing, or nothing.
const BOTS: usize = 50_000;
/// Together 20 times the budget's rate.
const TOTAL_RATE: f64 = BOTS as f64 / 20.0;
const TOTAL_BURST: f64 = 5_000.0;

fn bot(n: usize) -> IpAddr {
    let n = 256 + (n % BOTS) as u32;
    IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 19, 0, 0)) + n))
}

fn vouched(i: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 18, 1, i))
}

fn config(monitor: bool) -> String {
    format!(
        "[[rules]]\nname = \"collector\"\nprotocol = \"udp\"\nrate = 2.0\nburst = 20\n\
         total_rate = {TOTAL_RATE:.1}\ntotal_burst = {TOTAL_BURST:.0}\nmonitor = {monitor}\n"
    )
}

/// Floods from every bot at once (each at 1/s) for `secs`, while 20 vouched clients send
/// `per_client` packets each, paced within their own limit; the receiver counts meanwhile.
/// The bots are split between two senders pinned to different CPUs: veth runs XDP on the
/// sender's CPU, so both CPUs spend the budget at once, each from its own pool. Returns
/// (delivered per source, bot frames sent, vouched frames sent, elapsed).
fn flood(
    b: &GuardBed,
    secs: u64,
    per_client: usize,
) -> (HashMap<IpAddr, usize>, usize, usize, f64) {
    let port = b.rx.port;
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let rx = s.spawn(|| {
            b.rx.collect(Duration::from_millis(1500), Duration::from_secs(secs + 20))
        });
        let clients = s.spawn(|| {
            let tx = RawSender::open(&b.bed.client, &b.bed.client_if);
            let frames: Vec<Vec<u8>> = (1..=20).map(|i| udp_from(vouched(i), port)).collect();
            let pps = (20 * per_client) as u32 / secs as u32;
            let (sent, _) = tx.flood(&frames, pps, Duration::from_secs(secs));
            sent.iter().sum::<usize>()
        });
        let cpus = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(2);
        let senders: Vec<_> = (0..cpus)
            .map(|cpu| {
                let done = &done;
                s.spawn(move || {
                    let _ = guard_tests::bench_record::pin_to_cpu(cpu);
                    let tx = RawSender::open(&b.bed.client, &b.bed.client_if);
                    tx.flood_generated((BOTS / cpus) as u32, Duration::from_secs(secs), done, |n| {
                        udp_from(bot(n * cpus + cpu), port)
                    })
                })
            })
            .collect();
        let (mut sent, mut elapsed) = (0, Duration::ZERO);
        for t in senders {
            let (n, e) = t.join().expect("bots");
            sent += n;
            elapsed = elapsed.max(e);
        }
        let vouched_sent = clients.join().expect("vouched clients");
        done.store(true, Ordering::Relaxed);
        let got = rx.join().expect("receiver");
        (got, sent, vouched_sent, elapsed.as_secs_f64())
    })
}

#[test]
fn a_botnet_under_its_per_source_limits_is_held_to_the_endpoint_budget() {
    let b = GuardBed::start(&config(true));
    let body: Vec<String> = (1..=20)
        .map(|i| {
            format!(
                r#"{{"cidr":"{}","ttl_secs":3600,"reason":"solved the challenge"}}"#,
                vouched(i)
            )
        })
        .collect();
    b.ok("POST", "/v1/vouches", &format!("[{}]", body.join(",")));
    // The comparison: the rule in monitor mode enforces no budget; the flood gets through.
    let (got, sent, _, secs) = flood(&b, 3, 3);
    let (bots, _) = delivered(&got);
    eprintln!(
        "no budget: {sent} bot packets in {secs:.1}s from {BOTS} sources, {bots} delivered ({:.1}%)",
        100.0 * bots as f64 / sent as f64
    );
    assert!(
        sent as f64 >= 0.8 * BOTS as f64 * 3.0,
        "the flood ran: {sent}"
    );
    assert!(
        bots as f64 >= 0.95 * sent as f64,
        "without the budget the endpoint gets the flood: {bots} of {sent}"
    );
    assert!(
        b.g.packets("monitor", "overload") > 0,
        "would-be overload counted"
    );
    // Enforcing, at the rule's limits and default refill settings, for 10 s.
    std::fs::write(&b.g.config, b.g.with_state_dir(&config(false))).expect("config");
    b.ok("POST", "/v1/reload", "");
    std::thread::sleep(Duration::from_secs(2)); // the budget fills up again
    let overload_before = b.g.packets("drop", "overload");
    let (got, sent, vouched_sent, secs) = flood(&b, 10, 15);
    let (bots, clients) = delivered(&got);
    let ceiling = TOTAL_BURST + TOTAL_RATE * (secs + 1.0);
    let ideal = TOTAL_BURST + TOTAL_RATE * secs;
    eprintln!(
        "budget {TOTAL_RATE}/s burst {TOTAL_BURST}: {sent} bot packets in {secs:.2}s ({:.0} pps), \
         {bots} delivered ({:+.1}% of burst + rate x T = {ideal:.0}; ceiling {ceiling:.0}); \
         vouched clients {clients} of {vouched_sent} ({} lost)",
        sent as f64 / secs,
        (bots + clients) as f64 / ideal * 100.0 - 100.0,
        vouched_sent - clients
    );
    assert!(
        sent as f64 >= 0.8 * BOTS as f64 * 10.0,
        "the flood ran: {sent}"
    );
    assert!(
        (bots as f64) <= ceiling,
        "the endpoint got {bots} bot packets, over the ceiling {ceiling:.0}"
    );
    assert!(
        (bots + clients) as f64 >= 0.95 * ideal,
        "the budget admitted {} of {ideal:.0}",
        bots + clients
    );
    assert!(vouched_sent >= 290, "the clients sent: {vouched_sent}");
    // Under 0.1% of their packets: none of these few hundred.
    assert_eq!(clients, vouched_sent, "vouched clients lose nothing");
    let per_cpu = per_cpu_overload(&b);
    eprintln!("overload drops per CPU: {per_cpu:?}");
    let total: u64 = per_cpu.iter().sum();
    if std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2 {
        let busy = per_cpu.iter().filter(|n| **n * 5 >= total).count();
        assert!(busy >= 2, "the flood ran on two CPUs at once: {per_cpu:?}");
    }
    let dropped = b.g.packets("drop", "overload") - overload_before;
    eprintln!(
        "drops for the sources' own limits: {}",
        b.g.packets("drop", "rate")
    );
    assert!(
        dropped as f64 >= 0.8 * (sent - bots) as f64,
        "the rest was dropped for overload: {dropped}"
    );
    let overload = b.g.ctl_json(&["stats"])["rules"][0]["overload"]
        .as_u64()
        .expect("per-rule overload");
    assert!(overload >= dropped, "the rule counts its overload drops");
}

/// Packets delivered from the bots and from the vouched clients.
fn delivered(got: &HashMap<IpAddr, usize>) -> (usize, usize) {
    got.iter().fold((0, 0), |(bots, clients), (a, n)| {
        if is_vouched(a) {
            (bots, clients + n)
        } else {
            (bots + n, clients)
        }
    })
}

fn is_vouched(a: &IpAddr) -> bool {
    matches!(a, IpAddr::V4(v) if v.octets()[..3] == [198, 18, 1])
}

const PORT: u16 = 8080;

/// A budget small enough that a modest flood keeps it empty; per-source buckets roomy.
const SMALL_BUDGET: &str = "[[rules]]\nname = \"endpoint\"\nrate = 1000.0\nburst = 2000\n\
     total_rate = 50.0\ntotal_burst = 100\n";

#[test]
fn verified_and_vouched_sources_pass_an_empty_budget_and_forged_ones_cannot_join_them() {
    let b = GuardBed::start(SMALL_BUDGET);
    let listener = b
        .bed
        .server
        .run(|| TcpListener::bind((Ipv4Addr::new(198, 18, 0, 1), PORT)).expect("listen"));
    // A real client completes a handshake and talks: its source becomes verified.
    let real = client4(3);
    let server = std::thread::spawn(move || {
        let (mut conn, from) = listener.accept().expect("accept");
        let mut buf = [0u8; 5];
        conn.read_exact(&mut buf).expect("read");
        conn.write_all(b"world").expect("write");
        (from, listener)
    });
    let mut stream = b.bed.client.run(|| {
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        sock.bind(&SocketAddr::new(real, 0).into()).expect("bind");
        sock.connect_timeout(
            &SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)), PORT).into(),
            Duration::from_secs(5),
        )
        .expect("connect");
        TcpStream::from(sock)
    });
    stream.write_all(b"hello").expect("send");
    let mut answer = [0u8; 5];
    stream.read_exact(&mut answer).expect("answer");
    let (from, _listener) = server.join().expect("server");
    assert_eq!(from.ip(), real);
    let verified = |b: &GuardBed| b.metric("guard_known_sources{kind=\"verified\"}");
    let start = Instant::now();
    while verified(&b) < 1.0 && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(verified(&b), 1.0, "the connection's source is verified");
    b.ok(
        "POST",
        "/v1/vouches",
        r#"{"cidr":"198.18.0.5","ttl_secs":600,"reason":"solved the challenge"}"#,
    );
    let listed = b.g.ctl_json(&["vouches"]);
    assert_eq!(listed["entries"][0]["cidr"], "198.18.0.5/32", "{listed}");
    assert_eq!(b.metric("guard_known_sources{kind=\"vouched\"}"), 1.0);
    // Forged ACKs from 10,000 sources with no connection empty the budget and prove nothing.
    let acks: Vec<Vec<u8>> = (0..10_000u32)
        .map(|n| {
            let src = IpAddr::V4(Ipv4Addr::from(
                u32::from(Ipv4Addr::new(198, 19, 0, 0)) + 256 + n,
            ));
            tcp_from(src, 40_000 + (n % 20_000) as u16, PORT, 0x10)
        })
        .collect();
    let stop = AtomicBool::new(false);
    let port = b.rx.port;
    let (got, acks_sent) = std::thread::scope(|s| {
        let flood = s.spawn(|| {
            b.tx.flood_until(&acks, 20_000, Duration::from_secs(6), &stop)
        });
        std::thread::sleep(Duration::from_secs(1)); // the budget is empty by now
        let tx = RawSender::open(&b.bed.client, &b.bed.client_if);
        let frames: Vec<Vec<u8>> = [real, client4(4), client4(5)]
            .iter()
            .map(|a| udp_from(*a, port))
            .collect();
        let (sent, _) = tx.flood(&frames, 300, Duration::from_secs(2));
        assert!(sent.iter().all(|n| *n == 200), "sent {sent:?}");
        let got =
            b.rx.collect(Duration::from_millis(500), Duration::from_secs(5));
        stop.store(true, Ordering::Relaxed);
        (got, flood.join().expect("flood").0.iter().sum::<usize>())
    });
    let n = |a: IpAddr| got.get(&a).copied().unwrap_or(0);
    eprintln!(
        "empty budget ({acks_sent} forged ACKs): verified {} of 200, unknown {} of 200, vouched {} of 200",
        n(real),
        n(client4(4)),
        n(client4(5))
    );
    assert_eq!(n(real), 200, "the verified source passes the empty budget");
    assert_eq!(
        n(client4(5)),
        200,
        "the vouched source passes the empty budget"
    );
    assert!(
        n(client4(4)) <= 10,
        "an unknown source is dropped: {}",
        n(client4(4))
    );
    assert_eq!(verified(&b), 1.0, "no forged ACK entered the table");
    assert!(
        b.g.packets("drop", "overload") >= 190,
        "dropped for overload"
    );
    // The vouch withdrawn, the source is one of the crowd again.
    b.ok("DELETE", "/v1/vouches/198.18.0.5", "");
    assert_eq!(b.metric("guard_known_sources{kind=\"vouched\"}"), 0.0);
    drop(stream);
}

/// `drop/overload` per CPU, from the pinned `STATS`: which CPUs ran the program.
fn per_cpu_overload(b: &GuardBed) -> Vec<u64> {
    use guard_common::{Reason, Verdict, map_names, stats::stat_index};
    let data = aya::maps::MapData::from_pin(b.map_pin(map_names::STATS)).expect("STATS pin");
    let map = aya::maps::Map::from_map_data(data).expect("STATS");
    let stats = aya::maps::PerCpuArray::<_, u64>::try_from(map).expect("per-CPU array");
    stats
        .get(&stat_index(Verdict::Drop, Reason::Overload), 0)
        .expect("the overload slot")
        .iter()
        .copied()
        .collect()
}

//! The demo's fourth act: a distributed flood. 50,000 forged sources each stay under their
//! own limit and together drown the endpoint; the rule's endpoint budget, in
//! `budget_mode = "under_attack"`, engages itself when the rule's attack shape turns
//! `distributed` and caps what reaches it (the shape's window shortened to 1 s, so its
//! warm-up takes half a minute: docs/SHAPE.md). A client that solved the example app's proof-of-work challenge (vouched for) and
//! clients that connected before (verified by their handshake) keep working; a newcomer
//! that did neither waits for the flood to end.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant, SystemTime},
};

use guard_tests::{
    apps::ingest,
    bed::GuardBed,
    http::{Outcome, Route, get, post},
    netns::{Netns, client4},
    packet::tcp_from,
};
use ring::digest;

const PORT: u16 = 8080;
const RULE: &str = "[[rules]]\nname = \"collector\"\nprotocol = \"tcp\"\nports = [8080]\n\
     rate = 20.0\nburst = 40\ntotal_rate = 200.0\ntotal_burst = 400\nbudget_mode = \"under_attack\"\n";
/// Forged sources, and the flood's rate: each source at half a packet a second.
const BOTS: u32 = 50_000;
const FLOOD_PPS: u32 = BOTS / 2;

fn route(ns: &Netns, src: IpAddr) -> Route<'_> {
    Route {
        ns,
        src,
        dst: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)), PORT),
        timeout: Duration::from_millis(1500),
    }
}

fn pageview() -> String {
    let ts = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    format!(
        r#"{{"site":"shop.example","event":"pageview","url":"https://shop.example/","ts":{ts}}}"#
    )
}

/// Asks for a challenge, solves it as the page's worker does, and sends the proof.
fn prove(rt: &tokio::runtime::Runtime, ns: &Netns, src: IpAddr) -> anyhow::Result<u16> {
    let (_, body) = get(rt, route(ns, src), "/challenge");
    let ch: serde_json::Value = serde_json::from_str(&body)?;
    let challenge = ch["challenge"].as_str().unwrap_or_default();
    let bits = ch["difficulty"].as_u64().unwrap_or(32) as u32;
    let counter = (0u64..)
        .find(|c| {
            let h = digest::digest(&digest::SHA256, format!("{challenge}:{c}").as_bytes());
            u32::from_be_bytes(h.as_ref()[..4].try_into().expect("4 bytes")).leading_zeros() >= bits
        })
        .expect("a counter");
    let body = format!(r#"{{"challenge":"{challenge}","counter":{counter}}}"#);
    Ok(match post(rt, route(ns, src), "/verify", body) {
        Outcome::Answered(code) => code,
        Outcome::NoAnswer => 0,
    })
}

pub fn run(seconds: u32) -> anyhow::Result<bool> {
    println!(
        "\nact 4: a distributed flood. {BOTS} forged sources, each under its own limit (20/s), \
         together {} times the endpoint's budget (200/s).",
        FLOOD_PPS / 200
    );
    let bed = guard_tests::netns::Testbed::new();
    let ifaces = [bed.server_if.clone()];
    let b = GuardBed::start_with_env(bed, &ifaces, RULE, &[("GUARD_SHAPE_WINDOW", "1s")]);
    let _app = ingest(&b.bed.server, "198.18.0.1:8080", &b.g.socket, &[]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (vouched, verified, newcomer) = (client4(2), [client4(3), client4(4)], client4(5));
    let up = (0..50).any(|_| {
        post(
            &rt,
            route(&b.bed.client, verified[0]),
            "/collect",
            pageview(),
        ) == Outcome::Answered(202)
            || {
                std::thread::sleep(Duration::from_millis(100));
                false
            }
    });
    anyhow::ensure!(up, "the example app did not answer");
    for c in &verified[1..] {
        post(&rt, route(&b.bed.client, *c), "/collect", pageview());
    }
    let code = prove(&rt, &b.bed.client, vouched)?;
    println!(
        "  before the flood: {} and {} posted (their handshakes verify them); {vouched} solved \
         the proof-of-work challenge (answer {code}: vouched for)",
        verified[0], verified[1]
    );
    // The baseline learns the clients' usual traffic for 30 windows before it judges any.
    let warm = Instant::now();
    while shape(&b)["baseline"]["warming_up"] != false && warm.elapsed() < Duration::from_secs(60) {
        for c in [vouched, verified[0], verified[1]] {
            post(&rt, route(&b.bed.client, c), "/collect", pageview());
        }
    }
    println!("  the baseline warmed up: {}", shape_line(&b));
    let stop = AtomicBool::new(false);
    let clients = [
        (vouched, "vouched"),
        (verified[0], "verified"),
        (verified[1], "verified"),
        (newcomer, "newcomer"),
    ];
    let mut ok = [0usize; 4];
    let mut tried = 0;
    let (sent, secs) = std::thread::scope(|s| {
        let flood = s.spawn(|| {
            b.tx.flood_generated(
                FLOOD_PPS,
                Duration::from_secs(seconds as u64 + 2),
                &stop,
                |n| {
                    let n = n as u32 % BOTS;
                    let src = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 19, 0, 0)) + 256 + n);
                    tcp_from(IpAddr::V4(src), 1024 + (n % 60_000) as u16, PORT, 0x02)
                },
            )
        });
        let flood_began = Instant::now();
        while shape(&b)["class"] != "distributed" && flood_began.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        println!(
            "  {:.1}s into the flood: {}",
            flood_began.elapsed().as_secs_f64(),
            shape_line(&b)
        );
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(seconds as u64) {
            tried += 1;
            for (i, (addr, _)) in clients.iter().enumerate() {
                if post(&rt, route(&b.bed.client, *addr), "/collect", pageview())
                    == Outcome::Answered(202)
                {
                    ok[i] += 1;
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        flood.join().expect("flood")
    });
    let overload = b.g.packets("drop", "overload");
    println!(
        "  the flood: {sent} forged SYNs in {:.1}s; {overload} dropped for overload (the budget \
         lets 200/s through, whoever sends)",
        secs.as_secs_f64()
    );
    for (i, (addr, role)) in clients.iter().enumerate() {
        println!(
            "  {addr} ({role}): {} of {tried} posts answered during the flood",
            ok[i]
        );
    }
    // Calm again: the budget is released after six calm windows.
    let calm = Instant::now();
    while shape(&b)["class"] == "distributed" && calm.elapsed() < Duration::from_secs(15) {
        for c in [vouched, verified[0], verified[1]] {
            post(&rt, route(&b.bed.client, c), "/collect", pageview());
        }
    }
    println!(
        "  {:.1}s after the flood: {}",
        calm.elapsed().as_secs_f64(),
        shape_line(&b)
    );
    let released = shape(&b)["budget_engaged"] == false;
    let good = ok[..3].iter().all(|n| *n == tried) && ok[3] == 0 && tried > 0 && released;
    println!(
        "vouched and verified clients kept working, the newcomer waited, the flood was held to \
         the budget: {}",
        if good && overload > sent as u64 / 2 {
            "yes"
        } else {
            "NO"
        }
    );
    Ok(good && overload > sent as u64 / 2)
}

/// The rule's shape (`GET /v1/shape`).
fn shape(b: &GuardBed) -> serde_json::Value {
    b.g.api("GET", "/v1/shape", None).1["rules"][0].clone()
}

fn shape_line(b: &GuardBed) -> String {
    let r = shape(b);
    let w = &r["window"];
    format!(
        "shape {} ({:.0} sources, {:.1} packets each, in the last window), budget {}",
        r["class"].as_str().unwrap_or("?"),
        w["sources"].as_f64().unwrap_or(0.0),
        w["packets_per_source"].as_f64().unwrap_or(0.0),
        if r["budget_engaged"] == true {
            "enforced"
        } else {
            "counting only"
        }
    )
}

//! The proof-of-work flow end to end: Debian's Chromium (headless, in the client namespace)
//! loads the example ingest app's page, solves its challenge in a Web Worker and is vouched
//! for through guard's API; during a forged flood that keeps the endpoint's budget empty its
//! posts keep succeeding, while a source that never solved the challenge cannot connect. A
//! replayed or forged proof is refused. Default settings (difficulty 18, guard's vouch TTL).

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use guard_tests::{
    apps::{Browser, ingest},
    bed::GuardBed,
    http::{Outcome, Route, get, post},
    netns::client4,
    packet::tcp_from,
};
use ring::digest;

const PORT: u16 = 8080;

/// A budget on the app's port that a modest flood keeps empty.
const CONFIG: &str = "[[rules]]\nname = \"collector\"\nprotocol = \"tcp\"\nports = [8080]\n\
     rate = 500.0\nburst = 1000\ntotal_rate = 100.0\ntotal_burst = 200\n";

fn app_route(ns: &guard_tests::netns::Netns, src: IpAddr) -> Route<'_> {
    Route {
        ns,
        src,
        dst: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)), PORT),
        timeout: Duration::from_secs(3),
    }
}

/// The counter a browser would find for `challenge`.
fn solve(challenge: &str, difficulty: u32) -> u64 {
    (0u64..)
        .find(|c| {
            let h = digest::digest(&digest::SHA256, format!("{challenge}:{c}").as_bytes());
            let first = u32::from_be_bytes(h.as_ref()[..4].try_into().unwrap());
            first.leading_zeros() >= difficulty
        })
        .unwrap()
}

#[test]
fn a_browser_that_solved_the_challenge_keeps_posting_through_a_flood() {
    let b = GuardBed::start(CONFIG);
    let _app = ingest(&b.bed.server, "198.18.0.1:8080", &b.g.socket, &[]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ready = (0..50).any(|_| {
        let up = get(&rt, app_route(&b.bed.client, client4(9)), "/challenge").0
            == Outcome::Answered(200);
        up || {
            std::thread::sleep(Duration::from_millis(100));
            false
        }
    });
    assert!(ready, "the example app answers");

    // A proof is accepted once; replayed, or with its issue time moved, it is refused.
    let client = client4(3);
    let (_, body) = get(&rt, app_route(&b.bed.client, client), "/challenge");
    let ch: serde_json::Value = serde_json::from_str(&body).unwrap();
    let (challenge, difficulty) = (
        ch["challenge"].as_str().unwrap(),
        ch["difficulty"].as_u64().unwrap(),
    );
    assert_eq!(difficulty, 18, "the example's default");
    let counter = solve(challenge, difficulty as u32);
    let proof = |c: &str, n: u64| {
        post(
            &rt,
            app_route(&b.bed.client, client),
            "/verify",
            format!(r#"{{"challenge":"{c}","counter":{n}}}"#),
        )
    };
    assert_eq!(proof(challenge, counter), Outcome::Answered(200));
    assert_eq!(
        proof(challenge, counter),
        Outcome::Answered(409),
        "replayed"
    );
    let parts: Vec<&str> = challenge.split('.').collect();
    let older = format!(
        "{}.{}.{}.{}",
        parts[0],
        parts[1].parse::<u64>().unwrap() - 1000,
        parts[2],
        parts[3]
    );
    assert_eq!(
        proof(&older, counter),
        Outcome::Answered(403),
        "its time changed"
    );
    let vouches = b.g.ctl_json(&["vouches"]);
    assert!(vouches.to_string().contains("198.18.0.3/32"), "{vouches}");

    // The browser solves it and posts, one pageview every 50 ms for about 20 s.
    let browser = Browser::open(&b.bed.client, "http://198.18.0.1:8080/?posts=400&every=50");
    let start = Instant::now();
    let vouched = loop {
        let list = b.g.ctl_json(&["vouches"]);
        let found = list["entries"].as_array().into_iter().flatten().find(|e| {
            e["cidr"] != "198.18.0.3/32" && e["reason"] == "solved the proof-of-work challenge"
        });
        if let Some(e) = found {
            break e["cidr"].as_str().unwrap().to_string();
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the browser was vouched for: {list}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!(
        "the browser at {vouched} was vouched for {:.1}s after it opened the page",
        start.elapsed().as_secs_f64()
    );

    // A forged flood empties the budget while the browser posts.
    let stop = AtomicBool::new(false);
    let (title, stranger, overload) = std::thread::scope(|s| {
        let flood = s.spawn(|| {
            b.tx.flood_generated(30_000, Duration::from_secs(60), &stop, |n| {
                let n = (n % 50_000) as u32;
                let src = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 19, 0, 0)) + 256 + n);
                tcp_from(IpAddr::V4(src), 1024 + (n % 60_000) as u16, PORT, 0x02)
            })
        });
        std::thread::sleep(Duration::from_secs(2));
        // A source that never solved the challenge (nor connected before) cannot connect.
        let stranger = get(&rt, app_route(&b.bed.client, client4(4)), "/challenge").0;
        let overload = b.g.packets("drop", "overload");
        let title = browser.done(&b.bed.client, Duration::from_secs(90));
        stop.store(true, Ordering::Relaxed);
        let (sent, secs) = flood.join().unwrap();
        eprintln!("flood: {sent} forged SYNs in {:.1}s", secs.as_secs_f64());
        (title, stranger, overload)
    });
    let title = title.expect("the page finished");
    eprintln!(
        "browser: {title}; a stranger during the flood: {stranger:?}; {overload} dropped for overload"
    );
    assert_eq!(
        stranger,
        Outcome::NoAnswer,
        "the stranger's SYNs are dropped"
    );
    assert!(
        overload >= 10_000,
        "the budget was empty: {overload} overload drops"
    );
    let field = |name: &str| -> u64 {
        let words: Vec<&str> = title.split_whitespace().collect();
        let i = words
            .iter()
            .position(|w| *w == name)
            .unwrap_or_else(|| panic!("{name} in {title}"));
        words[i + 1].parse().unwrap()
    };
    assert_eq!(field("vouched"), 200, "{title}");
    assert_eq!(field("posts_ok"), 400, "{title}");
    assert_eq!(field("posts_failed"), 0, "{title}");
}

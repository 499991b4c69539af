//! Every packet judged, on a veth pair: SYNs that hide their flags from a 1/s
//! `tcp_syn_only` rule (split into tiny fragments, or behind more IPv6 extension headers than
//! the walk reads) no longer reach the listener's TCP stack past what the rule allows.
//!
//! What reaches TCP is the server namespace's `Tcp: InSegs`. The SYNs come from forged
//! addresses the server cannot reach, so its SYN-ACKs go nowhere and bring no RST back.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use guard_tests::{
    bed::GuardBed,
    packet::{tcp_behind_options, tiny_fragments},
};

const FORGED4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
const FORGED6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);
const SYN: u8 = 0x02;
const PORT: u16 = 8080;
const SENT: usize = 40;
const BURST: u64 = 3;

fn config(monitor: bool) -> String {
    format!(
        r#"
[[rules]]
name = "syn"
protocol = "tcp"
ports = [{PORT}]
tcp_syn_only = true
rate = 1.0
burst = {BURST}
buckets = 64
monitor = {monitor}
"#
    )
}

/// TCP segments the server namespace's stack has received.
fn in_segs(b: &GuardBed) -> u64 {
    let snmp = b
        .bed
        .server
        .run(|| std::fs::read_to_string("/proc/thread-self/net/snmp").expect("snmp"));
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let (names, values) = (
        tcp.next().expect("Tcp names"),
        tcp.next().expect("Tcp values"),
    );
    let at = names
        .split_whitespace()
        .position(|n| n == "InSegs")
        .expect("InSegs");
    values
        .split_whitespace()
        .nth(at)
        .expect("value")
        .parse()
        .expect("number")
}

/// TCP segments that reached the server while `frames` were sent, in order, 25 ms apart
/// (bounded: `frames.len()` sends, a few seconds).
fn reached(b: &GuardBed, frames: &[Vec<u8>]) -> u64 {
    let before = in_segs(b);
    for f in frames {
        assert!(b.tx.send(f), "sent");
        std::thread::sleep(Duration::from_millis(25));
    }
    std::thread::sleep(Duration::from_millis(200));
    in_segs(b) - before
}

fn evasions() -> [(&'static str, Vec<Vec<u8>>); 3] {
    let sport = |i: usize| 20_000 + i as u16;
    [
        (
            "tiny-fragment SYNs",
            (0..SENT)
                .flat_map(|i| tiny_fragments(FORGED4, 100 + i as u16, sport(i), PORT, SYN))
                .collect(),
        ),
        (
            "SYNs behind six Destination Options headers",
            (0..SENT)
                .map(|i| tcp_behind_options(FORGED6, sport(i), PORT, SYN, 6))
                .collect(),
        ),
        (
            "SYNs behind seven Destination Options headers",
            (0..SENT)
                .map(|i| tcp_behind_options(FORGED6, sport(i), PORT, SYN, 7))
                .collect(),
        ),
    ]
}

#[test]
fn syns_that_hide_their_flags_are_held_to_the_syn_rule() {
    let b = GuardBed::start(&config(true));
    let _listen4 = b
        .bed
        .server
        .run(|| std::net::TcpListener::bind((IpAddr::from([0u8; 4]), PORT)).expect("listen"));
    // With the rule in monitor mode every crafted SYN reaches TCP: the frames are sound.
    for (name, frames) in evasions() {
        let got = reached(&b, &frames);
        eprintln!("monitor mode: {name}: {got} of {SENT} reached TCP");
        assert!(
            got >= SENT as u64,
            "{name}: the stack takes them ({got} of {SENT})"
        );
    }
    std::fs::write(&b.g.config, b.g.with_state_dir(&config(false))).expect("config");
    b.ok("POST", "/v1/reload", "");
    for (i, (name, frames)) in evasions().into_iter().enumerate() {
        let got = reached(&b, &frames);
        // The six-header chain is walked: the rule judges each SYN (a burst, then 1/s).
        let allowed = if i == 1 { BURST + 3 } else { 0 };
        eprintln!("enforced: {name}: {got} of {SENT} reached TCP, the rule allows {allowed}");
        assert!(
            got <= allowed,
            "{name}: {got} reached TCP, the rule allows {allowed}"
        );
    }
    assert!(b.g.packets("drop", "malformed") >= 2 * SENT as u64);
}

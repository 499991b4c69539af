//! BPF_PROG_TEST_RUN fixtures for rate rules: which packets a rule charges, what an empty
//! bucket does, that kernel and daemon agree on a source's bucket, monitor modes, and the
//! fail-open on a stale refill heartbeat.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use guard_common::{Reason, Verdict, lists::flags, tokens::TOKEN_SCALE};
use guard_tests::{
    fixture::{Fixture, XDP_DROP, XDP_PASS},
    packet::*,
};
use guard_user::kernel::clock::monotonic_ns;

const SRC: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const SRC6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

const MATCH_RULES: &str = r#"
[[rules]]
name = "dns"
protocol = "udp"
ports = [53]
rate = 10.0
burst = 100
buckets = 16

[[rules]]
name = "https-syn"
protocol = "tcp"
ports = [443]
tcp_syn_only = true
rate = 10.0
burst = 100
buckets = 16

[[rules]]
name = "ping"
protocol = "icmp"
rate = 10.0
burst = 100
buckets = 16

[[rules]]
name = "all-tcp"
protocol = "tcp"
rate = 10.0
burst = 100
buckets = 16
"#;

fn v4(tags: &[u16], frag: u16, proto: u8, l4: &[u8]) -> Vec<u8> {
    [
        eth(tags, ETH_P_IP),
        ipv4(SRC, DST4, proto, &[], frag, l4.len()),
        l4.to_vec(),
    ]
    .concat()
}

fn v6(proto: u8, l4: &[u8]) -> Vec<u8> {
    [
        eth(&[], ETH_P_IPV6),
        ipv6(SRC6, DST6, &[], proto, l4.len()),
        l4.to_vec(),
    ]
    .concat()
}

#[test]
fn rules_charge_only_matching_packets() {
    let mut f = Fixture::with_rules(&[], &[], MATCH_RULES);
    let (syn, synack, ack) = (0x02, 0x12, 0x10);
    // (case, frame, which of dns/https-syn/ping/all-tcp it charges)
    let cases: Vec<(&str, Vec<u8>, [bool; 4])> = vec![
        (
            "udp 53",
            v4(&[], 0, UDP, &udp(53, 4)),
            [true, false, false, false],
        ),
        (
            "vlan udp 53",
            v4(&[9], 0, UDP, &udp(53, 4)),
            [true, false, false, false],
        ),
        (
            "qinq udp 53",
            v4(&[9, 10], 0, UDP, &udp(53, 4)),
            [true, false, false, false],
        ),
        ("udp 54", v4(&[], 0, UDP, &udp(54, 4)), [false; 4]),
        (
            "tcp syn 443",
            v4(&[], 0, TCP, &tcp(443, syn)),
            [false, true, false, true],
        ),
        (
            "vlan tcp syn 443",
            v4(&[3], 0, TCP, &tcp(443, syn)),
            [false, true, false, true],
        ),
        (
            "tcp syn-ack 443",
            v4(&[], 0, TCP, &tcp(443, synack)),
            [false, false, false, true],
        ),
        (
            "tcp ack 443",
            v4(&[], 0, TCP, &tcp(443, ack)),
            [false, false, false, true],
        ),
        (
            "tcp syn 80",
            v4(&[], 0, TCP, &tcp(80, syn)),
            [false, false, false, true],
        ),
        (
            "tcp 53",
            v4(&[], 0, TCP, &tcp(53, syn)),
            [false, false, false, true],
        ),
        (
            "icmp echo",
            v4(&[], 0, ICMP, &icmp_echo()),
            [false, false, true, false],
        ),
        (
            "icmpv6 echo",
            v6(ICMPV6, &icmp_echo()),
            [false, false, true, false],
        ),
        (
            "ipv6 udp 53",
            v6(UDP, &udp(53, 4)),
            [true, false, false, false],
        ),
        (
            "ipv6 tcp syn 443",
            v6(TCP, &tcp(443, syn)),
            [false, true, false, true],
        ),
        // A non-first fragment has no ports: only protocol-only rules see it.
        ("udp fragment", v4(&[], 185, UDP, &[0; 8]), [false; 4]),
        (
            "tcp fragment",
            v4(&[], 185, TCP, &[0; 8]),
            [false, false, false, true],
        ),
        ("gre", v4(&[], 0, 47, &[0; 4]), [false; 4]),
    ];
    for (name, frame, want) in cases {
        let before = f.rule_counters();
        f.expect(name, &frame, XDP_PASS, Verdict::Pass, Reason::None);
        let after = f.rule_counters();
        for (i, w) in want.iter().enumerate() {
            assert_eq!(
                after[i].0 - before[i].0,
                *w as u64,
                "{name}: rule {} passed",
                f.rules.rules[i].name
            );
            assert_eq!(after[i].1, before[i].1, "{name}: nothing limited");
        }
    }
}

const ONE_RULE: &str = "[[rules]]\nname = \"r\"\nrate = 1.0\nburst = 3\nbuckets = 16\n";

#[test]
fn empty_bucket_drops_and_other_sources_pass() {
    let mut f = Fixture::with_rules(&[], &[], ONE_RULE);
    let frame = udp4(SRC, 80);
    for i in 0..3 {
        f.expect(
            &format!("token {i}"),
            &frame,
            XDP_PASS,
            Verdict::Pass,
            Reason::None,
        );
    }
    f.expect("burst spent", &frame, XDP_DROP, Verdict::Drop, Reason::Rate);
    f.expect("still empty", &frame, XDP_DROP, Verdict::Drop, Reason::Rate);
    assert_eq!(f.rule_counters()[0], (3, 2));
    // A source in another bucket is untouched.
    let other = (3..=250u8)
        .map(|h| Ipv4Addr::new(198, 18, 0, h))
        .find(|a| f.bucket_of(0, IpAddr::V4(*a)) != f.bucket_of(0, IpAddr::V4(SRC)))
        .expect("some source hashes elsewhere");
    f.expect(
        "other source",
        &udp4(other, 80),
        XDP_PASS,
        Verdict::Pass,
        Reason::None,
    );
    // The allow list bypasses the rule even for the limited source.
    let mut f = Fixture::with_rules(&["198.18.0.2"], &[], ONE_RULE);
    f.empty_bucket(f.bucket_of(0, IpAddr::V4(SRC)));
    f.expect("allowed", &frame, XDP_PASS, Verdict::Pass, Reason::Allow);
}

/// The kernel charges exactly the bucket the daemon computes for a source (SipHash-1-3
/// with the same key over the same masked bytes), for IPv4 and IPv6 and several prefixes.
#[test]
fn kernel_and_userspace_agree_on_bucket_index() {
    let rules = "[[rules]]\nname = \"host\"\nrate = 1.0\nburst = 1000\nbuckets = 1024\n\
                 [[rules]]\nname = \"net\"\nipv4_prefix = 24\nipv6_prefix = 48\nrate = 1.0\nburst = 1000\nbuckets = 1024\n";
    let mut f = Fixture::with_rules(&[], &[], rules);
    let buckets = f.engine.buckets();
    let sources: Vec<IpAddr> = (0..40u32)
        .map(|i| IpAddr::V4(Ipv4Addr::from(0xc612_0000 + i * 977)))
        .chain((0..40u128).map(|i| {
            IpAddr::V6(Ipv6Addr::from(
                (0x2001_0db8u128 << 96) | (i << 70) | (i * 31),
            ))
        }))
        .collect();
    for src in sources {
        let frame = match src {
            IpAddr::V4(a) => udp4(a, 80),
            IpAddr::V6(a) => udp6(a, 80),
        };
        let before: Vec<u64> = (0..buckets.len()).map(|i| buckets.get(i).spent).collect();
        assert_eq!(f.run(&frame), XDP_PASS);
        let charged: Vec<u32> = (0..buckets.len())
            .filter(|&i| buckets.get(i).spent != before[i as usize])
            .collect();
        let want = vec![f.bucket_of(0, src), f.bucket_of(1, src)];
        assert_eq!(
            charged, want,
            "{src}: kernel charged {charged:?}, userspace computed {want:?}"
        );
        // One token, plus what a full bucket earned since its refill and burns (at 1/s,
        // less than a token over the test).
        for i in charged {
            let cost = buckets.get(i).spent - before[i as usize];
            assert!(
                (TOKEN_SCALE..2 * TOKEN_SCALE).contains(&cost),
                "{src}: one token (and the burned accrual), not {cost} units"
            );
        }
    }
}

#[test]
fn a_drop_by_one_rule_refunds_the_others() {
    let rules = "[[rules]]\nname = \"wide\"\nrate = 1.0\nburst = 100\nbuckets = 16\n\
                 [[rules]]\nname = \"udp\"\nprotocol = \"udp\"\nrate = 1.0\nburst = 100\nbuckets = 16\n";
    let mut f = Fixture::with_rules(&[], &[], rules);
    let (wide, udp) = (f.bucket_of(0, SRC.into()), f.bucket_of(1, SRC.into()));
    f.empty_bucket(udp);
    let before = f.engine.buckets().get(wide);
    f.expect(
        "udp limited",
        &udp4(SRC, 80),
        XDP_DROP,
        Verdict::Drop,
        Reason::Rate,
    );
    // The token was given back; what the full bucket earned since its refill stays burned
    // (under a token at 1/s: nothing on a fast host within one clock tick, more under qemu).
    let after = f.engine.buckets().get(wide);
    assert!(
        after.credit == before.credit && after.spent.wrapping_sub(before.spent) < TOKEN_SCALE,
        "the wide rule's token was given back: {before:?} -> {after:?}"
    );
    assert_eq!(f.rule_counters(), vec![(0, 0), (0, 1)]);
    // TCP is not matched by the udp rule: the wide rule alone charges it.
    f.expect(
        "tcp passes",
        &v4(&[], 0, TCP, &tcp(80, 2)),
        XDP_PASS,
        Verdict::Pass,
        Reason::None,
    );
    assert_eq!(f.rule_counters(), vec![(1, 0), (0, 1)]);
}

#[test]
fn monitor_mode_passes_would_drops() {
    // Per rule.
    let mut f = Fixture::with_rules(
        &[],
        &[],
        "[[rules]]\nname = \"m\"\nrate = 1.0\nburst = 1\nbuckets = 16\nmonitor = true\n",
    );
    f.empty_bucket(f.bucket_of(0, SRC.into()));
    f.expect(
        "rule monitor",
        &udp4(SRC, 80),
        XDP_PASS,
        Verdict::Monitor,
        Reason::Rate,
    );
    assert_eq!(f.rule_counters()[0], (0, 1));
    // Global.
    let mut f = Fixture::with_rules(&[], &[], ONE_RULE);
    f.set_flags(flags::MONITOR);
    f.empty_bucket(f.bucket_of(0, SRC.into()));
    f.expect(
        "global monitor",
        &udp4(SRC, 80),
        XDP_PASS,
        Verdict::Monitor,
        Reason::Rate,
    );
    f.set_flags(0);
    f.expect(
        "enforcing again",
        &udp4(SRC, 80),
        XDP_DROP,
        Verdict::Drop,
        Reason::Rate,
    );
}

#[test]
fn stale_heartbeat_fails_open_but_deny_still_drops() {
    let mut f = Fixture::with_rules(&[], &["198.18.0.3"], ONE_RULE);
    f.empty_bucket(f.bucket_of(0, SRC.into()));
    f.expect(
        "fresh heartbeat",
        &udp4(SRC, 80),
        XDP_DROP,
        Verdict::Drop,
        Reason::Rate,
    );
    // The daemon's last refill was 6 s ago; rules fail open after 5 s.
    f.engine.heartbeat().beat(monotonic_ns() - 6_000_000_000);
    f.expect(
        "stale heartbeat",
        &udp4(SRC, 80),
        XDP_PASS,
        Verdict::Pass,
        Reason::StaleRefill,
    );
    f.expect(
        "deny still applies",
        &udp4(Ipv4Addr::new(198, 18, 0, 3), 80),
        XDP_DROP,
        Verdict::Drop,
        Reason::Deny,
    );
    // A source with tokens is still charged and passes normally.
    let other = (4..=250u8)
        .map(|h| Ipv4Addr::new(198, 18, 0, h))
        .find(|a| f.bucket_of(0, IpAddr::V4(*a)) != f.bucket_of(0, IpAddr::V4(SRC)))
        .unwrap();
    f.expect(
        "other source",
        &udp4(other, 80),
        XDP_PASS,
        Verdict::Pass,
        Reason::None,
    );
    f.engine.heartbeat().beat(monotonic_ns());
    f.expect(
        "daemon back",
        &udp4(SRC, 80),
        XDP_DROP,
        Verdict::Drop,
        Reason::Rate,
    );
}

//! Table-driven BPF_PROG_TEST_RUN fixtures: each frame's XDP action and counter bump.
//! Needs root (loads the real program into the kernel).

use std::net::{Ipv4Addr, Ipv6Addr};

use guard_common::{Reason, Verdict, lists::flags};
use guard_tests::{
    fixture::{Fixture, XDP_DROP, XDP_PASS},
    packet::*,
};

const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const DENIED: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);
const ALLOWED: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 4);
const DENIED_NET_HOST: Ipv4Addr = Ipv4Addr::new(198, 18, 5, 77);
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
const DENIED6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xbad, 0, 0, 0, 0, 9);
const ALLOWED6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xbad, 0, 0, 0, 0, 4);

fn fixture() -> Fixture {
    Fixture::new(
        &["198.18.0.4", "198.18.5.4", "2001:db8:bad::4"],
        &["198.18.0.3", "198.18.5.0/24", "2001:db8:bad::/48"],
    )
}

fn v4(tags: &[u16], src: Ipv4Addr, options: &[u8], frag: u16, l4proto: u8, l4: &[u8]) -> Vec<u8> {
    [
        eth(tags, ETH_P_IP),
        ipv4(src, DST4, l4proto, options, frag, l4.len()),
        l4.to_vec(),
    ]
    .concat()
}

fn v6(tags: &[u16], src: Ipv6Addr, exts: &[Ext], l4proto: u8, l4: &[u8]) -> Vec<u8> {
    [
        eth(tags, ETH_P_IPV6),
        ipv6(src, DST6, exts, l4proto, l4.len()),
        l4.to_vec(),
    ]
    .concat()
}

struct Case {
    name: &'static str,
    frame: Vec<u8>,
    action: u32,
    verdict: Verdict,
    reason: Reason,
}

fn case(name: &'static str, frame: Vec<u8>, action: u32, verdict: Verdict, reason: Reason) -> Case {
    Case {
        name,
        frame,
        action,
        verdict,
        reason,
    }
}

fn well_formed_cases() -> Vec<Case> {
    use Reason as R;
    use Verdict as V;
    let udp = udp(443, 10);
    let syn = tcp(443, 0x02);
    let icmp = icmp_echo();
    let ipopts = [0x94, 0x04, 0, 0, 0x01, 0x01, 0x01, 0x00]; // router alert + NOPs + EOL
    vec![
        case(
            "ipv4 udp, unlisted",
            v4(&[], CLIENT, &[], 0, UDP, &udp),
            XDP_PASS,
            V::Pass,
            R::None,
        ),
        case(
            "ipv4 tcp syn, unlisted",
            v4(&[], CLIENT, &[], 0, TCP, &syn),
            XDP_PASS,
            V::Pass,
            R::None,
        ),
        case(
            "ipv4 icmp, unlisted",
            v4(&[], CLIENT, &[], 0, ICMP, &icmp),
            XDP_PASS,
            V::Pass,
            R::None,
        ),
        case(
            "ipv4 denied /32",
            v4(&[], DENIED, &[], 0, UDP, &udp),
            XDP_DROP,
            V::Drop,
            R::Deny,
        ),
        case(
            "ipv4 denied by /24",
            v4(&[], DENIED_NET_HOST, &[], 0, TCP, &syn),
            XDP_DROP,
            V::Drop,
            R::Deny,
        ),
        case(
            "ipv4 allowed",
            v4(&[], ALLOWED, &[], 0, UDP, &udp),
            XDP_PASS,
            V::Pass,
            R::Allow,
        ),
        case(
            "ipv4 allow /32 inside deny /24",
            v4(&[], Ipv4Addr::new(198, 18, 5, 4), &[], 0, UDP, &udp),
            XDP_PASS,
            V::Pass,
            R::Allow,
        ),
        case(
            "vlan ipv4 denied",
            v4(&[10], DENIED, &[], 0, UDP, &udp),
            XDP_DROP,
            V::Drop,
            R::Deny,
        ),
        case(
            "qinq ipv4 denied",
            v4(&[100, 10], DENIED, &[], 0, UDP, &udp),
            XDP_DROP,
            V::Drop,
            R::Deny,
        ),
        case(
            "qinq ipv4 unlisted",
            v4(&[100, 10], CLIENT, &[], 0, UDP, &udp),
            XDP_PASS,
            V::Pass,
            R::None,
        ),
        case(
            "ipv4 options denied",
            v4(&[], DENIED, &ipopts, 0, UDP, &udp),
            XDP_DROP,
            V::Drop,
            R::Deny,
        ),
        case(
            "ipv4 options unlisted",
            v4(&[], CLIENT, &ipopts, 0, TCP, &syn),
            XDP_PASS,
            V::Pass,
            R::None,
        ),
        case(
            "ipv4 max options (ihl 15)",
            v4(&[], DENIED, &[1; 40], 0, UDP, &udp),
            XDP_DROP,
            V::Drop,
            R::Deny,
        ),
        // Non-first fragment: no L4 header in it, judged by source alone.
        case(
            "ipv4 fragment denied",
            v4(&[], DENIED, &[], 185, UDP, &[0; 8]),
            XDP_DROP,
            V::Drop,
            R::Deny,
        ),
        case(
            "ipv4 fragment unlisted",
            v4(&[], CLIENT, &[], 185, UDP, &[0; 3]),
            XDP_PASS,
            V::Pass,
            R::None,
        ),
        case(
            "ipv4 first fragment (MF)",
            v4(&[], DENIED, &[], 0x2000, UDP, &udp),
            XDP_DROP,
            V::Drop,
            R::Deny,
        ),
        case(
            "ipv4 gre (unknown l4)",
            v4(&[], DENIED, &[], 0, 47, &[0; 4]),
            XDP_DROP,
            V::Drop,
            R::Deny,
        ),
        case(
            "ipv6 udp, unlisted",
            v6(&[], CLIENT6, &[], UDP, &udp),
            XDP_PASS,
            V::Pass,
            R::None,
        ),
        case(
            "ipv6 denied /48",
            v6(&[], DENIED6, &[], UDP, &udp),
            XDP_DROP,
            V::Drop,
            R::Deny,
        ),
        case(
            "ipv6 allowed inside deny",
            v6(&[], ALLOWED6, &[], TCP, &syn),
            XDP_PASS,
            V::Pass,
            R::Allow,
        ),
        case(
            "vlan ipv6 denied",
            v6(&[7], DENIED6, &[], ICMPV6, &icmp),
            XDP_DROP,
            V::Drop,
            R::Deny,
        ),
        case(
            "ipv6 hop-by-hop + routing + dest opts",
            v6(
                &[],
                DENIED6,
                &[Ext::options(0, 1), Ext::options(43, 2), Ext::options(60, 1)],
                TCP,
                &syn,
            ),
            XDP_DROP,
            V::Drop,
            R::Deny,
        ),
        case(
            "ipv6 first fragment",
            v6(&[], CLIENT6, &[Ext::fragment(0, true)], UDP, &udp),
            XDP_PASS,
            V::Pass,
            R::None,
        ),
        case(
            "ipv6 non-first fragment denied",
            v6(&[], DENIED6, &[Ext::fragment(100, false)], UDP, &[0; 4]),
            XDP_DROP,
            V::Drop,
            R::Deny,
        ),
        case(
            "ipv6 chain longer than the walk",
            v6(
                &[],
                DENIED6,
                &[0, 60, 0, 60, 0, 60, 0].map(|k| Ext::options(k, 1)),
                UDP,
                &udp,
            ),
            XDP_DROP,
            V::Drop,
            R::Deny,
        ),
        case(
            "arp",
            [eth(&[], ETH_P_ARP), vec![0; 28]].concat(),
            XDP_PASS,
            V::Pass,
            R::None,
        ),
        case(
            "unknown ethertype",
            [eth(&[], 0x88b5), vec![0; 46]].concat(),
            XDP_PASS,
            V::Pass,
            R::None,
        ),
        case(
            "vlan arp",
            [eth(&[3], ETH_P_ARP), vec![0; 28]].concat(),
            XDP_PASS,
            V::Pass,
            R::None,
        ),
        case(
            "three vlan tags (not parsed further)",
            [
                eth(&[1, 2], ETH_P_8021Q),
                vec![0, 3],
                ETH_P_IP.to_be_bytes().to_vec(),
                vec![0; 40],
            ]
            .concat(),
            XDP_PASS,
            V::Pass,
            R::None,
        ),
    ]
}

/// Frames cut at every layer: each must count as malformed and pass.
fn truncated_cases() -> Vec<Case> {
    let udp = udp(53, 0);
    let full4 = v4(&[], DENIED, &[], 0, UDP, &udp);
    let opts4 = v4(&[], DENIED, &[1; 8], 0, UDP, &udp);
    let tcp4 = v4(&[], DENIED, &[], 0, TCP, &tcp(80, 2));
    let icmp4 = v4(&[], DENIED, &[], 0, ICMP, &icmp_echo());
    let full6 = v6(&[], DENIED6, &[], UDP, &udp);
    let ext6 = v6(&[], DENIED6, &[Ext::options(0, 2)], UDP, &udp);
    let vlan = v4(&[5, 6], DENIED, &[], 0, UDP, &udp);
    let mut out = Vec::new();
    let mut cut = |name: &'static str, frame: &[u8], len: usize| {
        out.push(case(
            name,
            frame[..len].to_vec(),
            XDP_PASS,
            Verdict::Pass,
            Reason::Malformed,
        ));
    };
    // Frames shorter than an Ethernet header never reach XDP (drivers drop runts and
    // BPF_PROG_TEST_RUN refuses them with EINVAL), so the cuts start inside the tags.
    cut("vlan tag cut", &vlan, 16);
    cut("second vlan tag cut", &vlan, 20);
    cut("ipv4 header cut", &full4, 14 + 19);
    cut("ipv4 options cut", &opts4, 14 + 24);
    cut("udp header cut", &full4, 14 + 20 + 7);
    cut("tcp header cut", &tcp4, 14 + 20 + 19);
    cut("icmp header cut", &icmp4, 14 + 20 + 4);
    cut("ipv6 header cut", &full6, 14 + 39);
    cut("ipv6 extension header cut", &ext6, 14 + 40 + 12);
    cut("ipv6 udp cut", &full6, 14 + 40 + 5);
    let mut bad_ihl = full4.clone();
    bad_ihl[14] = 0x44;
    out.push(case(
        "ipv4 ihl < 5",
        bad_ihl,
        XDP_PASS,
        Verdict::Pass,
        Reason::Malformed,
    ));
    let mut bad_version = full4.clone();
    bad_version[14] = 0x65;
    out.push(case(
        "ipv4 ethertype, version 6",
        bad_version,
        XDP_PASS,
        Verdict::Pass,
        Reason::Malformed,
    ));
    let mut bad_doff = tcp4.clone();
    bad_doff[14 + 20 + 12] = 0x40;
    out.push(case(
        "tcp data offset < 5",
        bad_doff,
        XDP_PASS,
        Verdict::Pass,
        Reason::Malformed,
    ));
    out
}

#[test]
fn well_formed_frames() {
    let mut f = fixture();
    for c in well_formed_cases() {
        f.expect(c.name, &c.frame, c.action, c.verdict, c.reason);
    }
}

#[test]
fn truncated_frames_are_malformed_and_pass() {
    let mut f = fixture();
    for c in truncated_cases() {
        f.expect(c.name, &c.frame, c.action, c.verdict, c.reason);
    }
}

#[test]
fn malformed_frames_drop_when_configured() {
    let mut f = fixture();
    f.set_flags(flags::DROP_MALFORMED);
    for c in truncated_cases() {
        f.expect(c.name, &c.frame, XDP_DROP, Verdict::Drop, Reason::Malformed);
    }
    // Well-formed traffic is unaffected.
    f.expect(
        "unlisted",
        &udp4(CLIENT, 80),
        XDP_PASS,
        Verdict::Pass,
        Reason::None,
    );
}

#[test]
fn monitor_mode_counts_would_drops_and_passes() {
    let mut f = fixture();
    f.monitor(true);
    f.expect(
        "denied v4",
        &udp4(DENIED, 80),
        XDP_PASS,
        Verdict::Monitor,
        Reason::Deny,
    );
    f.expect(
        "denied v6",
        &udp6(DENIED6, 80),
        XDP_PASS,
        Verdict::Monitor,
        Reason::Deny,
    );
    f.expect(
        "allowed",
        &udp4(ALLOWED, 80),
        XDP_PASS,
        Verdict::Pass,
        Reason::Allow,
    );
    f.monitor(false);
    f.expect(
        "denied again",
        &udp4(DENIED, 80),
        XDP_DROP,
        Verdict::Drop,
        Reason::Deny,
    );
}

#[test]
fn empty_lists_pass_everything() {
    let mut f = Fixture::new(&[], &[]);
    f.expect(
        "v4",
        &udp4(DENIED, 80),
        XDP_PASS,
        Verdict::Pass,
        Reason::None,
    );
    f.expect(
        "v6",
        &udp6(DENIED6, 80),
        XDP_PASS,
        Verdict::Pass,
        Reason::None,
    );
}

#[test]
fn list_updates_take_effect_in_place() {
    let mut f = fixture();
    f.expect(
        "before",
        &udp4(CLIENT, 80),
        XDP_PASS,
        Verdict::Pass,
        Reason::None,
    );
    let deny = [
        "198.18.0.2/32".parse().unwrap(),
        "2001:db8::2/128".parse().unwrap(),
    ];
    let tables = guard_user::lists::tables::Tables::build(&[], &deny).unwrap();
    f.with_datapath(|d| d.write_tables(tables)).unwrap();
    f.expect(
        "after v4",
        &udp4(CLIENT, 80),
        XDP_DROP,
        Verdict::Drop,
        Reason::Deny,
    );
    f.expect(
        "after v6",
        &udp6(CLIENT6, 80),
        XDP_DROP,
        Verdict::Drop,
        Reason::Deny,
    );
    f.expect(
        "old entry gone",
        &udp4(DENIED, 80),
        XDP_PASS,
        Verdict::Pass,
        Reason::None,
    );
    f.expect(
        "old v6 entry gone",
        &udp6(DENIED6, 80),
        XDP_PASS,
        Verdict::Pass,
        Reason::None,
    );
}

/// The kernel answers as the userspace mirror of the tables for the real blocklist.
#[test]
fn real_blocklist_kernel_matches_userspace() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/firehol_level1.netset");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let deny = guard_user::lists::parse(&text, path).unwrap();
    let allow = ["198.18.0.0/24".parse().unwrap()];
    let tables = guard_user::lists::tables::Tables::build(&allow, &deny).unwrap();
    let mut f = Fixture::new(&[], &[]);
    f.with_datapath(|d| d.write_tables(tables.clone())).unwrap();
    let mut checked = 0;
    for net in deny.iter().step_by(7) {
        let ipnet::IpNet::V4(n) = net else { continue };
        for addr in [
            u32::from(n.network()),
            u32::from(n.broadcast()),
            u32::from(n.broadcast()).wrapping_add(1),
        ] {
            let addr = Ipv4Addr::from(addr);
            let want = match tables.lookup(addr.into()) {
                guard_common::ListCode::Deny => XDP_DROP,
                _ => XDP_PASS,
            };
            assert_eq!(f.run(&udp4(addr, 80)), want, "{addr}");
            checked += 1;
        }
    }
    assert!(checked > 2000, "checked {checked} addresses");
    assert_eq!(
        f.run(&udp4(CLIENT, 80)),
        XDP_PASS,
        "the allowed test /24 inside 198.18.0.0/15"
    );
}

use std::net::Ipv4Addr;

use super::*;

fn nets(v: &[&str]) -> Vec<IpNet> {
    v.iter().map(|s| s.parse().unwrap()).collect()
}

fn check(allow: &[IpNet], deny: &[IpNet]) -> Tables {
    let t = Tables::build(allow, deny).unwrap();
    for net in allow.iter().chain(deny) {
        for addr in probes(net) {
            assert_eq!(
                t.lookup(addr),
                reference_lookup(allow, deny, addr),
                "{addr} (around {net}) with allow {allow:?} deny {deny:?}"
            );
        }
    }
    t
}

#[test]
fn empty_lists_match_nothing() {
    let t = check(&[], &[]);
    assert_eq!(t.lookup("198.18.0.1".parse().unwrap()), ListCode::None);
    assert_eq!(t.lookup("2001:db8::1".parse().unwrap()), ListCode::None);
    assert!(t.v4_tbl8.is_empty() && t.v6_trie.nodes.is_empty() && t.v6_prefix.is_empty());
}

#[test]
fn empty_tables_are_what_new_maps_hold() {
    // The first write to newly created maps skips what equals these: they must be zeros.
    let t = Tables::empty();
    assert!(t.v4_dir24.iter().all(|b| *b == Bitmap512::ZERO));
    assert!(t.v6_top24.iter().all(|b| *b == Bitmap512::ZERO));
    assert!(t.v4_tbl8.is_empty() && t.v6_trie.nodes.is_empty() && t.v6_lens.is_empty());
    assert!(t.v6_trie.root.iter().all(|&e| e == 0));
}

#[test]
fn v4_short_long_and_overlapping() {
    let allow = nets(&["198.18.0.4/32", "198.19.0.0/16", "203.0.113.128/25"]);
    let deny = nets(&[
        "198.18.0.0/15",
        "198.18.0.3/32",
        "203.0.113.0/24",
        "192.0.2.16/28",
        "10.0.0.0/8",
    ]);
    let t = check(&allow, &deny);
    let at = |s: &str| t.lookup(s.parse().unwrap());
    assert_eq!(at("198.18.0.3"), ListCode::Deny);
    assert_eq!(at("198.18.0.4"), ListCode::Allow);
    assert_eq!(at("198.18.200.1"), ListCode::Deny);
    assert_eq!(at("198.19.5.5"), ListCode::Allow);
    assert_eq!(at("203.0.113.1"), ListCode::Deny);
    assert_eq!(at("203.0.113.200"), ListCode::Allow);
    assert_eq!(at("192.0.2.20"), ListCode::Deny);
    assert_eq!(at("192.0.2.40"), ListCode::None);
    assert_eq!(at("11.0.0.0"), ListCode::None);
    // Only the /24s with mixed codes are split.
    assert_eq!(t.v4_tbl8.len(), 3, "198.18.0/24, 203.0.113/24, 192.0.2/24");
}

#[test]
fn v4_full_host_range_collapses() {
    // 256 /32s covering a whole /24 become one direct code.
    let deny: Vec<IpNet> = (0..256)
        .map(|h| format!("198.18.9.{h}/32").parse().unwrap())
        .collect();
    let t = check(&[], &deny);
    assert!(t.v4_tbl8.is_empty());
    assert_eq!(t.lookup("198.18.9.77".parse().unwrap()), ListCode::Deny);
}

#[test]
fn v6_longest_match_with_allow_overrides() {
    let allow = nets(&["2001:db8:1::/48", "2001:db8:2:5::/64", "2001:db8:3::7/128"]);
    let deny = nets(&[
        "2001:db8::/32",
        "2001:db8:1:2::/64",
        "2001:db8:3::/48",
        "2400::/12",
    ]);
    let t = check(&allow, &deny);
    let at = |s: &str| t.lookup(s.parse().unwrap());
    assert_eq!(
        at("2001:db8:1:2::9"),
        ListCode::Allow,
        "deny /64 inside allow /48"
    );
    assert_eq!(
        at("2001:db8:2:5::1"),
        ListCode::Allow,
        "allow /64 inside deny /32"
    );
    assert_eq!(at("2001:db8:2:6::1"), ListCode::Deny);
    assert_eq!(at("2001:db8:3::7"), ListCode::Allow);
    assert_eq!(at("2001:db8:3::8"), ListCode::Deny);
    assert_eq!(
        at("2401:1::1"),
        ListCode::Deny,
        "a /12 sets many top-24 bits"
    );
    assert_eq!(at("2410::1"), ListCode::None);
    assert_eq!(at("2001:db9::1"), ListCode::None);
}

#[test]
fn any_number_of_v6_lengths_up_to_64_is_taken() {
    // Every length from /1 to /64 in the trie, and a few longer ones hashed.
    let deny: Vec<IpNet> = (1..=64)
        .chain([80, 96, 112, 127, 128])
        .map(|l| {
            IpNet::V6(
                format!("2001:db8::/{l}")
                    .parse::<Ipv6Net>()
                    .unwrap()
                    .trunc(),
            )
        })
        .collect();
    let allow = nets(&["2001:db8::1/128", "2001:db8::100/120"]);
    let t = check(&allow, &deny);
    assert_eq!(t.v6_lens, [128, 127, 120, 112, 96, 80]);
}

#[test]
fn too_many_v6_lengths_past_64_is_refused() {
    let deny: Vec<IpNet> = (65..=82)
        .map(|l| format!("2001:db8::/{l}").parse().unwrap())
        .collect();
    let e = Tables::build(&[], &deny).unwrap_err();
    assert!(
        matches!(e, TableError::TooManyV6Lengths { count: 18, .. }),
        "{e}"
    );
}

#[test]
fn too_many_v6_nodes_is_refused_with_the_limit() {
    // /64s in distinct /16s: 12 nodes each.
    let deny: Vec<IpNet> = (0..6000u128)
        .map(|i| {
            IpNet::V6(Ipv6Net::new(std::net::Ipv6Addr::from((i << 112) | (1 << 64)), 64).unwrap())
        })
        .collect();
    let e = Tables::build(&[], &deny).unwrap_err();
    assert!(matches!(e, TableError::TooManyV6Nodes(_)), "{e}");
    assert!(e.to_string().contains("at most 65536"), "{e}");
}
/// Random lists against the reference, with a small deterministic generator.
#[test]
fn random_lists_match_the_reference() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..20 {
        let mut allow = Vec::new();
        let mut deny = Vec::new();
        for i in 0..60 {
            // Cluster addresses in a few /16s so prefixes overlap often.
            let base = 0xc612_0000u32 | ((next() as u32 % 4) << 16);
            let addr = base | (next() as u32 & 0xffff);
            let len = [8, 16, 20, 24, 25, 28, 30, 32][next() as usize % 8];
            let v4 = IpNet::V4(Ipv4Net::new(Ipv4Addr::from(addr), len).unwrap().trunc());
            let a6 = (0x2001_0db8u128 << 96) | ((next() as u128 % 4) << 80) | next() as u128;
            let len6 = [16, 32, 40, 48, 56, 64, 100, 128][next() as usize % 8];
            let v6 = IpNet::V6(Ipv6Net::new(Ipv6Addr::from(a6), len6).unwrap().trunc());
            if i % 3 == 0 {
                allow.extend([v4, v6])
            } else {
                deny.extend([v4, v6])
            }
        }
        let t = Tables::build(&allow, &deny).unwrap_or_else(|e| panic!("round {round}: {e}"));
        for net in allow.iter().chain(&deny) {
            for addr in probes(net) {
                assert_eq!(
                    t.lookup(addr),
                    reference_lookup(&allow, &deny, addr),
                    "round {round}: {addr}"
                );
            }
        }
    }
}

#[test]
fn the_real_blocklist_builds() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/firehol_level1.netset");
    let text = std::fs::read_to_string(path)
        .expect("data/firehol_level1.netset is part of the repository");
    let deny = crate::lists::parse(&text, "firehol").unwrap();
    let t = check(&[], &deny);
    assert_eq!(
        t.lookup("198.18.0.1".parse().unwrap()),
        ListCode::Deny,
        "the list holds 198.18.0.0/15"
    );
}

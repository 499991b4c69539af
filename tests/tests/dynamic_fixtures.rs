//! Bans through BPF_PROG_TEST_RUN: the engine's verdict path (`Engine::add`/`remove`)
//! writing the real maps, the production program judging frames. Checks the region bitmap in front of the
//! entry hashes never hides a live entry, whatever was added and removed before.
//! Needs root.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use guard_tests::{
    fixture::{Fixture, XDP_DROP, XDP_PASS},
    packet::udp_from,
};
use guard_user::verdicts::{Kind, Request};
use ipnet::IpNet;

struct Bed {
    f: Fixture,
}

impl Bed {
    fn new() -> Bed {
        Bed {
            f: Fixture::with_lists(&[], &[], "", 10_000),
        }
    }

    fn ban(&mut self, net: &str) {
        let req = Request {
            net: net.parse().expect("cidr"),
            ttl: Some(Duration::from_secs(600)),
            reason: String::new(),
        };
        self.f
            .engine
            .add(Kind::Ban, &[req])
            .unwrap_or_else(|e| panic!("ban {net}: {e}"));
    }

    fn unban(&mut self, net: &str) {
        self.f
            .engine
            .remove(&net.parse().expect("cidr"), Kind::Ban)
            .unwrap_or_else(|e| panic!("unban {net}: {e}"));
    }

    fn action(&mut self, addr: &str) -> u32 {
        self.f.run(&udp_from(addr.parse().expect("address"), 9))
    }

    fn expect(&mut self, dropped: &[&str], passed: &[&str], when: &str) {
        for a in dropped {
            assert_eq!(self.action(a), XDP_DROP, "{a} dropped {when}");
        }
        for a in passed {
            assert_eq!(self.action(a), XDP_PASS, "{a} passes {when}");
        }
    }
}

#[test]
fn ipv4_bans_of_every_width_apply_and_lift() {
    let mut b = Bed::new();
    b.expect(&[], &["198.18.0.7", "10.1.2.3"], "with no bans");
    b.ban("198.18.0.7/32");
    b.ban("198.18.9.0/24");
    b.ban("10.0.0.0/8");
    b.expect(
        &["198.18.0.7", "198.18.9.200", "10.1.2.3", "10.255.0.1"],
        &["198.18.0.8", "198.18.10.1", "11.0.0.1"],
        "after banning a /32, a /24 and a /8",
    );
    b.unban("10.0.0.0/8");
    b.expect(
        &["198.18.0.7", "198.18.9.1"],
        &["10.1.2.3"],
        "after lifting the /8",
    );
    b.unban("198.18.0.7/32");
    b.expect(
        &["198.18.9.1"],
        &["198.18.0.7"],
        "after lifting the /32 (same /16 as the /24)",
    );
    b.unban("198.18.9.0/24");
    b.expect(
        &[],
        &["198.18.9.1", "198.18.0.7"],
        "after lifting everything",
    );
}

#[test]
fn ipv6_bans_wider_than_a_region_cover_every_region() {
    let mut b = Bed::new();
    b.ban("2001:db8:1::/48");
    b.expect(
        &["2001:db8:1::5"],
        &["2001:db8:2::5", "3fff::1"],
        "after a /48",
    );
    b.ban("2001:d00::/24");
    b.expect(
        &["2001:db8:1::5", "2001:db8:2::5", "2001:dff::1"],
        &["3fff::1", "2001:e00::1"],
        "after a /24 (wider than a /32 region)",
    );
    b.unban("2001:d00::/24");
    b.expect(
        &["2001:db8:1::5"],
        &["2001:db8:2::5"],
        "after lifting the /24",
    );
    b.unban("2001:db8:1::/48");
    b.expect(&[], &["2001:db8:1::5"], "after lifting the /48");
}

/// Random bans and unbans over nets that nest and share regions; after each step every
/// probe address gets the verdict a plain scan of the active bans gives.
#[test]
fn random_ban_sequences_match_a_reference() {
    let pool: Vec<IpNet> = [
        "198.18.0.7/32",
        "198.18.0.0/24",
        "198.18.0.0/16",
        "198.16.0.0/12",
        "198.19.4.0/22",
        "203.0.113.9/32",
        "2001:db8::7/128",
        "2001:db8::/64",
        "2001:db8:5::/48",
        "2001:db0::/28",
        "3fff:1::/32",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect();
    let probes: Vec<IpAddr> = [
        "198.18.0.7",
        "198.18.0.8",
        "198.18.7.1",
        "198.20.0.1",
        "198.19.5.5",
        "203.0.113.9",
        "203.0.113.10",
        "2001:db8::7",
        "2001:db8::8",
        "2001:db8:5::1",
        "2001:db8:6::1",
        "2001:db5::1",
        "3fff:1::9",
        "3fff:2::9",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect();
    let mut b = Bed::new();
    let mut active: Vec<IpNet> = Vec::new();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for step in 0..300 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let net = pool[(x % pool.len() as u64) as usize];
        if let Some(i) = active.iter().position(|n| *n == net) {
            b.unban(&net.to_string());
            active.remove(i);
        } else {
            b.ban(&net.to_string());
            active.push(net);
        }
        for p in &probes {
            let want = if active.iter().any(|n| n.contains(p)) {
                XDP_DROP
            } else {
                XDP_PASS
            };
            let got = b.f.run(&udp_from(*p, 9));
            assert_eq!(got, want, "step {step}: {p} with bans {active:?}");
        }
    }
    // Unused addresses of the pool's families never match by accident.
    assert_eq!(
        b.f.run(&udp_from(Ipv4Addr::new(1, 2, 3, 4).into(), 9)),
        XDP_PASS
    );
    let v6: Ipv6Addr = "2a00::1".parse().unwrap();
    assert_eq!(b.f.run(&udp_from(v6.into(), 9)), XDP_PASS);
}

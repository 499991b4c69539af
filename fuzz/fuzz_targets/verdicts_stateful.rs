//! The verdict table as operations of any order drive it: bans and allows added (some
//! aggregated into their /24 or /48), removed and swept, against the real maps and the
//! production program (BPF_PROG_TEST_RUN; needs root). After every operation the kernel's
//! verdict for each probe is what the table says, an added entry is in force and a removed
//! one gone.
#![no_main]

use std::{
    net::IpAddr,
    sync::{Mutex, OnceLock},
    time::Duration,
};

use guard_tests::{
    fixture::{Fixture, XDP_DROP, XDP_PASS},
    packet::udp_from,
};
use guard_user::model::{Kind, Request};
use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;

const RULES: &str =
    "[bans]\naggregate_sources = 3\naggregate_ipv4_prefix = 24\naggregate_ipv6_prefix = 48\n";

/// Prefixes the operations name: nested, overlapping, both families, members of one /24.
const POOL: [&str; 16] = [
    "198.18.0.7/32",
    "198.18.0.8/32",
    "198.18.0.9/32",
    "198.18.0.10/32",
    "198.18.0.0/24",
    "198.18.0.0/16",
    "198.19.4.0/22",
    "203.0.113.9/32",
    "2001:db8::7/128",
    "2001:db8::8/128",
    "2001:db8::9/128",
    "2001:db8::/64",
    "2001:db8:5::/48",
    "2001:db0::/28",
    "198.18.1.1/32",
    "2001:db8:1::1/128",
];

const PROBES: [&str; 10] = [
    "198.18.0.7",
    "198.18.0.11",
    "198.18.7.1",
    "198.19.5.5",
    "203.0.113.9",
    "198.18.1.1",
    "2001:db8::7",
    "2001:db8::a",
    "2001:db8:5::1",
    "2001:db5::1",
];

fn fixture() -> &'static Mutex<Fixture> {
    static F: OnceLock<Mutex<Fixture>> = OnceLock::new();
    F.get_or_init(|| Mutex::new(Fixture::with_lists(&[], &[], RULES, 1000)))
}

fn net(i: u8) -> IpNet {
    POOL[i as usize % POOL.len()].parse().unwrap()
}

/// The verdict the table's entries give `p`: allows win, then bans.
fn expected(f: &Fixture, p: IpAddr) -> u32 {
    let covers = |kind| f.engine.entries(kind).iter().any(|e| e.net.contains(&p));
    if !covers(Kind::Allow) && covers(Kind::Ban) {
        XDP_DROP
    } else {
        XDP_PASS
    }
}

fuzz_target!(|data: &[u8]| {
    let mut f = fixture().lock().unwrap_or_else(|p| p.into_inner());
    for op in data.chunks(2).take(48) {
        let (what, arg) = (op[0], *op.get(1).unwrap_or(&0));
        let kind = if what & 1 == 0 {
            Kind::Ban
        } else {
            Kind::Allow
        };
        let n = net(arg);
        match what >> 1 & 3 {
            0 | 1 => {
                let req = Request {
                    net: n,
                    ttl: Some(Duration::from_secs(if what & 8 == 0 { 600 } else { 1 })),
                    ..Request::default()
                };
                if f.engine.add(kind, &[req]).is_ok() {
                    let held = f.engine.entries(kind);
                    assert!(
                        held.iter()
                            .any(|e| e.net == n || (kind == Kind::Ban && e.net.contains(&n))),
                        "{n} added as {kind:?} but not in force: {held:?}"
                    );
                }
            }
            2 => {
                if f.engine.remove(&n, kind).is_ok() {
                    let held = f.engine.entries(kind);
                    assert!(
                        !held.iter().any(|e| e.net == n),
                        "{n} removed but still held"
                    );
                }
            }
            _ => {
                f.engine.sweep().expect("sweep");
            }
        }
        for p in PROBES {
            let p: IpAddr = p.parse().unwrap();
            let want = expected(&f, p);
            assert_eq!(
                f.run(&udp_from(p, 9)),
                want,
                "{p} after {kind:?} {n} (op {what})"
            );
        }
    }
    // The next input starts from an empty table. Removing an aggregate gives its members
    // back: a few rounds.
    for _ in 0..4 {
        for kind in [Kind::Allow, Kind::Ban] {
            for e in f.engine.entries(kind) {
                let _ = f.engine.remove(&e.net, kind);
            }
        }
    }
    let (bans, allows, _) = f.engine.verdict_counts();
    assert_eq!((bans, allows), (0, 0), "every entry removed");
});

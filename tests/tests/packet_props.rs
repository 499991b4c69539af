//! Property tests through BPF_PROG_TEST_RUN: random frames, and well-formed frames with
//! random bytes changed, cut short or extended, run through the production program with
//! lists, temporary entries and rate rules loaded. It never answers anything but XDP_DROP
//! or XDP_PASS (never XDP_ABORTED), and exactly one verdict counter moves, by one, per
//! frame. Needs root.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    sync::Mutex,
};

use guard_common::lists::flags;
use guard_tests::{
    fixture::{Fixture, XDP_DROP, XDP_PASS},
    packet::*,
};
use proptest::prelude::*;

/// Every stage has something to do: both lists in both families, rules on each protocol
/// (one with ports, one SYN-only, one with a bucket emptied below).
fn fixture() -> Fixture {
    let rules = "[[rules]]\nname = \"dns\"\nprotocol = \"udp\"\nports = [53, 443]\nrate = 1.0\nburst = 1\nbuckets = 1024\n\
                 [[rules]]\nname = \"syn\"\nprotocol = \"tcp\"\ntcp_syn_only = true\nrate = 1.0\nburst = 3\nbuckets = 1024\n\
                 [[rules]]\nname = \"ping\"\nprotocol = \"icmp\"\nrate = 1.0\nburst = 2\nbuckets = 1024\n\
                 [[rules]]\nname = \"all\"\nipv4_prefix = 24\nipv6_prefix = 48\nrate = 1000.0\nburst = 100000\nbuckets = 1024\n";
    Fixture::with_rules(
        &["198.18.0.4", "2001:db8:bad::4"],
        &[
            "198.18.0.3",
            "198.18.5.0/24",
            "2001:db8:bad::/48",
            "10.0.0.0/8",
        ],
        rules,
    )
}

/// Well-formed frames of every shape the parser knows, as mutation seeds.
fn seeds() -> Vec<Vec<u8>> {
    let a4 = Ipv4Addr::new(198, 18, 0, 2);
    let a6 = Ipv6Addr::new(0x2001, 0xdb8, 0xbad, 0, 0, 0, 0, 9);
    let v4 = |tags: &[u16], proto: u8, options: &[u8], frag: u16, l4: Vec<u8>| {
        [
            eth(tags, ETH_P_IP),
            ipv4(a4, DST4, proto, options, frag, l4.len()),
            l4,
        ]
        .concat()
    };
    let v6 = |tags: &[u16], exts: &[Ext], proto: u8, l4: Vec<u8>| {
        [
            eth(tags, ETH_P_IPV6),
            ipv6(a6, DST6, exts, proto, l4.len()),
            l4,
        ]
        .concat()
    };
    vec![
        udp4(a4, 53),
        udp6(a6, 443),
        v4(&[], TCP, &[], 0, tcp(80, 0x02)),
        v4(&[100], ICMP, &[], 0, icmp_echo()),
        v4(&[100, 200], UDP, &[1, 1, 1, 0], 0, udp(53, 4)),
        v4(&[], UDP, &[], 0x2001, udp(53, 4)),
        v6(
            &[],
            &[Ext::options(0, 1), Ext::options(60, 2)],
            TCP,
            tcp(443, 0x02),
        ),
        v6(&[7], &[Ext::fragment(0, true)], UDP, udp(53, 8)),
        v6(&[], &[Ext::fragment(3, false)], UDP, vec![0; 16]),
        v6(&[], &[], ICMPV6, icmp_echo()),
        [eth(&[], ETH_P_ARP), vec![0; 28]].concat(),
    ]
}

/// A seed with random bytes overwritten, then cut or extended.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    let n = seeds().len();
    (
        0..n,
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        prop_oneof![Just(None), (14usize..120).prop_map(Some)],
        prop::collection::vec(any::<u8>(), 0..40),
    )
        .prop_map(|(seed, changes, cut, tail)| {
            let mut f = seeds()[seed].clone();
            for (at, byte) in changes {
                let i = at.index(f.len());
                f[i] = byte;
            }
            if let Some(len) = cut {
                f.truncate(len.max(14));
            }
            f.extend(tail);
            f
        })
}

/// Frames of 14 bytes or more (BPF_PROG_TEST_RUN refuses shorter ones).
fn random() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 14..300)
}

static FIXTURE: Mutex<Option<Fixture>> = Mutex::new(None);

/// Runs `frame` with the given runtime flags; checks the action and the counters.
fn check(frame: &[u8], monitor: bool, drop_malformed: bool) -> Result<(), TestCaseError> {
    let mut guard = FIXTURE.lock().unwrap_or_else(|p| p.into_inner());
    let f = guard.get_or_insert_with(|| {
        let f = fixture();
        // Rule "dns": this source's bucket empty, so rate drops happen too.
        f.empty_bucket(f.bucket_of(0, Ipv4Addr::new(198, 18, 0, 2).into()));
        f
    });
    let mut fl = 0;
    if monitor {
        fl |= flags::MONITOR;
    }
    if drop_malformed {
        fl |= flags::DROP_MALFORMED;
    }
    f.set_flags(fl);
    f.engine
        .heartbeat()
        .beat(guard_user::kernel::clock::monotonic_ns());
    let total =
        |c: &guard_user::control::model::Counters| c.packets.iter().map(|p| p.packets).sum::<u64>();
    let before = total(&f.counters());
    let action = f.run(frame);
    let after = total(&f.counters());
    prop_assert!(
        action == XDP_DROP || action == XDP_PASS,
        "action {action} for {frame:02x?}"
    );
    prop_assert_eq!(
        after - before,
        1,
        "counters moved by {} for {:02x?}",
        after - before,
        frame
    );
    if monitor {
        prop_assert_eq!(action, XDP_PASS, "monitor mode never drops: {:02x?}", frame);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 20_000, ..ProptestConfig::default() })]

    #[test]
    fn random_frames_are_judged_and_counted(
        frame in random(), monitor in any::<bool>(), drop_malformed in any::<bool>()
    ) {
        check(&frame, monitor, drop_malformed)?;
    }

    #[test]
    fn mutated_frames_are_judged_and_counted(
        frame in mutated(), monitor in any::<bool>(), drop_malformed in any::<bool>()
    ) {
        check(&frame, monitor, drop_malformed)?;
    }
}

/// The seeds reach a drop and a pass, so the properties above cover both paths.
#[test]
fn seeds_reach_both_verdicts() {
    let mut f = fixture();
    f.empty_bucket(f.bucket_of(0, Ipv4Addr::new(198, 18, 0, 2).into()));
    let actions: Vec<u32> = seeds().iter().map(|s| f.run(s)).collect();
    assert!(actions.contains(&XDP_DROP), "{actions:?}");
    assert!(actions.contains(&XDP_PASS), "{actions:?}");
}

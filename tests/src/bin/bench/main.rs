//! `cargo xtask bench`: cost of guard's XDP program with BPF_PROG_TEST_RUN, in ns per packet
//! over an XDP_PASS program measured in the same run, contenders interleaved round by round
//! and the process pinned to one CPU; then the control plane's costs (refill, list load).
//!
//! Contenders for the allow/deny lookup, same lists, same parser:
//! - `guard`: DIR-24-8 table for IPv4, top-24 bitmap + per-length hashes for IPv6;
//! - `lpm_ref`: one BPF LPM trie per family (the straightforward design).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::Context;
use aya::{
    Ebpf,
    programs::{TestRun, TestRunOptions, Xdp},
};
use guard_common::ListCode;
use guard_tests::{
    bench_record::{pin_to_cpu, record, summary},
    fixture::Fixture,
    packet,
};
use guard_user::{kernel::objects, lists::tables::Tables};
use ipnet::IpNet;

mod budget;
mod control_plane;
mod lists_setup;
mod shape;
mod sources;

use control_plane::{list_load_bench, refill_bench};
use lists_setup::{bench_lists, fill_hash_ref, fill_lpm, probes6};

fn main() -> anyhow::Result<()> {
    let repeat: u32 = guard_tests::arg_or(1, 10_000_000);
    let rounds: usize = guard_tests::arg_or(2, 5);
    // Best effort: a one-CPU machine still gets figures.
    let _ = pin_to_cpu(1);
    let (allow, deny) = bench_lists()?;
    let tables = Tables::build(&allow, &deny)?;

    let mut reference = Ebpf::load(objects::bench()).context("loading the bench object")?;
    fill_lpm(&mut reference, &allow, &deny)?;
    fill_hash_ref(&mut reference, &tables, &deny)?;
    for name in ["xdp_pass", "lpm_ref", "hash_ref", "lru_ref", "vary_v4"] {
        let p: &mut Xdp = reference.program_mut(name).context(name)?.try_into()?;
        p.load()?;
    }
    // For profiling one part: GUARD_BENCH_SECTIONS="full,rules" (lists, full, rules,
    // budget, shape, sources, refill, load).
    let sections = std::env::var("GUARD_BENCH_SECTIONS").ok();
    let run = |name: &str| {
        sections
            .as_ref()
            .is_none_or(|s| s.split(',').any(|x| x == name))
    };
    if run("lists") {
        let guard = Fixture::new(&[], &[]);
        guard.with_datapath(|d| d.write_tables(tables.clone()))?;

        let pass4 = Ipv4Addr::new(198, 18, 0, 9); // the test range, taken out of the blocklist
        let deny4 = Ipv4Addr::new(1, 10, 16, 5); // in the blocklist (1.10.16.0/20)
        // Usual case: a region with no listed prefix (3fff::/20 is for documentation too).
        let pass6_other: Ipv6Addr = "3fff::9".parse()?;
        let p6 = probes6(&tables, &deny)?;
        assert_eq!(tables.lookup(pass4.into()), ListCode::None);
        assert_eq!(tables.lookup(deny4.into()), ListCode::Deny);
        assert_eq!(tables.lookup(pass6_other.into()), ListCode::None);
        let cases: [(&str, Vec<u8>); 6] = [
            ("ipv4 pass", packet::udp4(pass4, 443)),
            ("ipv4 deny", packet::udp4(deny4, 443)),
            ("ipv6 pass", packet::udp6(pass6_other, 443)),
            ("ipv6 pass*", packet::udp6(p6.pass_region, 443)),
            ("ipv6 deny", packet::udp6(p6.deny48, 443)),
            ("ipv6 deny host", packet::udp6(p6.deny128, 443)),
        ];
        println!(
            "lists: {} IPv4 + {} IPv6 deny prefixes, {} allows; repeat {repeat}, {rounds} rounds, CPU 1",
            deny.iter().filter(|n| matches!(n, IpNet::V4(_))).count(),
            deny.iter().filter(|n| matches!(n, IpNet::V6(_))).count(),
            allow.len()
        );
        println!(
            "{:<14} {:>22} {:>22} {:>22}",
            "packet", "guard (ns over pass)", "lpm trie (ns over pass)", "hash per length"
        );
        for (name, frame) in &cases {
            let v6 = name.starts_with("ipv6");
            let (mut g, mut l, mut h) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..rounds {
                let base = ns_per_run(prog(&mut reference, "xdp_pass"), frame, repeat)?;
                g.push(guard.with_datapath(|d| ns_per_run(d.program_mut(), frame, repeat))? - base);
                l.push(ns_per_run(prog(&mut reference, "lpm_ref"), frame, repeat)? - base);
                if v6 {
                    h.push(ns_per_run(prog(&mut reference, "hash_ref"), frame, repeat)? - base);
                }
            }
            println!(
                "{name:<14} {:>22} {:>22} {:>22}",
                summary(&mut g, 1),
                summary(&mut l, 1),
                if v6 { summary(&mut h, 1) } else { "-".into() }
            );
            record("program", &format!("lists: guard, {name}"), "ns", &g);
            record("program", &format!("lists: lpm trie, {name}"), "ns", &l);
            if v6 {
                record(
                    "program",
                    &format!("lists: hash per length, {name}"),
                    "ns",
                    &h,
                );
            }
        }
        println!(
            "* source in the same top-24-bit region as a listed /48; deny: inside a listed /48 ({}); deny host: a listed /128 ({}); IPv6 trie: {} nodes",
            p6.deny48,
            p6.deny128,
            tables.v6_trie.nodes.len()
        );
        println!();
    }
    if run("full") {
        full_config_bench(&mut reference, repeat, rounds, &allow, &deny)?;
        println!();
    }
    if run("rules") {
        rules_bench(&mut reference, repeat, rounds)?;
        println!();
    }
    if run("budget") {
        budget::bench(&mut reference, repeat, rounds)?;
        println!();
    }
    if run("shape") {
        shape::bench(&mut reference, repeat, rounds)?;
        println!();
    }
    if run("sources") {
        sources::bench(&mut reference, repeat, rounds)?;
        println!();
    }
    if run("refill") {
        refill_bench()?;
        println!();
    }
    if run("load") {
        list_load_bench(&allow, &deny)?;
    }
    Ok(())
}

/// The reference configuration against an empty one: the real blocklist, 5,000 IPv6
/// prefixes, 100 allows, 10,000 bans and 2 rules; a packet that passes, and one dropped by
/// rate, by deny, by ban; IPv4 and IPv6.
fn full_config_bench(
    reference: &mut Ebpf,
    repeat: u32,
    rounds: usize,
    allow: &[IpNet],
    deny: &[IpNet],
) -> anyhow::Result<()> {
    use guard_user::model::{Kind, Request};
    let rules = "[[rules]]\nname = \"web\"\nprotocol = \"udp\"\nports = [443]\nrate = 1.0\nburst = 100000000\nbuckets = 131072\n\
                 [[rules]]\nname = \"per-source\"\nrate = 1.0\nburst = 100000000\nbuckets = 131072\n";
    let mut empty = Fixture::new(&[], &[]);
    let mut full = Fixture::with_lists(allow, deny, rules, 20_000);
    // What this load of the full configuration's program cost the verifier.
    let load = full.with_datapath(|d| d.program_load().clone());
    println!(
        "verifier: kernel {} processed {} insns, load {:.1} ms\n",
        load.kernel,
        load.verified_insns.unwrap_or(0),
        load.load_ms
    );
    if let Some(n) = load.verified_insns {
        record(
            "verifier",
            "verifier: processed insns",
            "insns",
            &[f64::from(n)],
        );
    }
    record("verifier", "verifier: load ms", "ms", &[load.load_ms]);
    let ban_base = u32::from(Ipv4Addr::new(198, 19, 0, 0));
    let mut bans: Vec<Request> = (0..9_999u32)
        .map(|i| Request {
            net: IpNet::from(IpAddr::V4(Ipv4Addr::from(ban_base + i))),
            ttl: Some(std::time::Duration::from_secs(3600)),
            ..Request::default()
        })
        .collect();
    let banned6: Ipv6Addr = "3fff:0:bbbb::1".parse()?;
    bans.push(Request {
        net: IpNet::from(IpAddr::V6(banned6)),
        ttl: Some(std::time::Duration::from_secs(3600)),
        ..Request::default()
    });
    full.engine.add(Kind::Ban, &bans)?;
    // In its own /64: the per-source rule counts IPv6 per /64.
    let (limited4, limited6): (Ipv4Addr, Ipv6Addr) =
        (Ipv4Addr::new(198, 18, 0, 10), "3fff:0:0:1::10".parse()?);
    full.empty_bucket(full.bucket_of(1, limited4.into()));
    full.empty_bucket(full.bucket_of(1, limited6.into()));
    // The pass sources: IPv4 in a /16 without bans, IPv6 in the /32 of the IPv6 ban (its
    // region bit set, so the ban table is probed); and the other way round, so each family
    // is also compared like for like.
    let (pass4, pass6): (Ipv4Addr, Ipv6Addr) = (Ipv4Addr::new(198, 18, 0, 9), "3fff::9".parse()?);
    let (pass4_near, pass6_far): (Ipv4Addr, Ipv6Addr) =
        (Ipv4Addr::from(ban_base + 65_000), "3fff:1::9".parse()?);
    let cases: Vec<(&str, bool, Vec<u8>, u32)> = vec![
        (
            "empty config, ipv4 pass",
            false,
            packet::udp4(pass4, 443),
            2,
        ),
        (
            "empty config, ipv6 pass",
            false,
            packet::udp6(pass6, 443),
            2,
        ),
        (
            "full, ipv4 pass (2 rules)",
            true,
            packet::udp4(pass4, 443),
            2,
        ),
        (
            "full, ipv4 pass, bans in its /16",
            true,
            packet::udp4(pass4_near, 443),
            2,
        ),
        ("full, ipv4 drop: rate", true, packet::udp4(limited4, 80), 1),
        (
            "full, ipv4 drop: deny",
            true,
            packet::udp4(Ipv4Addr::new(1, 10, 16, 5), 443),
            1,
        ),
        (
            "full, ipv4 drop: ban",
            true,
            packet::udp4(Ipv4Addr::from(ban_base + 77), 443),
            1,
        ),
        (
            "full, ipv6 pass (2 rules)",
            true,
            packet::udp6(pass6, 443),
            2,
        ),
        (
            "full, ipv6 pass, no ban in its /32",
            true,
            packet::udp6(pass6_far, 443),
            2,
        ),
        ("full, ipv6 drop: rate", true, packet::udp6(limited6, 80), 1),
        (
            "full, ipv6 drop: deny",
            true,
            packet::udp6(probes6(&Tables::build(allow, deny)?, deny)?.deny48, 443),
            1,
        ),
        ("full, ipv6 drop: ban", true, packet::udp6(banned6, 443), 1),
    ];
    println!(
        "reference configuration: FireHOL list + 5,000 IPv6 prefixes, 100 allows, 10,000 bans, 2 rules"
    );
    println!("(ns over XDP_PASS; median (min-max))");
    let mut results = vec![Vec::new(); cases.len()];
    for _ in 0..rounds {
        for (i, (_, is_full, frame, action)) in cases.iter().enumerate() {
            let f = if *is_full { &mut full } else { &mut empty };
            // Fresh for every case: a round outlasts refill_stale_after on a slower machine,
            // and the rules would fail open (a drop case would measure a pass).
            f.engine
                .heartbeat()
                .beat(guard_user::model::clock::monotonic_ns());
            anyhow::ensure!(
                f.run(frame) == *action,
                "{}: unexpected verdict",
                cases[i].0
            );
            let base = ns_per_run(prog(reference, "xdp_pass"), frame, repeat)?;
            results[i]
                .push(f.with_datapath(|d| ns_per_run(d.program_mut(), frame, repeat))? - base);
        }
    }
    for ((name, ..), v) in cases.iter().zip(results.iter_mut()) {
        println!("  {name:<28} {:>22}", summary(v, 1));
        record("program", name, "ns", v);
    }
    Ok(())
}

/// Rate-rule cost on the hot path: no rule matching, one rule charging a token, one rule
/// with an empty bucket (the would-drop path, which also reads the clock).
fn rules_bench(reference: &mut Ebpf, repeat: u32, rounds: usize) -> anyhow::Result<()> {
    // Burst large enough that `repeat` runs never empty the bucket.
    let rules = "[[rules]]\nname = \"tcp-only\"\nprotocol = \"tcp\"\nrate = 1.0\nburst = 100000000\n\
                 [[rules]]\nname = \"udp\"\nprotocol = \"udp\"\nrate = 1.0\nburst = 100000000\n";
    let f = Fixture::with_rules(&[], &[], rules);
    let src = Ipv4Addr::new(198, 18, 0, 2);
    let limited = Ipv4Addr::new(198, 18, 0, 3);
    f.empty_bucket(f.bucket_of(1, limited.into()));
    let icmp = [
        packet::eth(&[], packet::ETH_P_IP),
        packet::ipv4(src, packet::DST4, packet::ICMP, &[], 0, 8),
        packet::icmp_echo(),
    ]
    .concat();
    let cases: [(&str, Vec<u8>); 3] = [
        ("no rule matches", icmp),
        ("one rule passes", packet::udp4(src, 443)),
        ("one rule drops", packet::udp4(limited, 443)),
    ];
    println!("rate rules, IPv4 (ns over XDP_PASS; median (min-max))");
    for (name, frame) in &cases {
        let mut v = Vec::new();
        for _ in 0..rounds {
            // Keep the heartbeat fresh so the drop case measures a drop, not a fail-open.
            f.engine
                .heartbeat()
                .beat(guard_user::model::clock::monotonic_ns());
            let base = ns_per_run(prog(reference, "xdp_pass"), frame, repeat)?;
            v.push(f.with_datapath(|d| ns_per_run(d.program_mut(), frame, repeat))? - base);
        }
        println!("  {name:<18} {:>22}", summary(&mut v, 1));
        record("program", &format!("rules: {name}"), "ns", &v);
    }
    Ok(())
}

fn prog<'a>(ebpf: &'a mut Ebpf, name: &str) -> &'a mut Xdp {
    ebpf.program_mut(name)
        .and_then(|p| p.try_into().ok())
        .expect("loaded above")
}

fn ns_per_run(p: &mut Xdp, frame: &[u8], repeat: u32) -> anyhow::Result<f64> {
    let r = p.test_run(TestRunOptions {
        data_in: Some(frame),
        repeat,
        ..Default::default()
    })?;
    // The kernel reports the mean duration of one run.
    Ok(r.duration.as_nanos() as f64)
}

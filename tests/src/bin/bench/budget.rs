//! What an endpoint budget costs on the pass path, and how the table of verified sources
//! behaves at its default size.
//!
//! Program cost (ns over XDP_PASS): one per-source rule without a budget, the same rule
//! with one (a token from this CPU's pool, a chunk from the shared budget now and then),
//! and a TCP ACK segment on a host with a budget: its source looked up in `KNOWN`, and a
//! socket lookup when the slot is not fresh (a source with no connection, as a forged ACK
//! is, pays it on every packet).
//!
//! The table (pure arithmetic, the kernel's own functions): the share of verified sources
//! a later proof pushes out of their slot, and forged sources that pass as known.

use std::net::{IpAddr, Ipv4Addr};

use aya::Ebpf;
use guard_common::known;
use guard_tests::{
    bench_record::{record, summary},
    fixture::Fixture,
    packet,
};

use crate::{ns_per_run, prog};

pub fn bench(reference: &mut Ebpf, repeat: u32, rounds: usize) -> anyhow::Result<()> {
    // Bursts that `rounds x repeat` runs never empty.
    let rule = |budget: &str| {
        format!(
            "[[rules]]\nname = \"collector\"\nrate = 1.0\nburst = 100000000\nbuckets = 131072\n{budget}"
        )
    };
    let budget = "total_rate = 1000.0\ntotal_burst = 100000000\n";
    let src = Ipv4Addr::new(198, 18, 0, 9);
    let ack = packet::tcp_from(IpAddr::V4(src), 40_000, 443, 0x10);
    let cases: [(&str, String, Vec<u8>, bool); 5] = [
        ("udp, no budget", rule(""), packet::udp4(src, 443), false),
        ("udp, budget", rule(budget), packet::udp4(src, 443), false),
        ("tcp ack, no budget", rule(""), ack.clone(), false),
        (
            "tcp ack, budget, verified source",
            rule(budget),
            ack.clone(),
            true,
        ),
        (
            "tcp ack, budget, unverified source",
            rule(budget),
            ack,
            false,
        ),
    ];
    println!("endpoint budget, IPv4 (ns over XDP_PASS; median (min-max))");
    for (name, rules, frame, verified) in &cases {
        let f = Fixture::with_rules(&[], &[], rules);
        if *verified {
            // A proof an hour long: its slot stays fresh, so no socket lookup.
            let now = guard_user::model::clock::monotonic_ns();
            let table = f.with_datapath(|d| d.known());
            table.stand_in_proof(
                &f.engine.key(),
                IpAddr::V4(src),
                now,
                known::units(3_600_000_000_000),
            );
        }
        let mut v = Vec::new();
        for _ in 0..rounds {
            let base = ns_per_run(prog(reference, "xdp_pass"), frame, repeat)?;
            v.push(f.with_datapath(|d| ns_per_run(d.program_mut(), frame, repeat))? - base);
        }
        println!("  {name:<36} {:>22}", summary(&mut v, 1));
        record("program", &format!("budget: {name}"), "ns", &v);
    }
    table_bench();
    Ok(())
}

/// The default table (`[known] slots`), filled with `n` verified sources.
fn table_bench() {
    let slots = 1u32 << 20;
    let key = known::key(&[0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210]);
    let now = 1_000u64 << known::TIME_SHIFT;
    let until = known::until(now, known::units(3_600_000_000_000));
    let place = |a: u32| known::place(known::hash(&key, &[a, 0, 0, 0], 4), slots - 1);
    println!(
        "verified sources: table of {slots} slots ({} MiB)",
        (slots as usize * 8) >> 20
    );
    println!(
        "  {:>10} {:>22} {:>34}",
        "verified", "pushed out by later", "forged sources passing as known"
    );
    let forged = 20_000_000u32;
    for n in [10_000u32, 100_000, 500_000] {
        let mut table = vec![0u64; slots as usize];
        // Verified sources: 10.0.0.0 onwards; forged ones: from 100.0.0.0, never verified.
        for a in 0..n {
            let (i, fp) = place(0x0a00_0000 + a);
            table[i as usize] = known::slot(fp, until);
        }
        let kept = (0..n)
            .filter(|a| {
                let (i, fp) = place(0x0a00_0000 + a);
                known::holds(table[i as usize], fp, now)
            })
            .count();
        let false_known = (0..forged)
            .filter(|a| {
                let (i, fp) = place(0x6400_0000 + a);
                known::holds(table[i as usize], fp, now)
            })
            .count();
        let live = table.iter().filter(|v| **v != 0).count() as f64 / slots as f64;
        let pushed = 100.0 * (n as usize - kept) as f64 / n as f64;
        println!(
            "  {n:>10} {:>21.2}% {:>14} of {forged} (bound {:.1e})",
            pushed,
            false_known,
            live / 2f64.powi(32)
        );
        record(
            "known",
            &format!("known: {n} verified, pushed out"),
            "%",
            &[pushed],
        );
        record(
            "known",
            &format!("known: {n} verified, forged passing per million"),
            "ppm",
            &[1e6 * false_known as f64 / forged as f64],
        );
    }
}

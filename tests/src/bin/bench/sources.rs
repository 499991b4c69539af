//! What fixed memory buys under forged sources: program cost as the source varies over 1,
//! 2^16 and 2^24 addresses, guard's hashed buckets against a per-source LRU limiter.
//!
//! `vary_v4` steps the frame's source and tail calls the program under test; the same
//! stepping tail-calling `xdp_pass` is measured in each round and subtracted. guard also
//! runs with 4,096 buckets (64 KiB, cache-resident): the difference between its ratio and
//! the default's is what the bucket line's miss costs when every packet brings a new source.

use std::net::Ipv4Addr;

use anyhow::Context;
use aya::{
    Ebpf,
    maps::{Array, ProgramArray},
};
use guard_tests::{
    bench_record::{record, summary},
    fixture::Fixture,
    packet,
};

use crate::{ns_per_run, prog};

pub fn bench(reference: &mut Ebpf, repeat: u32, rounds: usize) -> anyhow::Result<()> {
    // One per-source rule, buckets never emptied: every packet takes the same (pass) path.
    let rule = |buckets: u32| {
        format!(
            "[[rules]]\nname = \"per-source\"\nrate = 1.0\nburst = 100000000\nbuckets = {buckets}\n"
        )
    };
    let mut guard = Fixture::with_rules(&[], &[], &rule(131_072));
    let mut small = Fixture::with_rules(&[], &[], &rule(SMALL_BUCKETS));
    let frame = packet::udp4(Ipv4Addr::new(198, 18, 0, 9), 443);
    println!("forged sources: IPv4 source varied over 2^k addresses, one per-source rule");
    println!(
        "(ns over the stepping itself; median (min-max); LRU: {} entries, guard: 131,072 buckets \
         (2 MiB), and {SMALL_BUCKETS} (64 KiB))",
        1 << 17
    );
    println!(
        "{:<12} {:>22} {:>22} {:>22}",
        "sources",
        "guard",
        "lru hash limiter",
        format!("guard, {SMALL_BUCKETS} buckets")
    );
    let mut one_source = None;
    for bits in [0u32, 16, 24] {
        let mut bits_map: Array<_, u32> =
            Array::try_from(reference.map_mut("VARY_BITS").context("VARY_BITS")?)?;
        bits_map.set(0, bits, 0)?;
        let (mut g, mut l, mut sm) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            let base = via_vary(reference, Target::Bench("xdp_pass"), &frame, repeat)?;
            let cost = via_vary(reference, Target::Guard(&mut guard), &frame, repeat)?;
            g.push(cost - base);
            let cost = via_vary(reference, Target::Bench("lru_ref"), &frame, repeat)?;
            l.push(cost - base);
            let cost = via_vary(reference, Target::Guard(&mut small), &frame, repeat)?;
            sm.push(cost - base);
        }
        let name = if bits == 0 {
            "1".to_string()
        } else {
            format!("2^{bits}")
        };
        println!(
            "{name:<12} {:>22} {:>22} {:>22}",
            summary(&mut g, 1),
            summary(&mut l, 1),
            summary(&mut sm, 1)
        );
        record("program", &format!("sources {name}: guard"), "ns", &g);
        record("program", &format!("sources {name}: lru hash"), "ns", &l);
        record(
            "program",
            &format!("sources {name}: guard, {SMALL_BUCKETS} buckets"),
            "ns",
            &sm,
        );
        let (median, small_median) = (g[g.len() / 2], sm[sm.len() / 2]);
        match one_source {
            None => one_source = Some((median, small_median)),
            Some((one, small_one)) => {
                let (ratio, small_ratio) = (median / one, small_median / small_one);
                println!(
                    "  guard at {name} sources / one source: {ratio:.2}x ({small_ratio:.2}x with \
                     {SMALL_BUCKETS} buckets: the bucket line's miss is {:.0} ns)",
                    (median - one) - (small_median - small_one)
                );
                record(
                    "program",
                    &format!("sources {name}: guard ratio"),
                    "x",
                    &[ratio],
                );
                record(
                    "program",
                    &format!("sources {name}: guard ratio, {SMALL_BUCKETS} buckets"),
                    "x",
                    &[small_ratio],
                );
            }
        }
    }
    Ok(())
}

/// Buckets of 16 bytes that fit a core's L1/L2 (64 KiB).
const SMALL_BUCKETS: u32 = 4096;

enum Target<'a> {
    Bench(&'static str),
    Guard(&'a mut Fixture),
}

/// ns per run of `vary_v4` tail-calling `target`.
fn via_vary(
    reference: &mut Ebpf,
    target: Target,
    frame: &[u8],
    repeat: u32,
) -> anyhow::Result<f64> {
    let fd = match target {
        Target::Bench(name) => prog(reference, name).fd()?.try_clone()?,
        Target::Guard(f) => {
            f.with_datapath(|d| -> anyhow::Result<_> { Ok(d.program_mut().fd()?.try_clone()?) })?
        }
    };
    let mut next = ProgramArray::try_from(reference.map_mut("NEXT").context("NEXT")?)?;
    next.set(0, &fd, 0)?;
    ns_per_run(prog(reference, "vary_v4"), frame, repeat)
}

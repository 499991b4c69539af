//! `cargo xtask bench`, whole path: frames generated on one veth end, received on the
//! other, filtered, and (what passes) taken up the receiver's stack to UDP, all on CPU 1
//! (see `sender.rs`). The figure is wall time per frame on that core, and from it the
//! packets per second one core sustains; the generator's share is the same for every
//! contender, so the "over XDP_DROP" column is the filter's own cost. Contenders are
//! interleaved round by round, each installed fresh.
//!
//! Usage: guard-bench-wire [seconds per measurement] [rounds]

mod contenders;
mod ethtool;
mod sender;

use std::time::{Duration, Instant};

/// Generator and receiver share this core; guardd's threads and the rest stay off it.
const CPU: usize = 1;

use anyhow::Context;
use aya::{Ebpf, programs::Xdp};
use contenders::{BURST, Contender, RATE, REFILL_PERIOD_SECS, in_ns};
use ethtool::Stat;
use guard_tests::{
    bench_record::{median, record, summary},
    netns::Testbed,
};
use guard_user::kernel::objects;
use sender::{Mix, Sender};

/// The forged flood's head start, sent as fast as possible: over a million sources, enough
/// to fill any per-source table of 131,072.
const WARMUP_SECS: f64 = 0.5;

struct Scenario {
    name: &'static str,
    mix: Mix,
    /// Sent before the measurement (the forged flood is already under way when the
    /// attacker starts; a per-source table is full by then).
    warmup: Option<Mix>,
}

const SCENARIOS: [Scenario; 3] = [
    Scenario {
        name: "one-source flood",
        mix: Mix {
            bits: 0,
            random: false,
            attacker_every: 1,
        },
        warmup: None,
    },
    Scenario {
        name: "65,536 sources under the limit",
        mix: Mix {
            bits: 16,
            random: false,
            attacker_every: 0,
        },
        warmup: None,
    },
    Scenario {
        name: "16M forged sources + attacker (1 in 8)",
        mix: Mix {
            bits: 24,
            random: true,
            attacker_every: 8,
        },
        warmup: Some(Mix {
            bits: 24,
            random: true,
            attacker_every: 0,
        }),
    },
];

/// One measurement.
struct Sample {
    ns_per_packet: f64,
    /// Packets per second one receiver core sustains at that cost, millions.
    mpps: f64,
    /// Attacker packets delivered beyond what a per-source limiter allows (burst + rate x
    /// time): let through wrongly.
    attacker_over: f64,
    /// Share of the crowd's packets (all under the limit) that were dropped, %.
    crowd_dropped: f64,
}

fn main() -> anyhow::Result<()> {
    let secs: f64 = guard_tests::arg_or(1, 2.0);
    let rounds: usize = guard_tests::arg_or(2, 5);
    // For profiling one contender: GUARD_BENCH_ONLY="guard,nft meter".
    let only = std::env::var("GUARD_BENCH_ONLY").ok();
    let bed = Testbed::new();
    let mut ebpf = Ebpf::load(objects::bench()).context("loading the bench object")?;
    for name in ["xdp_pass", "xdp_drop", "gen_tx"] {
        let p: &mut Xdp = ebpf.program_mut(name).context(name)?.try_into()?;
        p.load()?;
    }
    // Counts what reached the local input hook, by destination port: crowd and attacker.
    in_ns(
        &bed,
        "nft",
        &["-f", "-"],
        Some(
            "table inet guardbench_count {\n chain input {\n  type filter hook input priority 0; \
             policy accept;\n  udp dport 9000 counter\n  udp dport 9001 counter\n }\n}\n",
        ),
    );
    let sender = Sender::new(&bed.client, &bed.client_if);
    println!(
        "whole path on veth: {secs} s per measurement, {rounds} rounds, generator and receiver \
         on CPU {CPU}; limiters at {RATE}/s burst {BURST} per source address, room for \
         131,072 sources"
    );
    let mut samples: Vec<Vec<Vec<Sample>>> = SCENARIOS
        .iter()
        .map(|_| Contender::ALL.iter().map(|_| Vec::new()).collect())
        .collect();
    for round in 0..rounds {
        for (si, scenario) in SCENARIOS.iter().enumerate() {
            // Odd rounds run the contenders in reverse, so drift within a round cancels.
            let mut order: Vec<usize> = (0..Contender::ALL.len()).collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for ci in order {
                let c = &Contender::ALL[ci];
                if only.as_ref().is_some_and(|o| !o.contains(c.name())) {
                    continue;
                }
                let installed = contenders::install(*c, &bed, &mut ebpf);
                let s = measure(&bed, &sender, &mut ebpf, scenario, secs);
                contenders::remove(installed, &bed, &mut ebpf);
                samples[si][ci].push(s);
            }
        }
    }
    println!(
        "{}; nft {}",
        in_ns(&bed, "ip6tables", &["-V"], None).trim(),
        in_ns(&bed, "nft", &["-v"], None).trim()
    );
    println!(
        "attacker excess: the attacker's packets delivered beyond burst + rate x (time + \
         {REFILL_PERIOD_SECS} s refill period) (let through wrongly); crowd dropped: the share of packets from sources under the limit \
         that were dropped (wrongly, for a limiter)"
    );
    for (scenario, per_contender) in SCENARIOS.iter().zip(&samples) {
        report(scenario, per_contender);
    }
    Ok(())
}

fn measure(bed: &Testbed, sender: &Sender, ebpf: &mut Ebpf, sc: &Scenario, secs: f64) -> Sample {
    if let Some(w) = sc.warmup {
        sender.set_mix(ebpf, w);
        sender.send_for(&bed.client, ebpf, WARMUP_SECS, CPU);
    }
    sender.set_mix(ebpf, sc.mix);
    let received = Stat::open(&bed.server, &bed.server_if, "rx_queue_0_xdp_packets");
    let refused = Stat::open(&bed.client, &bed.client_if, "tx_queue_0_xdp_xmit_errors");
    let (rx0, err0, (crowd0, attacker0)) = (received.read(), refused.read(), delivered(bed));
    let start = Instant::now();
    let sent = sender.send_for(&bed.client, ebpf, secs, CPU);
    let wall = start.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(50));
    let (rx1, err1, (crowd1, attacker1)) = (received.read(), refused.read(), delivered(bed));
    let received = (rx1 - rx0) as f64;
    if err1 > err0 || received < sent as f64 {
        println!(
            "  warning: {}: {received} of {sent} frames received, {} refused by the veth",
            sc.name,
            err1 - err0
        );
    }
    let attacker_share = match sc.mix.attacker_every {
        0 => 0.0,
        n => 1.0 / f64::from(n),
    };
    let crowd_expected = received * (1.0 - attacker_share);
    // Burst plus the rate over the sending time plus one refill period: guard credits
    // rate x period per period (as the design states), so a window can hold one refill
    // more than its length covers; netfilter's buckets refill continuously and are held to
    // the same, looser, bound.
    let allowance = BURST as f64 + RATE as f64 * (wall + REFILL_PERIOD_SECS as f64);
    let ns_per_packet = wall * 1e9 / sent as f64;
    Sample {
        ns_per_packet,
        mpps: 1e3 / ns_per_packet,
        attacker_over: if attacker_share > 0.0 {
            ((attacker1 - attacker0) as f64 - allowance).max(0.0)
        } else {
            0.0
        },
        crowd_dropped: if crowd_expected > 0.0 {
            ((crowd_expected - (crowd1 - crowd0) as f64) / crowd_expected * 100.0).max(0.0)
        } else {
            0.0
        },
    }
}

/// Packets counted in the input hook: (crowd, attacker).
fn delivered(bed: &Testbed) -> (u64, u64) {
    let text = in_ns(
        bed,
        "nft",
        &["list", "table", "inet", "guardbench_count"],
        None,
    );
    let counts: Vec<u64> = text
        .split("counter packets ")
        .skip(1)
        .filter_map(|s| s.split_whitespace().next()?.parse().ok())
        .collect();
    assert_eq!(counts.len(), 2, "two counters in:\n{text}");
    (counts[0], counts[1])
}

fn report(sc: &Scenario, per_contender: &[Vec<Sample>]) {
    let attacker = sc.mix.attacker_every != 0;
    let crowd = sc.mix.attacker_every != 1;
    // Per-round differences to XDP_DROP and to no filter, measured in the same round.
    let floor: Vec<f64> = per_contender[1].iter().map(|s| s.ns_per_packet).collect();
    let unfiltered: Vec<f64> = per_contender[0].iter().map(|s| s.ns_per_packet).collect();
    println!("\n{} (median (min-max) over rounds)", sc.name);
    println!(
        "  {:<19} {:>18} {:>18} {:>17} {:>17} {:>13}",
        "contender",
        "ns/packet",
        "over XDP_DROP",
        "Mpps, one core",
        "attacker excess",
        "crowd dropped"
    );
    for (c, samples) in Contender::ALL.iter().zip(per_contender) {
        if samples.is_empty() {
            continue; // left out with GUARD_BENCH_ONLY
        }
        let pick = |f: fn(&Sample) -> f64| samples.iter().map(f).collect::<Vec<_>>();
        let (mut ns, mut mpps) = (pick(|s| s.ns_per_packet), pick(|s| s.mpps));
        let mut over_drop: Vec<f64> = ns.iter().zip(&floor).map(|(a, b)| a - b).collect();
        let (mut excess, mut dropped) = (pick(|s| s.attacker_over), pick(|s| s.crowd_dropped));
        let name = format!("{}: {}", sc.name, c.name());
        record("wire", &format!("{name}: ns/packet"), "ns", &ns);
        if !over_drop.is_empty() {
            record(
                "wire",
                &format!("{name}: ns over XDP_DROP"),
                "ns",
                &over_drop,
            );
        }
        let over_none: Vec<f64> = ns.iter().zip(&unfiltered).map(|(a, b)| a - b).collect();
        if !over_none.is_empty() {
            record(
                "wire",
                &format!("{name}: ns over no filter"),
                "ns",
                &over_none,
            );
        }
        record("wire", &format!("{name}: Mpps one core"), "Mpps", &mpps);
        let excess_text = if attacker && c.limits() {
            record(
                "wire",
                &format!("{name}: attacker excess"),
                "packets",
                &excess,
            );
            format!("{:.0}", median(&mut excess))
        } else {
            "-".into()
        };
        let dropped_text = if crowd {
            record("wire", &format!("{name}: crowd dropped"), "%", &dropped);
            format!("{:.1}%", median(&mut dropped))
        } else {
            "-".into()
        };
        println!(
            "  {:<19} {:>18} {:>18} {:>17} {:>17} {:>13}",
            c.name(),
            summary(&mut ns, 0),
            if over_drop.is_empty() {
                "-".to_string()
            } else {
                summary(&mut over_drop, 0)
            },
            summary(&mut mpps, 2),
            excess_text,
            dropped_text
        );
    }
    // The removal experiment: guard with and without its rule, paired per round.
    let at = |c: Contender| Contender::ALL.iter().position(|x| *x == c).expect("listed");
    let (with, without) = (
        &per_contender[at(Contender::Guard)],
        &per_contender[at(Contender::GuardNoRule)],
    );
    if !with.is_empty() && with.len() == without.len() && !unfiltered.is_empty() {
        let mut rule: Vec<f64> = with
            .iter()
            .zip(without)
            .map(|(a, b)| a.ns_per_packet - b.ns_per_packet)
            .collect();
        let mut fixed: Vec<f64> = without
            .iter()
            .zip(&unfiltered)
            .map(|(a, b)| a.ns_per_packet - b)
            .collect();
        record(
            "wire",
            &format!("{}: guard's rule stage", sc.name),
            "ns",
            &rule,
        );
        record(
            "wire",
            &format!("{}: guard without a rule, over no filter", sc.name),
            "ns",
            &fixed,
        );
        println!(
            "  removal, per round: the rule stage (guard - guard, no rule) {} ns; the rest \
             (guard, no rule - no filter) {} ns",
            summary(&mut rule, 0),
            summary(&mut fixed, 0)
        );
    }
}

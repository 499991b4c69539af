//! What the attack shape's sketch costs on the pass path: the same packet through the same
//! rules with the sketches off (no daemon reads them: the kernel skips them) and on (one
//! register read per matching rule and a per-CPU count; the register is written only when
//! a packet raises it).

use std::net::Ipv4Addr;

use aya::Ebpf;
use guard_tests::{
    bench_record::{record, summary},
    fixture::Fixture,
    packet,
};

use crate::{ns_per_run, prog};

pub fn bench(reference: &mut Ebpf, repeat: u32, rounds: usize) -> anyhow::Result<()> {
    let rule = |i: usize| {
        format!(
            "[[rules]]\nname = \"r{i}\"\nprotocol = \"udp\"\nrate = 1.0\nburst = 100000000\nbuckets = 131072\n"
        )
    };
    let frame = packet::udp4(Ipv4Addr::new(198, 18, 0, 9), 443);
    println!(
        "attack shape: sketch memory {} KiB per rule ({} KiB for {} rules); ns over XDP_PASS, median (min-max)",
        2 * guard_common::shape::REGISTERS / 1024,
        2 * guard_common::shape::REGISTERS * guard_common::rules::MAX_RULES / 1024,
        guard_common::rules::MAX_RULES
    );
    for rules in [1usize, 4] {
        let config: String = (0..rules).map(rule).collect();
        for on in [false, true] {
            let f = Fixture::with_rules(&[], &[], &config);
            if on {
                f.engine.shape_begin()?;
            }
            let mut v = Vec::new();
            for _ in 0..rounds {
                let base = ns_per_run(prog(reference, "xdp_pass"), &frame, repeat)?;
                v.push(f.with_datapath(|d| ns_per_run(d.program_mut(), &frame, repeat))? - base);
            }
            let name = format!(
                "udp, {rules} rule{}, sketches {}",
                if rules > 1 { "s" } else { "" },
                if on { "on" } else { "off" }
            );
            println!("  {name:<36} {:>22}", summary(&mut v, 1));
            record("program", &format!("shape: {name}"), "ns", &v);
        }
    }
    Ok(())
}

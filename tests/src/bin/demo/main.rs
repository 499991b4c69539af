//! `cargo xtask demo`: guard in a network-namespace testbed.
//!
//! guardd runs on the server's veth with the embedded default config (one rule: 1000
//! packets/s, burst 2000, per /32 and /64), given `ban_after = "3s"`, plus a demo deny list
//! and a per-network rule (per /24 and /64). From the client namespace, AF_PACKET frames: a
//! legitimate client at a steady rate, one source flooding (held by the per-source rule,
//! then banned by it when it keeps flooding for 3 s), a forged flood spread
//! over a whole /24 (held by the per-network rule: 2000/s), a flood from addresses
//! rotating through one IPv6 /64 (held by the default rule, which counts IPv6 per /64),
//! and a denied source. Every second the table
//! shows what each sent, what reached the server's socket, and guard's own counters.
//! Act 2 (`application`): an application reporting junk to guard. Act 3 (`fleet`): two
//! servers sharing verdicts through NATS. Everything is removed at the end, also on failure.

use std::{
    collections::HashMap,
    io::{IsTerminal, Write},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::{Duration, Instant},
};

use guard_tests::{
    daemon::Guardd,
    netns::Testbed,
    packet::udp_from,
    traffic::{RawSender, Receiver},
};
use guard_user::config::{Config, EMBEDDED_DEFAULT};

mod application;
mod budget;
mod fleet;

const PER_NET_RULE: &str = r#"
[[rules]]
name = "per-network"
ipv4_prefix = 24
ipv6_prefix = 64
rate = 2000.0
burst = 2000
buckets = 65536
"#;

struct Flow {
    label: &'static str,
    role: &'static str,
    sources: Vec<IpAddr>,
    pps: u32,
    sent: usize,
    received: usize,
    /// What guard should let through.
    expect: Expect,
}

/// What guard lets through of a flow, by the rule that holds it.
#[derive(Clone, Copy)]
enum Expect {
    All,
    Rate {
        rate: f64,
        burst: f64,
        refill_period: f64,
    },
    /// Held to the rate, then banned by the rule's `ban_after`.
    RateThenBan {
        rate: f64,
        burst: f64,
        refill_period: f64,
        ban_after: f64,
    },
    None,
}

impl Expect {
    fn label(self) -> String {
        match self {
            Expect::All => "all".into(),
            Expect::Rate { rate, .. } => format!("{rate:.0}/s"),
            Expect::RateThenBan { ban_after, .. } => format!("ban@{ban_after:.0}s"),
            Expect::None => "none".into(),
        }
    }

    /// Whether `received` of `sent` over `secs` is what the rule promises: everything, nothing,
    /// or for a rate rule at most the admission bound `burst + rate x (T + refill_period)` and
    /// at least 90% of `burst + rate x T`.
    fn met(self, sent: usize, received: usize, secs: f64) -> bool {
        match self {
            Expect::All => received == sent,
            Expect::None => received == 0,
            Expect::Rate {
                rate,
                burst,
                refill_period,
            } => {
                let due = burst + rate * secs;
                let bound = due + rate * refill_period;
                (received as f64) <= bound && received as f64 >= 0.9 * due.min(sent as f64)
            }
            // Limited within a second of the flood's start (its burst spent), banned within
            // the second after `ban_after`: at most the rate's bound over that time, at least
            // what the rate gives over `ban_after`.
            Expect::RateThenBan {
                rate,
                burst,
                refill_period,
                ban_after,
            } => {
                let banned_by = (ban_after + 2.0).min(secs);
                let bound = burst + rate * (banned_by + refill_period);
                let due = burst + rate * ban_after.min(secs);
                (received as f64) <= bound && received as f64 >= 0.9 * due.min(sent as f64)
            }
        }
    }
}

fn main() -> anyhow::Result<()> {
    let seconds: u32 = guard_tests::arg_or(1, 8).clamp(1, 120);
    println!("guard demo: building a testbed (two network namespaces joined by veth)...");
    let bed = Testbed::new();
    let dir = tempfile::tempdir()?;
    let deny = dir.path().join("deny.txt");
    std::fs::write(&deny, "# demo deny list\n198.18.0.3\n")?;
    // The demo's floods are UDP, which cannot prove a source real: without
    // `ban_unverified` the rule would limit them and never ban (docs/AUTO_BANS.md).
    let default = EMBEDDED_DEFAULT.replace(
        "name = \"per-source\"\n",
        "name = \"per-source\"\nban_after = \"3s\"\nban_unverified = true\n",
    );
    let config = format!("{default}\n{PER_NET_RULE}\n[lists]\ndeny = [{deny:?}]\n");
    let parsed = Config::parse(&config, "<demo config>")?;
    // The limits each flood is held to, from the rules guardd runs with.
    let rule = |name: &str| {
        let r = parsed
            .rules
            .iter()
            .find(|r| r.name.as_str() == name)
            .expect("demo rule");
        let (rate, burst, refill_period) = (
            r.rate,
            f64::from(r.burst),
            parsed.refill_period.as_secs_f64(),
        );
        match r.ban_after {
            Some(after) => Expect::RateThenBan {
                rate,
                burst,
                refill_period,
                ban_after: after.0.as_secs_f64(),
            },
            None => Expect::Rate {
                rate,
                burst,
                refill_period,
            },
        }
    };
    let guardd = Guardd::start(&bed.server, &bed.server_if, &config);
    let status = guardd.ctl_json(&["status"]);
    println!(
        "guardd is running on {} in {} mode (program id {})\n",
        bed.server_if, status["interfaces"][0]["xdp_mode"], status["interfaces"][0]["program_id"]
    );
    let rx = Receiver::bind(&bed.server);
    let tx = RawSender::open(&bed.client, &bed.client_if);
    let v4 = |a, b, c, d| IpAddr::V4(Ipv4Addr::new(a, b, c, d));
    let mut flows = vec![
        Flow {
            label: "198.18.0.2",
            role: "legitimate client",
            sources: vec![v4(198, 18, 0, 2)],
            pps: 50,
            sent: 0,
            received: 0,
            expect: Expect::All,
        },
        Flow {
            label: "2001:db8::2",
            role: "legitimate client (v6)",
            sources: vec!["2001:db8::2".parse()?],
            pps: 50,
            sent: 0,
            received: 0,
            expect: Expect::All,
        },
        Flow {
            label: "198.18.5.5",
            role: "one source flooding",
            sources: vec![v4(198, 18, 5, 5)],
            pps: 5000,
            sent: 0,
            received: 0,
            expect: rule("per-source"),
        },
        Flow {
            label: "198.18.7.0/24",
            role: "forged /24 flood",
            sources: (0..=255).map(|h| v4(198, 18, 7, h)).collect(),
            pps: 5000,
            sent: 0,
            received: 0,
            expect: rule("per-network"),
        },
        Flow {
            label: "2001:db8:1:2::/64",
            role: "rotating IPv6 /64",
            sources: (0..512u64)
                .map(|i| {
                    IpAddr::V6(Ipv6Addr::from(
                        (0x2001_0db8_0001_0002u128 << 64)
                            | i.wrapping_mul(0x9e37_79b9_7f4a_7c15) as u128,
                    ))
                })
                .collect(),
            pps: 5000,
            sent: 0,
            received: 0,
            expect: rule("per-source"),
        },
        Flow {
            label: "198.18.0.3",
            role: "denied, flooding",
            sources: vec![v4(198, 18, 0, 3)],
            pps: 5000,
            sent: 0,
            received: 0,
            expect: Expect::None,
        },
    ];
    let frames: Vec<Vec<Vec<u8>>> = flows
        .iter()
        .map(|f| f.sources.iter().map(|s| udp_from(*s, rx.port)).collect())
        .collect();
    let owner: HashMap<IpAddr, usize> = flows
        .iter()
        .enumerate()
        .flat_map(|(i, f)| f.sources.iter().map(move |s| (*s, i)))
        .collect();
    let tty = std::io::stdout().is_terminal();
    let start = Instant::now();
    for second in 1..=seconds {
        let sent: Vec<usize> = std::thread::scope(|s| {
            let handles: Vec<_> = flows
                .iter()
                .zip(&frames)
                .map(|(f, fr)| {
                    let tx = &tx;
                    s.spawn(move || {
                        tx.flood(fr, f.pps, Duration::from_secs(1))
                            .0
                            .iter()
                            .sum::<usize>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("sender"))
                .collect()
        });
        let got = rx.collect(Duration::from_millis(150), Duration::from_secs(2));
        for (i, f) in flows.iter_mut().enumerate() {
            f.sent += sent[i];
        }
        for (src, n) in got {
            if let Some(&i) = owner.get(&src) {
                flows[i].received += n;
            }
        }
        if tty {
            print!("\x1b[2J\x1b[H");
        }
        print_table(second, start.elapsed(), &flows, &guardd);
    }
    let secs = start.elapsed().as_secs_f64();
    let met = |f: &Flow| f.expect.met(f.sent, f.received, secs);
    let legit_ok = flows[..2].iter().all(met);
    let limited_ok = flows[2..5].iter().all(met);
    let denied_ok = met(&flows[5]);
    println!(
        "\nover {secs:.1}s: legitimate traffic delivered in full: {}; floods held to their rules: {}; \
         denied source dropped: {}",
        yes(legit_ok),
        yes(limited_ok),
        yes(denied_ok)
    );
    // The per-source floods went from `rate` to `ban` (when the demo ran long enough).
    let bans = banned(&guardd);
    let turned: Vec<&Flow> = flows
        .iter()
        .filter(|f| matches!(f.expect, Expect::RateThenBan { .. }))
        .collect();
    let banned_ok = seconds < 5 || turned.iter().all(|f| verdict(f, &bans) == "ban");
    for (net, reason) in bans.iter().filter(|(_, r)| r.starts_with("rule ")) {
        println!("  banned automatically: {net}: {reason}");
    }
    println!(
        "the sources the per-source rule kept limiting for 3 s were banned (rate -> ban): {}",
        yes(banned_ok)
    );
    let app_ok = application::run(&bed, &guardd, seconds.max(4))?;
    drop(guardd);
    drop(bed);
    let fleet_ok = fleet::run(seconds.clamp(3, 8))?;
    let budget_ok = budget::run(seconds.clamp(3, 10))?;
    println!(
        "cleaning up: guardd processes, the app and nats-server stopped, pins and namespaces removed."
    );
    if legit_ok && denied_ok && limited_ok && banned_ok && app_ok && fleet_ok && budget_ok {
        Ok(())
    } else {
        anyhow::bail!("the demo did not behave as expected")
    }
}

/// The bans in force (prefix, reason).
fn banned(guardd: &Guardd) -> Vec<(ipnet::IpNet, String)> {
    let list = guardd.api("GET", "/v1/bans", None).1;
    list["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let net = e["cidr"].as_str()?.parse().ok()?;
            Some((net, e["reason"].as_str().unwrap_or_default().to_string()))
        })
        .collect()
}

/// What guard does to a flow now: `ban` once a ban holds its first source, else `rate`
/// while some of it is dropped, `deny` for the denied flow, `pass` otherwise.
fn verdict(f: &Flow, banned: &[(ipnet::IpNet, String)]) -> &'static str {
    if banned.iter().any(|(n, _)| n.contains(&f.sources[0])) {
        "ban"
    } else if matches!(f.expect, Expect::None) {
        "deny"
    } else if f.received < f.sent {
        "rate"
    } else {
        "pass"
    }
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "NO" }
}

fn print_table(second: u32, elapsed: Duration, flows: &[Flow], guardd: &Guardd) {
    let secs = elapsed.as_secs_f64();
    println!("guard demo, second {second} ({secs:.1}s)");
    println!(
        "{:<19} {:<23} {:>9} {:>9} {:>9} {:>10} {:>8} {:>6}",
        "SOURCE", "ROLE", "SENT", "RECEIVED", "DROPPED", "RECEIVED/s", "LIMIT", "NOW"
    );
    let banned = banned(guardd);
    for f in flows {
        println!(
            "{:<19} {:<23} {:>9} {:>9} {:>9} {:>10.0} {:>8} {:>6}",
            f.label,
            f.role,
            f.sent,
            f.received,
            f.sent.saturating_sub(f.received),
            f.received as f64 / secs,
            f.expect.label(),
            verdict(f, &banned)
        );
    }
    let stats = guardd.ctl_json(&["stats"]);
    println!("\nguard's counters (guardctl stats):");
    for p in stats["packets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["packets"].as_u64() > Some(0))
    {
        println!(
            "  {:<8} {:<13} {:>10}",
            p["verdict"].as_str().unwrap_or("?"),
            p["reason"].as_str().unwrap_or("?"),
            p["packets"]
        );
    }
    for r in stats["rules"].as_array().into_iter().flatten() {
        println!(
            "  rule {:<16} passed {:>8}  limited {:>8}",
            r["rule"].as_str().unwrap_or("?"),
            r["passed"],
            r["limited"]
        );
    }
    let _ = std::io::stdout().flush();
}

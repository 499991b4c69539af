//! `cargo xtask demo`: guard in a network-namespace testbed.
//!
//! guardd runs on the server's veth with the embedded default config plus a demo deny list.
//! A legitimate client sends a steady stream while denied sources flood; every second the
//! table shows what each source sent, what reached the server's socket, and guard's own
//! counters. Everything is removed at the end, also on failure.

use std::{
    collections::HashMap,
    io::{IsTerminal, Write},
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use guard_tests::{
    daemon::Guardd,
    netns::{SERVER4, SERVER6, Testbed, client4, client6},
    traffic::{Receiver, send_udp},
};
use guard_user::config::EMBEDDED_DEFAULT;

struct Source {
    addr: IpAddr,
    role: &'static str,
    per_second: usize,
    sent: usize,
    received: usize,
}

fn main() -> anyhow::Result<()> {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(8)
        .clamp(1, 120);
    println!("guard demo: building a testbed (two network namespaces joined by veth)...");
    let bed = Testbed::new();
    let dir = tempfile::tempdir()?;
    let deny = dir.path().join("deny.txt");
    std::fs::write(&deny, "# demo deny list\n198.18.0.3\n2001:db8::3\n")?;
    let config = format!("{EMBEDDED_DEFAULT}\n[lists]\ndeny = [{deny:?}]\n");
    let guardd = Guardd::start(&bed.server, &bed.server_if, &config);
    let status = guardd.ctl_json(&["status"]);
    println!(
        "guardd is running on {} in {} mode (program id {}), deny list: 198.18.0.3, 2001:db8::3\n",
        bed.server_if, status["interfaces"][0]["xdp_mode"], status["interfaces"][0]["program_id"]
    );
    let rx = Receiver::bind(&bed.server);
    let mut sources = vec![
        Source {
            addr: client4(2),
            role: "legitimate client",
            per_second: 50,
            sent: 0,
            received: 0,
        },
        Source {
            addr: client6(2),
            role: "legitimate client (v6)",
            per_second: 50,
            sent: 0,
            received: 0,
        },
        Source {
            addr: client4(3),
            role: "denied, flooding",
            per_second: 20_000,
            sent: 0,
            received: 0,
        },
        Source {
            addr: client6(3),
            role: "denied, flooding (v6)",
            per_second: 20_000,
            sent: 0,
            received: 0,
        },
    ];
    let tty = std::io::stdout().is_terminal();
    let start = Instant::now();
    for second in 1..=seconds {
        let tick = Instant::now();
        for s in &mut sources {
            let dst = match s.addr {
                IpAddr::V4(_) => SocketAddr::new(SERVER4.into(), rx.port),
                IpAddr::V6(_) => SocketAddr::new(SERVER6.into(), rx.port),
            };
            send_udp(&bed.client, s.addr, dst, s.per_second);
            s.sent += s.per_second;
        }
        let rest = Duration::from_secs(1).saturating_sub(tick.elapsed());
        let got: HashMap<IpAddr, usize> = rx.collect(
            rest.max(Duration::from_millis(100)),
            rest.max(Duration::from_millis(100)),
        );
        for s in &mut sources {
            s.received += got.get(&s.addr).copied().unwrap_or(0);
        }
        if tty {
            print!("\x1b[2J\x1b[H");
        }
        print_table(second, start.elapsed(), &sources, &guardd);
    }
    let legit_ok = sources
        .iter()
        .filter(|s| s.role.starts_with("legit"))
        .all(|s| s.received == s.sent);
    let denied_ok = sources
        .iter()
        .filter(|s| s.role.starts_with("denied"))
        .all(|s| s.received == 0);
    println!(
        "\nlegitimate traffic delivered in full: {}; denied floods dropped in XDP before the stack: {}",
        yes(legit_ok),
        yes(denied_ok)
    );
    println!("cleaning up: stopping guardd, removing its pins and the namespaces.");
    drop(guardd);
    drop(bed);
    if legit_ok && denied_ok {
        Ok(())
    } else {
        anyhow::bail!("the demo did not behave as expected")
    }
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "NO" }
}

fn print_table(second: u64, elapsed: Duration, sources: &[Source], guardd: &Guardd) {
    println!(
        "guard demo, second {second} ({:.1}s)",
        elapsed.as_secs_f64()
    );
    println!(
        "{:<16} {:<24} {:>10} {:>10} {:>10}",
        "SOURCE", "ROLE", "SENT", "RECEIVED", "DROPPED"
    );
    for s in sources {
        println!(
            "{:<16} {:<24} {:>10} {:>10} {:>10}",
            s.addr.to_string(),
            s.role,
            s.sent,
            s.received,
            s.sent.saturating_sub(s.received)
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
            "  {:<8} {:<13} {:>12}",
            p["verdict"].as_str().unwrap_or("?"),
            p["reason"].as_str().unwrap_or("?"),
            p["packets"]
        );
    }
    let _ = std::io::stdout().flush();
}

//! `cargo xtask bench`: runs the benchmark binaries, echoes their tables, and writes
//! BENCHMARKS.md and bench/results.json from what they measured.

use std::{
    io::{BufRead, BufReader},
    process::Stdio,
};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::{cargo, cargo_command, setup};

pub fn run(quick: bool) -> anyhow::Result<()> {
    let (repeat, rounds, bans) = if quick {
        ("1000000", "3", "100")
    } else {
        ("10000000", "5", "1000")
    };
    cargo(&[
        "build",
        "--release",
        "-p",
        "guard-user",
        "-p",
        "guard-tests",
    ])?;
    let root = setup::workspace_root();
    let mut text = String::new();
    let mut results = Vec::new();
    for (bin, args, bin_dir) in [
        ("guard-bench", vec![repeat, rounds], "target/debug"),
        ("guard-bench-verdicts", vec![bans], "target/release"),
    ] {
        let mut cmd = cargo_command(&[
            "run",
            "-q",
            "--release",
            "-p",
            "guard-tests",
            "--bin",
            bin,
            "--",
        ]);
        cmd.args(&args)
            .env("GUARD_BIN_DIR", root.join(bin_dir))
            .stdout(Stdio::piped());
        let mut child = cmd.spawn().with_context(|| format!("running {bin}"))?;
        for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
            let line = line?;
            match line.strip_prefix("RESULT ") {
                Some(json) => results.push(serde_json::from_str::<Value>(json)?),
                None => {
                    println!("{line}");
                    text += &line;
                    text.push('\n');
                }
            }
        }
        if !child.wait()?.success() {
            bail!("{bin} failed");
        }
        text.push('\n');
    }
    let machine = machine();
    let date = sh("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    std::fs::create_dir_all(root.join("bench"))?;
    let all = json!({ "date": date, "machine": machine, "quick": quick, "results": results });
    std::fs::write(
        root.join("bench/results.json"),
        serde_json::to_string_pretty(&all)? + "\n",
    )?;
    std::fs::write(
        root.join("BENCHMARKS.md"),
        markdown(&date, &machine, quick, &text, &results),
    )?;
    println!("wrote BENCHMARKS.md and bench/results.json");
    Ok(())
}

fn sh(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    json!({ "kernel": sh("uname", &["-r"]), "cpus": sh("nproc", &[]), "cpu": cpu })
}

/// The median of a recorded result, by section and name.
fn median(results: &[Value], name: &str) -> Option<f64> {
    results
        .iter()
        .find(|r| r["name"] == name)
        .and_then(|r| r["median"].as_f64())
}

fn markdown(date: &str, machine: &Value, quick: bool, text: &str, results: &[Value]) -> String {
    let get = |n: &str| median(results, n);
    let pass = [
        get("full, ipv4 pass (2 rules)"),
        get("full, ipv6 pass (2 rules)"),
    ];
    let worst_pass = pass.iter().flatten().fold(f64::NAN, |a, b| a.max(*b));
    let target =
        |what: &str, figure: Option<f64>, unit: &str, ok: &dyn Fn(f64) -> bool| -> String {
            match figure {
                Some(f) if f.is_finite() => format!(
                    "| {what} | {f:.1} {unit} | {} |\n",
                    if ok(f) { "met" } else { "missed" }
                ),
                _ => format!("| {what} | not measured yet | - |\n"),
            }
        };
    let mut t = String::new();
    t += &target(
        "pass path, full configuration, <= 60 ns over XDP_PASS (40 ns stretch)",
        Some(worst_pass),
        "ns",
        &|f| f <= 60.0,
    );
    t += &target(
        "verdict latency p99 < 1 ms (call return to first drop)",
        get("verdict latency, call return to first drop").map(|_| {
            results
                .iter()
                .find(|r| r["name"] == "verdict latency, call return to first drop")
                .and_then(|r| r["max"].as_f64())
                .unwrap_or(f64::NAN)
        }),
        "us (worst of all)",
        &|f| f < 1000.0,
    );
    t += &target(
        "100,000 bans applied in < 1 s",
        get("100,000 bans in one call"),
        "s",
        &|f| f < 1.0,
    );
    t += &target(
        "1,000,000 prefixes loaded in < 5 s",
        get("list load: generated, 1,000,000 prefixes"),
        "s",
        &|f| f < 5.0,
    );
    t += &target(
        "refill at 16 x 2^17 buckets < 2% of a core",
        get("refill CPU, 16 x 131,072 buckets at 32 ticks/s"),
        "%",
        &|f| f < 2.0,
    );
    t += &target(
        "daemon RSS < 30 MiB",
        get("guardd RSS (default rule, 100,000+ bans)"),
        "MiB",
        &|f| f < 30.0,
    );
    t += "| 16M forged sources <= 1.1x one source | not measured yet | - |\n";
    t += "| drop path >= 4x cheaper than nftables meter and hashlimit, whole path on veth | not measured yet | - |\n";
    format!(
        "# guard benchmarks\n\n\
         Measured {date} on {} CPUs ({}), kernel {}{}. Rerun with `sudo cargo xtask bench` \
         (`--quick` for a short run); the figures are also in `bench/results.json`.\n\n\
         ## Method\n\n\
         - Program cost: BPF_PROG_TEST_RUN (aya `TestRun`), {} repetitions per measurement, the \
         process pinned to CPU 1, reported as ns per packet over an XDP_PASS program measured in the \
         same round; contenders interleaved round by round; median (min-max) over the rounds.\n\
         - Control plane: a release guardd in a network-namespace testbed. Verdict latency: a \
         source streams sequence-numbered AF_PACKET frames at 20k pps while it is banned; the first \
         sequence number never received marks when the ban took effect, relative to the API call's \
         return (negative: before the answer reached the caller).\n\
         - Absolute times on a shared VM drift between runs; compare figures within a run.\n\n\
         ## Targets\n\n| target | measured | |\n|---|---|---|\n{t}\n\
         ## Figures\n\n```text\n{}```\n",
        machine["cpus"].as_str().unwrap_or("?"),
        machine["cpu"].as_str().unwrap_or("?"),
        machine["kernel"].as_str().unwrap_or("?"),
        if quick { " (quick run)" } else { "" },
        if quick { "1,000,000" } else { "10,000,000" },
        text
    )
}

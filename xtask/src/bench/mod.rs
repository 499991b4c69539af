//! `cargo xtask bench`: runs the benchmark binaries, echoes their tables, and writes
//! BENCHMARKS.md and bench/results.json from what they measured.

use std::{
    io::{BufRead, BufReader},
    process::Stdio,
};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::{cargo, cargo_command, setup};

mod markdown;
use markdown::markdown;

pub fn run(quick: bool) -> anyhow::Result<()> {
    let (repeat, rounds, bans, wire_secs) = if quick {
        ("1000000", "3", "100", "0.5")
    } else {
        ("10000000", "5", "1000", "2")
    };
    setup::apt_install(
        &["nftables", "iptables", "ethtool", "fonts-dejavu-core"],
        "the whole-path comparison (nft meter, ip6tables hashlimit, veth counters, the chart's font)",
    )?;
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
        ("guard-bench-fleet", vec![bans], "target/release"),
        (
            "guard-bench-wire",
            vec![wire_secs, rounds],
            "target/release",
        ),
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
    let date = sh("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    std::fs::create_dir_all(root.join("bench"))?;
    let all = json!({
        "date": date, "machine": machine(), "quick": quick, "text": text, "results": results
    });
    std::fs::write(
        root.join("bench/results.json"),
        serde_json::to_string_pretty(&all)? + "\n",
    )?;
    report()
}

/// Writes BENCHMARKS.md and the chart from bench/results.json (`--report-only` redoes just
/// this, after a change to the report).
pub fn report() -> anyhow::Result<()> {
    let root = setup::workspace_root();
    let path = root.join("bench/results.json");
    let all: Value = serde_json::from_str(
        &std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?,
    )?;
    let date = all["date"].as_str().unwrap_or("?");
    let results = all["results"].as_array().cloned().unwrap_or_default();
    // Written by the last `cargo xtask vm-test --system` (a Debian 12 guest under qemu).
    let vm: Value = std::fs::read_to_string(root.join("bench/vm-system.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let chart = crate::chart::draw(
        &results,
        &root.join("bench/whole-path.png"),
        &format!("guard whole path on veth, {date}"),
    )?;
    std::fs::write(
        root.join("BENCHMARKS.md"),
        markdown(
            date,
            &all["machine"],
            all["quick"].as_bool().unwrap_or(false),
            all["text"].as_str().unwrap_or(""),
            &results,
            chart,
            &vm,
        ),
    )?;
    println!("wrote BENCHMARKS.md, bench/results.json and bench/whole-path.png");
    Ok(())
}

pub fn sh(cmd: &str, args: &[&str]) -> String {
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
/// One statistic (`median`, `min`, `max`) of a recorded result, by name.
pub fn stat(results: &[Value], name: &str, which: &str) -> Option<f64> {
    results
        .iter()
        .find(|r| r["name"] == name)
        .and_then(|r| r[which].as_f64())
}

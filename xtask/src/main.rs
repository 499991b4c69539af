//! `cargo xtask build | test | demo`: guard's developer commands. Each installs what it
//! needs on a fresh machine first, and says what it is doing.

mod bench;
mod chart;
mod package;
mod setup;
mod test_summary;
mod vm;
mod vm_system;

use std::process::{Command, ExitCode};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Build the XDP object, guardd and guardctl.
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Run every test: unit tests, BPF_PROG_TEST_RUN fixtures, network-namespace tests (root).
    Test,
    /// Run the demo testbed: guardd in a network namespace, a legitimate client and denied
    /// flooding sources, a live table of what passed and what was dropped; an application
    /// reporting junk; two servers sharing a ban through NATS (root).
    Demo {
        /// How long the traffic runs.
        #[arg(long, default_value_t = 8)]
        seconds: u32,
    },
    /// Install guardd, guardctl, the systemd unit, man pages and the default config (root;
    /// an existing /etc/guard/guard.toml is kept).
    Install {
        #[arg(long, default_value = "/usr/local")]
        prefix: std::path::PathBuf,
    },
    /// Build the Debian package (target/debian/guard_*.deb) with cargo-deb.
    Deb,
    /// Man pages and shell completions under target/docs.
    Docs,
    /// The fixtures and netns smoke tests on Debian's kernels, in qemu (root); prints what
    /// guard's program cost each kernel's verifier.
    VmTest {
        /// Comma-separated: 6.1, 6.12, trixie-backports, sid (the newest each of those
        /// suites ships), all, newest (the highest of them), or any Debian kernel image
        /// package (linux-image-6.17.13+deb13-amd64) or its version (6.17.13+deb13).
        #[arg(long, default_value = "all", conflicts_with = "system")]
        kernel: String,
        /// Instead: the .deb on a Debian 12 system booted with systemd as PID 1 (install,
        /// reload, restart, a hard power-off with 10,000 bans, upgrade, purge).
        #[arg(long)]
        system: bool,
    },
    /// Benchmarks: the XDP program's cost with BPF_PROG_TEST_RUN (root).
    Bench {
        /// Fewer repetitions, for a quick look.
        #[arg(long)]
        quick: bool,
        /// Only rewrite BENCHMARKS.md and the chart from bench/results.json.
        #[arg(long)]
        report_only: bool,
    },
}

fn main() -> ExitCode {
    setup::prefer_cargo_bin();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Cmd::Build { release } => {
            setup::build_tools()?;
            let mut args = vec!["build", "-p", "guard-user"];
            if release {
                args.push("--release");
            }
            cargo(&args)
        }
        Cmd::Test => {
            setup::build_tools()?;
            setup::runtime()?;
            setup::promtool()?;
            setup::nats_server()?;
            setup::apt_install(
                &["hping3", "nftables", "chromium"],
                "forged SYN floods (hping3, its sources rewritten into the test network by \
                 nftables) and a real browser solving the proof-of-work page",
            )?;
            cargo(&["build", "-p", "guard-user", "-p", "guard-example-ingest"])?;
            test_summary::run_cargo_test(&[
                "test",
                "--workspace",
                "--exclude",
                "guard-ebpf",
                "--exclude",
                "guard-ebpf-bench",
                "--lib",
                "--bins",
                "--tests",
                "--no-fail-fast",
            ])
        }
        Cmd::Demo { seconds } => {
            setup::build_tools()?;
            setup::runtime()?;
            setup::nats_server()?;
            cargo(&["build", "-p", "guard-user", "-p", "guard-example-ingest"])?;
            cargo(&[
                "run",
                "-q",
                "-p",
                "guard-tests",
                "--bin",
                "guard-demo",
                "--",
                &seconds.to_string(),
            ])
        }
        Cmd::Install { prefix } => {
            setup::build_tools()?;
            package::install(&prefix)
        }
        Cmd::Deb => {
            setup::build_tools()?;
            package::deb().map(drop)
        }
        Cmd::VmTest { system: true, .. } => {
            setup::build_tools()?;
            vm_system::run()
        }
        Cmd::VmTest { kernel, .. } => {
            setup::build_tools()?;
            setup::runtime()?;
            vm::run_all(&kernel)
        }
        Cmd::Docs => {
            setup::build_tools()?;
            package::docs().map(drop)
        }
        Cmd::Bench {
            report_only: true, ..
        } => bench::report(),
        Cmd::Bench { quick, .. } => {
            setup::build_tools()?;
            setup::runtime()?;
            bench::run(quick)
        }
    }
}

/// cargo in the workspace, with the tests pointed at this build's guardd and guardctl.
fn cargo_command(args: &[&str]) -> Command {
    let root = setup::workspace_root();
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(args)
        .current_dir(&root)
        .env("GUARD_BIN_DIR", root.join("target/debug"));
    cmd
}

fn cargo(args: &[&str]) -> anyhow::Result<()> {
    let status = cargo_command(args)
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

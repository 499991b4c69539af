//! Installs what guard needs on a fresh Debian machine, and nothing when it is all there.
//!
//! - build: nightly toolchain with `rust-src` (eBPF is built with `-Z build-std=core`) and
//!   `bpf-linker` built against Debian's LLVM 22 (its default feature wants LLVM 23).
//! - runtime (tests, demo): root, iproute2 and util-linux (`ip`, `nsenter`), bpffs mounted.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::atomic::{AtomicBool, Ordering},
};

use anyhow::{Context, bail};

const LLVM_PACKAGES: [&str; 4] = [
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
];
const RUNTIME_PACKAGES: [&str; 2] = ["iproute2", "util-linux"];
const BPF_LINKER_VERSION: &str = "~0.13";

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is in the workspace")
        .to_path_buf()
}

fn say(msg: &str) {
    eprintln!("xtask: {msg}");
}

pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn output(cmd: &mut Command) -> String {
    cmd.stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn dpkg_installed(pkg: &str) -> bool {
    output(Command::new("dpkg-query").args(["-W", "-f=${Status}", pkg]))
        .contains("install ok installed")
}

/// apt-get installs the packages not installed yet (updating the index once per run).
fn apt_install(pkgs: &[&str], why: &str) -> anyhow::Result<()> {
    let missing: Vec<&str> = pkgs
        .iter()
        .copied()
        .filter(|p| !dpkg_installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    say(&format!("installing {} ({why})", missing.join(" ")));
    static UPDATED: AtomicBool = AtomicBool::new(false);
    if !UPDATED.swap(true, Ordering::Relaxed) {
        run(Command::new("apt-get").args(["update", "-q"]))?;
    }
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn cargo_bin(name: &str) -> Option<PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
    let p = home.join("bin").join(name);
    p.exists().then_some(p)
}

fn on_path(name: &str) -> bool {
    succeeds(Command::new("sh").args(["-c", &format!("command -v {name}")]))
}

pub fn build_tools() -> anyhow::Result<()> {
    let installed = output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]));
    if !installed.lines().any(|l| l.starts_with("rust-src")) {
        say(
            "installing the nightly toolchain's rust-src (the eBPF object is built with -Z build-std=core)",
        );
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
            "--component",
            "rust-src",
        ]))?;
    }
    if !on_path("bpf-linker") && cargo_bin("bpf-linker").is_none() {
        apt_install(&LLVM_PACKAGES, "bpf-linker links against LLVM 22")?;
        say("building bpf-linker against LLVM 22 (cargo install; a few minutes, once)");
        run(Command::new("cargo")
            .args([
                "install",
                "bpf-linker",
                "--locked",
                "--version",
                BPF_LINKER_VERSION,
            ])
            .args(["--no-default-features", "--features", "llvm-22"])
            .env("LLVM_PREFIX", "/usr/lib/llvm-22"))?;
    }
    Ok(())
}

pub fn runtime() -> anyhow::Result<()> {
    if !is_root() {
        bail!("tests and the demo load XDP programs and create network namespaces: run as root");
    }
    apt_install(
        &RUNTIME_PACKAGES,
        "ip and nsenter for the network-namespace testbeds",
    )?;
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    if !mounts
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some("/sys/fs/bpf"))
    {
        say("mounting bpffs on /sys/fs/bpf (guardd pins its maps and links there)");
        run(Command::new("mount").args(["-t", "bpf", "bpf", "/sys/fs/bpf"]))?;
    }
    Ok(())
}

fn is_root() -> bool {
    output(Command::new("id").arg("-u")).trim() == "0"
}

/// Installs a cargo subcommand from crates.io when it is missing.
pub fn cargo_tool(binary: &str, krate: &str) -> anyhow::Result<()> {
    if on_path(binary) || cargo_bin(binary).is_some() {
        return Ok(());
    }
    say(&format!("installing {krate} (cargo install, once)"));
    run(Command::new("cargo").args(["install", "--locked", krate]))
}

/// apt-get installs what is missing, for other xtask commands.
pub fn apt_install_pub(pkgs: &[&str], why: &str) -> anyhow::Result<()> {
    apt_install(pkgs, why)
}

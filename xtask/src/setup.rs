//! Installs what guard needs on a fresh Debian machine, and nothing when it is all there.
//!
//! - build: the eBPF toolchain pinned in `guard-ebpf/ebpf-toolchain.toml` (a dated nightly
//!   with `rust-src`, for `-Z build-std=core`) and `bpf-linker` at the pinned version, built
//!   against Debian's LLVM of the same major. A bpf-linker of another version or LLVM is
//!   replaced, never trusted: a mismatch fails the link with "Invalid record".
//! - runtime (tests, demo): root, iproute2 and util-linux (`ip`, `nsenter`), bpffs mounted.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::atomic::{AtomicBool, Ordering},
};

use anyhow::{Context, bail};

const RUNTIME_PACKAGES: [&str; 2] = ["iproute2", "util-linux"];

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is in the workspace")
        .to_path_buf()
}

/// `guard-ebpf/ebpf-toolchain.toml`: the one place that names the eBPF toolchain.
#[derive(Debug, serde::Deserialize)]
pub struct EbpfToolchain {
    pub channel: String,
    pub llvm_major: u32,
    pub bpf_linker: String,
    pub cargo_deb: String,
}

impl EbpfToolchain {
    pub fn load() -> anyhow::Result<EbpfToolchain> {
        let path = workspace_root().join("guard-ebpf/ebpf-toolchain.toml");
        let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("{}", path.display()))
    }

    fn llvm_packages(&self) -> Vec<String> {
        let m = self.llvm_major;
        vec![
            format!("llvm-{m}-dev"),
            format!("libpolly-{m}-dev"),
            "libzstd-dev".into(),
            "zlib1g-dev".into(),
        ]
    }
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
pub fn apt_install<S: AsRef<str>>(pkgs: &[S], why: &str) -> anyhow::Result<()> {
    let missing: Vec<&str> = pkgs
        .iter()
        .map(AsRef::as_ref)
        .filter(|p| !dpkg_installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "{} must be installed ({why}), and apt-get needs root: run this as root, or \
             `sudo apt-get install {}` first",
            missing.join(" "),
            missing.join(" ")
        );
    }
    say(&format!("installing {} ({why})", missing.join(" ")));
    apt_update_once()?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// `apt-get update`, once per xtask run (a fresh machine has no package lists).
fn apt_update_once() -> anyhow::Result<()> {
    static UPDATED: AtomicBool = AtomicBool::new(false);
    if !UPDATED.swap(true, Ordering::Relaxed) {
        run(Command::new("apt-get").args(["update", "-q"]))?;
    }
    Ok(())
}

/// Downloads Debian package `pkg` and unpacks it under `dir` (not installed: no services
/// start, nothing changes outside `dir`). Skipped when `dir/<marker>` exists.
pub fn unpack_deb(pkg: &str, dir: &Path, marker: &str) -> anyhow::Result<()> {
    if dir.join(marker).exists() {
        return Ok(());
    }
    say(&format!(
        "downloading {pkg} and unpacking it into {}",
        dir.display()
    ));
    std::fs::create_dir_all(dir)?;
    let download = dir.join(".download");
    let _ = std::fs::remove_dir_all(&download);
    std::fs::create_dir_all(&download)?;
    let fetch = || {
        run(Command::new("apt-get")
            .args(["download", pkg])
            .current_dir(&download))
    };
    if fetch().is_err() {
        apt_update_once()?;
        fetch()?;
    }
    extract_download(&download, pkg, dir)
}

/// Unpacks the one .deb `apt-get download pkg` left in `download` into `dir`, then removes
/// `download`.
pub fn extract_download(download: &Path, pkg: &str, dir: &Path) -> anyhow::Result<()> {
    let deb = std::fs::read_dir(download)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .with_context(|| format!("apt-get download {pkg} left no .deb"))?;
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(dir))?;
    std::fs::remove_dir_all(download)?;
    Ok(())
}

/// Debian's nats-server (2.9, with JetStream): the fleet tests run real servers.
pub fn nats_server() -> anyhow::Result<PathBuf> {
    let dir = workspace_root().join("target/tools/nats-server");
    unpack_deb("nats-server", &dir, "usr/sbin/nats-server")?;
    Ok(dir.join("usr/sbin/nats-server"))
}

/// Prometheus' promtool (the tests check guardd's metrics with it), from Debian's package,
/// unpacked into target/tools.
pub fn promtool() -> anyhow::Result<PathBuf> {
    let dir = workspace_root().join("target/tools/prometheus");
    unpack_deb("prometheus", &dir, "usr/bin/promtool")?;
    Ok(dir.join("usr/bin/promtool"))
}

fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"))
}

/// Puts `$CARGO_HOME/bin` first on PATH, so the tools this xtask installs there are the ones
/// cargo and rustc run (not another bpf-linker elsewhere on PATH).
pub fn prefer_cargo_bin() {
    let bin = cargo_home().join("bin");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![bin.clone()];
    dirs.extend(std::env::split_paths(&path).filter(|d| *d != bin));
    let joined = std::env::join_paths(dirs).expect("PATH entries without ':'");
    // SAFETY: called first thing in main, before any other thread exists.
    unsafe { std::env::set_var("PATH", joined) };
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The LLVM major a toolchain's rustc reports (`LLVM version: 22.1.4`).
fn rustc_llvm_major(channel: &str) -> Option<u32> {
    let vv = output(Command::new("rustup").args(["run", channel, "rustc", "-vV"]));
    major_after(&vv, "LLVM version: ")
}

/// The LLVM major a bpf-linker binary links (`libLLVM.so.22.1` or `libLLVM-22.so`).
fn linker_llvm_major(bin: &Path) -> Option<u32> {
    let libs = output(Command::new("ldd").arg(bin));
    major_after(&libs, "libLLVM.so.").or_else(|| major_after(&libs, "libLLVM-"))
}

fn major_after(text: &str, prefix: &str) -> Option<u32> {
    let rest = &text[text.find(prefix)? + prefix.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// What is wrong with the bpf-linker on PATH, if anything.
fn linker_problem(tc: &EbpfToolchain) -> Option<String> {
    let Some(bin) = which("bpf-linker") else {
        return Some("no bpf-linker on PATH".into());
    };
    let version = output(Command::new(&bin).arg("--version"));
    if version.trim() != format!("bpf-linker {}", tc.bpf_linker) {
        return Some(format!(
            "{} is {:?}, not bpf-linker {}",
            bin.display(),
            version.trim(),
            tc.bpf_linker
        ));
    }
    match linker_llvm_major(&bin) {
        Some(m) if m == tc.llvm_major => None,
        Some(m) => Some(format!(
            "{} links LLVM {m}, not LLVM {}",
            bin.display(),
            tc.llvm_major
        )),
        None => Some(format!(
            "{} links no shared libLLVM (its LLVM is unknown)",
            bin.display()
        )),
    }
}

pub fn build_tools() -> anyhow::Result<()> {
    let tc = EbpfToolchain::load()?;
    let installed = output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        &tc.channel,
        "--installed",
    ]));
    if !installed.lines().any(|l| l.starts_with("rust-src")) {
        say(&format!(
            "installing the eBPF toolchain {} with rust-src (pinned in guard-ebpf/ebpf-toolchain.toml)",
            tc.channel
        ));
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            &tc.channel,
            "--profile",
            "minimal",
            "--component",
            "rust-src",
        ]))?;
    }
    if let Some(why) = linker_problem(&tc) {
        let m = tc.llvm_major;
        apt_install(
            &tc.llvm_packages(),
            &format!("bpf-linker links against LLVM {m}"),
        )?;
        say(&format!(
            "{why}: building bpf-linker {} against LLVM {m} (cargo install; a few minutes, once)",
            tc.bpf_linker
        ));
        run(Command::new("cargo")
            .args(["install", "bpf-linker", "--locked", "--force"])
            .args(["--version", &format!("={}", tc.bpf_linker)])
            .args(["--no-default-features", "--features", &format!("llvm-{m}")])
            .env("LLVM_PREFIX", format!("/usr/lib/llvm-{m}")))?;
        if let Some(why) = linker_problem(&tc) {
            bail!("bpf-linker is still unusable after installing it: {why}");
        }
    }
    check_llvm_majors(&tc)
}

/// The toolchain and bpf-linker must agree on LLVM's major: one line naming both and the fix.
fn check_llvm_majors(tc: &EbpfToolchain) -> anyhow::Result<()> {
    let rustc = rustc_llvm_major(&tc.channel).with_context(|| {
        format!(
            "`rustup run {} rustc -vV` names no LLVM version",
            tc.channel
        )
    })?;
    let linker = which("bpf-linker").and_then(|b| linker_llvm_major(&b));
    if rustc != tc.llvm_major || linker != Some(rustc) {
        bail!(
            "LLVM mismatch: {} is built on LLVM {rustc}, bpf-linker links LLVM {}: set channel \
             and llvm_major in guard-ebpf/ebpf-toolchain.toml to a nightly on LLVM {} (its \
             `rustc -vV`), or build bpf-linker for LLVM {rustc}",
            tc.channel,
            linker.map_or("?".into(), |m| m.to_string()),
            tc.llvm_major,
        );
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

pub fn is_root() -> bool {
    output(Command::new("id").arg("-u")).trim() == "0"
}

/// cargo-deb at the pinned version (another version is replaced).
pub fn cargo_deb() -> anyhow::Result<()> {
    let tc = EbpfToolchain::load()?;
    let have = output(Command::new("cargo").args(["deb", "--version"]));
    if have.split_whitespace().any(|w| w == tc.cargo_deb) {
        return Ok(());
    }
    say(&format!(
        "installing cargo-deb {} (cargo install, once)",
        tc.cargo_deb
    ));
    run(Command::new("cargo")
        .args(["install", "--locked", "--force", "cargo-deb"])
        .args(["--version", &format!("={}", tc.cargo_deb)]))
}

//! A real guardd process in a testbed namespace, and guardctl against it.
//!
//! guardd runs under `nsenter --net` (not `ip netns exec`, which remounts /sys and hides
//! the host's bpffs), so its pins land on the host's /sys/fs/bpf and are removed on drop,
//! and with exactly the capabilities of the shipped unit (`unit_caps`).

use std::{
    path::{Path, PathBuf},
    process::{Child, ExitStatus, Output, Stdio},
    time::{Duration, Instant},
};

use nix::{sys::signal::Signal, unistd::Pid};

mod control;

use crate::netns::{Netns, unique_tag};

/// Where the guardd and guardctl binaries are: `$GUARD_BIN_DIR`, else the workspace's
/// debug build (`cargo xtask test` builds them first).
pub fn bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("GUARD_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug"));
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build -p guard-user` (cargo xtask test does)",
        path.display()
    );
    path
}

/// A `POST /v1/bans` body banning `count` consecutive IPv4 addresses from `first`.
pub fn bulk_bans_body(first: std::net::Ipv4Addr, count: u32, ttl_secs: u64) -> String {
    let base = u32::from(first);
    let entries: Vec<String> = (0..count)
        .map(|i| {
            format!(
                r#"{{"cidr":"{}","ttl_secs":{ttl_secs}}}"#,
                std::net::Ipv4Addr::from(base + i)
            )
        })
        .collect();
    format!("[{}]", entries.join(","))
}

/// Runs `guardd` in `ns` with `args` and waits for it to exit (at most `limit`).
pub fn run_guardd(ns: &Netns, args: &[&str], limit: Duration) -> Output {
    run_guardd_with_env(ns, args, &[], limit)
}

/// As `run_guardd`, with `env` set.
pub fn run_guardd_with_env(
    ns: &Netns,
    args: &[&str],
    env: &[(&str, &str)],
    limit: Duration,
) -> Output {
    let mut child = crate::unit_caps::guardd_in(ns)
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nsenter guardd");
    let start = Instant::now();
    while child.try_wait().expect("wait guardd").is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("guardd {args:?} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("guardd output")
}

/// A pin directory on the host's bpffs no other test uses, made guardd's (`pin_dir_for_guardd`).
pub fn unique_pin_dir() -> PathBuf {
    let dir = PathBuf::from(format!("/sys/fs/bpf/guard-test-{}", unique_tag()));
    pin_dir_for_guardd(&dir);
    dir
}

/// Creates `dir` (if missing) and makes it and what is in it guardd's, as the unit's
/// ExecStartPre= does for /sys/fs/bpf/guard: bpffs's root is root's alone, guardd runs as
/// another user, and an older guard (or a test standing in for one) pinned as root.
pub fn pin_dir_for_guardd(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    let ok = std::process::Command::new("chown")
        .arg("-R")
        .arg(format!("{0}:{0}", crate::unit_caps::GUARDD_UID))
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "chown -R {} to guardd's uid", dir.display());
}

/// A temporary directory guardd may read and write (its owner): for its config, state,
/// socket and the files its config names. Files the test writes there (0644) it can read.
pub fn workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    crate::unit_caps::give_to_guardd(dir.path());
    dir
}

/// A unique pin directory for a one-off guardd (`run_guardd`), removed on drop: also when the
/// test fails, or when a guardd that should have refused to start pinned its maps after all.
pub struct PinDir(pub PathBuf);

/// How long a start may take before a test gives up on it.
const READY_WITHIN: Duration = Duration::from_secs(90);

impl PinDir {
    pub fn new() -> PinDir {
        PinDir(unique_pin_dir())
    }

    pub fn as_str(&self) -> &str {
        self.0.to_str().expect("utf-8 pin dir")
    }
}

impl Default for PinDir {
    fn default() -> Self {
        PinDir::new()
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub struct Guardd {
    child: Option<Child>,
    /// A guardd that went to the background (no `--foreground`): not our child.
    background: Option<Pid>,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub pin_dir: PathBuf,
    pub config: PathBuf,
    log: PathBuf,
    /// Environment every start of this guardd gets (say `GUARD_SHAPE_WINDOW`).
    pub env: Vec<(String, String)>,
}

impl Guardd {
    /// Starts guardd on `iface` in `ns` with `config` (TOML) and waits for its API.
    pub fn start(ns: &Netns, iface: &str, config: &str) -> Guardd {
        Guardd::start_on(ns, &[iface], config)
    }

    /// Starts guardd on several interfaces.
    pub fn start_on(ns: &Netns, ifaces: &[&str], config: &str) -> Guardd {
        Guardd::start_with_env(ns, ifaces, config, &[])
    }

    /// As `start_on`, with `env` for this start and every later one.
    pub fn start_with_env(
        ns: &Netns,
        ifaces: &[&str],
        config: &str,
        env: &[(&str, &str)],
    ) -> Guardd {
        let mut g = Guardd::prepared(config);
        g.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        g.spawn_on(ns, ifaces);
        g
    }

    /// A temporary directory with `config`, a socket path and a pin directory of its own.
    fn prepared(config: &str) -> Guardd {
        let dir = workdir();
        let pin_dir = unique_pin_dir();
        let g = Guardd {
            child: None,
            background: None,
            socket: dir.path().join("guard.sock"),
            config: dir.path().join("guard.toml"),
            log: dir.path().join("guardd.log"),
            pin_dir,
            dir,
            env: Vec::new(),
        };
        std::fs::write(&g.config, g.with_state_dir(config)).expect("write config");
        g
    }

    /// `config` with this guardd's own `state_dir` (in its temporary directory) unless the
    /// test names one: the default, /var/lib/guard, is the host's, so a config naming it
    /// (the embedded default does) gets this guardd's too.
    pub fn with_state_dir(&self, config: &str) -> String {
        let own = format!("state_dir = {:?}", self.state_dir());
        let host = "state_dir = \"/var/lib/guard\"";
        if config.contains(host) {
            return config.replace(host, &own);
        }
        if config.contains("state_dir") {
            return config.to_string();
        }
        format!("{own}\n{config}")
    }

    /// Where this guardd keeps its durable state.
    pub fn state_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("state")
    }

    /// Starts (again) with the same config, socket and pins.
    pub fn spawn(&mut self, ns: &Netns, iface: &str) {
        self.spawn_on(ns, &[iface]);
    }

    fn spawn_on(&mut self, ns: &Netns, ifaces: &[&str]) {
        assert!(self.child.is_none(), "guardd is already running");
        // Again after a detach removed it, as the unit's ExecStartPre= does at every start.
        pin_dir_for_guardd(&self.pin_dir);
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = crate::unit_caps::guardd_in(ns)
            .arg("--foreground")
            .args(ifaces.iter().flat_map(|i| ["--iface", i]))
            .arg("--config")
            .arg(&self.config)
            .arg("--socket")
            .arg(&self.socket)
            .arg("--pin-dir")
            .arg(&self.pin_dir)
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn guardd");
        self.child = Some(child);
        let start = Instant::now();
        loop {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                panic!(
                    "guardd exited ({status}) before serving its API:\n{}",
                    self.log()
                );
            }
            // A bound on the wait, not a figure: under qemu's emulation on a busy host the
            // verifier alone has taken over 20 s.
            assert!(
                start.elapsed() < READY_WITHIN,
                "guardd not ready in {READY_WITHIN:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (at most `limit`) until the log contains `needle`.
    pub fn wait_for_log(&self, needle: &str, limit: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    pub fn pid(&self) -> Pid {
        if let Some(pid) = self.background {
            return pid;
        }
        Pid::from_raw(self.child.as_ref().expect("guardd running").id() as i32)
    }

    /// Starts guardd without `--foreground`, as a script would, with `env` added: it goes to
    /// the background once ready. Its stderr before that is in `log()`.
    pub fn start_background(ns: &Netns, iface: &str, config: &str, env: &[(&str, &str)]) -> Guardd {
        let mut g = Guardd::prepared(config);
        let out = crate::unit_caps::guardd_in(ns)
            .args(["--iface", iface, "--config"])
            .arg(&g.config)
            .arg("--socket")
            .arg(&g.socket)
            .arg("--pin-dir")
            .arg(&g.pin_dir)
            .envs(env.iter().copied())
            .output()
            .expect("run guardd");
        std::fs::write(&g.log, &out.stderr).expect("log");
        assert!(
            out.status.success(),
            "guardd did not start in the background: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pid = g.ctl_json(&["status"])["pid"].as_i64().expect("pid");
        g.background = Some(Pid::from_raw(pid as i32));
        g
    }

    pub fn signal(&self, sig: Signal) {
        nix::sys::signal::kill(self.pid(), sig).expect("signal guardd");
    }

    /// SIGTERM and wait (at most 10 s); returns the exit status (of a background guardd,
    /// only whether it exited).
    pub fn stop(&mut self) -> ExitStatus {
        if let Some(pid) = self.background.take() {
            use std::os::unix::process::ExitStatusExt;
            let _ = nix::sys::signal::kill(pid, Signal::SIGTERM);
            let start = Instant::now();
            while nix::sys::signal::kill(pid, None).is_ok() {
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "background guardd ignored SIGTERM"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            return ExitStatus::from_raw(0);
        }
        let mut child = self.child.take().expect("guardd running");
        let _ = nix::sys::signal::kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if start.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                panic!("guardd ignored SIGTERM for 10s:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, as a crash would: no cleanup runs, the pins stay.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("guardd running");
        child.kill().expect("SIGKILL guardd");
        let _ = child.wait();
    }
}

impl Drop for Guardd {
    fn drop(&mut self) {
        if let Some(pid) = self.background.take() {
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            let start = Instant::now();
            while nix::sys::signal::kill(pid, None).is_ok()
                && start.elapsed() < Duration::from_secs(5)
            {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Pins are ours to remove (links included, which detaches XDP).
        let _ = std::fs::remove_dir_all(&self.pin_dir);
    }
}

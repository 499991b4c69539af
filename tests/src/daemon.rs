//! A real guardd process in a testbed namespace, and guardctl against it.
//!
//! guardd runs under `nsenter --net` (not `ip netns exec`, which remounts /sys and hides
//! the host's bpffs), so its pins land on the host's /sys/fs/bpf and are removed on drop,
//! and with exactly the capabilities of the shipped unit (`unit_caps`).

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    time::{Duration, Instant},
};

use nix::{sys::signal::Signal, unistd::Pid};

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
    let mut child = crate::unit_caps::guardd_in(ns)
        .args(args)
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

/// A pin directory on the host's bpffs no other test uses.
pub fn unique_pin_dir() -> PathBuf {
    PathBuf::from(format!("/sys/fs/bpf/guard-test-{}", unique_tag()))
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
}

impl Guardd {
    /// Starts guardd on `iface` in `ns` with `config` (TOML) and waits for its API.
    pub fn start(ns: &Netns, iface: &str, config: &str) -> Guardd {
        Guardd::start_on(ns, &[iface], config)
    }

    /// Starts guardd on several interfaces.
    pub fn start_on(ns: &Netns, ifaces: &[&str], config: &str) -> Guardd {
        let mut g = Guardd::prepared(config);
        g.spawn_on(ns, ifaces);
        g
    }

    /// A temporary directory with `config`, a socket path and a pin directory of its own.
    fn prepared(config: &str) -> Guardd {
        let dir = tempfile::tempdir().expect("tempdir");
        let pin_dir = unique_pin_dir();
        let g = Guardd {
            child: None,
            background: None,
            socket: dir.path().join("guard.sock"),
            config: dir.path().join("guard.toml"),
            log: dir.path().join("guardd.log"),
            pin_dir,
            dir,
        };
        std::fs::write(&g.config, config).expect("write config");
        g
    }

    /// Starts (again) with the same config, socket and pins.
    pub fn spawn(&mut self, ns: &Netns, iface: &str) {
        self.spawn_on(ns, &[iface]);
    }

    fn spawn_on(&mut self, ns: &Netns, ifaces: &[&str]) {
        assert!(self.child.is_none(), "guardd is already running");
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
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "guardd not ready in 20s:\n{}",
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

    /// The bucket-index key from the pinned CONFIG map (root reads it; guardd never exports it).
    pub fn pinned_key(&self) -> [u64; 2] {
        use aya::maps::{Array, Map, MapData};
        let path = self
            .pin_dir
            .join(format!("v{}/maps/CONFIG", guard_common::SCHEMA_VERSION));
        let data = MapData::from_pin(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let map = Map::from_map_data(data).expect("CONFIG map");
        let config: Array<MapData, guard_common::RuntimeConfig> =
            Array::try_from(map).expect("CONFIG array");
        config.get(&0, 0).expect("CONFIG[0]").key
    }

    /// Per rule (name, passed, limited) from `guardctl stats --json`.
    pub fn rule_counts(&self) -> Vec<(String, u64, u64)> {
        let stats = self.ctl_json(&["stats"]);
        stats["rules"]
            .as_array()
            .expect("rules array")
            .iter()
            .map(|r| {
                (
                    r["rule"].as_str().unwrap().to_string(),
                    r["passed"].as_u64().unwrap(),
                    r["limited"].as_u64().unwrap(),
                )
            })
            .collect()
    }

    /// Bans `cidr` for `ttl_secs` through the API; panics with the answer if refused.
    pub fn ban(&self, cidr: &str, ttl_secs: u64) {
        let (code, json) = self.api(
            "POST",
            "/v1/bans",
            Some(&format!(r#"{{"cidr":"{cidr}","ttl_secs":{ttl_secs}}}"#)),
        );
        assert_eq!(code, 200, "ban {cidr}: {json}");
    }

    /// guardd's resident memory, in KiB.
    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("guardd's /proc status")
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// POSTs a body of `len` bytes over a raw connection and returns guardd's answer. guardd
    /// answers a body over its limit as soon as it reads the length and closes; an HTTP
    /// client whose write then fails reports only that, so this one ignores the failed write
    /// and reads the answer (which a Unix socket keeps after the peer closed).
    pub fn api_oversized(&self, path: &str, len: usize) -> (u16, serde_json::Value) {
        use std::io::{Read, Write};
        let mut s = std::os::unix::net::UnixStream::connect(&self.socket).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: guard\r\nContent-Type: application/json\r\n\
             Content-Length: {len}\r\n\r\n"
        );
        s.write_all(head.as_bytes()).expect("request head");
        let _ = s.write_all(&vec![b' '; len]);
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        let text = String::from_utf8_lossy(&answer);
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("{path}: no HTTP answer: {text:?}"));
        let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
        let json = serde_json::from_str(body.trim())
            .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body:?}"));
        (status, json)
    }

    /// One API request: (HTTP status, JSON body).
    pub fn api(&self, method: &str, path: &str, body: Option<&str>) -> (u16, serde_json::Value) {
        use guard_user::control::client::{Client, Method};
        let client = Client::new(&self.socket);
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let (status, bytes) = rt
            .block_on(client.raw(method, path, body.map(|b| b.as_bytes().to_vec())))
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let json = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "{path}: not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        (status.as_u16(), json)
    }

    /// Runs guardctl against this daemon (socket and pin dir set).
    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(bin("guardctl"))
            .arg("--socket")
            .arg(&self.socket)
            .arg("--pin-dir")
            .arg(&self.pin_dir)
            .args(args)
            .output()
            .expect("run guardctl")
    }

    /// `guardctl --json <args>`, checked for success and parsed.
    pub fn ctl_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.ctl(&all);
        assert!(
            out.status.success(),
            "guardctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "guardctl {args:?} JSON: {e}: {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// Packets counted for (verdict, reason) by `guardctl stats --json`.
    pub fn packets(&self, verdict: &str, reason: &str) -> u64 {
        let stats = self.ctl_json(&["stats"]);
        stats["packets"]
            .as_array()
            .expect("packets array")
            .iter()
            .find(|p| p["verdict"] == verdict && p["reason"] == reason)
            .and_then(|p| p["packets"].as_u64())
            .unwrap_or_else(|| panic!("no counter {verdict}/{reason} in {stats}"))
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

//! Talking to a running guardd: its API, guardctl, its pinned maps and its process.

use std::{
    process::{Command, Output},
    time::Duration,
};

use super::{Guardd, bin};

impl Guardd {
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
        let (status, bytes) = self.api_raw(method, path, body);
        let json = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "{path}: not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        (status, json)
    }

    /// One API request: (HTTP status, the answer's bytes), for timing the daemon alone.
    pub fn api_raw(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Vec<u8>) {
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
        (status.as_u16(), bytes.to_vec())
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

//! Real applications in a namespace: the example ingest app (examples/ingest) and a headless
//! Chromium that loads its page. Each is killed on drop.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::{
    daemon::bin,
    http::{Outcome, Route, get},
    netns::Netns,
};

/// A child process, killed and reaped on drop.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `guard-example-ingest --listen LISTEN --guard-socket SOCKET EXTRA...` in `ns`.
pub fn ingest(ns: &Netns, listen: &str, socket: &Path, extra: &[&str]) -> Process {
    let child = Command::new("nsenter")
        .arg(format!("--net={}", ns.path()))
        .arg(bin("guard-example-ingest"))
        .args(["--listen", listen, "--guard-socket"])
        .arg(socket)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting guard-example-ingest");
    Process(child)
}

/// Debian's Chromium, headless, in `ns`, with its DevTools HTTP endpoint on 127.0.0.1 there:
/// a page says it is done by setting its title to `done: ...`.
pub struct Browser {
    _process: Process,
    _profile: tempfile::TempDir,
    port: u16,
}

const DEVTOOLS_PORT: u16 = 19_222;

impl Browser {
    pub fn open(ns: &Netns, url: &str) -> Browser {
        let profile = tempfile::tempdir().expect("a profile directory");
        let child = Command::new("nsenter")
            .arg(format!("--net={}", ns.path()))
            .args([
                "chromium",
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
            ])
            .args(["--no-first-run", "--disable-background-networking"])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("--remote-debugging-port={DEVTOOLS_PORT}"))
            .arg(url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromium (cargo xtask test installs it)");
        Browser {
            _process: Process(child),
            _profile: profile,
            port: DEVTOOLS_PORT,
        }
    }

    /// The page's title once it starts with `done: ` (the rest of it), within `limit`.
    pub fn done(&self, ns: &Netns, limit: Duration) -> Option<String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let local = "127.0.0.1".parse().expect("address");
        let start = Instant::now();
        while start.elapsed() < limit {
            let route = Route {
                ns,
                src: local,
                dst: std::net::SocketAddr::new(local, self.port),
                timeout: Duration::from_secs(2),
            };
            if let (Outcome::Answered(200), body) = get(&rt, route, "/json/list") {
                let targets: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                let done = targets.as_array().into_iter().flatten().find_map(|t| {
                    t["title"]
                        .as_str()?
                        .strip_prefix("done: ")
                        .map(str::to_string)
                });
                if done.is_some() {
                    return done;
                }
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        None
    }
}

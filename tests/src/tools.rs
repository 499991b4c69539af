//! External tools the tests run, where `cargo xtask test` puts them.

use std::path::{Path, PathBuf};

/// Prometheus' promtool, unpacked from Debian's package by `cargo xtask test`.
pub fn promtool() -> PathBuf {
    unpacked("prometheus", "usr/bin/promtool")
}

/// Debian's nats-server (2.9), unpacked by `cargo xtask test`.
pub fn nats_server() -> PathBuf {
    unpacked("nats-server", "usr/sbin/nats-server")
}

fn unpacked(package: &str, file: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/tools")
        .join(package)
        .join(file);
    assert!(
        path.exists(),
        "{} is missing: `cargo xtask test` unpacks Debian's {package} package there",
        path.display()
    );
    path
}

/// Runs `promtool check metrics` on a scrape; panics with its report when it fails.
pub fn promtool_check(body: &str) {
    use std::io::Write;
    let promtool = promtool();
    let mut child = std::process::Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", promtool.display()));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\nscrape:\n{body}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

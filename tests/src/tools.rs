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

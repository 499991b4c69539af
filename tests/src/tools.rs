//! External tools the tests run, where `cargo xtask test` puts them.

use std::path::{Path, PathBuf};

/// Prometheus' promtool, unpacked from Debian's package by `cargo xtask test`.
pub fn promtool() -> PathBuf {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tools/prometheus/usr/bin/promtool");
    assert!(
        path.exists(),
        "{} is missing: `cargo xtask test` unpacks Debian's prometheus package there",
        path.display()
    );
    path
}

//! guardd as the shipped unit runs it: root, with only the capabilities that
//! `packaging/guard.service` grants, and no new privileges. Read from the unit file, so the
//! tests and the package cannot drift apart.

use std::{path::Path, process::Command};

use crate::{daemon::bin, netns::Netns};

/// The capabilities of the unit's `AmbientCapabilities=` (which its bounding set equals),
/// as setpriv spells them: `bpf`, `perfmon`, ...
pub fn unit_capabilities() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/guard.service");
    let unit = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let caps = |key: &str| -> Vec<String> {
        let mut caps: Vec<String> = unit
            .lines()
            .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .flat_map(|v| v.split_whitespace())
            .map(|c| c.trim_start_matches("CAP_").to_ascii_lowercase())
            .collect();
        caps.sort();
        caps
    };
    let ambient = caps("AmbientCapabilities");
    assert!(
        !ambient.is_empty(),
        "{}: no AmbientCapabilities",
        path.display()
    );
    assert_eq!(
        ambient,
        caps("CapabilityBoundingSet"),
        "{}: ambient and bounding sets differ",
        path.display()
    );
    ambient
}

/// `nsenter --net=<ns> setpriv ... guardd`: guardd in `ns` under the unit's capabilities.
pub fn guardd_in(ns: &Netns) -> Command {
    guardd_with_caps(ns, &unit_capabilities())
}

/// guardd in `ns` with only `caps` (setpriv's names), as root without new privileges.
pub fn guardd_with_caps(ns: &Netns, caps: &[String]) -> Command {
    let set = format!(
        "-all{}",
        caps.iter().map(|c| format!(",+{c}")).collect::<String>()
    );
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net={}", ns.path()))
        .arg("setpriv")
        .arg("--no-new-privs")
        .arg(format!("--inh-caps={set}"))
        .arg(format!("--ambient-caps={set}"))
        .arg(format!("--bounding-set={set}"))
        .arg(bin("guardd"));
    cmd
}

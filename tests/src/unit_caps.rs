//! guardd as the shipped unit runs it: a user other than root, with only the capabilities
//! that `packaging/guard.service` grants, and no new privileges. Read from the unit file, so
//! the tests and the package cannot drift apart.

use std::{path::Path, process::Command};

use crate::{daemon::bin, netns::Netns};

/// The capabilities of the unit's `CapabilityBoundingSet=` (root's capabilities under it),
/// as setpriv spells them: `bpf`, `perfmon`, ...
pub fn unit_capabilities() -> Vec<String> {
    let (path, unit) = unit_file();
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
    let bounding = caps("CapabilityBoundingSet");
    assert!(
        !bounding.is_empty(),
        "{}: no CapabilityBoundingSet",
        path.display()
    );
    bounding
}

fn unit_file() -> (std::path::PathBuf, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/guard.service");
    let unit = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    (path, unit)
}

/// The unit's `LimitNOFILE=`: guardd's descriptor limit under systemd.
pub fn unit_nofile() -> u64 {
    let (path, unit) = unit_file();
    unit.lines()
        .find_map(|l| l.strip_prefix("LimitNOFILE="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{}: no numeric LimitNOFILE", path.display()))
}

/// The uid and gid guardd runs as in tests, standing in for the unit's `User=guard` (a test
/// host has no such user): no account's, so it owns only what the tests give it.
pub const GUARDD_UID: u32 = 64_841;

/// Makes `path` guardd's, as the unit's ExecStartPre= and StateDirectory= make its pin and
/// state directories the guard user's.
pub fn give_to_guardd(path: &Path) {
    let id = Some(nix::unistd::Uid::from_raw(GUARDD_UID));
    nix::unistd::chown(path, id, Some(nix::unistd::Gid::from_raw(GUARDD_UID)))
        .unwrap_or_else(|e| panic!("chown {} to guardd's uid: {e}", path.display()));
}

/// `nsenter --net=<ns> setpriv ... guardd`: guardd in `ns` under the unit's capabilities.
pub fn guardd_in(ns: &Netns) -> Command {
    guardd_with_caps(ns, &unit_capabilities())
}

/// guardd in `ns` with only `caps` (setpriv's names), as `GUARDD_UID` without new privileges.
pub fn guardd_with_caps(ns: &Netns, caps: &[String]) -> Command {
    let set = format!(
        "-all{}",
        caps.iter().map(|c| format!(",+{c}")).collect::<String>()
    );
    // The unit's limit, or the hard limit this runner may not raise (no CAP_SYS_RESOURCE).
    let hard = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(u64::MAX, |(_, hard)| hard);
    let nofile = unit_nofile().min(hard);
    let mut cmd = Command::new("nsenter");
    // SAFETY: setrlimit(2) is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(move || {
            nix::sys::resource::setrlimit(
                nix::sys::resource::Resource::RLIMIT_NOFILE,
                nofile,
                nofile,
            )
            .map_err(std::io::Error::from)
        });
    }
    cmd.arg(format!("--net={}", ns.path()))
        .arg("setpriv")
        .arg(format!("--reuid={GUARDD_UID}"))
        .arg(format!("--regid={GUARDD_UID}"))
        .arg("--clear-groups")
        .arg("--no-new-privs")
        .arg(format!("--inh-caps={set}"))
        .arg(format!("--ambient-caps={set}"))
        .arg(format!("--bounding-set={set}"))
        .arg(bin("guardd"));
    cmd
}

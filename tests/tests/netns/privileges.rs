//! guardd under the shipped unit's capabilities and as a user other than root (every netns
//! test runs it so, through `unit_caps`): it holds exactly that set, and without one of them
//! it refuses to start, naming the capability.

use std::time::{Duration, Instant};

use guard_tests::{
    daemon::{Guardd, unique_pin_dir},
    netns::Testbed,
    unit_caps::{guardd_with_caps, unit_capabilities},
};
use guard_user::kernel::privileges::REQUIRED;

fn cap_field(pid: nix::unistd::Pid, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .unwrap_or_else(|| panic!("no {field}"));
    u64::from_str_radix(hex.trim(), 16).unwrap()
}

#[test]
fn guardd_holds_exactly_the_units_capabilities() {
    let bed = Testbed::new();
    let g = Guardd::start(&bed.server, &bed.server_if, "");
    let want = unit_capabilities()
        .iter()
        .map(|name| {
            REQUIRED
                .iter()
                .find(|c| c.name.eq_ignore_ascii_case(&format!("cap_{name}")))
                .unwrap_or_else(|| panic!("the unit grants {name}, which guardd does not use"))
                .bit
        })
        .fold(0u64, |m, bit| m | 1 << bit);
    for field in ["CapEff:", "CapPrm:", "CapBnd:"] {
        assert_eq!(cap_field(g.pid(), field), want, "{field}");
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", g.pid())).unwrap();
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    // Not root: a user of its own, as the unit's User=guard (the capabilities are ambient).
    let uid = guard_tests::unit_caps::GUARDD_UID;
    let ids = format!("\t{uid}\t{uid}\t{uid}\t{uid}\n");
    assert!(
        status.contains(&format!("Uid:{ids}")) && status.contains(&format!("Gid:{ids}")),
        "{status}"
    );
}

#[test]
fn a_missing_capability_is_named() {
    let bed = Testbed::new();
    for missing in unit_capabilities() {
        let caps: Vec<String> = unit_capabilities()
            .into_iter()
            .filter(|c| *c != missing)
            .collect();
        let pins = unique_pin_dir();
        let mut child = guardd_with_caps(&bed.server, &caps)
            .args(["--foreground", "--iface", &bed.server_if, "--pin-dir"])
            .arg(&pins)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("guardd");
        let t = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if t.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                panic!("guardd without {missing} kept running");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        let _ = std::fs::remove_dir_all(&pins);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        let name = format!("CAP_{}", missing.to_ascii_uppercase());
        assert!(
            err.contains("missing privileges") && err.contains(&name),
            "without {name}: {err}"
        );
    }
}

//! guardd refuses to start, with the reason and a non-zero exit, when it cannot do its job.

use std::time::Duration;

use guard_tests::{
    daemon::{PinDir, run_guardd, run_guardd_with_env},
    netns::Testbed,
};

/// guardd on the testbed's interface with its embedded config and `pins`.
fn on_pins(bed: &Testbed, pins: &PinDir) -> (Option<i32>, String) {
    stderr_of(
        bed,
        &[
            "--foreground",
            "--iface",
            &bed.server_if,
            "--pin-dir",
            pins.as_str(),
        ],
    )
}

fn stderr_of(bed: &Testbed, args: &[&str]) -> (Option<i32>, String) {
    let out = run_guardd(&bed.server, args, Duration::from_secs(20));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn unknown_interface() {
    let bed = Testbed::new();
    let pins = PinDir::new();
    let (code, err) = stderr_of(
        &bed,
        &[
            "--foreground",
            "--iface",
            "nosuch0",
            "--pin-dir",
            pins.as_str(),
        ],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("guardd: error: unknown interface nosuch0"),
        "{err}"
    );
}

#[test]
fn no_interface() {
    let bed = Testbed::new();
    let pins = PinDir::new();
    let (code, err) = stderr_of(&bed, &["--foreground", "--pin-dir", pins.as_str()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("no interface to protect"), "{err}");
}

#[test]
fn invalid_config_names_file_line_column_and_key() {
    let bed = Testbed::new();
    let dir = guard_tests::daemon::workdir();
    let path = dir.path().join("bad.toml");
    let refuse = |config: &str| {
        std::fs::write(&path, config).unwrap();
        let args = [
            "--foreground",
            "--config",
            path.to_str().unwrap(),
            "--iface",
            &bed.server_if,
        ];
        let (code, err) = stderr_of(&bed, &args);
        assert_eq!(code, Some(1), "{err}");
        err
    };
    let err = refuse(
        "monitor = false\n\n[[rules]]\nname = \"r\"\nrate = 5.0\nburst = 10\nbuckets = 100\n",
    );
    let want = format!("{}:7:11: rules[0].buckets: ", path.display());
    assert!(err.contains(&want), "wanted {want:?} in:\n{err}");

    let err = refuse("monitr = true\n");
    assert!(
        err.contains(&format!("{}:1:1: ", path.display())) && err.contains("monitr"),
        "{err}"
    );
}

/// The fleet's credentials let their reader ban any address on every host: a file the
/// group (every API client) or others can read is refused before anything starts.
#[test]
fn fleet_credentials_readable_by_others_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let bed = Testbed::new();
    let dir = guard_tests::daemon::workdir();
    let creds = dir.path().join("nats.creds");
    std::fs::write(&creds, "-----BEGIN NATS USER JWT-----\n").unwrap();
    guard_tests::unit_caps::give_to_guardd(&creds);
    let config = dir.path().join("guard.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"\"\n[fleet]\nservers = [\"nats://198.19.250.1:4222\"]\ncredentials = {:?}\n",
            creds.display().to_string()
        ),
    )
    .unwrap();
    let pins = PinDir::new();
    for mode in [0o640, 0o604, 0o660] {
        std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(mode)).unwrap();
        let args = [
            "--foreground",
            "--config",
            config.to_str().unwrap(),
            "--iface",
            &bed.server_if,
            "--pin-dir",
            pins.as_str(),
        ];
        let (code, err) = stderr_of(&bed, &args);
        assert_eq!(code, Some(1), "mode {mode:o}: {err}");
        assert!(
            err.contains("[fleet] credentials:")
                && err.contains(&format!("(mode 0{mode:o})"))
                && err.contains("chmod 0600"),
            "mode {mode:o}: {err}"
        );
    }
}

#[test]
fn bad_list_line_is_reported_and_nothing_loads() {
    let bed = Testbed::new();
    let dir = guard_tests::daemon::workdir();
    let list = dir.path().join("deny.txt");
    std::fs::write(&list, "198.18.0.3\n198.18.0.300\n").unwrap();
    let config = dir.path().join("guard.toml");
    std::fs::write(&config, format!("[lists]\ndeny = [{list:?}]\n")).unwrap();
    let pins = PinDir::new();
    let (code, err) = stderr_of(
        &bed,
        &[
            "--foreground",
            "--config",
            config.to_str().unwrap(),
            "--iface",
            &bed.server_if,
            "--pin-dir",
            pins.as_str(),
        ],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("{}:2: \"198.18.0.300\"", list.display())),
        "{err}"
    );
    let pinned: Vec<_> = std::fs::read_dir(&pins.0).expect("pin dir").collect();
    assert!(
        pinned.is_empty(),
        "nothing was loaded or pinned: {pinned:?}"
    );
}

#[test]
fn pin_directory_of_a_newer_schema_is_refused() {
    let bed = Testbed::new();
    let pins = PinDir::new();
    let newer = format!("v{}", guard_common::SCHEMA_VERSION + 1);
    std::fs::create_dir_all(pins.0.join(&newer).join("maps")).unwrap();
    let (code, err) = on_pins(&bed, &pins);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "holds guard state of schema {newer}, newer than this guardd's v{}",
            guard_common::SCHEMA_VERSION
        )),
        "{err}"
    );
}

#[test]
fn a_pin_directory_guardd_may_not_write_names_the_fix() {
    // As after a reboot without the unit's ExecStartPre= (a pin_dir of one's own, say):
    // the directory is root's, and guardd runs as another user.
    let bed = Testbed::new();
    let pins = PinDir::new();
    nix::unistd::chown(&pins.0, Some(nix::unistd::Uid::from_raw(0)), None).expect("chown");
    let (code, err) = on_pins(&bed, &pins);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("cannot use pin directory {}", pins.as_str()))
            && err.contains("permission denied")
            && err.contains("install -d -o guard -g guard -m 0700"),
        "{err}"
    );
}

#[test]
fn a_shape_window_out_of_bounds_is_refused_with_the_bounds() {
    let bed = Testbed::new();
    let pins = PinDir::new();
    for bad in ["0s", "1m", "soon"] {
        let out = run_guardd_with_env(
            &bed.server,
            &[
                "--foreground",
                "--iface",
                &bed.server_if,
                "--pin-dir",
                pins.as_str(),
            ],
            &[("GUARD_SHAPE_WINDOW", bad)],
            Duration::from_secs(20),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{bad}: {err}");
        assert!(
            err.contains(&format!(
                "GUARD_SHAPE_WINDOW=\"{bad}\": must be a duration from 1s to 10s"
            )),
            "{bad}: {err}"
        );
    }
}

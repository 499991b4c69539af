//! `cargo xtask install` and `cargo xtask deb`: guard as operators get it.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, bail};

use crate::{cargo, setup};

/// Man pages and completions, generated from the clap definitions, under target/docs.
pub fn docs() -> anyhow::Result<PathBuf> {
    let out = setup::workspace_root().join("target/docs");
    cargo(&[
        "run",
        "-q",
        "--release",
        "-p",
        "guard-user",
        "--bin",
        "guard-docgen",
        "--",
        out.to_str().expect("utf-8 path"),
    ])?;
    Ok(out)
}

/// Builds the Debian package (cargo-deb, installed when missing); returns its path.
pub fn deb() -> anyhow::Result<PathBuf> {
    setup::cargo_deb()?;
    docs()?;
    let path = cargo_deb(&[])?;
    lintian(&path)?;
    println!("{}", path.display());
    Ok(path)
}

/// The package again from the binaries `deb()` built, as Debian revision `revision` (a
/// newer build to upgrade to), written into `out_dir`.
pub fn deb_revision(revision: &str, out_dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(out_dir)?;
    let out = out_dir.to_str().context("utf-8 path")?;
    cargo_deb(&["--no-build", "--deb-revision", revision, "-o", out])
}

/// `cargo deb -p guard-user` with `args`; returns the package's path.
fn cargo_deb(args: &[&str]) -> anyhow::Result<PathBuf> {
    let out = Command::new("cargo")
        .args(["deb", "-p", "guard-user", "--locked"])
        .args(args)
        .current_dir(setup::workspace_root())
        .output()
        .context("running cargo deb")?;
    if !out.status.success() {
        bail!(
            "cargo deb failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let path = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string();
    Ok(PathBuf::from(path))
}

/// Debian's package checker: any error or warning (the package's overrides applied) fails
/// the build.
fn lintian(deb: &Path) -> anyhow::Result<()> {
    setup::apt_install(&["lintian"], "checking the package with Debian's lintian")?;
    let out = Command::new("lintian")
        .args(["--fail-on", "error,warning", "--tag-display-limit", "0"])
        .arg(deb)
        .output()
        .context("running lintian")?;
    let report = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("lintian refuses {}:\n{report}", deb.display());
    }
    println!(
        "lintian: {} passes{}",
        deb.display(),
        if report.trim().is_empty() {
            String::new()
        } else {
            format!(" ({})", report.trim())
        }
    );
    Ok(())
}

/// Installs binaries, unit, man pages and completions under `prefix`, and the config and
/// list files under /etc/guard unless they exist (an existing config is never overwritten).
pub fn install(prefix: &Path) -> anyhow::Result<()> {
    cargo(&["build", "--release", "-p", "guard-user"])?;
    let docs = docs()?;
    let root = setup::workspace_root();
    let copy = |from: &Path, to: &Path, mode: u32| -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(to.parent().expect("absolute path"))?;
        std::fs::copy(from, to)
            .with_context(|| format!("{} -> {}", from.display(), to.display()))?;
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode))?;
        println!("installed {}", to.display());
        Ok(())
    };
    for bin in ["guardd", "guardctl"] {
        copy(
            &root.join("target/release").join(bin),
            &prefix.join("sbin").join(bin),
            0o755,
        )?;
    }
    let unit = std::fs::read_to_string(root.join("packaging/guard.service"))?.replace(
        "/usr/sbin/guardd",
        &prefix.join("sbin/guardd").display().to_string(),
    );
    std::fs::write("/etc/systemd/system/guard.service", unit)?;
    println!("installed /etc/systemd/system/guard.service");
    copy(
        &root.join("packaging/guard.sysusers"),
        Path::new("/usr/lib/sysusers.d/guard.conf"),
        0o644,
    )?;
    for (name, mode) in [
        ("guard.toml", 0o640),
        ("allow.txt", 0o644),
        ("deny.txt", 0o644),
    ] {
        let to = Path::new("/etc/guard").join(name);
        if to.exists() {
            println!("kept {} (already there)", to.display());
        } else {
            copy(&root.join("packaging").join(name), &to, mode)?;
        }
    }
    for page in std::fs::read_dir(docs.join("man"))? {
        let page = page?.path();
        copy(
            &page,
            &prefix
                .join("share/man/man8")
                .join(page.file_name().expect("file")),
            0o644,
        )?;
    }
    copy(
        &docs.join("completions/bash/guardctl.bash"),
        &prefix.join("share/bash-completion/completions/guardctl"),
        0o644,
    )?;
    // guardd runs as user guard; members of group guard may use the API (as the postinst).
    let exists = |db: &str| -> anyhow::Result<bool> {
        Ok(Command::new("getent")
            .args([db, "guard"])
            .output()?
            .status
            .success())
    };
    if exists("group")? {
        println!("group guard exists");
    } else {
        setup::run(Command::new("groupadd").args(["--system", "guard"]))?;
    }
    if exists("passwd")? {
        println!("user guard exists");
    } else {
        setup::run(Command::new("useradd").args([
            "--system",
            "--gid",
            "guard",
            "--home-dir",
            "/var/lib/guard",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            "guard",
        ]))?;
    }
    let _ = Command::new("chgrp")
        .args(["guard", "/etc/guard/guard.toml"])
        .status();
    if Command::new("systemctl")
        .arg("daemon-reload")
        .status()
        .is_ok_and(|s| s.success())
    {
        println!(
            "systemd reloaded: edit /etc/guard/guard.toml, then `systemctl enable --now guard`"
        );
    } else {
        println!("systemd is not running here: start guardd yourself, or boot with systemd");
    }
    Ok(())
}

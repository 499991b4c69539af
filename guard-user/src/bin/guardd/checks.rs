//! What guardd checks before it touches the kernel: its capabilities and the kernel's age.

use anyhow::{Context, bail};

/// The oldest kernel guard supports: its program's rule step is a global function with a
/// pointer argument (5.12), it reads the coarse clock (5.11), mmaps arrays (5.5), attaches through
/// XDP bpf_links (5.9); 5.17 is the oldest it was built against, 6.1 the oldest tested.
const MIN_KERNEL: (u32, u32) = (5, 17);

pub fn kernel() -> anyhow::Result<()> {
    let release = guard_user::kernel::verifier::kernel_release();
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    let version = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if version < MIN_KERNEL {
        bail!(
            "kernel {} is too old: guard needs Linux {}.{} or newer",
            release.trim(),
            MIN_KERNEL.0,
            MIN_KERNEL.1
        );
    }
    Ok(())
}

/// Fails with the missing capabilities' names rather than an EPERM from deep inside a load.
pub fn privileges() -> anyhow::Result<()> {
    use guard_user::kernel::privileges;
    let eff = privileges::effective().context("reading this process's capabilities")?;
    let missing = privileges::missing(eff);
    if missing.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = missing
        .iter()
        .map(|c| format!("{} ({})", c.name, c.why))
        .collect();
    bail!(
        "missing privileges: guardd needs {}; run it as root or grant them \
         (the shipped unit's AmbientCapabilities)",
        list.join(", ")
    )
}

/// The fleet's credentials file must be readable before guardd starts, or every host would
/// quietly stay alone; and readable by guardd only: whoever reads it can write verdicts for
/// the whole fleet (group `guard` is every API client).
pub fn fleet(config: &guard_user::config::Config) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if !config.fleet.enabled() {
        return Ok(());
    }
    for (key, path) in config.fleet.files() {
        std::fs::read(path).with_context(|| {
            format!(
                "[fleet] {key}: cannot read {} as {}",
                path.display(),
                whoami()
            )
        })?;
    }
    for (key, path) in config.fleet.secrets() {
        let mode = std::fs::metadata(path)
            .with_context(|| format!("[fleet] {key}: {}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            bail!(
                "[fleet] {key}: {} is readable or writable by group or others (mode {:04o}); \
                 whoever reads it can ban any address on every host: `chmod 0600 {}` (its \
                 owner must be guardd's user, {})",
                path.display(),
                mode & 0o7777,
                path.display(),
                whoami()
            );
        }
    }
    Ok(())
}

/// guardd's user, as a file's owner must be named for guardd to read it: `user guard`.
pub fn whoami() -> String {
    let uid = nix::unistd::Uid::effective();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(user)) => format!("user {}", user.name),
        _ => format!("uid {uid}"),
    }
}

//! `cargo xtask vm-test --system`: the Debian package on a real Debian 12 host, systemd as
//! PID 1, in qemu. The guest (xtask/vm-system/steps.sh) installs the package with apt, drives
//! it with systemctl, guardctl and the API, and sends traffic from a second network
//! namespace; boot 1 ends in a hard power-off (qemu killed) right after 10,000 bans are
//! acknowledged, boot 2 checks what survived, upgrades to a newer build and purges.

mod image;
mod qemu;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context, bail};

use crate::{package, setup};

/// Bans made through the API before the power-off, in calls of `BANS_PER_CALL`.
const BANS: usize = 10_000;
const BANS_PER_CALL: usize = 1_000;
/// A boot of the guest under TCG takes about a minute; the steps a few more.
const BOOT_LIMIT: Duration = Duration::from_secs(1200);

pub fn run() -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let work = setup::workspace_root().join("target/vm-system");
    std::fs::create_dir_all(&work)?;
    // Kept aside: cargo-deb removes its earlier packages when it builds the next one.
    let built = package::deb()?;
    let old = work.join(built.file_name().context("a package file")?);
    std::fs::copy(&built, &old)?;
    let (revision, new_version) = next_revision(&old)?;
    let new = package::deb_revision(&revision, &work.join("newer"))?;
    let image = image::cached(&work)?;
    let payload = payload(&work, &old, &new, &new_version)?;
    let disk = work.join("disk.raw");
    setup::run(
        Command::new("cp")
            .arg("--sparse=always")
            .arg(&image.disk)
            .arg(&disk),
    )?;

    let mut steps = Vec::new();
    let mut consoles = Vec::new();
    let mut complete = true;
    for (n, marker, end) in [
        (1, "GUARD-VM: POWER-OFF", qemu::End::PowerOff),
        (2, "GUARD-VM-RESULT:", qemu::End::Shutdown),
    ] {
        let console = work.join(format!("console-{n}.log"));
        println!(
            "vm-test --system: boot {n} (TCG), console in {}",
            console.display()
        );
        let boot = qemu::boot(&image, &disk, &payload, &console, marker, end, BOOT_LIMIT)?;
        println!(
            "vm-test --system: boot {n} ran {:.0} s{}",
            boot.secs,
            if matches!(end, qemu::End::PowerOff) && boot.reached_marker {
                ", then powered off hard"
            } else {
                ""
            }
        );
        for line in boot.console.lines() {
            if let Some(step) = line.strip_prefix("GUARD-STEP ") {
                println!("  {step}");
                steps.push(step.to_string());
            } else if line.starts_with("GUARD-VM") || line.starts_with("  guard: ") {
                println!("  {line}");
            }
        }
        consoles.push(boot.console);
        if !boot.reached_marker {
            println!("vm-test --system: boot {n} never printed {marker:?}");
            complete = false;
            break;
        }
    }
    let failed = steps.iter().filter(|s| !s.contains(": PASS")).count();
    println!(
        "vm-test --system: {} of {} steps passed in {:.0} s",
        steps.len() - failed,
        steps.len(),
        started.elapsed().as_secs_f64()
    );
    if complete {
        figures(&consoles, steps.len() - failed, steps.len())?;
    }
    if !complete || failed > 0 || steps.is_empty() {
        bail!("vm-test --system failed (consoles in {})", work.display());
    }
    Ok(())
}

/// `key=value` from the console line starting with `prefix`.
fn value(console: &str, prefix: &str, key: &str) -> Option<f64> {
    let line = console.lines().find(|l| l.starts_with(prefix))?;
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))?
        .parse()
        .ok()
}

/// The durability figures (bans acknowledged before the power-off and in force after it)
/// into bench/vm-system.json, which BENCHMARKS.md's targets read.
fn figures(consoles: &[String], passed: usize, steps: usize) -> anyhow::Result<()> {
    let acked = value(&consoles[0], "GUARD-VM: POWER-OFF", "acked");
    let kept = value(&consoles[1], "GUARD-VM: FIGURES", "bulk_in_force");
    let ready = value(&consoles[1], "GUARD-VM: FIGURES", "start_to_ready_secs");
    let (Some(acked), Some(kept)) = (acked, kept) else {
        bail!("the guest printed no ban figures");
    };
    let lost = (acked - kept).max(0.0);
    println!(
        "vm-test --system: acknowledged bans lost across the hard power-off: {lost} of {acked}"
    );
    let out = serde_json::json!({
        "date": crate::bench::sh("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        "bans_acknowledged": acked as u64,
        "bans_lost": lost as u64,
        "start_to_ready_secs_tcg": ready,
        "unit_exposure": value(&consoles[0], "GUARD-VM: FIGURES", "exposure"),
        "steps_passed": passed,
        "steps": steps,
    });
    let path = setup::workspace_root().join("bench/vm-system.json");
    std::fs::write(&path, serde_json::to_string_pretty(&out)? + "\n")?;
    Ok(())
}

/// The Debian revision one above `deb`'s, and the version it makes.
fn next_revision(deb: &Path) -> anyhow::Result<(String, String)> {
    let out = Command::new("dpkg-deb")
        .arg("-f")
        .arg(deb)
        .arg("Version")
        .output()?;
    let version = String::from_utf8(out.stdout)?.trim().to_string();
    let (upstream, revision) = version
        .rsplit_once('-')
        .with_context(|| format!("{version}: no Debian revision"))?;
    let next = revision.parse::<u32>().context("a numeric revision")? + 1;
    Ok((next.to_string(), format!("{upstream}-{next}")))
}

/// The second disk: both packages, the guest's scripts, the bans in API calls.
fn payload(work: &Path, old: &Path, new: &Path, new_version: &str) -> anyhow::Result<PathBuf> {
    let dir = work.join("payload");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("bans"))?;
    let name = |p: &Path| {
        p.file_name()
            .expect("a file")
            .to_string_lossy()
            .into_owned()
    };
    for deb in [old, new] {
        std::fs::copy(deb, dir.join(name(deb)))
            .with_context(|| format!("copying {}", deb.display()))?;
    }
    std::fs::write(dir.join("net.sh"), include_str!("../../vm-system/net.sh"))?;
    std::fs::write(
        dir.join("steps.sh"),
        include_str!("../../vm-system/steps.sh"),
    )?;
    std::fs::write(
        dir.join("env"),
        format!(
            "OLD_DEB={}\nNEW_DEB={}\nNEW_VERSION={new_version}\nBANS={BANS}\n",
            name(old),
            name(new)
        ),
    )?;
    // 198.19.0.0/16 /32s, the last one replaced by 198.18.0.7 (a source in the peer namespace).
    let cidrs: Vec<String> = (0..BANS)
        .map(|i| {
            if i == BANS - 1 {
                "198.18.0.7".to_string()
            } else {
                format!("198.19.{}.{}", i / 256, i % 256)
            }
        })
        .collect();
    for (n, chunk) in cidrs.chunks(BANS_PER_CALL).enumerate() {
        let calls: Vec<_> = chunk
            .iter()
            .map(|c| serde_json::json!({"cidr": c, "ttl_secs": 86_400, "reason": "vm-test bulk"}))
            .collect();
        std::fs::write(
            dir.join(format!("bans/{n:03}.json")),
            serde_json::to_vec(&calls)?,
        )?;
    }
    let image = work.join("payload.raw");
    let _ = std::fs::remove_file(&image);
    setup::run(
        Command::new("mkfs.ext4")
            .args(["-q", "-d"])
            .arg(&dir)
            .arg(&image)
            .arg("64M"),
    )?;
    Ok(image)
}

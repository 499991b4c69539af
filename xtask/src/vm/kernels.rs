//! Which Debian kernels vm-test boots, and their files.
//!
//! Packages are found through a private apt configuration under `target/vm/apt` that names
//! Debian's suites from bookworm to sid; the machine's own sources and package state are
//! never read or changed. Images are downloaded and unpacked, not installed. Two package
//! layouts exist: up to 7.1 `linux-image-X` holds `boot/vmlinuz-X` and `lib/modules/X`; from
//! 7.2 it is a small package depending on `linux-binary-X` (`usr/lib/modules/X/vmlinuz`) and
//! `linux-modules-X` (`usr/lib/modules/X/kernel`).

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
};

use anyhow::{Context, bail};

use crate::setup::run;

const MIRROR: &str = "http://deb.debian.org/debian";
const SECURITY: &str = "http://deb.debian.org/debian-security";
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// (suite, archive) the private apt configuration reads.
const SUITES: [(&str, &str); 8] = [
    ("bookworm", MIRROR),
    ("bookworm-updates", MIRROR),
    ("bookworm-security", SECURITY),
    ("trixie", MIRROR),
    ("trixie-updates", MIRROR),
    ("trixie-security", SECURITY),
    ("trixie-backports", MIRROR),
    ("sid", MIRROR),
];

/// The matrix: (label, meta-package, the suites whose newest version of it counts). Debian
/// 12's kernel and its 6.12 LTS, and the newest that backports and unstable ship.
pub const MATRIX: [(&str, &str, &[&str]); 4] = [
    (
        "6.1",
        "linux-image-amd64",
        &["bookworm", "bookworm-updates", "bookworm-security"],
    ),
    (
        "6.12",
        "linux-image-6.12-amd64",
        &["bookworm", "bookworm-updates", "bookworm-security"],
    ),
    (
        "trixie-backports",
        "linux-image-amd64",
        &["trixie-backports"],
    ),
    ("sid", "linux-image-amd64", &["sid"]),
];

/// A kernel to boot: what the user called it and the image package it resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    pub label: String,
    pub image: String,
}

/// A kernel's unpacked files.
pub struct Unpacked {
    pub vmlinuz: PathBuf,
    pub modules: PathBuf,
}

/// `--kernel`: comma-separated matrix labels, `all`, `newest` (the highest version the
/// matrix resolves to), image package names (`linux-image-6.17.13+deb13-amd64`) or their
/// versions (`6.17.13+deb13`, `6.1.0-57`).
pub fn resolve(work: &Path, spec: &str) -> anyhow::Result<Vec<Kernel>> {
    let apt = Apt::new(work)?;
    let mut out: Vec<Kernel> = Vec::new();
    for name in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let found = match name {
            "all" => MATRIX
                .iter()
                .map(|(label, _, _)| apt.matrix(label))
                .collect::<anyhow::Result<Vec<_>>>()?,
            "newest" => vec![apt.newest()?],
            n if MATRIX.iter().any(|(l, _, _)| *l == n) => vec![apt.matrix(n)?],
            n => vec![apt.named(n)?],
        };
        for k in found {
            if !out.iter().any(|o| o.image == k.image) {
                out.push(k);
            }
        }
    }
    if out.is_empty() {
        bail!("--kernel {spec}: name no kernel");
    }
    Ok(out)
}

/// Downloads and unpacks `k` (once: kept under `work/<image>`).
pub fn unpack(work: &Path, k: &Kernel) -> anyhow::Result<Unpacked> {
    let apt = Apt::new(work)?;
    let dir = work.join(&k.image);
    let done = dir.join(".unpacked");
    if !done.exists() {
        let _ = std::fs::remove_dir_all(&dir);
        apt.unpack(&k.image, &dir)?;
        // The 7.2+ split: the image package only depends on the kernel and its modules.
        for dep in apt.depends(&k.image, None)? {
            if dep.starts_with("linux-binary-") || dep.starts_with("linux-modules-") {
                apt.unpack(&dep, &dir)?;
            }
        }
        std::fs::write(&done, "")?;
    }
    let old = dir.join("boot");
    let vmlinuz = if old.exists() {
        std::fs::read_dir(&old)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
            })
    } else {
        modules_dir(&dir)
            .map(|m| m.join("vmlinuz"))
            .filter(|p| p.exists())
    }
    .with_context(|| format!("no vmlinuz in {} ({})", k.image, dir.display()))?;
    let modules = modules_dir(&dir).with_context(|| format!("no modules in {}", k.image))?;
    Ok(Unpacked { vmlinuz, modules })
}

/// `lib/modules/X` (up to 7.1) or `usr/lib/modules/X` (7.2+).
fn modules_dir(dir: &Path) -> Option<PathBuf> {
    ["lib/modules", "usr/lib/modules"].iter().find_map(|sub| {
        std::fs::read_dir(dir.join(sub))
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.is_dir())
    })
}

/// apt with the private configuration.
struct Apt {
    root: PathBuf,
}

impl Apt {
    fn new(work: &Path) -> anyhow::Result<Apt> {
        let root = work.join("apt");
        for d in [
            "etc/sources.list.d",
            "etc/preferences.d",
            "etc/apt.conf.d",
            "state/lists/partial",
            "cache/archives/partial",
        ] {
            std::fs::create_dir_all(root.join(d))?;
        }
        let sources: String = SUITES
            .iter()
            .map(|(suite, url)| format!("deb [signed-by={KEYRING}] {url} {suite} main\n"))
            .collect();
        std::fs::write(root.join("etc/sources.list"), sources)?;
        let apt = Apt { root };
        apt.update_once()?;
        Ok(apt)
    }

    fn options(&self) -> Vec<String> {
        let r = self.root.display();
        [
            format!("Dir::Etc={r}/etc"),
            format!("Dir::Etc::SourceParts={r}/etc/sources.list.d"),
            format!("Dir::Etc::Parts={r}/etc/apt.conf.d"),
            format!("Dir::Etc::PreferencesParts={r}/etc/preferences.d"),
            format!("Dir::State={r}/state"),
            format!("Dir::Cache={r}/cache"),
            "Dir::State::status=/dev/null".into(),
            "APT::Architecture=amd64".into(),
            "APT::Sandbox::User=root".into(),
        ]
        .into_iter()
        .flat_map(|o| ["-o".to_string(), o])
        .collect()
    }

    fn cmd(&self, tool: &str) -> Command {
        let mut c = Command::new(tool);
        c.args(self.options());
        c
    }

    fn update_once(&self) -> anyhow::Result<()> {
        static UPDATED: AtomicBool = AtomicBool::new(false);
        if !UPDATED.swap(true, Ordering::Relaxed) {
            eprintln!(
                "xtask: reading Debian's kernel packages (bookworm to sid) through {}",
                self.root.display()
            );
            run(self.cmd("apt-get").args(["update", "-q", "-q"]))?;
        }
        Ok(())
    }

    fn output(&self, tool: &str, args: &[&str]) -> anyhow::Result<String> {
        let out = self.cmd(tool).args(args).output()?;
        if !out.status.success() {
            bail!(
                "{tool} {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8(out.stdout)?)
    }

    /// The image package a matrix label stands for now.
    fn matrix(&self, label: &str) -> anyhow::Result<Kernel> {
        let (_, meta, suites) = MATRIX
            .iter()
            .find(|(l, _, _)| *l == label)
            .expect("a matrix label");
        let madison = self.output("apt-cache", &["madison", meta])?;
        let mut best: Option<String> = None;
        for line in madison.lines() {
            let cols: Vec<&str> = line.split('|').map(str::trim).collect();
            let [_, version, source] = cols[..] else {
                continue;
            };
            let suite = source.split_whitespace().nth(1).unwrap_or("");
            let suite = suite.split('/').next().unwrap_or("");
            if suites.contains(&suite) && best.as_deref().is_none_or(|b| version_gt(version, b)) {
                best = Some(version.to_string());
            }
        }
        let version = best.with_context(|| format!("{meta} is in none of {suites:?}"))?;
        let image = self
            .depends(meta, Some(&version))?
            .into_iter()
            .find(|d| d.starts_with("linux-image-"))
            .with_context(|| format!("{meta} {version} names no linux-image package"))?;
        Ok(Kernel {
            label: label.to_string(),
            image,
        })
    }

    /// The matrix kernel of the highest version.
    fn newest(&self) -> anyhow::Result<Kernel> {
        let mut best: Option<(Kernel, String)> = None;
        for (label, _, _) in MATRIX {
            let k = self.matrix(label)?;
            let v = self.version(&k.image)?;
            if best.as_ref().is_none_or(|(_, b)| version_gt(&v, b)) {
                best = Some((k, v));
            }
        }
        Ok(best.expect("a non-empty matrix").0)
    }

    /// A package name or the version in it.
    fn named(&self, name: &str) -> anyhow::Result<Kernel> {
        let image = if name.starts_with("linux-image-") {
            name.to_string()
        } else if name.starts_with(|c: char| c.is_ascii_digit()) {
            format!("linux-image-{name}-amd64")
        } else {
            bail!(
                "--kernel {name}: use {}, all, newest, a Debian kernel image package \
                 (linux-image-6.17.13+deb13-amd64) or its version (6.17.13+deb13)",
                MATRIX.map(|(l, _, _)| l).join(", ")
            );
        };
        self.version(&image)
            .with_context(|| format!("--kernel {name}: Debian has no {image}"))?;
        Ok(Kernel {
            label: name.to_string(),
            image,
        })
    }

    /// The newest version of `pkg` the suites hold.
    fn version(&self, pkg: &str) -> anyhow::Result<String> {
        let show = self.output("apt-cache", &["show", "--no-all-versions", pkg])?;
        show.lines()
            .find_map(|l| l.strip_prefix("Version: "))
            .map(str::to_string)
            .with_context(|| format!("no package {pkg}"))
    }

    /// The package names `pkg` (at `version`, else its newest) depends on.
    fn depends(&self, pkg: &str, version: Option<&str>) -> anyhow::Result<Vec<String>> {
        let spec = match version {
            Some(v) => format!("{pkg}={v}"),
            None => pkg.to_string(),
        };
        let show = self.output("apt-cache", &["show", "--no-all-versions", &spec])?;
        let depends = show
            .lines()
            .find_map(|l| l.strip_prefix("Depends: "))
            .unwrap_or("");
        Ok(depends
            .split([',', '|'])
            .filter_map(|d| d.split_whitespace().next())
            .map(str::to_string)
            .collect())
    }

    /// Downloads `pkg` and unpacks it into `dir`.
    fn unpack(&self, pkg: &str, dir: &Path) -> anyhow::Result<()> {
        eprintln!(
            "xtask: downloading {pkg} and unpacking it into {}",
            dir.display()
        );
        let download = dir.join(".download");
        let _ = std::fs::remove_dir_all(&download);
        std::fs::create_dir_all(&download)?;
        run(self
            .cmd("apt-get")
            .args(["download", "-q", "-q", pkg])
            .current_dir(&download))?;
        crate::setup::extract_download(&download, pkg, dir)
    }
}

/// Debian's version order (`dpkg --compare-versions`).
fn version_gt(a: &str, b: &str) -> bool {
    Command::new("dpkg")
        .args(["--compare-versions", a, "gt", b])
        .status()
        .is_ok_and(|s| s.success())
}

//! The guest image of `vm-test --system`: Debian 12 from Debian's packages (mmdebstrap),
//! systemd as PID 1, Debian's 6.1 kernel and initramfs, on an ext4 disk image. Built once and
//! cached under target/vm-system/image; rebuilt when its recipe (the text below and the
//! baked-in units) changes.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context;

use crate::setup::{self, run};

const SUITE: &str = "bookworm";
const MIRROR: &str = "http://deb.debian.org/debian";
/// What the tests use in the guest, beyond minbase: systemd as init, the kernel with an
/// initramfs that finds the virtio disk, iproute2 and ping for traffic, curl and jq for the
/// API.
const PACKAGES: &str = "systemd-sysv,udev,dbus,kmod,procps,iproute2,iputils-ping,curl,jq,\
                        linux-image-amd64,initramfs-tools,e2fsprogs";
const LABEL: &str = "guardroot";
const SIZE: &str = "3G";
/// Units baked into the image: the payload disk and traffic namespace, and the steps.
const UNITS: [(&str, &str); 2] = [
    (
        "vmtest-net.service",
        include_str!("../../vm-system/vmtest-net.service"),
    ),
    (
        "vmtest.service",
        include_str!("../../vm-system/vmtest.service"),
    ),
];

/// The cached image: the root disk, and the kernel and initramfs qemu boots directly.
pub struct Image {
    pub disk: PathBuf,
    pub vmlinuz: PathBuf,
    pub initrd: PathBuf,
}

/// The kernel command line for this image's root disk.
pub fn cmdline() -> String {
    format!("console=ttyS0 root=LABEL={LABEL} rw panic=-1 quiet")
}

fn recipe() -> String {
    let mut r = format!("{SUITE} {MIRROR} {PACKAGES} {LABEL} {SIZE}\n");
    for (name, text) in UNITS {
        r += &format!("{name}\n{text}\n");
    }
    r
}

pub fn cached(work: &Path) -> anyhow::Result<Image> {
    let dir = work.join("image");
    let image = Image {
        disk: dir.join("root.raw"),
        vmlinuz: dir.join("vmlinuz"),
        initrd: dir.join("initrd.img"),
    };
    let key = dir.join("recipe");
    if std::fs::read_to_string(&key).is_ok_and(|k| k == recipe()) && image.disk.exists() {
        println!("vm-test --system: guest image cached in {}", dir.display());
        return Ok(image);
    }
    setup::apt_install(
        &["mmdebstrap", "e2fsprogs", "qemu-system-x86"],
        "vm-test --system builds a Debian 12 image and boots it",
    )?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let root = dir.join("root");
    println!(
        "vm-test --system: building the Debian {SUITE} guest image with mmdebstrap (a few minutes)"
    );
    let started = std::time::Instant::now();
    run(Command::new("mmdebstrap")
        .args(["--variant=minbase", "--include", PACKAGES])
        .arg("--aptopt=Acquire::Languages \"none\"")
        .args([
            "--dpkgopt=path-exclude=/usr/share/doc/*",
            "--dpkgopt=path-exclude=/usr/share/man/*",
            "--dpkgopt=path-exclude=/usr/share/locale/*",
            "--quiet",
            SUITE,
        ])
        .arg(&root)
        .arg(MIRROR))
    .context("mmdebstrap (Debian's packages must be reachable)")?;
    customize(&root)?;
    for (from, to) in [("vmlinuz", &image.vmlinuz), ("initrd.img", &image.initrd)] {
        let file = std::fs::read_dir(root.join("boot"))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{from}-")))
            })
            .with_context(|| format!("no {from} in the image's /boot"))?;
        std::fs::copy(&file, to)?;
    }
    run(Command::new("mkfs.ext4")
        .args(["-q", "-L", LABEL, "-d"])
        .arg(&root)
        .arg(&image.disk)
        .arg(SIZE))?;
    std::fs::remove_dir_all(&root)?;
    std::fs::write(&key, recipe())?;
    println!(
        "vm-test --system: image built in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(image)
}

/// Root on the labelled disk, the test units enabled, nothing else on the serial console.
fn customize(root: &Path) -> anyhow::Result<()> {
    let etc = root.join("etc");
    std::fs::write(
        etc.join("fstab"),
        format!("LABEL={LABEL} / ext4 defaults 0 1\n"),
    )?;
    std::fs::write(etc.join("hostname"), "guard-vm\n")?;
    let units = etc.join("systemd/system");
    let wants = units.join("multi-user.target.wants");
    std::fs::create_dir_all(&wants)?;
    for (name, text) in UNITS {
        std::fs::write(units.join(name), text)?;
        std::os::unix::fs::symlink(format!("/etc/systemd/system/{name}"), wants.join(name))?;
    }
    // The console belongs to the steps' output; no network, so no apt timers either.
    for masked in [
        "serial-getty@ttyS0.service",
        "getty@tty1.service",
        "apt-daily.timer",
        "apt-daily-upgrade.timer",
    ] {
        let link = units.join(masked);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink("/dev/null", link)?;
    }
    Ok(())
}

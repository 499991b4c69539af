//! `cargo xtask vm-test [--kernel LABEL|PACKAGE|VERSION|all|newest]`: the tests on Debian's
//! kernels, in qemu.
//!
//! Each kernel package is downloaded and unpacked into target/vm (`kernels`, not installed);
//! an initramfs holds busybox, guardd, guardctl, the test binaries (with their shared
//! libraries), iproute2 and the veth module; qemu boots it (TCG; KVM with GUARD_VM_KVM=1)
//! and the init script runs the BPF_PROG_TEST_RUN fixtures and network-namespace smoke tests
//! (deny, ban, rate rule), then prints a result marker the xtask reads from the console.
//! Each guest also reports what guard's program cost its verifier; the run ends with a table
//! of those figures, kernel by kernel.

mod figures;
mod kernels;

pub use figures::table as verifier_table;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context, bail};

use crate::setup::{self, run};

/// The tests each guest runs: all fixtures, and smoke tests of the real path.
const TESTS: [(&str, &str); 6] = [
    // First: the verifier's figure for this kernel (printed, and held to the budget).
    ("fixtures", "verifier::"),
    ("fixtures", "lists::"),
    ("fixtures", "rate::"),
    ("netns", "lists::deny_drops_allow_bypasses_unlisted_passes"),
    (
        "netns",
        "verdicts::ban_drops_and_unban_restores_for_ipv4_and_ipv6_prefixes",
    ),
    ("netns", "verdicts::a_penalty_makes_the_next_packets_drop"),
];

pub fn run_all(which: &str) -> anyhow::Result<()> {
    setup::apt_install(
        &[
            "qemu-system-x86",
            "busybox-static",
            "cpio",
            "xz-utils",
            "zstd",
        ],
        "vm-test boots Debian kernels in qemu",
    )?;
    let root = setup::workspace_root();
    let work = root.join("target/vm");
    std::fs::create_dir_all(&work)?;
    crate::cargo(&["build", "-p", "guard-user"])?;
    let tests = build_tests(&root)?;
    let kernels = kernels::resolve(&work, which)?;
    let mut failed = Vec::new();
    let mut measured = Vec::new();
    let (mut passed_tests, mut failed_tests) = (0u64, 0u64);
    for k in &kernels {
        let files = kernels::unpack(&work, k)?;
        let tag = file_tag(&k.image);
        let initrd = initramfs(&root, &work, &tag, &tests, &files.modules)?;
        let mut guest = boot(&work, &tag, &k.image, &files.vmlinuz, &initrd)?;
        if !guest.ok && !guest.started {
            // Seen once under TCG: an oops in the kernel's own boot (sched_init_debug), a
            // second before init. No guard code ran: the boot, not a test, failed.
            println!(
                "vm-test: {} died before its init ran (a kernel fault under emulation, no test \
                 ran): booting it once more",
                k.image
            );
            guest = boot(&work, &tag, &k.image, &files.vmlinuz, &initrd)?;
        }
        passed_tests += guest.passed;
        failed_tests += guest.failed;
        println!(
            "vm-test: {} ({}): {}",
            k.label,
            k.image,
            if guest.ok { "PASS" } else { "FAIL" }
        );
        if !guest.ok {
            failed.push(k.label.clone());
        }
        if let Some(f) = &guest.verifier {
            figures::record(&k.label, &k.image, f)?;
        }
        measured.push((k.clone(), guest.verifier));
    }
    println!("vm-test: what guard's XDP program cost each kernel's verifier");
    println!(
        "  {:<18} {:<36} {:<24} {:>15} {:>9}",
        "label", "package", "kernel", "processed insns", "load ms"
    );
    for (k, v) in &measured {
        match v {
            Some(f) => println!(
                "  {:<18} {:<36} {:<24} {:>15} {:>9.1}",
                k.label, k.image, f.kernel, f.insns, f.load_ms
            ),
            None => println!(
                "  {:<18} {:<36} (no figure: see the console log)",
                k.label, k.image
            ),
        }
    }
    println!("vm-test: {passed_tests} passed, {failed_tests} failed");
    if failed.is_empty() {
        Ok(())
    } else {
        bail!("vm-test failed on {}", failed.join(", "))
    }
}

/// Test executables by test-crate name (cargo test --no-run --message-format=json).
fn build_tests(root: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let names: BTreeSet<&str> = TESTS.iter().map(|(t, _)| *t).collect();
    let mut args = vec![
        "test",
        "-p",
        "guard-tests",
        "--no-run",
        "--message-format=json",
    ];
    for n in &names {
        args.extend(["--test", n]);
    }
    let out = crate::cargo_command(&args)
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        bail!("building the test binaries failed");
    }
    let mut found = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if let (Some(name), Some(exe)) = (v["target"]["name"].as_str(), v["executable"].as_str())
            && names.contains(name)
        {
            found.push((name.to_string(), PathBuf::from(exe)));
        }
    }
    let _ = root;
    Ok(found)
}

/// Copies `bin` and its shared libraries (ldd) into `dest`.
fn copy_with_libs(bin: &Path, dest: &Path, to: &str) -> anyhow::Result<()> {
    let target = dest.join(to.trim_start_matches('/'));
    std::fs::create_dir_all(target.parent().unwrap())?;
    std::fs::copy(bin, &target).with_context(|| format!("copy {}", bin.display()))?;
    let _ = Command::new("strip")
        .arg("--strip-debug")
        .arg(&target)
        .status();
    let ldd = String::from_utf8_lossy(&Command::new("ldd").arg(bin).output()?.stdout).to_string();
    for lib in ldd.split_whitespace().filter(|w| w.starts_with('/')) {
        let t = dest.join(lib.trim_start_matches('/'));
        if !t.exists() {
            std::fs::create_dir_all(t.parent().unwrap())?;
            std::fs::copy(lib, &t)?;
        }
    }
    Ok(())
}

fn initramfs(
    root: &Path,
    work: &Path,
    label: &str,
    tests: &[(String, PathBuf)],
    modules: &Path,
) -> anyhow::Result<PathBuf> {
    let dir = work.join(format!("initramfs-{label}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("bin"))?;
    std::fs::copy("/bin/busybox", dir.join("bin/busybox")).context("busybox-static")?;
    let debug = root.join("target/debug");
    for b in ["guardd", "guardctl"] {
        copy_with_libs(&debug.join(b), &dir, &format!("/guard/bin/{b}"))?;
    }
    copy_with_libs(Path::new("/usr/sbin/ip"), &dir, "/sbin/ip")?;
    copy_with_libs(Path::new("/usr/bin/nsenter"), &dir, "/usr/bin/nsenter")?;
    // guardd runs under the unit's capabilities (tests/src/unit_caps.rs reads the unit).
    copy_with_libs(Path::new("/usr/bin/setpriv"), &dir, "/usr/bin/setpriv")?;
    for (name, exe) in tests {
        copy_with_libs(exe, &dir, &format!("/guard/tests/{name}"))?;
    }
    // The tests read the blocklist at the path compiled into them, <repo>/<crate>/../data/...
    let data = root.join("data/firehol_level1.netset");
    let data_target = dir.join(data.strip_prefix("/")?);
    // `..` in that path needs the crate directories in the guest.
    for krate in ["tests", "guard-user"] {
        std::fs::create_dir_all(dir.join(root.join(krate).strip_prefix("/")?))?;
    }
    std::fs::create_dir_all(data_target.parent().unwrap())?;
    std::fs::copy(&data, &data_target)?;
    let unit = root.join("packaging/guard.service");
    let unit_target = dir.join(unit.strip_prefix("/")?);
    std::fs::create_dir_all(unit_target.parent().unwrap())?;
    std::fs::copy(&unit, &unit_target)?;
    // veth (a module in Debian's kernels), decompressed for busybox insmod.
    let mut ko = None;
    for ext in ["veth.ko", "veth.ko.xz", "veth.ko.zst"] {
        let p = modules.join("kernel/drivers/net").join(ext);
        if p.exists() {
            ko = Some(p);
        }
    }
    let ko = ko.context("veth module")?;
    let out = dir.join("veth.ko");
    match ko.extension().and_then(|e| e.to_str()) {
        Some("xz") => std::fs::write(
            &out,
            Command::new("xz").arg("-dc").arg(&ko).output()?.stdout,
        )?,
        Some("zst") => std::fs::write(
            &out,
            Command::new("zstd").arg("-dc").arg(&ko).output()?.stdout,
        )?,
        _ => drop(std::fs::copy(&ko, &out)?),
    }
    // Mount points first (the initramfs has none), then our iproute2 ahead of busybox's.
    let mut script = String::from(
        "#!/bin/busybox sh\n/bin/busybox mkdir -p /proc /sys /dev /tmp /run\n/bin/busybox --install -s /bin\n\
         export PATH=/sbin:/usr/bin:/bin:/guard/bin\n\
         mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev\n\
         mount -t tmpfs run /run; mount -t bpf bpf /sys/fs/bpf\n\
         insmod /veth.ko\nip link set lo up\necho \"guest kernel $(uname -r)\"\nexport GUARD_BIN_DIR=/guard/bin\nstatus=0\n",
    );
    for (test, filter) in TESTS {
        // --nocapture: the verifier test's figure reaches the console.
        script += &format!(
            "echo \"== {test} {filter}\"\n/guard/tests/{test} {filter} --test-threads=1 --nocapture || status=1\n"
        );
    }
    script += "if [ $status = 0 ]; then echo GUARD-VM-RESULT: PASS; else echo GUARD-VM-RESULT: FAIL; fi\npoweroff -f\n";
    std::fs::write(dir.join("init"), script)?;
    run(Command::new("chmod").args(["755"]).arg(dir.join("init")))?;
    let cpio = work.join(format!("initramfs-{label}.cpio"));
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cd {} && find . | cpio -o -H newc --quiet > {}",
            dir.display(),
            cpio.display()
        ))
        .status()?;
    if !status.success() {
        bail!("cpio failed");
    }
    Ok(cpio)
}

/// What a guest reported.
struct Guest {
    ok: bool,
    /// Its init ran (the kernel booted): a failure after this is the tests'.
    started: bool,
    passed: u64,
    failed: u64,
    /// What guard's program cost this kernel's verifier.
    verifier: Option<figures::Figure>,
}

/// A package name as a file name part.
fn file_tag(image: &str) -> String {
    image
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Boots one kernel and reads what its guest reported.
fn boot(
    work: &Path,
    label: &str,
    image: &str,
    vmlinuz: &Path,
    initrd: &Path,
) -> anyhow::Result<Guest> {
    // TCG unless asked: on some hosts /dev/kvm opens but guests hang in it.
    let kvm = std::env::var_os("GUARD_VM_KVM").is_some_and(|v| v == "1");
    let log = work.join(format!("console-{label}.log"));
    println!(
        "vm-test: booting {image} ({}), console in {}",
        if kvm { "KVM" } else { "TCG" },
        log.display()
    );
    let mut cmd = Command::new("timeout");
    cmd.arg("1500").arg("qemu-system-x86_64");
    if kvm {
        cmd.args(["-enable-kvm", "-cpu", "host"]);
    } else {
        cmd.args(["-cpu", "max"]);
    }
    cmd.args(["-m", "3072", "-smp", "2", "-nographic", "-no-reboot"])
        .arg("-kernel")
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", "console=ttyS0 panic=-1 quiet"])
        .stdout(Stdio::from(std::fs::File::create(&log)?))
        .stderr(Stdio::null());
    let started = std::time::Instant::now();
    let _ = cmd.status()?;
    let console = std::fs::read_to_string(&log).unwrap_or_default();
    println!(
        "vm-test: {image} ran {:.0}s",
        started.elapsed().as_secs_f64()
    );
    for line in console.lines().filter(|l| {
        l.starts_with("test result")
            || l.starts_with("guest kernel")
            || l.contains(figures::LINE)
            || l.contains("FAILED")
            || l.contains("panicked")
    }) {
        println!("  {}", line.trim_end_matches('\r'));
    }
    let count = |word: &str| -> u64 {
        console
            .lines()
            .filter_map(|l| l.trim_end_matches('\r').strip_prefix("test result: "))
            .filter_map(|r| {
                r.split(';').find_map(|p| {
                    p.trim()
                        .strip_suffix(word)?
                        .trim()
                        .rsplit(' ')
                        .next()?
                        .parse::<u64>()
                        .ok()
                })
            })
            .sum()
    };
    // The test harness prints the test's name on the same line, before the figure.
    let verifier = console
        .lines()
        .find_map(|l| figures::Figure::parse(l.trim_end_matches('\r')));
    Ok(Guest {
        ok: console.contains("GUARD-VM-RESULT: PASS"),
        // The init script's first line: the kernel booted and the tests began.
        started: console.contains("guest kernel "),
        passed: count("passed"),
        failed: count("failed"),
        verifier,
    })
}

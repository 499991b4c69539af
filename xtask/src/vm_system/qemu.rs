//! One boot of the guest image under qemu (TCG), its serial console in a file the xtask
//! watches for the steps' markers.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use super::image::{self, Image};

/// How a boot ends once the console shows its marker.
#[derive(Clone, Copy)]
pub enum End {
    /// Kill qemu at once: a hard power-off, whatever the guest has not flushed is lost.
    PowerOff,
    /// The guest powers itself off; wait for it.
    Shutdown,
}

/// Kills qemu however the boot ends, an error included (Ctrl-C reaches qemu itself: it is
/// in the xtask's process group).
struct Qemu(std::process::Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct Boot {
    pub console: String,
    pub reached_marker: bool,
    pub secs: f64,
}

/// Boots `image` with `disk` as its root and `payload` as a second, read-only disk, until
/// `marker` appears on the console (then ends as `end` says), qemu exits or `limit` passes.
pub fn boot(
    image: &Image,
    disk: &Path,
    payload: &Path,
    console: &Path,
    marker: &str,
    end: End,
    limit: Duration,
) -> anyhow::Result<Boot> {
    let _ = std::fs::remove_file(console);
    let kvm = std::env::var_os("GUARD_VM_KVM").is_some_and(|v| v == "1");
    let mut cmd = Command::new("qemu-system-x86_64");
    if kvm {
        cmd.args(["-enable-kvm", "-cpu", "host"]);
    } else {
        cmd.args(["-cpu", "max"]);
    }
    cmd.args([
        "-m", "2048", "-smp", "2", "-display", "none", "-monitor", "none",
    ])
    .args(["-no-reboot", "-serial"])
    .arg(format!("file:{}", console.display()))
    .arg("-kernel")
    .arg(&image.vmlinuz)
    .arg("-initrd")
    .arg(&image.initrd)
    .args(["-append", &image::cmdline()])
    .arg("-drive")
    .arg(format!(
        "file={},format=raw,if=virtio,cache=writeback",
        disk.display()
    ))
    .arg("-drive")
    .arg(format!(
        "file={},format=raw,if=virtio,readonly=on",
        payload.display()
    ))
    .stdout(Stdio::null())
    .stderr(Stdio::inherit());
    let started = Instant::now();
    let mut qemu = Qemu(cmd.spawn()?);
    let child = &mut qemu.0;
    let mut reached = false;
    let mut deadline = started + limit;
    loop {
        std::thread::sleep(Duration::from_millis(100));
        if child.try_wait()?.is_some() {
            break;
        }
        if !reached
            && std::fs::read(console).is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
        {
            reached = true;
            match end {
                End::PowerOff => {
                    child.kill()?;
                    break;
                }
                End::Shutdown => deadline = Instant::now() + Duration::from_secs(120),
            }
        }
        if Instant::now() > deadline {
            eprintln!(
                "vm-test --system: the guest did not finish in time; killed ({})",
                console.display()
            );
            child.kill()?;
            break;
        }
    }
    drop(qemu);
    let console =
        String::from_utf8_lossy(&std::fs::read(console).unwrap_or_default()).replace('\r', "");
    Ok(Boot {
        console,
        reached_marker: reached,
        secs: started.elapsed().as_secs_f64(),
    })
}

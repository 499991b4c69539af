//! Attaching the XDP program to interfaces through pinned bpf_links.
//!
//! A link pinned under the pin directory keeps the program attached when guardd exits.
//! On start, an existing pinned link is adopted and its program replaced atomically
//! (`bpf_link_update`), so a restart never leaves the interface unprotected.

use std::{
    os::fd::AsFd,
    path::{Path, PathBuf},
};

use aya::programs::{
    ProgramError, Xdp, XdpMode,
    links::{FdLink, PinnedLink},
    xdp::XdpLink,
};
use tracing::{info, warn};

use crate::{
    config::XdpModeSetting,
    kernel::bpf_info::{self, ProgIdentity},
    kernel::pins::PinLayout,
};

/// The XDP mode an interface is attached in.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    Driver,
    Skb,
}

impl AttachMode {
    pub const ALL: [AttachMode; 2] = [AttachMode::Driver, AttachMode::Skb];

    pub fn as_str(self) -> &'static str {
        match self {
            AttachMode::Driver => "driver",
            AttachMode::Skb => "skb",
        }
    }

    fn flags(self) -> XdpMode {
        match self {
            AttachMode::Driver => XdpMode::Driver,
            AttachMode::Skb => XdpMode::Skb,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("unknown interface {iface}")]
    UnknownInterface { iface: String },
    #[error(
        "{iface} already runs another XDP program (another tool, or guard with another pin_dir): \
         detach it first (`ip link set dev {iface} xdp off`)"
    )]
    Occupied { iface: String },
    #[error("cannot attach XDP to {iface} in {mode} mode")]
    Attach {
        iface: String,
        mode: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error(
        "the kernel attached {iface} without a bpf_link, which cannot be pinned: \
         guard needs Linux 5.9 or newer (BPF_LINK_TYPE_XDP)"
    )]
    NoBpfLink { iface: String },
    #[error(
        "cannot take over the pinned link of {iface} at {path}: {reason}; it still enforces \
         the program it runs (`guardctl detach` removes it)"
    )]
    Adopt {
        iface: String,
        path: PathBuf,
        reason: String,
    },
    #[error("cannot pin the program at {path}: {reason}")]
    PinProgram { path: PathBuf, reason: String },
    #[error("cannot pin the link of {iface} at {path}: {reason}")]
    Pin {
        iface: String,
        path: PathBuf,
        reason: String,
    },
}

/// One interface guardd protects.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Attachment {
    pub iface: String,
    pub mode: AttachMode,
    /// True when an existing pinned link was adopted.
    pub adopted: bool,
    /// The program the interface runs (the kept one when it was already identical).
    pub program_id: u32,
    /// The interface's index when attached: another index under the same name means the
    /// interface was deleted and re-created, and needs attaching again.
    #[serde(default)]
    pub ifindex: u32,
}

/// What adopting a pinned link did.
enum Adopted {
    /// The attached program is the same code: kept, with its id.
    Kept(u32),
    /// Replaced atomically by the new program.
    Replaced,
}

pub fn interface_exists(iface: &str) -> bool {
    ifindex(iface).is_some()
}

/// The interface's current index, `None` when there is no such interface.
pub fn ifindex(iface: &str) -> Option<u32> {
    nix::net::if_::if_nametoindex(iface).ok()
}

/// Attaches `prog` to `iface` (or replaces the program of its pinned link) and pins the link.
pub fn attach(
    prog: &mut Xdp,
    iface: &str,
    setting: XdpModeSetting,
    pins: &PinLayout,
) -> Result<Attachment, AttachError> {
    let Some(index) = ifindex(iface) else {
        return Err(AttachError::UnknownInterface {
            iface: iface.to_string(),
        });
    };
    let our_id = our_identity(prog).map_or(0, |i| i.id);
    let done = |mode, adopted, program_id| Attachment {
        iface: iface.to_string(),
        mode,
        adopted,
        program_id,
        ifindex: index,
    };
    if let Some((path, mode)) = pins.find_link(iface) {
        match adopt(prog, &path, index, pins) {
            Ok(Adopted::Kept(id)) => {
                info!(
                    iface,
                    mode = mode.as_str(),
                    program_id = id,
                    "kept the attached program: it is unchanged"
                );
                return Ok(done(mode, true, id));
            }
            Ok(Adopted::Replaced) => {
                // A link an older release pinned, its program now ours: its pin moves here.
                let ours = pins.link(iface, mode);
                if path != ours {
                    std::fs::rename(&path, &ours).map_err(|e| AttachError::Pin {
                        iface: iface.to_string(),
                        path: ours.clone(),
                        reason: e.to_string(),
                    })?;
                }
                pin_program(prog, pins)?;
                info!(
                    iface,
                    mode = mode.as_str(),
                    program_id = our_id,
                    "replaced the program of the pinned link"
                );
                return Ok(done(mode, true, our_id));
            }
            Err(Unusable::Dead(why)) => {
                // The interface was re-created or the link detached: start over.
                warn!(iface, why, "pinned link is unusable; attaching anew");
                let _ = std::fs::remove_file(&path);
            }
            Err(Unusable::Other(reason)) => {
                return Err(AttachError::Adopt {
                    iface: iface.to_string(),
                    path,
                    reason,
                });
            }
        }
    }
    let modes: &[AttachMode] = match setting {
        XdpModeSetting::Auto => &[AttachMode::Driver, AttachMode::Skb],
        XdpModeSetting::Driver => &[AttachMode::Driver],
        XdpModeSetting::Skb => &[AttachMode::Skb],
    };
    let mut last = None;
    for &mode in modes {
        match prog.attach(iface, mode.flags()) {
            Ok(id) => {
                if last.is_some() {
                    warn!(
                        iface,
                        "native (driver) XDP is not available; fell back to skb mode"
                    );
                }
                let link = prog.take_link(id).map_err(|source| AttachError::Attach {
                    iface: iface.to_string(),
                    mode: mode.as_str(),
                    source,
                })?;
                pin_link(link, iface, &pins.link(iface, mode))?;
                pin_program(prog, pins)?;
                info!(iface, mode = mode.as_str(), "attached");
                return Ok(done(mode, false, our_id));
            }
            Err(source) if occupied(&source) => {
                return Err(AttachError::Occupied {
                    iface: iface.to_string(),
                });
            }
            Err(source) => {
                if setting == XdpModeSetting::Auto && mode == AttachMode::Driver {
                    info!(iface, error = %source, "driver mode failed; trying skb mode");
                }
                last = Some(AttachError::Attach {
                    iface: iface.to_string(),
                    mode: mode.as_str(),
                    source,
                });
            }
        }
    }
    Err(last.expect("at least one mode was tried"))
}

/// Takes over a pinned link: keeps its program when it is the same code on the same maps (a
/// restart of the same guardd changes nothing in the kernel), else replaces it atomically.
/// `Err(Dead)` when the link is no longer attached to this interface; other errors leave the
/// link (and enforcement) as it is.
fn adopt(prog: &mut Xdp, path: &Path, ifindex: u32, pins: &PinLayout) -> Result<Adopted, Unusable> {
    let other = |what: &str, e: &dyn std::error::Error| {
        Unusable::Other(format!("{what}: {}", crate::error_chain(e)))
    };
    match bpf_info::xdp_link_ifindex(path) {
        Ok(i) if i == ifindex => {}
        Ok(_) => {
            return Err(Unusable::Dead(
                "the pinned link belonged to an earlier interface of that name (deleted since)",
            ));
        }
        Err(e) => return Err(other("reading the pinned link", &e)),
    }
    let pinned = PinnedLink::from_pin(path).map_err(|e| other("opening the pinned link", &e))?;
    let fd_link = FdLink::from(pinned);
    let attached = fd_link
        .info()
        .map_err(|e| other("reading the pinned link", &e))?
        .program_id();
    if attached == 0 {
        return Err(Unusable::Dead(
            "the pinned link no longer has a program (its interface went away)",
        ));
    }
    let ours = our_identity(prog).map_err(|e| other("reading the loaded program", &e))?;
    // The attached program is known by its pin (see `PinLayout::program`); without one (or
    // when it is another program) it is replaced.
    let same = bpf_info::pinned_prog_identity(&pins.program())
        .is_ok_and(|p| p.id == attached && p.same_program(&ours));
    if same {
        return Ok(Adopted::Kept(attached));
    }
    let link = XdpLink::try_from(fd_link).map_err(|e| other("adopting the pinned link", &e))?;
    let id = prog
        .attach_to_link(link)
        .map_err(|e| other("replacing the program of the pinned link", &e))?;
    // Keep the link out of the program's drop list: the pin holds it from now on.
    let link = prog
        .take_link(id)
        .map_err(|e| other("replacing the program of the pinned link", &e))?;
    drop(link);
    Ok(Adopted::Replaced)
}

/// Why a pinned link was not adopted.
enum Unusable {
    /// Detached from this interface for good: attach anew.
    Dead(&'static str),
    /// Anything else: the link may still enforce, so it is left alone.
    Other(String),
}

fn our_identity(prog: &Xdp) -> Result<ProgIdentity, std::io::Error> {
    let fd = prog.fd().map_err(std::io::Error::other)?;
    bpf_info::prog_identity(fd.as_fd())
}

/// Pins `prog` as the program the links run, replacing the previous pin in one rename.
fn pin_program(prog: &mut Xdp, pins: &PinLayout) -> Result<(), AttachError> {
    let path = pins.program();
    let fail = |e: &dyn std::error::Error| AttachError::PinProgram {
        path: path.clone(),
        reason: crate::error_chain(e),
    };
    if bpf_info::pinned_prog_identity(&path)
        .is_ok_and(|p| our_identity(prog).is_ok_and(|o| o.id == p.id))
    {
        return Ok(());
    }
    // bpffs refuses '.' in names.
    let tmp = path.with_file_name(format!("{}-new", guard_common::PROGRAM_NAME));
    let _ = std::fs::remove_file(&tmp);
    prog.pin(&tmp).map_err(|e| fail(&e))?;
    std::fs::rename(&tmp, &path).map_err(|e| fail(&e))
}

fn pin_link(link: XdpLink, iface: &str, path: &std::path::Path) -> Result<(), AttachError> {
    let fd_link = FdLink::try_from(link).map_err(|_| AttachError::NoBpfLink {
        iface: iface.to_string(),
    })?;
    fd_link.pin(path).map_err(|e| AttachError::Pin {
        iface: iface.to_string(),
        path: path.to_path_buf(),
        reason: crate::error_chain(&e),
    })?;
    Ok(())
}

/// EEXIST/EBUSY from bpf_link_create: the interface has an XDP program already.
fn occupied(e: &ProgramError) -> bool {
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return matches!(io.raw_os_error(), Some(libc::EEXIST) | Some(libc::EBUSY));
        }
        source = s.source();
    }
    false
}

//! Attaching the XDP program to interfaces through pinned bpf_links.
//!
//! A link pinned under the pin directory keeps the program attached when guardd exits.
//! On start, an existing pinned link is adopted and its program replaced atomically
//! (`bpf_link_update`), so a restart never leaves the interface unprotected.

use std::path::PathBuf;

use aya::programs::{
    ProgramError, Xdp, XdpMode,
    links::{FdLink, PinnedLink},
    xdp::XdpLink,
};
use tracing::{info, warn};

use crate::{config::XdpModeSetting, pins::PinLayout};

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

    pub fn parse(s: &str) -> Option<AttachMode> {
        AttachMode::ALL.into_iter().find(|m| m.as_str() == s)
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
    let our_id = prog.info().map_or(0, |i| i.id());
    let done = |mode, adopted, program_id| Attachment {
        iface: iface.to_string(),
        mode,
        adopted,
        program_id,
        ifindex: index,
    };
    if let Some((path, mode)) = pins.find_link(iface) {
        match adopt(prog, &path, index) {
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
                info!(
                    iface,
                    mode = mode.as_str(),
                    program_id = our_id,
                    "replaced the program of the pinned link"
                );
                return Ok(done(mode, true, our_id));
            }
            Err(e) => {
                // The interface was re-created or the link detached: start over.
                warn!(iface, error = %e, "pinned link is unusable; attaching anew");
                let _ = std::fs::remove_file(&path);
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
fn adopt(prog: &mut Xdp, path: &std::path::Path, ifindex: u32) -> Result<Adopted, String> {
    let chain = |e: &dyn std::error::Error| crate::error_chain(e);
    match crate::link_ifindex::xdp_link_ifindex(path) {
        Ok(i) if i == ifindex => {}
        Ok(_) => {
            return Err(
                "the pinned link belonged to an earlier interface of that name (deleted since)"
                    .into(),
            );
        }
        Err(e) => return Err(format!("reading the pinned link: {e}")),
    }
    let pinned = PinnedLink::from_pin(path).map_err(|e| chain(&e))?;
    let fd_link = FdLink::from(pinned);
    let attached = fd_link.info().map_err(|e| chain(&e))?.program_id();
    if attached == 0 {
        return Err("the pinned link no longer has a program (its interface went away)".into());
    }
    // The same code on the same maps: a tag ignores which maps the code refers to, and a
    // map this load created anew (one the pins lacked, or BUCKETS resized) is not the one
    // the attached program uses.
    let map_set = |ids: Option<Vec<u32>>| {
        let mut ids = ids.unwrap_or_default();
        ids.sort_unstable();
        ids
    };
    let ours = prog.info().map_err(|e| chain(&e))?;
    let our_maps = map_set(ours.map_ids().map_err(|e| chain(&e))?);
    let same = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| p.id() == attached && p.tag() == ours.tag())
        .any(|p| p.map_ids().is_ok_and(|ids| map_set(ids) == our_maps));
    if same {
        return Ok(Adopted::Kept(attached));
    }
    let link = XdpLink::try_from(fd_link).map_err(|e| chain(&e))?;
    let id = prog.attach_to_link(link).map_err(|e| chain(&e))?;
    // Keep the link out of the program's drop list: the pin holds it from now on.
    let link = prog.take_link(id).map_err(|e| chain(&e))?;
    drop(link);
    Ok(Adopted::Replaced)
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

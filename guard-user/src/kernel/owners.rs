//! Which processes hold guard's pinned maps open: a guardd owns the pins while it runs,
//! whatever socket it serves. `guardctl detach` refuses while anyone does.
//!
//! A process's BPF map descriptors show `map_id:` in /proc/<pid>/fdinfo; the pinned CONFIG
//! map's id names guard's state.

use std::{io, path::Path};

use aya::maps::MapInfo;
use guard_common::map_names;

use crate::kernel::pins::PinLayout;

/// A process holding the pinned maps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub pid: u32,
    /// Its command name (/proc/<pid>/comm).
    pub comm: String,
}

#[derive(Debug, thiserror::Error)]
pub enum OwnersError {
    #[error("cannot read the pinned CONFIG map at {path}: {reason}")]
    Pin { path: String, reason: String },
    #[error("cannot list processes in /proc")]
    Proc(#[source] io::Error),
}

/// Processes other than this one that hold the CONFIG map of `pins` open.
pub fn owners(pins: &PinLayout) -> Result<Vec<Owner>, OwnersError> {
    let path = pins.map(map_names::CONFIG);
    if !path.exists() {
        // A running guardd always has its CONFIG pinned: these pins have no owner.
        return Ok(Vec::new());
    }
    let id = MapInfo::from_pin(&path)
        .map_err(|e| OwnersError::Pin {
            path: path.display().to_string(),
            reason: crate::error_chain(&e),
        })?
        .id();
    let me = std::process::id();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").map_err(OwnersError::Proc)? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != me && holds_map(&entry.path(), id) {
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            out.push(Owner {
                pid,
                comm: comm.trim().to_string(),
            });
        }
    }
    Ok(out)
}

/// Whether any descriptor of the process at `proc_dir` is the map `id`. A process that exits
/// meanwhile holds nothing.
fn holds_map(proc_dir: &Path, id: u32) -> bool {
    let want = format!("map_id:\t{id}");
    let Ok(fds) = std::fs::read_dir(proc_dir.join("fdinfo")) else {
        return false;
    };
    fds.filter_map(Result::ok).any(|fd| {
        std::fs::read_to_string(fd.path()).is_ok_and(|info| info.lines().any(|l| l == want))
    })
}

//! Layout of guard's state on bpffs:
//!
//! ```text
//! <pin_dir>/v<SCHEMA_VERSION>/maps/<MAP>          one pin per map
//! <pin_dir>/v<SCHEMA_VERSION>/links/<mode>/<iface> the XDP bpf_link of an interface
//! <pin_dir>/v<SCHEMA_VERSION>/progs/guard          the program the links run
//! ```
//! The program pin lets a restarted guardd see which program its links run without
//! `bpf_prog_get_fd_by_id`, which needs CAP_SYS_ADMIN.
//! bpffs refuses `.` in names, so a `.` in an interface name (`eth0.100`) is written `:`,
//! which Linux never allows in interface names.
//! ```text
//! ```
//! The schema version in the path keeps a daemon from adopting maps it does not understand.

use std::{
    io,
    path::{Path, PathBuf},
};

use guard_common::SCHEMA_VERSION;

use crate::kernel::attach::AttachMode;

/// BPF_FS_MAGIC from linux/magic.h.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error(
        "{path} is not on a BPF filesystem: mount one with `mount -t bpf bpf /sys/fs/bpf` \
         or set pin_dir to a directory on bpffs"
    )]
    NotBpffs { path: PathBuf },
    #[error(
        "{path} holds guard state of schema {found}, newer than this guardd's v{SCHEMA_VERSION}: \
         detach it with the guardctl of that version (or remove the directory) first"
    )]
    OtherSchema { path: PathBuf, found: String },
    #[error(
        "cannot use pin directory {path}: permission denied to uid {uid}; make it guardd's \
         (`install -d -o guard -g guard -m 0700 {path}`, and `chown -R` what is in it) and let \
         guardd into its parent (`chmod o+x`), as the unit's ExecStartPre= lines do for \
         /sys/fs/bpf/guard"
    )]
    Denied { path: PathBuf, uid: u32 },
    #[error("cannot use pin directory {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// An error using `path`: a refusal names the fix.
fn io_err(path: &Path) -> impl FnOnce(io::Error) -> PinError {
    let path = path.to_path_buf();
    move |source| match source.kind() {
        io::ErrorKind::PermissionDenied => PinError::Denied {
            path,
            uid: nix::unistd::Uid::effective().as_raw(),
        },
        _ => PinError::Io { path, source },
    }
}

#[derive(Debug, Clone)]
pub struct PinLayout {
    root: PathBuf,
}

impl PinLayout {
    pub fn new(root: impl Into<PathBuf>) -> PinLayout {
        PinLayout { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<pin_dir>/v<N>`: everything this version pins.
    pub fn dir(&self) -> PathBuf {
        self.root.join(format!("v{SCHEMA_VERSION}"))
    }

    pub fn map(&self, name: &str) -> PathBuf {
        self.dir().join("maps").join(name)
    }

    /// The pin of the program the links run.
    pub fn program(&self) -> PathBuf {
        self.dir().join("progs").join(guard_common::PROGRAM_NAME)
    }

    fn links_dir(&self) -> PathBuf {
        self.dir().join("links")
    }

    pub fn link(&self, iface: &str, mode: AttachMode) -> PathBuf {
        self.links_dir()
            .join(mode.as_str())
            .join(iface.replace('.', ":"))
    }

    /// Whether this version's state exists (a daemon ran here and was not detached).
    pub fn exists(&self) -> bool {
        self.dir().is_dir()
    }

    /// Checks the directory is on bpffs and holds no other schema, then creates it.
    pub fn prepare(&self) -> Result<(), PinError> {
        let probe = self
            .root
            .ancestors()
            .find(|p| p.exists())
            .unwrap_or(Path::new("/"));
        let fs = nix::sys::statfs::statfs(probe).map_err(|e| PinError::Io {
            path: probe.to_path_buf(),
            source: e.into(),
        })?;
        if fs.filesystem_type().0 as i64 != BPF_FS_MAGIC {
            return Err(PinError::NotBpffs {
                path: self.root.clone(),
            });
        }
        if let Some(found) = self.other_schema()? {
            return Err(PinError::OtherSchema {
                path: self.root.clone(),
                found,
            });
        }
        let link_dirs = AttachMode::ALL.map(|m| self.links_dir().join(m.as_str()));
        let dirs = [self.dir().join("maps"), self.dir().join("progs")];
        for dir in dirs.into_iter().chain(link_dirs) {
            std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        }
        Ok(())
    }

    /// A `v<N>` entry under the root that this guardd cannot take over (a newer schema, or
    /// not a number), if any.
    fn other_schema(&self) -> Result<Option<String>, PinError> {
        Ok(self
            .schemas()?
            .into_iter()
            .find(|(_, n)| n.is_none_or(|n| n > SCHEMA_VERSION))
            .map(|(name, _)| name))
    }

    /// The `v<N>` entries under the root and their N.
    fn schemas(&self) -> Result<Vec<(String, Option<u32>)>, PinError> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&self.root)(e)),
        };
        Ok(entries
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with('v') && *name != format!("v{SCHEMA_VERSION}"))
            .map(|name| {
                let n = name[1..].parse().ok();
                (name, n)
            })
            .collect())
    }

    /// The directories of older schemas an earlier release left: their links are taken over
    /// (`attach`), then they go (`remove_older`).
    fn older(&self) -> Vec<PathBuf> {
        self.schemas()
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, n)| n.is_some_and(|n| n < SCHEMA_VERSION))
            .map(|(name, _)| self.root.join(name))
            .collect()
    }

    /// The pinned link of `iface`, if there is one, and the mode it was attached in: this
    /// schema's, else one an older release pinned (its program is replaced, and the pin
    /// moved here, by `attach`).
    pub fn find_link(&self, iface: &str) -> Option<(PathBuf, AttachMode)> {
        let name = iface.replace('.', ":");
        std::iter::once(self.dir())
            .chain(self.older())
            .flat_map(|dir| {
                AttachMode::ALL
                    .map(|mode| (dir.join("links").join(mode.as_str()).join(&name), mode))
            })
            .find(|(path, _)| path.exists())
    }

    /// Removes what older schemas left (their maps and program; their links were taken over
    /// or are not in use). Returns the directories removed.
    pub fn remove_older(&self) -> Vec<String> {
        let mut gone = Vec::new();
        for dir in self.older() {
            if std::fs::remove_dir_all(&dir).is_ok() {
                gone.push(dir.display().to_string());
            }
        }
        gone
    }

    /// Interfaces with a pinned link, and the mode of each.
    pub fn linked_interfaces(&self) -> Vec<(String, AttachMode)> {
        let mut out = Vec::new();
        for mode in AttachMode::ALL {
            let Ok(entries) = std::fs::read_dir(self.links_dir().join(mode.as_str())) else {
                continue;
            };
            for e in entries.filter_map(Result::ok) {
                out.push((e.file_name().to_string_lossy().replace(':', "."), mode));
            }
        }
        out.sort();
        out
    }

    /// Removes every pin of this version (detaching the links) and the empty directories.
    pub fn remove_all(&self) -> Result<(), PinError> {
        let dir = self.dir();
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(PinError::Io { path: dir, source }),
        }
        // The root goes too when nothing else lives there.
        let _ = std::fs::remove_dir(&self.root);
        Ok(())
    }
}

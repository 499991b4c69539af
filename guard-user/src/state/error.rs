//! Why the state database failed, which failures mean the file is damaged, and the
//! file's permissions.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot create the state directory {path}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state database {path}")]
    Db {
        path: PathBuf,
        #[source]
        source: redb::Error,
    },
    #[error("state database {path}: a record does not decode: {reason}")]
    Record { path: PathBuf, reason: String },
}

impl StateError {
    /// What only a damaged file explains: the one case where the file is set aside.
    pub fn is_corruption(&self) -> bool {
        match self {
            StateError::Record { .. } => true,
            StateError::Db { source, .. } => match source {
                redb::Error::Corrupted(_)
                | redb::Error::TableTypeMismatch { .. }
                | redb::Error::TypeDefinitionChanged { .. }
                | redb::Error::TableIsMultimap(_)
                | redb::Error::TableIsNotMultimap(_) => true,
                // What redb says of a file that is no redb database at all.
                redb::Error::Io(e) => e.kind() == std::io::ErrorKind::InvalidData,
                _ => false,
            },
            StateError::Dir { .. } => false,
        }
    }
}

/// The database holds every verdict: readable and writable by its owner only (the unit's
/// UMask leaves group `guard`, every API client, room to write it otherwise).
pub(super) fn owner_only(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
        tracing::warn!(path = %path.display(), "cannot make the state database owner-only: {e}");
    }
}

pub(super) fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into())
}

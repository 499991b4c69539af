//! guard's userspace: the daemon `guardd`, the CLI `guardctl`, and what they share.
pub mod config;
pub mod lists;
pub mod objects;
pub mod tables;

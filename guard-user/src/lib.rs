//! guard's userspace: the daemon `guardd`, the CLI `guardctl`, and what they share.
pub mod attach;
pub mod config;
pub mod datapath;
pub mod lists;
pub mod model;
pub mod objects;
pub mod pins;
pub mod tables;

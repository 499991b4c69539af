//! guard's userspace: the daemon `guardd`, the CLI `guardctl`, and what they share.
pub mod attach;
pub mod bpf_info;
pub mod buckets;
pub mod cli;
pub mod client;
pub mod config;
pub mod datapath;
pub mod dyn_regions;
pub mod dynamic;
pub mod lists;
pub mod model;
pub mod netif;
pub mod objects;
pub mod owners;
pub mod pins;
pub mod privileges;
pub mod refill;
pub mod requests;
pub mod rules;
pub mod tables;
pub mod top;

/// An error and its sources on one line: `outer: inner: root cause`.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out += ": ";
            out += &text;
        }
        source = s.source();
    }
    out
}

//! guard's userspace: the daemon `guardd`, the CLI `guardctl`, and what they share.
//!
//! - `model`: entries, kinds, TTL bounds, address words, clocks: what all the rest speaks of.
//! - `config`: the TOML config, validated field by field.
//! - `lists`: allow and deny files, flattened into the kernel's direct tables.
//! - `rate`: rate rules, the refill of their buckets, penalties.
//! - `protect`: what no ban may cover: configured and the host's own addresses.
//! - `verdicts`: bans and allows: policy (checks, escalation, capacity) and the map writes.
//! - `state`: bans, allows and histories kept across reboots in an embedded database.
//! - `kernel`: the XDP object, its maps and pins, attachment, capabilities, the clock.
//! - `engine`: the datapath, verdict table, rules and refill together; applying a config.
//! - `control`: the API's types and bounds, the client, the command lines, top talkers.
pub mod auto;
pub mod config;
pub mod control;
pub mod engine;
pub mod fleet;
pub mod kernel;
pub mod lists;
pub mod model;
pub mod protect;
pub mod rate;
pub mod shape;
pub mod state;
pub mod verdicts;

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

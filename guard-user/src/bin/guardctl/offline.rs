//! Answers from the pinned maps when guardd is not running: enforcement outlives it.

use guard_user::{
    control::client::ClientError,
    control::model::{Counters, EntryList},
    kernel::datapath::read_pinned_counters,
    kernel::pins::PinLayout,
    model::Kind,
};
use serde::Serialize;

use crate::render;

#[derive(Serialize)]
struct OfflineStatus {
    daemon: &'static str,
    reason: String,
    pin_dir: String,
    /// Interfaces that still have guard attached through a pinned link.
    interfaces: Vec<OfflineInterface>,
}

#[derive(Serialize)]
struct OfflineInterface {
    name: String,
    xdp_mode: String,
}

pub fn status(pins: &PinLayout, why: &ClientError, json: bool) -> anyhow::Result<()> {
    let s = OfflineStatus {
        daemon: "down",
        reason: guard_user::error_chain(why),
        pin_dir: pins.root().display().to_string(),
        interfaces: pins
            .linked_interfaces()
            .into_iter()
            .map(|(name, mode)| OfflineInterface {
                name,
                xdp_mode: mode.as_str().to_string(),
            })
            .collect(),
    };
    render::print(json, &s, |s| {
        let mut out = format!(
            "guardd: not running ({})\npin dir: {}\n",
            s.reason, s.pin_dir
        );
        if s.interfaces.is_empty() {
            out += "enforcement: none pinned (guard is not attached)\n";
        } else {
            out += "enforcement: still attached through pinned links\n";
            for i in &s.interfaces {
                out += &format!("  {:<16} {}\n", i.name, i.xdp_mode);
            }
        }
        out
    })
}

#[derive(Serialize)]
struct OfflineStats {
    daemon: &'static str,
    #[serde(flatten)]
    counters: Counters,
}

pub fn stats(pins: &PinLayout, why: &ClientError, json: bool) -> anyhow::Result<()> {
    let why = guard_user::error_chain(why);
    if !pins.exists() {
        anyhow::bail!("{why}, and no pinned state under {}", pins.root().display());
    }
    let counters = read_pinned_counters(pins)?;
    if !json {
        eprintln!("guardd is not running ({why}); counters from the pinned maps:");
    }
    render::print(
        json,
        &OfflineStats {
            daemon: "down",
            counters,
        },
        |s| render::counters(&s.counters),
    )
}

/// Bans or allows read from the pinned maps.
pub fn entries(
    pins: &PinLayout,
    kind: Kind,
    why: &ClientError,
    json: bool,
) -> anyhow::Result<EntryList> {
    let why = guard_user::error_chain(why);
    if !pins.exists() {
        anyhow::bail!("{why}, and no pinned state under {}", pins.root().display());
    }
    let entries =
        guard_user::verdicts::pinned_entries(pins, kind, guard_user::model::clock::monotonic_ns())?;
    if !json {
        eprintln!(
            "guardd is not running ({why}); entries from the pinned maps (the kernel still enforces them):"
        );
    }
    Ok(EntryList {
        entries: entries
            .iter()
            .map(guard_user::control::model::EntryView::of)
            .collect(),
    })
}

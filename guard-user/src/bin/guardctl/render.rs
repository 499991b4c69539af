//! Human tables and JSON output.

use guard_user::model::{Counters, EntryView, PenaltyResult, Stats, Status};
use serde::Serialize;

pub fn print<T: Serialize>(
    json: bool,
    value: &T,
    human: impl Fn(&T) -> String,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        print!("{}", human(value));
    }
    Ok(())
}

pub fn status(s: &Status) -> String {
    let mut out = format!(
        "guardd {} (pid {}), up {}s\nconfig:  {}\npin dir: {}\nmonitor: {}\n",
        s.version,
        s.pid,
        s.uptime_secs,
        s.config_path.as_deref().unwrap_or("<embedded default>"),
        s.pin_dir,
        if s.monitor {
            "on (nothing is dropped)"
        } else {
            "off"
        },
    );
    out += &format!("{:<16} {:<8} {}\n", "INTERFACE", "MODE", "PROGRAM");
    for i in &s.interfaces {
        let id = i.program_id.map_or("-".to_string(), |id| id.to_string());
        out += &format!("{:<16} {:<8} {}\n", i.name, i.xdp_mode.as_str(), id);
    }
    out
}

pub fn stats(s: &Stats) -> String {
    format!(
        "passed {}  dropped {}  monitored {}\nlists: {} allow entries, {} deny entries\n{}",
        s.totals.pass,
        s.totals.drop,
        s.totals.monitor,
        s.lists.allow,
        s.lists.deny,
        counters(&Counters {
            packets: s.packets.clone()
        })
    )
}

pub fn counters(c: &Counters) -> String {
    let mut out = format!("{:<8} {:<13} {:>14}\n", "VERDICT", "REASON", "PACKETS");
    for p in c.packets.iter().filter(|p| p.packets > 0) {
        out += &format!("{:<8} {:<13} {:>14}\n", p.verdict, p.reason, p.packets);
    }
    out
}

pub fn entries(list: &[EntryView]) -> String {
    if list.is_empty() {
        return "none\n".into();
    }
    let mut out = format!(
        "{:<44} {:<22} {:>5}  {}\n",
        "CIDR", "EXPIRES", "BAN#", "REASON"
    );
    for e in list {
        let expires = match (&e.expires_at, e.ttl_remaining_secs) {
            (Some(_), Some(s)) => format!(
                "in {}",
                humantime::format_duration(std::time::Duration::from_secs(s))
            ),
            _ => "never".into(),
        };
        let n = e.ban_number.map_or("-".into(), |n| n.to_string());
        out += &format!("{:<44} {:<22} {:>5}  {}\n", e.cidr, expires, n, e.reason);
    }
    out
}

pub fn penalty(r: &PenaltyResult) -> String {
    let mut out = format!(
        "{:<32} {:>14} {:>16}\n",
        "RULE", "CHARGED", "AVAILABLE AFTER"
    );
    for p in &r.rules {
        out += &format!(
            "{:<32} {:>14.1} {:>16.1}\n",
            p.rule, p.tokens_charged, p.tokens_available
        );
    }
    out
}

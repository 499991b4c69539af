//! Human tables and JSON output.

use guard_user::control::model::{Counters, EntryView, PenaltyResult, Stats, Status};
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
    let p = &s.program;
    out += &format!(
        "program: {} by the verifier (guard's budget {}), loaded in {:.1} ms, Linux {}\n",
        p.verified_insns
            .map_or("instructions not reported".to_string(), |n| format!(
                "{n} instructions processed"
            )),
        guard_user::kernel::verifier::BUDGET,
        p.load_ms,
        p.kernel,
    );
    if let Some(age) = s.refill_heartbeat_age_secs {
        out += &format!("refill:  heartbeat {age:.2}s ago\n");
    }
    if let Some(f) = &s.fleet {
        out += &format!(
            "fleet:   node {}, {} ({}), {}, outbox {}, last applied {}\n",
            f.node,
            if f.connected {
                "connected"
            } else {
                "NOT connected"
            },
            f.servers.join(", "),
            if f.in_sync { "in sync" } else { "catching up" },
            f.outbox,
            f.last_applied.as_deref().unwrap_or("never"),
        );
    }
    out += &format!("{:<16} {:<8} {}\n", "INTERFACE", "MODE", "PROGRAM");
    for i in &s.interfaces {
        let id = i.program_id.map_or("-".to_string(), |id| id.to_string());
        out += &format!("{:<16} {:<8} {}\n", i.name, i.xdp_mode.as_str(), id);
    }
    out
}

pub fn stats(s: &Stats) -> String {
    let mut out = format!(
        "passed {}  dropped {}  monitored {}\nlists: {} allow entries, {} deny entries\nbans: {} active, allows: {} active",
        s.totals.pass,
        s.totals.drop,
        s.totals.monitor,
        s.lists.allow,
        s.lists.deny,
        s.bans_active,
        s.allows_active
    );
    if s.bans_refused_full > 0 {
        out += &format!(", {} requests refused (table full)", s.bans_refused_full);
    }
    out += "\n";
    out += &counters(&Counters {
        packets: s.packets.clone(),
    });
    if !s.rules.is_empty() {
        out += &format!(
            "\n{:<32} {:>14} {:>14} {:>14} {:>14}\n",
            "RULE", "PASSED", "LIMITED", "OVERLOAD", "BUDGET LEFT"
        );
        for r in &s.rules {
            let budget = r.budget_tokens.map_or("-".into(), |t| format!("{t:.0}"));
            out += &format!(
                "{:<32} {:>14} {:>14} {:>14} {:>14}\n",
                r.rule, r.passed, r.limited, r.overload, budget
            );
        }
    }
    if s.known != Default::default() {
        out += &format!(
            "\nknown sources: {} verified, {} vouched for\n",
            s.known.verified, s.known.vouched
        );
    }
    if let Some(r) = &s.refill {
        out += &format!(
            "\nrefill: {} ticks, {:.0} buckets/tick, last {:.0} us, max {:.0} us, {:.2}% of a CPU\n",
            r.ticks,
            r.buckets_per_tick,
            r.last_tick_us,
            r.max_tick_us,
            r.cpu_share * 100.0
        );
    }
    out
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
        "{:<44} {:<22} {:>5}  {:<20} {}\n",
        "CIDR", "EXPIRES", "BAN#", "ORIGIN", "REASON"
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
        // A local entry is this host's and never shared: marked so.
        let origin = match (&e.origin, e.local) {
            (Some(o), true) => format!("{o} (local)"),
            (Some(o), false) => o.clone(),
            (None, _) => "-".into(),
        };
        out += &format!(
            "{:<44} {:<22} {:>5}  {:<20} {}\n",
            e.cidr, expires, n, origin, e.reason
        );
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

pub fn top(t: &guard_user::control::top::Top) -> String {
    let mut out = format!(
        "sources with the most drops in the last {}s ({} sampled drops)\n{:<40} {:>10}  {}\n",
        t.window_secs, t.sampled_drops, "SOURCE", "DROPPED", "REASONS"
    );
    for s in &t.sources {
        let reasons = s
            .reasons
            .iter()
            .map(|(r, n)| format!("{r} {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        out += &format!("{:<40} {:>10}  {}\n", s.source, s.dropped, reasons);
    }
    out
}

pub fn shape(s: &guard_user::engine::ShapeReport) -> String {
    let mut out = format!(
        "windows of {}s, {} closed since guardd started\n{:<24} {:<13} {:>10} {:>10} {:>8}  {:>21}  {}\n",
        s.window_secs,
        s.windows,
        "RULE",
        "CLASS",
        "PACKETS",
        "SOURCES",
        "PKT/SRC",
        "BASELINE SRC mean/p95",
        "BUDGET"
    );
    for r in &s.rules {
        let (n, d, nd) = r.window.map_or(("-".into(), "-".into(), "-".into()), |w| {
            (
                w.packets.to_string(),
                format!("{:.0}", w.sources),
                format!("{:.2}", w.packets_per_source),
            )
        });
        let b = &r.baseline;
        let base = if b.warming_up {
            format!("warming up ({})", b.windows)
        } else {
            format!("{:.0}/{:.0}", b.sources.mean, b.sources.high)
        };
        let budget = match (r.budget_mode, r.budget_engaged) {
            (None, _) => "-".to_string(),
            (Some(m), Some(true)) => format!("{} (enforced)", mode(m)),
            (Some(m), _) => format!("{} (counting only)", mode(m)),
        };
        out += &format!(
            "{:<24} {:<13} {:>10} {:>10} {:>8}  {:>21}  {}\n",
            r.rule,
            r.class.label(),
            n,
            d,
            nd,
            base,
            budget
        );
    }
    out
}

fn mode(m: guard_user::config::BudgetMode) -> &'static str {
    match m {
        guard_user::config::BudgetMode::Always => "always",
        guard_user::config::BudgetMode::UnderAttack => "under_attack",
    }
}

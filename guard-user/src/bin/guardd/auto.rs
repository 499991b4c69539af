//! `ban_after`: reads the kernel's limit reports (`LIMIT_REPORTS`), keeps each source's
//! streak of limited seconds (`guard_user::auto::streaks`), and has the engine ban those
//! limited for a rule's whole `ban_after`.

use std::{net::IpAddr, sync::Arc, time::Duration};

use aya::maps::{MapData, RingBuf};
use guard_common::events::{LIMIT_WINDOW_NS, LimitReport, report_kind};
use guard_user::{
    auto::streaks::{Due, Streaks},
    engine::Engine,
    model::clock::monotonic_ns,
};
use ipnet::IpNet;
use tokio::io::unix::AsyncFd;
use tracing::warn;

/// What a report needs of a rule: its source prefixes and `ban_after`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RuleView {
    ipv4_prefix: u8,
    ipv6_prefix: u8,
    ban_after_ns: Option<u64>,
}

impl RuleView {
    /// The streak's key: the rule's prefix of a source.
    fn net_of(&self, addr: IpAddr) -> IpNet {
        let len = match addr {
            IpAddr::V4(_) => self.ipv4_prefix,
            IpAddr::V6(_) => self.ipv6_prefix,
        };
        IpNet::new(addr, len).map_or(IpNet::from(addr), |n| n.trunc())
    }
}

fn rules_of(engine: &Engine) -> Vec<RuleView> {
    engine
        .config()
        .rules
        .iter()
        .map(|r| RuleView {
            ipv4_prefix: r.ipv4_prefix,
            ipv6_prefix: r.ipv6_prefix,
            ban_after_ns: r.ban_after.map(|d| d.0.as_nanos() as u64),
        })
        .collect()
}

pub async fn run(ring: RingBuf<MapData>, engine: Arc<Engine>) {
    // SAFETY: the ring buffer owns its map fd and keeps it open while the AsyncFd owns it.
    let mut fd =
        match unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) } {
            Ok(fd) => fd,
            Err(e) => return warn!(error = %e, "limit reports unavailable: ban_after bans nothing"),
        };
    let mut streaks = Streaks::default();
    let mut rules = rules_of(&engine);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let due = tokio::select! {
            ready = fd.readable_mut() => {
                let Ok(mut guard) = ready else { return };
                let due = drain(guard.get_inner_mut(), &mut streaks, &rules);
                guard.clear_ready();
                due
            }
            _ = tick.tick() => {
                let now = rules_of(&engine);
                if now != rules {
                    // A reload: indices may name other rules now.
                    streaks.clear();
                    rules = now;
                }
                streaks.prune((monotonic_ns() / LIMIT_WINDOW_NS) as u32);
                // Reports written while nobody was waiting are read here too.
                drain(fd.get_mut(), &mut streaks, &rules)
            }
        };
        for (rule, net, due) in due {
            let e = engine.clone();
            let _ = tokio::task::spawn_blocking(move || e.auto_ban(rule, net, due)).await;
        }
    }
}

/// Reads every report; returns the sources due for a ban.
fn drain(
    ring: &mut RingBuf<MapData>,
    streaks: &mut Streaks,
    rules: &[RuleView],
) -> Vec<(usize, IpNet, Due)> {
    let mut due = Vec::new();
    while let Some(item) = ring.next() {
        if item.len() < size_of::<LimitReport>() {
            continue;
        }
        // SAFETY: the kernel wrote a LimitReport; read it unaligned from the ring.
        let r = unsafe { item.as_ptr().cast::<LimitReport>().read_unaligned() };
        let Some(addr) = guard_common::events::addr_of(r.family, &r.addr) else {
            continue;
        };
        if r.kind == report_kind::PROOF {
            // Every rule that reported the packet this second (the reports before this
            // one, maybe interleaved with other CPUs'): its streak is proven.
            for (i, view) in rules.iter().enumerate() {
                if view.ban_after_ns.is_some() {
                    streaks.prove(i as u8, view.net_of(addr), r.second);
                }
            }
            continue;
        }
        let rule = r.rule as usize;
        let Some((view, ban_after)) = rules.get(rule).and_then(|v| Some((v, v.ban_after_ns?)))
        else {
            continue;
        };
        let net = view.net_of(addr);
        if let Some(d) = streaks.report(r.rule, net, r.second, r.at_ns, ban_after) {
            due.push((rule, net, d));
        }
    }
    due
}

//! The engine's side of automatic verdicts (`crate::auto`): a rule's `ban_after` ban, and
//! aggregation of bans into their prefix after any ban is added, with the members given
//! back when the prefix ban goes. Both are made like API verdicts (escalation, the state
//! database, the fleet); in monitor mode they are logged and counted only.

use std::{
    collections::{BTreeSet, HashMap},
    sync::Mutex,
    time::Duration,
};

use ipnet::IpNet;
use tracing::{debug, info, warn};

use super::Engine;
use crate::{
    auto::{
        AutoCounts, AutoKind, Skip,
        aggregate::{self, Aggregation},
        streaks::Due,
    },
    model::clock::{monotonic_ns, unix_now_ns},
    model::{Entry, Kind, Remote, Request},
    state::Change,
    verdicts::{DynError, DynamicTable},
};

#[derive(Debug, Default)]
pub(super) struct Auto {
    pub counts: AutoCounts,
    /// Monitor mode: would-be bans, until their would-be expiry (monotonic ns), so a source
    /// still limited is logged once per would-be ban, not once per `ban_after`.
    would_ban: Mutex<HashMap<IpNet, u64>>,
    /// Aggregate prefixes whose ban was lifted (API, fleet), until it would have expired:
    /// not made again meanwhile, so the members that came back stay members.
    lifted: Mutex<HashMap<IpNet, u64>>,
}

/// What a `ban_after` report led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AutoBan {
    Banned(Entry),
    /// Monitor mode: logged and counted.
    Monitored,
    /// Already banned, allowed, or refused (logged).
    Skipped,
}

impl Engine {
    pub fn auto_counts(&self) -> &AutoCounts {
        &self.auto.counts
    }

    /// Rule `rule` (its index in the config) kept limiting `net` for `due`: ban it with the
    /// escalation's TTL, unless it did not prove itself real (and the rule wants proof), an
    /// allow covers it, it is protected or already banned.
    pub fn auto_ban(&self, rule: usize, net: IpNet, due: Due) -> AutoBan {
        let limited_for = Duration::from_nanos(due.limited_for_ns);
        let (name, ban_after, monitor, first_ttl, unverified_ok) = {
            let k = self.kernel();
            let Some(r) = k.config.rules.get(rule) else {
                return AutoBan::Skipped;
            };
            let Some(after) = r.ban_after else {
                return AutoBan::Skipped;
            };
            let esc = k.escalation();
            (
                r.name.as_str().to_string(),
                after.0,
                k.config.monitor || r.monitor,
                esc.ttl(1),
                r.ban_unverified,
            )
        };
        if !due.proven && !unverified_ok {
            // Forged sources look exactly like this: counted, and said at debug level only
            // (a forged flood makes one per victim per ban_after).
            self.auto.counts.skip(AutoKind::Rule, Skip::Unverified);
            debug!(source = %net, rule = %name, "not banned automatically: limited for {:.1}s but never proved its address real (no segment of an established TCP connection)", limited_for.as_secs_f64());
            return AutoBan::Skipped;
        }
        let reason = format!(
            "rule {name}: limited in every second for {:.1}s (ban_after {})",
            limited_for.as_secs_f64(),
            humantime::format_duration(ban_after)
        );
        let mut t = self.verdicts();
        // Reports made before a ban (this source's, or a prefix's) took effect.
        if t.ban_over(&net).is_some() {
            return AutoBan::Skipped;
        }
        if monitor {
            let now = monotonic_ns();
            let mut would = self.auto.would_ban.lock().expect("would-ban lock");
            would.retain(|_, until| *until > now);
            if would.contains_key(&net) {
                return AutoBan::Skipped;
            }
            would.insert(net, now + first_ttl.as_nanos() as u64);
            drop(would);
            self.auto.counts.count(AutoKind::Rule, true);
            info!(source = %net, rule = %name, "monitor mode: would ban automatically ({reason})");
            return AutoBan::Monitored;
        }
        let req = Request {
            net,
            reason,
            unverified: !due.proven,
            ..Request::default()
        };
        match self.add_locked(&mut t, Kind::Ban, &[req]) {
            Ok(mut made) => {
                let e = made.entries.remove(0);
                self.auto.counts.count(AutoKind::Rule, false);
                info!(
                    source = %net,
                    rule = %name,
                    ban_number = e.ban_number,
                    ttl_secs = e.remaining().map_or(0, |d| d.as_secs()),
                    "banned automatically: {}", e.reason
                );
                AutoBan::Banned(e)
            }
            Err(e @ DynError::Protected { .. }) => {
                self.auto.counts.skip(AutoKind::Rule, Skip::Protected);
                info!(source = %net, rule = %name, "not banned automatically: {e}");
                AutoBan::Skipped
            }
            Err(e @ DynError::CoveredByAllow { .. }) => {
                debug!(source = %net, rule = %name, "not banned automatically: {e}");
                AutoBan::Skipped
            }
            Err(e) => {
                warn!(
                    source = %net,
                    rule = %name,
                    "cannot ban automatically: {}",
                    crate::error_chain(&e)
                );
                AutoBan::Skipped
            }
        }
    }

    /// An entry was removed by hand or by the fleet (not expired). A ban of an aggregate
    /// prefix's length: that prefix is not aggregated again before the ban would have
    /// expired, and the bans it replaced come back (`give_back`). Returns the fleet rows.
    pub(super) fn lifted(&self, t: &mut DynamicTable, gone: &Entry) -> Vec<Change> {
        let agg = Aggregation::of(&self.kernel().config.bans);
        let len = match gone.net {
            IpNet::V4(_) => agg.ipv4_prefix,
            IpNet::V6(_) => agg.ipv6_prefix,
        };
        if gone.kind == Kind::Ban && gone.net.prefix_len() == len {
            let now = monotonic_ns();
            let mut lifted = self.auto.lifted.lock().expect("lifted lock");
            lifted.retain(|_, until| *until > now);
            lifted.insert(gone.net, gone.expires_mono_ns);
        }
        self.give_back(t, &gone.net)
    }

    /// After bans of `added` went in: each aggregate prefix holding one of them and now
    /// `aggregate_sources` bans or more, with no allow inside or over it and no entry of its
    /// own, becomes one ban; its members are set aside. Returns the fleet rows to queue.
    pub(super) fn aggregate_around(
        &self,
        t: &mut DynamicTable,
        kind: Kind,
        added: impl Iterator<Item = IpNet>,
    ) -> Vec<Change> {
        let (agg, monitor, static_allows, protected) = {
            let mut k = self.kernel();
            (
                Aggregation::of(&k.config.bans),
                k.config.monitor,
                k.allow_nets.clone(),
                k.protection.current(),
            )
        };
        if kind != Kind::Ban || !agg.enabled() {
            return Vec::new();
        }
        let prefixes: BTreeSet<IpNet> = added.filter_map(|n| agg.prefix_of(&n)).collect();
        let mut queued = Vec::new();
        let now = monotonic_ns();
        let lifted: Vec<IpNet> = {
            let l = self.auto.lifted.lock().expect("lifted lock");
            prefixes
                .iter()
                .filter(|p| l.get(p).is_some_and(|until| *until > now))
                .copied()
                .collect()
        };
        for prefix in prefixes {
            if t.get(&prefix).is_some() || lifted.contains(&prefix) {
                continue;
            }
            // Bans of sources that never proved their address real do not count: forged
            // members would make a forged range.
            let members: Vec<Entry> = t
                .bans_inside(&prefix, now)
                .filter(|e| !e.unverified)
                .cloned()
                .collect();
            if members.len() < agg.sources as usize {
                continue;
            }
            let allow = static_allows
                .iter()
                .find(|a| aggregate::overlaps(a, &prefix))
                .copied()
                .or_else(|| t.allow_overlapping(&prefix));
            if let Some(allow) = allow {
                debug!(%prefix, %allow, members = members.len(), "not aggregated: an allow lies in it");
                continue;
            }
            // Stops short: the members stay banned one by one. Counted once, when the count
            // reaches the threshold.
            if let Some(p) = protected.overlapping(&prefix) {
                if members.len() == agg.sources as usize {
                    self.auto.counts.skip(AutoKind::Aggregate, Skip::Protected);
                    info!(%prefix, members = members.len(), "not aggregated: it covers {p}, which guard never bans");
                }
                continue;
            }
            if monitor {
                // Once, when the count reaches the threshold.
                if members.len() == agg.sources as usize {
                    self.auto.counts.count(AutoKind::Aggregate, true);
                    info!(%prefix, members = members.len(), "monitor mode: would ban the prefix of these bans");
                }
                continue;
            }
            queued.extend(self.make_aggregate(t, prefix, members, now));
        }
        queued
    }

    fn make_aggregate(
        &self,
        t: &mut DynamicTable,
        prefix: IpNet,
        members: Vec<Entry>,
        now: u64,
    ) -> Vec<Change> {
        let req = Request {
            net: prefix,
            ttl: Some(aggregate::ttl(members.iter().filter_map(Entry::remaining))),
            reason: aggregate::reason(members.len(), &prefix),
            ..Request::default()
        };
        let made = match self.add_to(t, Kind::Ban, &[req]) {
            Ok(made) => made,
            Err(e) => {
                warn!(%prefix, "cannot ban the prefix of {} bans: {}", members.len(), crate::error_chain(&e));
                return Vec::new();
            }
        };
        let mut queued = self.queue_made(Kind::Ban, &made);
        let mut gone = Vec::with_capacity(members.len());
        for m in members {
            match t.remove(&m.net, Kind::Ban) {
                Ok(e) => {
                    queued.extend(self.queue_removed(&e));
                    gone.push(e);
                }
                Err(e) => warn!(member = %m.net, "cannot set aside: {}", crate::error_chain(&e)),
            }
        }
        t.supersede(prefix, &gone, now);
        self.auto.counts.count(AutoKind::Aggregate, false);
        info!(
            %prefix,
            members = gone.len(),
            ttl_secs = made[0].remaining().map_or(0, |d| d.as_secs()),
            "banned automatically: {}", made[0].reason
        );
        queued
    }

    /// `prefix`'s ban is gone (removed or expired): the bans it replaced that are still in
    /// force come back, as they were (expiry, reason, origin, step), and are shared again.
    pub(super) fn give_back(&self, t: &mut DynamicTable, prefix: &IpNet) -> Vec<Change> {
        if !t.supersedes(prefix) {
            return Vec::new();
        }
        let members = t.release(prefix);
        let now_unix = unix_now_ns() + 1_000_000_000;
        let reqs: Vec<Request> = members
            .into_iter()
            .filter(|m| m.expires_unix_ns == 0 || m.expires_unix_ns > now_unix)
            .map(|m| Request {
                net: m.net,
                ttl: None,
                reason: m.reason,
                local: m.local,
                unverified: m.unverified,
                remote: Some(Remote {
                    origin: m.origin,
                    expires_unix_ns: m.expires_unix_ns,
                    created_unix_ns: m.created_unix_ns,
                    ban_number: m.ban_number,
                    unverified: m.unverified,
                }),
            })
            .collect();
        if reqs.is_empty() {
            return Vec::new();
        }
        match self.add_to(t, Kind::Ban, &reqs) {
            Ok(back) => {
                info!(%prefix, members = back.len(), "the prefix ban is gone: the bans it replaced are back");
                self.queue_entries(Kind::Ban, back.iter())
            }
            Err(e) => {
                warn!(%prefix, "cannot give back the bans the prefix replaced: {}", crate::error_chain(&e));
                Vec::new()
            }
        }
    }
}

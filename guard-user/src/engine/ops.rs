//! Verdicts (add, remove, sweep, penalize) and readings (entries, stats).

use std::{net::IpAddr, sync::atomic::Ordering::Relaxed};

use guard_common::tokens::{TOKEN_SCALE, available};
use ipnet::IpNet;

use super::{Engine, EngineError};
use crate::{
    kernel::KernelError,
    model::report::{PenaltyResult, RefillSummary, RuleCount, RulePenalty, Stats},
    model::{Entry, Kind, Request, clock::monotonic_ns},
    rate::penalty,
    state::Change,
    verdicts::{DynError, DynamicTable, Guards, Prepared},
};

/// What `add_durably` applied.
#[derive(Debug)]
pub struct Added {
    pub entries: Vec<Entry>,
    /// In the state database (or there is none) as well as in the kernel.
    pub durable: bool,
}

impl Engine {
    /// Adds bans or allows, all or nothing (see `DynamicTable::prepare` and `apply`), and writes them to the
    /// state database. Holds the verdict table for the whole batch; the datapath only to
    /// write the probed lengths.
    pub fn add(&self, kind: Kind, reqs: &[Request]) -> Result<Vec<Entry>, DynError> {
        self.add_durably(kind, reqs).map(|a| a.entries)
    }

    /// As `add`, saying whether the entries are in the state database too (false: enforced,
    /// and written once the database takes writes again). Entries made here and not local
    /// are queued for the fleet in the same write.
    pub fn add_durably(&self, kind: Kind, reqs: &[Request]) -> Result<Added, DynError> {
        self.add_locked(&mut self.verdicts(), kind, reqs)
    }

    /// `add_durably` on the locked table: applied, queued for the fleet, aggregated, written
    /// to the state database in one transaction (staged while the kernel maps are written),
    /// published.
    pub(super) fn add_locked(
        &self,
        t: &mut DynamicTable,
        kind: Kind,
        reqs: &[Request],
    ) -> Result<Added, DynError> {
        let prepared = match self.prepare_batch(t, kind, reqs) {
            Ok(p) => p,
            Err(e) => {
                // Also retries what the database refused before.
                self.persist(t, Vec::new());
                self.publish(t);
                return Err(e);
            }
        };
        let (res, durable) = self.apply_durably(t, kind, prepared);
        self.publish(t);
        res.map(|entries| Added { entries, durable })
    }

    /// What follows a batch the kernel took, in this order: its fleet outbox rows, then
    /// aggregation around new bans (which may add a prefix ban and set members aside). The
    /// changes they return go into the same transaction as the batch.
    pub(super) fn after_apply(
        &self,
        t: &mut DynamicTable,
        kind: Kind,
        entries: &[Entry],
    ) -> Vec<Change> {
        let mut queued = self.queue_made(kind, entries);
        queued.extend(self.aggregate_around(t, kind, entries.iter().map(|e| e.net)));
        queued
    }

    /// Adds to the locked table (all or nothing), with the allow list and escalation in
    /// force; the journal takes the batch's changes.
    pub(super) fn add_to(
        &self,
        t: &mut DynamicTable,
        kind: Kind,
        reqs: &[Request],
    ) -> Result<Vec<Entry>, DynError> {
        let prepared = self.prepare_batch(t, kind, reqs)?;
        let applied = t.apply(prepared.batch)?;
        t.record(prepared.changes);
        Ok(applied)
    }

    fn prepare_batch(
        &self,
        t: &mut DynamicTable,
        kind: Kind,
        reqs: &[Request],
    ) -> Result<Prepared, DynError> {
        let (allows, protected, escalation) = {
            let mut k = self.kernel();
            (k.allow_nets.clone(), k.protection.current(), k.escalation())
        };
        let guards = Guards {
            static_allows: &allows,
            protected: &protected,
        };
        t.prepare(kind, reqs, guards, &escalation, monotonic_ns())
    }

    /// Removes a ban or an allow; the kernel forgets it at once, and so does the fleet.
    pub fn remove(&self, net: &IpNet, kind: Kind) -> Result<Entry, DynError> {
        let mut t = self.verdicts();
        let gone = t.remove(net, kind);
        let queued = match &gone {
            Ok(e) => {
                let mut q = self.queue_removed(e);
                q.extend(self.lifted(&mut t, e));
                q
            }
            Err(_) => Vec::new(),
        };
        self.persist(&mut t, queued);
        self.publish(&t);
        gone
    }

    /// Removes expired bans and allows and old histories; returns the entries removed.
    pub fn sweep(&self) -> Result<Vec<Entry>, DynError> {
        let mut t = self.verdicts();
        let gone = t.sweep(monotonic_ns())?;
        // An expired aggregate: members still in force (none, unless it was re-made
        // shorter) come back, the others are forgotten.
        let queued: Vec<_> = gone
            .iter()
            .filter(|e| e.kind == Kind::Ban)
            .flat_map(|e| self.give_back(&mut t, &e.net))
            .collect();
        // Also retries what the database refused before.
        self.persist(&mut t, queued);
        self.publish(&t);
        Ok(gone)
    }

    /// The bans or allows in force.
    pub fn entries(&self, kind: Kind) -> Vec<Entry> {
        self.verdicts().list(kind)
    }

    /// A slice of them: up to `max` after `after`, in prefix order.
    pub fn entries_page(&self, kind: Kind, after: Option<&IpNet>, max: usize) -> Vec<Entry> {
        self.verdicts().page(kind, after, max)
    }

    /// Charges `tokens` to the source's bucket in one rule or all (`rate::penalty`).
    pub fn penalize(
        &self,
        ip: IpAddr,
        tokens: u64,
        rule: Option<&str>,
    ) -> Result<PenaltyResult, EngineError> {
        let rules = self.kernel().rules.clone();
        let indices: Vec<usize> = match rule {
            Some(name) => {
                vec![
                    rules
                        .rules
                        .iter()
                        .position(|r| r.name == name)
                        .ok_or_else(|| EngineError::NoSuchRule {
                            name: name.to_string(),
                        })?,
                ]
            }
            None => (0..rules.rules.len()).collect(),
        };
        if indices.is_empty() {
            return Err(EngineError::NoRules);
        }
        let out = indices
            .into_iter()
            .map(|i| {
                let r = &rules.rules[i];
                let idx = rules.bucket_of(i, &self.key, ip).expect("index in range");
                let b = self.buckets.get(idx);
                let charge = penalty::charge(b.credit, b.spent, r.rate_units, tokens);
                self.buckets.add_spent(idx, charge);
                let after = self.buckets.get(idx);
                RulePenalty {
                    rule: r.name.clone(),
                    tokens_charged: charge as f64 / TOKEN_SCALE as f64,
                    tokens_available: available(after.credit, after.spent) as f64
                        / TOKEN_SCALE as f64,
                }
            })
            .collect();
        Ok(PenaltyResult {
            ip: ip.to_string(),
            rules: out,
        })
    }

    /// Packets by verdict and reason, per rule, lists, bans, the refill's cost. Never waits
    /// for the verdict table.
    pub fn stats(&self) -> Result<Stats, KernelError> {
        let k = self.kernel();
        let per_rule = k.datapath.rule_counters(k.rules.rules.len())?;
        let buckets = k.datapath.buckets();
        let rules = k
            .rules
            .rules
            .iter()
            .zip(per_rule)
            .map(|(r, [passed, limited, overload])| RuleCount {
                rule: r.name.clone(),
                passed,
                limited,
                overload,
                budget_tokens: r
                    .budget
                    .map(|_| budget_tokens(&buckets, r.spec.budget_bucket)),
            })
            .collect();
        let refill = (!k.rules.rules.is_empty())
            .then(|| self.refill_summary())
            .flatten();
        let mut stats = Stats::new(k.datapath.counters()?, rules, k.lists, refill);
        let known = k.datapath.known();
        drop(k);
        // A read of the whole table (8 MiB by default): not under the kernel's lock.
        stats.known.verified = known.live(monotonic_ns());
        stats.known.vouched = self.vouches_active() as u64;
        (
            stats.bans_active,
            stats.allows_active,
            stats.bans_refused_full,
        ) = self.verdict_counts();
        Ok(stats)
    }

    fn refill_summary(&self) -> Option<RefillSummary> {
        let s = self.refill_stats.as_ref()?;
        let ticks = s.ticks.load(Relaxed);
        Some(RefillSummary {
            ticks,
            buckets_per_tick: s.buckets_touched.load(Relaxed) as f64 / ticks.max(1) as f64,
            last_tick_us: s.last_duration_ns.load(Relaxed) as f64 / 1e3,
            max_tick_us: s.max_duration_ns.load(Relaxed) as f64 / 1e3,
            cpu_share: s.busy_ns.load(Relaxed) as f64
                / self.started.elapsed().as_nanos().max(1) as f64,
        })
    }
}

/// The tokens a budget's shared bucket holds (what the CPUs' pools hold is not counted).
pub(crate) fn budget_tokens(buckets: &crate::kernel::buckets::Buckets, bucket: u32) -> f64 {
    let b = buckets.get(bucket);
    available(b.credit, b.spent).max(0) as f64 / TOKEN_SCALE as f64
}

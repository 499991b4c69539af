//! The table's side of the durable state: the journal of changes for the state database,
//! a snapshot of everything, and the restore after a reboot.

use super::{DynError, DynamicTable, meta_key, policy, stored_history};
use crate::{
    kernel::verdict_maps::{Step, VerdictMaps, Writes, execute},
    model::clock::unix_now_ns,
    state::{Change, Stored, StoredHistory},
};

impl<M: VerdictMaps> DynamicTable<M> {
    /// The changes since the last call, for the durable state, oldest first.
    /// Changes made outside the table's own calls (a prepared batch's), in order.
    pub fn record(&mut self, changes: Vec<Change>) {
        self.journal.extend(changes);
    }

    pub fn take_journal(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.journal)
    }

    /// Every entry and escalation history, as the durable state keeps them.
    pub fn snapshot(&self, now_mono: u64) -> (Vec<Stored>, Vec<StoredHistory>) {
        let now_unix = unix_now_ns();
        let entries = self
            .entries
            .values()
            .map(|e| Stored::from_entry(e, now_mono, now_unix))
            .collect();
        let histories = self
            .history
            .iter()
            .map(|(net, h)| stored_history(net, h))
            .collect();
        (entries, histories)
    }

    /// Writes entries and histories kept across a reboot into the (empty) maps, as they were:
    /// expiry, reason, ban number, history. Entries already expired are skipped. All or
    /// nothing, like a batch: the histories first, then the batch's own plan.
    pub fn restore(
        &mut self,
        stored: &[Stored],
        histories: &[StoredHistory],
        now_mono: u64,
    ) -> Result<usize, DynError> {
        let now_unix = unix_now_ns();
        let mut hist = Writes::with_capacity(histories.len());
        for h in histories {
            let known = self.history.get(&h.net).is_some();
            hist.push(meta_key(&h.net), super::history_of(h), known);
        }
        let plan: Vec<policy::Planned> = stored
            .iter()
            .filter(|s| !self.entries.contains_key(&s.net))
            .filter_map(|s| s.to_entry(now_mono, now_unix))
            .map(policy::restored)
            .collect();
        let lens = self.lens_with(plan.iter().map(|p| &p.entry.net))?;
        let mut steps = self.batch_plan(&plan, &[], lens);
        steps.0.insert(0, Step::Side(hist, Writes::default()));
        execute(&mut self.maps, &steps)?;
        for h in histories {
            self.history.set(h.net, super::history_of(h));
        }
        for p in &plan {
            self.regions.cover(&p.entry.net);
            self.index(p.entry.clone());
        }
        Ok(plan.len())
    }
}

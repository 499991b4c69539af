//! The table's side of the durable state: the journal of changes for the state database,
//! a snapshot of everything, and the restore after a reboot.

use aya::maps::IterableMap;
use guard_common::dynamic::{BanHistory, DynLens};

use super::{DynError, DynamicTable, map_err, meta_key, policy, stored_history, undo::Undo};
use crate::{
    kernel::datapath::DatapathError,
    model::clock::unix_now_ns,
    state::{Change, Stored, StoredHistory},
};

impl DynamicTable {
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
    /// expiry, reason, ban number, history. Entries already expired are skipped; lengths are
    /// set through `set_lens` before the first entry.
    pub fn restore(
        &mut self,
        stored: &[Stored],
        histories: &[StoredHistory],
        now_mono: u64,
        mut set_lens: impl FnMut(&DynLens) -> Result<(), DatapathError>,
    ) -> Result<usize, DynError> {
        let now_unix = unix_now_ns();
        let (mut keys, mut values) = (Vec::new(), Vec::new());
        for h in histories {
            let hist = BanHistory {
                last_unix_ns: h.last_unix_ns,
                count: h.count,
                _reserved: 0,
            };
            keys.push(meta_key(&h.net));
            values.push(hist);
            self.history.set(h.net, hist);
        }
        crate::kernel::batch::update(self.maps.hist.map(), &keys, &values)
            .map_err(map_err("BAN_HIST"))?;
        let plan: Vec<policy::Planned> = stored
            .iter()
            .filter(|s| !self.entries.contains_key(&s.net))
            .filter_map(|s| s.to_entry(now_mono, now_unix))
            .map(policy::restored)
            .collect();
        let lens = self.lens_with(plan.iter().map(|p| &p.entry.net))?;
        set_lens(&lens).map_err(DynError::Lens)?;
        let mut undo = Undo::default();
        self.write(&plan, &[], &mut undo)?;
        for p in &plan {
            self.index(p.entry.clone());
        }
        Ok(plan.len())
    }
}

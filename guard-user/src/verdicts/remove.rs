//! Entries leaving: one removed on request, the expired ones and old histories swept. Each
//! is one plan for the kernel layer; the index follows once the kernel has it.

use std::collections::HashSet;

use ipnet::IpNet;

use super::{DynError, DynamicTable, Entry, Kind, meta_key};
use crate::{
    kernel::verdict_maps::{Step, VerdictMaps, execute},
    model::clock::unix_now_ns,
    state::Change,
};

impl<M: VerdictMaps> DynamicTable<M> {
    /// Removes an entry of `kind`; the kernel forgets it at once.
    pub fn remove(&mut self, net: &IpNet, kind: Kind) -> Result<Entry, DynError> {
        match self.entries.get(net) {
            Some(e) if e.kind == kind => {}
            _ => return Err(DynError::NotFound { net: *net, kind }),
        }
        let (plan, regions) = self.removal_plan(&[*net])?;
        execute(&mut self.maps, &plan)?;
        self.regions = regions;
        let e = self.unindex(net).expect("checked above");
        self.journal.push(Change::Delete(*net));
        Ok(e)
    }

    /// Removes entries whose TTL has passed (the kernel already ignores them) and histories
    /// a window old. Returns what was removed.
    pub fn sweep(&mut self, now_mono: u64) -> Result<Vec<Entry>, DynError> {
        let due: Vec<IpNet> = self
            .expiry
            .range(..(now_mono + 1, IpNet::default()))
            .map(|(_, n)| *n)
            .collect();
        // A history is kept while its source is banned, and these bans are going.
        let going: HashSet<&IpNet> = due.iter().collect();
        let old = self.history.expired(unix_now_ns(), |n| {
            self.entries.contains_key(n) && !going.contains(n)
        });
        if due.is_empty() && old.is_empty() {
            return Ok(Vec::new());
        }
        let (mut plan, regions) = self.removal_plan(&due)?;
        plan.push(Step::DeleteHist(old.iter().map(meta_key).collect()));
        execute(&mut self.maps, &plan)?;
        self.regions = regions;
        let mut out = Vec::with_capacity(due.len());
        for net in due {
            out.extend(self.unindex(&net));
            self.journal.push(Change::Delete(net));
        }
        for net in old {
            self.history.remove(&net);
            self.journal.push(Change::ForgetHistory(net));
        }
        Ok(out)
    }
}

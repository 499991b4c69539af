//! The engine's side of the durable state: open at start, restore after a reboot or follow
//! the pins after a restart, and write every change of the verdict table. A change the
//! database refuses stays enforced (the kernel has it) and is kept to be written once the
//! database takes writes again.

use std::sync::{Mutex, MutexGuard};

use std::sync::atomic::Ordering::Relaxed;

use tracing::{error, info, warn};

use super::Engine;
use crate::{
    config::Config,
    model::clock::monotonic_ns,
    model::{Entry, Kind},
    state::{Change, Commit, Contents, OutboxRow, StateDb, StateError, Unsaved, changes_between},
    verdicts::{BULK_FROM, DynError, DynamicTable, Prepared},
};

/// The database, and what it has not taken yet.
#[derive(Default)]
pub(super) struct Durable {
    /// The database file, when there is durable state.
    path: Option<std::path::PathBuf>,
    /// Open unless a write failed (redb then wants it reopened).
    db: Option<StateDb>,
    unsaved: Unsaved,
    /// The last write error, logged once until it changes.
    failing: Option<String>,
    /// While writes fail, when the last one was tried: they are tried again once a second
    /// (the sweep), not on every call.
    tried: Option<std::time::Instant>,
    /// What the database held when opened, until the start has settled it.
    opened_with: Contents,
    /// The fleet outbox it held, until the fleet takes it.
    opened_outbox: Vec<OutboxRow>,
    /// The bans aggregates replaced, until the start has settled them.
    opened_superseded: crate::state::SupersededSet,
    /// A commit waits for the next durable one (`Commit::WithTheNext`).
    deferred: bool,
}

impl Durable {
    /// Opens `state_dir`'s database; none when `state_dir` is empty. A corrupt database is
    /// set aside and a new one started (`StateDb::open`); any other error stops the start,
    /// the file left as it was.
    pub(super) fn open(config: &Config) -> Result<Mutex<Durable>, StateError> {
        let mut d = Durable::default();
        if config.state_dir.as_os_str().is_empty() {
            return Ok(Mutex::new(d));
        }
        match StateDb::open(&config.state_dir) {
            Ok(opened) => {
                if let Some((aside, why)) = opened.set_aside {
                    error!(
                        "the state database could not be read ({why}); kept aside as {} and \
                         started anew from the pinned maps",
                        aside.display()
                    );
                }
                d.path = Some(opened.db.path().to_path_buf());
                d.db = Some(opened.db);
                d.opened_with = opened.contents;
                d.opened_outbox = opened.outbox;
                d.opened_superseded = opened.superseded;
            }
            Err(e) => return Err(e),
        }
        Ok(Mutex::new(d))
    }

    /// The open database, if any.
    pub(super) fn db(&self) -> Option<&StateDb> {
        self.db.as_ref()
    }

    /// The fleet outbox the database held (once).
    pub(super) fn take_outbox(&mut self) -> Vec<OutboxRow> {
        std::mem::take(&mut self.opened_outbox)
    }
}

impl Engine {
    /// The database, with the verdict table in hand: the lock order (verdicts, then durable)
    /// is in the signature, since the table is reachable only through its own lock.
    fn durable_under(&self, _verdicts: &DynamicTable) -> MutexGuard<'_, Durable> {
        self.durable.lock().expect("durable lock")
    }

    /// The database alone, for a moment: whoever calls this takes no other engine lock
    /// until the guard is dropped.
    pub(super) fn durable_alone(&self) -> MutexGuard<'_, Durable> {
        self.durable.lock().expect("durable lock")
    }

    /// After the maps are adopted or created: a reboot (no pinned bans) restores what the
    /// database kept; a restart makes the database follow the pins, which are authoritative.
    pub(super) fn settle_durable(&self, fresh_dynamic: bool) -> Result<(), super::EngineError> {
        // The engine's lock order (`super::locks`): the verdict table, then the database.
        let mut t = self.verdicts();
        let mut d = self.durable_under(&t);
        let (mut stored, histories) = std::mem::take(&mut d.opened_with);
        let superseded = std::mem::take(&mut d.opened_superseded);
        let Some(db) = &d.db else { return Ok(()) };
        if fresh_dynamic {
            // Kept by an older guard, or before the address became protected: not restored,
            // and so forgotten by the database below.
            let protected = self.protected();
            stored.retain(|s| match protected.overlapping(&s.net) {
                Some(p) if s.kind == Kind::Ban => {
                    warn!(ban = %s.net, "not restored: it covers {p}, which guard never bans");
                    false
                }
                _ => true,
            });
            let restored = t.restore(&stored, &histories, monotonic_ns())?;
            info!(
                restored,
                kept = stored.len(),
                histories = histories.len(),
                path = %db.path().display(),
                "restored bans and allows from the state database"
            );
        }
        // What the kernel holds now, the database holds too: entries expired meanwhile are
        // deleted, entries made while it could not be written (pins kept through a restart)
        // are added; only those are written.
        let (entries, kernel_histories) = t.snapshot(monotonic_ns());
        t.take_journal();
        let mut changes = changes_between((&stored, &histories), (&entries, &kernel_histories));
        // Members of aggregates no longer banned (expired meanwhile) are forgotten.
        t.set_superseded(superseded);
        let banned: std::collections::HashSet<_> = entries.iter().map(|e| e.net).collect();
        changes.extend(t.release_all_but(&banned));
        if !changes.is_empty() {
            match db.apply(&changes) {
                Ok(()) => info!(
                    written = changes.len(),
                    "the state database now matches the kernel"
                ),
                Err(e) => {
                    warn!(
                        "cannot write the state database: {}",
                        crate::error_chain(&e)
                    );
                    d.failing = Some(e.to_string());
                    d.unsaved.extend(changes);
                    self.published
                        .unsaved
                        .store(d.unsaved.len(), std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
        self.publish(&t);
        Ok(())
    }

    /// Changes written with the next transaction (the fleet's acknowledgements: losing
    /// them in a crash only publishes those verdicts again).
    pub(super) fn defer_changes(&self, changes: impl IntoIterator<Item = Change>) {
        let mut d = self.durable_alone();
        if d.path.is_some() {
            d.unsaved.extend(changes);
        }
    }

    /// Writes the table's changes since the last call and `queued` (fleet outbox rows),
    /// with any the database refused before, in one transaction. Called with the verdict
    /// table locked, so changes reach the database in the order they reached the kernel.
    pub(super) fn persist(&self, t: &mut DynamicTable, queued: Vec<Change>) -> bool {
        self.persist_with(t, queued, Commit::Durable)
    }

    /// As `persist`, committed as `commit` says.
    pub(super) fn persist_with(
        &self,
        t: &mut DynamicTable,
        queued: Vec<Change>,
        commit: Commit,
    ) -> bool {
        let mut d = self.durable_under(&*t);
        let mut changes = t.take_journal();
        changes.extend(queued);
        let Durable {
            path,
            db,
            unsaved,
            deferred,
            failing,
            tried,
            ..
        } = &mut *d;
        let Some(path) = path else { return true };
        unsaved.extend(changes);
        if unsaved.is_empty() && !(*deferred && commit == Commit::Durable) {
            return true;
        }
        if failing.is_some() {
            if tried.is_some_and(|t| t.elapsed() < RETRY) {
                self.published.unsaved.store(unsaved.len(), Relaxed);
                return false;
            }
            // Closed first: the open file holds the lock a reopen needs.
            *db = None;
        }
        *tried = Some(std::time::Instant::now());
        let written = match db {
            Some(open) => write_oldest_first(open, unsaved, commit),
            None => StateDb::reopen(path).and_then(|open| {
                let res = write_oldest_first(&open, unsaved, commit);
                *db = Some(open);
                res
            }),
        };
        self.settle_write(&mut d, written, commit)
    }

    /// Applies a prepared batch (the kernel, then `after_apply`: fleet rows, aggregation)
    /// and makes it durable as `persist` would, in one transaction; but while the kernel
    /// maps are written, another thread stages the batch's rows in the transaction, so a
    /// bulk call waits for the longer of the two rather than both. The transaction commits
    /// after the kernel took the batch and is dropped when it did not.
    pub(super) fn apply_durably(
        &self,
        t: &mut DynamicTable,
        kind: Kind,
        prepared: Prepared,
    ) -> (Result<Vec<Entry>, DynError>, bool) {
        let Prepared { batch, changes } = prepared;
        let apply = |t: &mut DynamicTable, batch| {
            let res = t.apply(batch);
            let queued = match &res {
                Ok(entries) => self.after_apply(t, kind, entries),
                Err(_) => Vec::new(),
            };
            (res, queued)
        };
        // Out of the lock meanwhile (`defer_changes` may add to `unsaved`): no other write
        // can start, they all hold the verdict table. A small batch is not worth a thread.
        let taken = {
            let mut d = self.durable_under(&*t);
            match d.failing.is_none() && changes.len() >= BULK_FROM {
                true => d.db.take().map(|db| (db, d.unsaved.take_all())),
                false => None,
            }
        };
        let Some((db, earlier)) = taken else {
            let (res, queued) = apply(t, batch);
            let mut rows = if res.is_ok() { changes } else { Vec::new() };
            rows.extend(t.take_journal());
            rows.extend(queued);
            return (res, self.persist(t, rows));
        };
        let (res, queued, staged) = std::thread::scope(|s| {
            let staging = s.spawn(|| db.stage(&[&earlier, &changes], Commit::Durable));
            let (res, queued) = apply(t, batch);
            (res, queued, staging.join().expect("staging thread"))
        });
        let mut more = t.take_journal();
        more.extend(queued);
        let committed = match (&res, staged) {
            (Ok(_), Ok(staged)) => Some(db.finish(staged, &more)),
            // Dropped: the transaction aborts.
            _ => None,
        };
        let mut d = self.durable_under(&*t);
        let meanwhile = std::mem::replace(&mut d.unsaved, Unsaved::from(earlier));
        d.db = Some(db);
        if let Some(Ok(())) = committed {
            let durable = self.settle_write(&mut d, Ok(()), Commit::Durable);
            d.unsaved.extend(meanwhile.into_changes());
            return (res, durable);
        }
        // Not staged, not committed, or the batch failed: written the usual way.
        if res.is_ok() {
            d.unsaved.extend(changes);
        }
        d.unsaved.extend(meanwhile.into_changes());
        drop(d);
        (res, self.persist(t, more))
    }

    /// After a write of `unsaved`: forgets them when it succeeded, says so loudly once when
    /// it did not (they are kept for the next write).
    fn settle_write(
        &self,
        d: &mut Durable,
        written: Result<(), crate::state::StateError>,
        commit: Commit,
    ) -> bool {
        let Durable {
            unsaved,
            failing,
            deferred,
            ..
        } = d;
        self.published.unsaved.store(unsaved.len(), Relaxed);
        match written {
            Ok(()) => {
                if failing.take().is_some() {
                    info!("the state database takes writes again; nothing was lost");
                }
                // Not just cleared: a 100,000-entry call would keep its capacity for good.
                *unsaved = Unsaved::default();
                *deferred = commit == Commit::WithTheNext;
                true
            }
            Err(e) => {
                let why = crate::error_chain(&e);
                if failing.as_deref() != Some(why.as_str()) {
                    error!(
                        "cannot write the state database ({why}): bans and allows are enforced \
                         but not durable; retrying every second"
                    );
                    *failing = Some(why);
                }
                false
            }
        }
    }
}

/// While writes fail, how often they are tried again.
const RETRY: std::time::Duration = std::time::Duration::from_secs(1);
/// Changes per transaction when catching up: the oldest go first, so a disk with a little
/// room takes some of them rather than none.
const CHUNK: usize = 4096;

/// Writes `unsaved` oldest first, a transaction per `CHUNK`, forgetting each chunk written;
/// stops at the first failure with the rest still waiting.
fn write_oldest_first(
    db: &StateDb,
    unsaved: &mut Unsaved,
    commit: Commit,
) -> Result<(), StateError> {
    if unsaved.is_empty() {
        // A commit the deferred ones wait for.
        return db.apply_with(&[], commit);
    }
    while !unsaved.is_empty() {
        let chunk = unsaved.oldest(CHUNK);
        db.apply_with(&chunk, commit)?;
        unsaved.written(chunk.len());
    }
    Ok(())
}

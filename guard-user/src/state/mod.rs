//! Durable verdicts: bans, allows and escalation histories in an embedded database under
//! `state_dir`, so they survive a reboot (bpffs is memory). redb: pure Rust (no C toolchain
//! for a package built on any machine), one file, ACID transactions whose commit is on disk
//! when it returns (copy-on-write pages and a double-buffered commit slot: a power cut
//! leaves the last committed state). Each API call is one transaction (a bulk call commits
//! once).
//!
//! The pins stay authoritative while they exist (a daemon restart): the database follows
//! them. After a reboot (no pins) the database refills the kernel before guardd attaches.

mod diff;
mod error;
mod open;
mod record;
mod shape;
mod unsaved;

use std::path::{Path, PathBuf};

use ipnet::IpNet;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

pub use diff::changes_between;
pub use error::StateError;
pub use record::key_of;
pub use record::{Stored, StoredHistory};
pub use unsaved::Unsaved;

use crate::model::{Kind, clock::unix_now_ns};

/// Entries by prefix (`record::key_of`): a binary `Stored`.
const ENTRIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("entries.v2");
/// Escalation histories by prefix: a binary `StoredHistory`.
const HISTORY: TableDefinition<&[u8], &[u8]> = TableDefinition::new("history.v2");
/// What this host made for the fleet and NATS has not acknowledged yet, by kind and prefix
/// (`outbox_key`): sequence u64 | the fleet record (empty: a removal).
const OUTBOX: TableDefinition<&[u8], &[u8]> = TableDefinition::new("outbox.v1");
/// Bans an aggregate prefix ban replaced, by member prefix (`record::key_of`): the
/// aggregate's key | the member's binary `Stored`.
const SUPERSEDED: TableDefinition<&[u8], &[u8]> = TableDefinition::new("superseded.v1");
/// The first format (text keys, JSON records), moved into the tables above when found.
const LEGACY_ENTRIES: TableDefinition<&str, &[u8]> = TableDefinition::new("entries");
const LEGACY_HISTORY: TableDefinition<&str, &[u8]> = TableDefinition::new("history");

/// The database file under `state_dir`.
pub const FILE: &str = "guard.redb";

/// redb's page cache, at most: the kernel maps are the hot copy, the database is read once
/// at start and otherwise written (redb's default, 1 GiB, grew guardd by 190 MiB with
/// 100,000 bans).
const CACHE_BYTES: usize = 4 << 20;

fn open_file(path: &Path) -> Result<Database, redb::DatabaseError> {
    redb::Builder::new()
        .set_cache_size(CACHE_BYTES)
        .create(path)
}

/// Bans replaced by the ban of a prefix holding them, by that prefix (`verdicts`' superseded
/// members, as kept here).
pub type SupersededSet = std::collections::BTreeMap<IpNet, Vec<Stored>>;

/// One change to the durable state.
#[derive(Debug, Clone)]
pub enum Change {
    Put(Stored),
    Delete(IpNet),
    History(StoredHistory),
    ForgetHistory(IpNet),
    /// A verdict to publish to the fleet (it replaces any older one of its kind and prefix).
    Queue(OutboxRow),
    /// Published: forgotten unless a newer one was queued meanwhile.
    Sent {
        kind: Kind,
        net: IpNet,
        seq: u64,
    },
    /// A ban the aggregate `by` replaced, kept to come back if `by` is removed.
    Supersede {
        by: IpNet,
        member: Stored,
    },
    /// A superseded member given back or forgotten.
    Release(IpNet),
}

/// A transaction begun by `StateDb::stage`, not committed yet.
pub struct Staged(redb::WriteTransaction);

/// When a transaction reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// Before `apply` returns (one fdatasync).
    Durable,
    /// With the next durable commit: for a burst of changes that can be fetched again (the
    /// fleet's catch-up), made durable at its end.
    WithTheNext,
}

/// A verdict made here waiting for the fleet; `record` is the fleet's encoding of it,
/// none for a removal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub kind: Kind,
    pub net: IpNet,
    pub seq: u64,
    pub record: Option<Vec<u8>>,
}

fn outbox_key(kind: Kind, net: &IpNet) -> [u8; 19] {
    let mut k = [0; 19];
    // Allows 0 and bans 1 as they always were.
    k[0] = match kind {
        Kind::Allow => 0,
        Kind::Ban => 1,
        Kind::Vouch => 2,
    };
    k[1..].copy_from_slice(&key_of(net));
    k
}

pub struct StateDb {
    db: Database,
    path: PathBuf,
}

/// Every entry and history a database holds.
pub type Contents = (Vec<Stored>, Vec<StoredHistory>);

/// What opening found.
pub struct Opened {
    pub db: StateDb,
    /// What it holds (read to check it, kept so the start does not read it twice).
    pub contents: Contents,
    /// Verdicts made here that the fleet has not acknowledged.
    pub outbox: Vec<OutboxRow>,
    /// Bans replaced by aggregate prefix bans.
    pub superseded: SupersededSet,
    /// A database that could not be read, renamed aside (never deleted).
    pub set_aside: Option<(PathBuf, String)>,
}

impl StateDb {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the database file at `path` as it is (after a failed write redb wants it
    /// closed and opened again before it takes another).
    pub fn reopen(path: &Path) -> Result<StateDb, StateError> {
        let db = open_file(path).map_err(|e| StateError::Db {
            path: path.to_path_buf(),
            source: e.into(),
        })?;
        Ok(StateDb {
            db,
            path: path.to_path_buf(),
        })
    }

    fn err(&self) -> impl Fn(redb::Error) -> StateError + '_ {
        |source| StateError::Db {
            path: self.path.clone(),
            source,
        }
    }

    /// Applies `changes` in one transaction, on disk when this returns.
    pub fn apply(&self, changes: &[Change]) -> Result<(), StateError> {
        self.apply_with(changes, Commit::Durable)
    }

    /// Applies `changes` in one transaction, on disk when this returns unless `commit` is
    /// `Commit::WithTheNext` (then with the next durable one; a crash before it loses them).
    pub fn apply_with(&self, changes: &[Change], commit: Commit) -> Result<(), StateError> {
        let staged = self.stage(&[changes], commit)?;
        self.finish(staged, &[])
    }

    /// Begins a transaction holding `changes` (each slice in order), committed by `finish`
    /// with any rows that follow them. Nothing reaches the file before; dropped, it aborts.
    /// A bulk call stages its rows while its kernel writes run.
    pub fn stage(&self, changes: &[&[Change]], commit: Commit) -> Result<Staged, StateError> {
        let mut tx = self.db.begin_write().map_err(|e| self.err()(e.into()))?;
        if commit == Commit::WithTheNext {
            tx.set_durability(redb::Durability::None)
                .map_err(|e| self.err()(e.into()))?;
        }
        self.rows(&tx, changes)?;
        Ok(Staged(tx))
    }

    /// Writes `more` after the staged rows and commits.
    pub fn finish(&self, staged: Staged, more: &[Change]) -> Result<(), StateError> {
        self.rows(&staged.0, &[more])?;
        staged.0.commit().map_err(|e| self.err()(e.into()))
    }

    fn rows(&self, tx: &redb::WriteTransaction, changes: &[&[Change]]) -> Result<(), StateError> {
        if changes.iter().all(|c| c.is_empty()) {
            return Ok(());
        }
        let mut entries = tx.open_table(ENTRIES).map_err(|e| self.err()(e.into()))?;
        let mut history = tx.open_table(HISTORY).map_err(|e| self.err()(e.into()))?;
        let mut outbox = tx.open_table(OUTBOX).map_err(|e| self.err()(e.into()))?;
        let mut superseded = tx
            .open_table(SUPERSEDED)
            .map_err(|e| self.err()(e.into()))?;
        for c in changes.iter().copied().flatten() {
            match c {
                Change::Put(s) => entries.insert(key_of(&s.net).as_slice(), s.encode().as_slice()),
                Change::Delete(net) => entries.remove(key_of(net).as_slice()),
                Change::History(h) => {
                    history.insert(key_of(&h.net).as_slice(), h.encode().as_slice())
                }
                Change::ForgetHistory(net) => history.remove(key_of(net).as_slice()),
                Change::Queue(row) => {
                    let mut v = row.seq.to_le_bytes().to_vec();
                    v.extend_from_slice(row.record.as_deref().unwrap_or_default());
                    outbox.insert(outbox_key(row.kind, &row.net).as_slice(), v.as_slice())
                }
                Change::Sent { kind, net, seq } => {
                    let key = outbox_key(*kind, net);
                    let stored = outbox
                        .get(key.as_slice())
                        .map_err(|e| self.err()(e.into()))?
                        .map(|v| u64_le(v.value()));
                    match stored == Some(*seq) {
                        true => outbox.remove(key.as_slice()),
                        false => Ok(None),
                    }
                }
                Change::Supersede { by, member } => {
                    let mut v = key_of(by).to_vec();
                    v.extend_from_slice(&member.encode());
                    superseded.insert(key_of(&member.net).as_slice(), v.as_slice())
                }
                Change::Release(net) => superseded.remove(key_of(net).as_slice()),
            }
            .map_err(|e| self.err()(e.into()))?;
        }
        Ok(())
    }

    /// Calls `f` with every row of the table `def` (none when it does not exist yet); a row
    /// `f` refuses is a record that does not decode.
    fn each_row(
        &self,
        def: TableDefinition<&[u8], &[u8]>,
        f: &mut dyn FnMut(&[u8], &[u8]) -> Result<(), String>,
    ) -> Result<(), StateError> {
        let tx = self.db.begin_read().map_err(|e| self.err()(e.into()))?;
        let table = match tx.open_table(def) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
            Err(e) => return Err(self.err()(e.into())),
        };
        for row in table.iter().map_err(|e| self.err()(e.into()))? {
            let (k, v) = row.map_err(|e| self.err()(e.into()))?;
            f(k.value(), v.value()).map_err(|reason| StateError::Record {
                path: self.path.clone(),
                reason,
            })?;
        }
        Ok(())
    }

    /// Every entry and history.
    pub fn load(&self) -> Result<Contents, StateError> {
        let (mut entries, mut histories) = (Vec::new(), Vec::new());
        self.each_row(ENTRIES, &mut |k, v| Ok(entries.push(Stored::decode(k, v)?)))?;
        self.each_row(HISTORY, &mut |k, v| {
            Ok(histories.push(StoredHistory::decode(k, v)?))
        })?;
        Ok((entries, histories))
    }

    /// The verdicts waiting for the fleet, oldest first.
    pub fn outbox(&self) -> Result<Vec<OutboxRow>, StateError> {
        let mut rows = Vec::new();
        self.each_row(OUTBOX, &mut |k, v| {
            if k.len() != 19 || v.len() < 8 {
                return Err(format!("an outbox row of {} + {} bytes", k.len(), v.len()));
            }
            rows.push(OutboxRow {
                kind: match k[0] {
                    0 => Kind::Allow,
                    1 => Kind::Ban,
                    2 => Kind::Vouch,
                    n => return Err(format!("an outbox row of kind {n}")),
                },
                net: record::net_of(&k[1..])?,
                seq: u64_le(v),
                record: (v.len() > 8).then(|| v[8..].to_vec()),
            });
            Ok(())
        })?;
        rows.sort_by_key(|r| r.seq);
        Ok(rows)
    }

    /// The bans aggregate prefix bans replaced, by prefix.
    pub fn superseded(&self) -> Result<SupersededSet, StateError> {
        let mut set = SupersededSet::new();
        self.each_row(SUPERSEDED, &mut |k, v| {
            if v.len() < 18 {
                return Err(format!("a superseded row of {} bytes", v.len()));
            }
            let by = record::net_of(&v[..18])?;
            set.entry(by)
                .or_default()
                .push(Stored::decode(k, &v[18..])?);
            Ok(())
        })?;
        Ok(set)
    }

    /// Moves records of the first format (JSON under text keys) into the binary tables, in
    /// one transaction; nothing when there are none.
    fn migrate(&self) -> Result<(), StateError> {
        let legacy =
            |def: TableDefinition<&str, &[u8]>| -> Result<Option<Vec<Vec<u8>>>, StateError> {
                let tx = self.db.begin_read().map_err(|e| self.err()(e.into()))?;
                let table = match tx.open_table(def) {
                    Ok(t) => t,
                    Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                    Err(e) => return Err(self.err()(e.into())),
                };
                let mut out = Vec::new();
                for row in table.iter().map_err(|e| self.err()(e.into()))? {
                    let (_, v) = row.map_err(|e| self.err()(e.into()))?;
                    out.push(v.value().to_vec());
                }
                Ok(Some(out))
            };
        let (Some(entries), histories) = (legacy(LEGACY_ENTRIES)?, legacy(LEGACY_HISTORY)?) else {
            return Ok(());
        };
        let bad = |reason: String| StateError::Record {
            path: self.path.clone(),
            reason,
        };
        let mut put = Vec::new();
        for v in &entries {
            put.push(Stored::decode_json(v).map_err(bad)?);
        }
        let mut hist = Vec::new();
        for v in histories.iter().flatten() {
            hist.push(StoredHistory::decode_json(v).map_err(bad)?);
        }
        // One transaction: the records move, or nothing does.
        let tx = self.db.begin_write().map_err(|e| self.err()(e.into()))?;
        {
            let mut e = tx.open_table(ENTRIES).map_err(|e| self.err()(e.into()))?;
            let mut h = tx.open_table(HISTORY).map_err(|e| self.err()(e.into()))?;
            for s in &put {
                e.insert(key_of(&s.net).as_slice(), s.encode().as_slice())
                    .map_err(|e| self.err()(e.into()))?;
            }
            for s in &hist {
                h.insert(key_of(&s.net).as_slice(), s.encode().as_slice())
                    .map_err(|e| self.err()(e.into()))?;
            }
        }
        tx.delete_table(LEGACY_ENTRIES)
            .map_err(|e| self.err()(e.into()))?;
        tx.delete_table(LEGACY_HISTORY)
            .map_err(|e| self.err()(e.into()))?;
        tx.commit().map_err(|e| self.err()(e.into()))
    }
}

fn u64_le(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[..8].try_into().expect("8 bytes"))
}

fn unix_now_secs() -> u64 {
    unix_now_ns() / 1_000_000_000
}

#[cfg(test)]
mod tests;

//! A change of the verdict maps as data: the steps, in the order the kernel must see them,
//! and `execute`, which writes them all or none. Before each write it records what the
//! write replaces; when a step fails, the records are put back newest first, so a reader
//! sees the old state again (the kernel's own order holds in reverse: entries leave before
//! the regions and lengths that let the program find them).

use guard_common::dynamic::{BanHistory, DynEntry, DynKeyV4, DynLens, DynMeta, DynMetaKey};
use guard_common::{V6Key, lists::Bitmap512};

use super::{DynV4, DynV6, Hist, MapKind, Meta, Regions, VerdictMaps};
use crate::kernel::KernelError;

/// Elements to write into one map. `existing[i]` says whether `keys[i]` may hold a value
/// now (it is read first, to be put back); the writer knows from its index, and a bulk of
/// new entries costs no lookups.
pub struct Writes<M: MapKind> {
    pub keys: Vec<M::K>,
    pub values: Vec<M::V>,
    pub existing: Vec<bool>,
}

impl<M: MapKind> Writes<M> {
    pub fn with_capacity(n: usize) -> Self {
        Writes {
            keys: Vec::with_capacity(n),
            values: Vec::with_capacity(n),
            existing: Vec::with_capacity(n),
        }
    }

    pub fn push(&mut self, key: M::K, value: M::V, existing: bool) {
        self.keys.push(key);
        self.values.push(value);
        self.existing.push(existing);
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl<M: MapKind> Default for Writes<M> {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

/// One step of a plan.
pub enum Step {
    /// The prefix lengths the kernel probes: a superset before entries of a new length go
    /// in, the smaller set after the last entry of a length left.
    Lens(DynLens),
    /// Region bits: set before the entries they cover, cleared after those left. With what
    /// the elements hold now when the writer knows it (its shadow: no lookups), else None.
    Regions(Writes<Regions>, Option<Vec<Bitmap512>>),
    /// Histories and metadata: the kernel never reads them, so they go side by side,
    /// before the entries that make the kernel act.
    Side(Writes<Hist>, Writes<Meta>),
    V4(Writes<DynV4>),
    V6(Writes<DynV6>),
    DeleteV4(Vec<DynKeyV4>),
    DeleteV6(Vec<V6Key>),
    DeleteMeta(Vec<DynMetaKey>),
    DeleteHist(Vec<DynMetaKey>),
}

/// Steps in the order they are written.
#[derive(Default)]
pub struct Plan(pub Vec<Step>);

impl Plan {
    pub fn push(&mut self, step: Step) {
        let empty = match &step {
            Step::Lens(_) => false,
            Step::Regions(w, _) => w.is_empty(),
            Step::Side(h, m) => h.is_empty() && m.is_empty(),
            Step::V4(w) => w.is_empty(),
            Step::V6(w) => w.is_empty(),
            Step::DeleteV4(k) => k.is_empty(),
            Step::DeleteV6(k) => k.is_empty(),
            Step::DeleteMeta(k) | Step::DeleteHist(k) => k.is_empty(),
        };
        if !empty {
            self.0.push(step);
        }
    }
}

/// What a write replaced: the value before (None: absent).
enum Record {
    Lens(DynLens),
    /// Boxed, as the metadata below: records are kept per element written.
    Region(u32, Box<Bitmap512>),
    V4(DynKeyV4, Option<DynEntry>),
    V6(V6Key, Option<DynEntry>),
    /// Boxed: most records of a bulk call are new entries (None), and the metadata's
    /// 208 bytes inline would make every record that big.
    Meta(DynMetaKey, Option<Box<DynMeta>>),
    Hist(DynMetaKey, Option<BanHistory>),
}

/// Writes `plan` in order, all or nothing: when a step fails, what the earlier steps (and
/// the failing one) replaced is put back, and the error says whether that worked.
pub fn execute(maps: &mut impl VerdictMaps, plan: &Plan) -> Result<(), KernelError> {
    let mut undo = Vec::new();
    for step in &plan.0 {
        if let Err(error) = write(maps, step, &mut undo) {
            return Err(KernelError::undone(error, rollback(maps, undo)));
        }
    }
    Ok(())
}

fn write(
    maps: &mut impl VerdictMaps,
    step: &Step,
    undo: &mut Vec<Record>,
) -> Result<(), KernelError> {
    match step {
        Step::Lens(lens) => {
            undo.push(Record::Lens(maps.lens()));
            maps.set_lens(lens)
        }
        Step::Regions(w, known) => {
            for (i, k) in w.keys.iter().enumerate() {
                let before = match known {
                    Some(b) => b[i],
                    None => maps.get::<Regions>(k)?.unwrap_or(Bitmap512::ZERO),
                };
                undo.push(Record::Region(*k, Box::new(before)));
            }
            maps.put::<Regions>(&w.keys, &w.values)
        }
        Step::Side(h, m) => {
            record(maps, h, undo, Record::Hist)?;
            record(maps, m, undo, |k, v| Record::Meta(k, v.map(Box::new)))?;
            maps.put_two::<Hist, Meta>((&h.keys, &h.values), (&m.keys, &m.values))
        }
        Step::V4(w) => {
            record(maps, w, undo, Record::V4)?;
            maps.put::<DynV4>(&w.keys, &w.values)
        }
        Step::V6(w) => {
            record(maps, w, undo, Record::V6)?;
            maps.put::<DynV6>(&w.keys, &w.values)
        }
        Step::DeleteV4(keys) => delete::<DynV4>(maps, keys, undo, Record::V4),
        Step::DeleteV6(keys) => delete::<DynV6>(maps, keys, undo, Record::V6),
        Step::DeleteMeta(keys) => {
            delete::<Meta>(maps, keys, undo, |k, v| Record::Meta(k, v.map(Box::new)))
        }
        Step::DeleteHist(keys) => delete::<Hist>(maps, keys, undo, Record::Hist),
    }
}

/// Records what `w` replaces: a lookup for a key that may exist, nothing read for a new one.
fn record<M: MapKind>(
    maps: &impl VerdictMaps,
    w: &Writes<M>,
    undo: &mut Vec<Record>,
    rec: impl Fn(M::K, Option<M::V>) -> Record,
) -> Result<(), KernelError> {
    undo.reserve(w.len());
    for (k, &existing) in w.keys.iter().zip(&w.existing) {
        let before = match existing {
            true => maps.get::<M>(k)?,
            false => None,
        };
        undo.push(rec(*k, before));
    }
    Ok(())
}

fn delete<M: MapKind>(
    maps: &mut impl VerdictMaps,
    keys: &[M::K],
    undo: &mut Vec<Record>,
    rec: impl Fn(M::K, Option<M::V>) -> Record,
) -> Result<(), KernelError> {
    for k in keys {
        let before = maps.get::<M>(k)?;
        undo.push(rec(*k, before));
        maps.delete::<M>(k)?;
    }
    Ok(())
}

/// Puts every record back, newest first; returns the first failure (the rest are still
/// tried).
fn rollback(maps: &mut impl VerdictMaps, undo: Vec<Record>) -> Result<(), KernelError> {
    let mut first = Ok(());
    for r in undo.into_iter().rev() {
        let res = match r {
            Record::Lens(l) => maps.set_lens(&l),
            Record::Region(k, v) => maps.put::<Regions>(&[k], &[*v]),
            Record::V4(k, v) => put_back::<DynV4>(maps, k, v),
            Record::V6(k, v) => put_back::<DynV6>(maps, k, v),
            Record::Meta(k, v) => put_back::<Meta>(maps, k, v.map(|b| *b)),
            Record::Hist(k, v) => put_back::<Hist>(maps, k, v),
        };
        if first.is_ok() {
            first = res;
        }
    }
    first
}

fn put_back<M: MapKind>(
    maps: &mut impl VerdictMaps,
    key: M::K,
    value: Option<M::V>,
) -> Result<(), KernelError> {
    match value {
        Some(v) => maps.put::<M>(&[key], &[v]),
        None => maps.delete::<M>(&key),
    }
}

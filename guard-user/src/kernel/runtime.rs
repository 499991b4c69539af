//! `CONFIG`, the program's one runtime-config element, and its one writer. The datapath
//! (lists, rules, flags, refill timing) and the verdict maps (the prefix lengths of bans and
//! allows) each change their own fields through this cell; the element is written whole,
//! so the cell's lock, held only for that write, keeps one from undoing the other's.

use std::sync::Mutex;

use aya::maps::{Array, MapData};
use guard_common::{RuntimeConfig, map_names};

use super::KernelError;

pub struct RuntimeCell {
    /// The map and what it holds (written only here).
    inner: Mutex<(Array<MapData, RuntimeConfig>, RuntimeConfig)>,
}

impl RuntimeCell {
    pub fn new(map: Array<MapData, RuntimeConfig>, value: RuntimeConfig) -> RuntimeCell {
        RuntimeCell {
            inner: Mutex::new((map, value)),
        }
    }

    /// What the kernel holds.
    pub fn get(&self) -> RuntimeConfig {
        self.inner.lock().expect("CONFIG lock").1
    }

    /// Changes the fields `f` changes and writes the element; on a failed write the kernel
    /// and this cell keep the old value.
    pub fn update(&self, f: impl FnOnce(&mut RuntimeConfig)) -> Result<(), KernelError> {
        let mut inner = self.inner.lock().expect("CONFIG lock");
        let mut next = inner.1;
        f(&mut next);
        inner
            .0
            .set(0, next, 0)
            .map_err(KernelError::map(map_names::CONFIG))?;
        inner.1 = next;
        Ok(())
    }
}

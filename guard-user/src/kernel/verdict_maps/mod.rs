//! The verdict maps (`DYN_V4`, `DYN_V6`, `DYN_META`, `BAN_HIST`, `DYN_REGIONS`, and the
//! prefix lengths of bans and allows in `CONFIG`) behind one small trait, and the one way
//! they are changed: a `Plan` of ordered steps that `execute` writes all or nothing.
//!
//! The verdict table (`crate::verdicts`) is an index and a policy: it decides what to
//! write and in which order, and hands the plan here. `KernelVerdictMaps` is the kernel's
//! maps; `MemoryMaps` an in-memory stand-in, so that the policy, the plans and their
//! rollback are tested without root.

mod memory;
mod pinned;
mod plan;

use aya::Pod;
use guard_common::{
    V6Key,
    dynamic::{BanHistory, DynEntry, DynKeyV4, DynLens, DynMeta, DynMetaKey},
    lists::Bitmap512,
    map_names,
};

pub use memory::MemoryMaps;
pub(in crate::kernel) use pinned::NAMES;
pub use pinned::{BULK_FROM, KernelVerdictMaps};
pub use plan::{Plan, Step, Writes, execute};

use super::KernelError;

/// One of the verdict maps: its name and the types of its keys and values.
pub trait MapKind {
    type K: Pod + Sync + std::fmt::Debug;
    type V: Pod + Sync + PartialEq + std::fmt::Debug;
    const NAME: &'static str;
}

macro_rules! map_kind {
    ($(#[$doc:meta] $kind:ident: $k:ty => $v:ty, $name:ident;)*) => {$(
        #[$doc]
        pub enum $kind {}
        impl MapKind for $kind {
            type K = $k;
            type V = $v;
            const NAME: &'static str = map_names::$name;
        }
    )*};
}

map_kind! {
    /// `DYN_V4`: IPv4 bans and allows, by prefix.
    DynV4: DynKeyV4 => DynEntry, DYN_V4;
    /// `DYN_V6`: IPv6 bans and allows, by prefix.
    DynV6: V6Key => DynEntry, DYN_V6;
    /// `DYN_META`: what the kernel does not need of an entry (reason, creation, origin).
    Meta: DynMetaKey => DynMeta, DYN_META;
    /// `BAN_HIST`: each source's escalation history.
    Hist: DynMetaKey => BanHistory, BAN_HIST;
    /// `DYN_REGIONS`: the bitmap of regions holding an entry (an array: elements, not keys).
    Regions: u32 => Bitmap512, DYN_REGIONS;
}

/// A key and its value in the map `M`.
pub type Element<M> = (<M as MapKind>::K, <M as MapKind>::V);

/// What the verdict table needs of the maps. Writes go through `execute` only.
pub trait VerdictMaps {
    /// Writes `keys[i] -> values[i]` in order; on an error, some of them may be written.
    fn put<M: MapKind>(&mut self, keys: &[M::K], values: &[M::V]) -> Result<(), KernelError>;
    /// Two writes to maps the kernel never reads, in any order or side by side.
    fn put_two<A: MapKind, B: MapKind>(
        &mut self,
        a: (&[A::K], &[A::V]),
        b: (&[B::K], &[B::V]),
    ) -> Result<(), KernelError> {
        self.put::<A>(a.0, a.1)?;
        self.put::<B>(b.0, b.1)
    }
    /// Deletes `key` of a hash map; an absent key is not an error.
    fn delete<M: MapKind>(&mut self, key: &M::K) -> Result<(), KernelError>;
    fn get<M: MapKind>(&self, key: &M::K) -> Result<Option<M::V>, KernelError>;
    /// Every element of a hash map.
    fn all<M: MapKind>(&self) -> Result<Vec<Element<M>>, KernelError>;
    /// Elements the map holds at most.
    fn capacity<M: MapKind>(&self) -> Result<usize, KernelError>;
    /// The prefix lengths the kernel probes.
    fn lens(&self) -> DynLens;
    fn set_lens(&mut self, lens: &DynLens) -> Result<(), KernelError>;
}

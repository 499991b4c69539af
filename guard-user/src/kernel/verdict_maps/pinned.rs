//! The verdict maps of the loaded program (or of the pins, read-only, for guardctl).

use std::sync::Arc;

use aya::maps::MapData;
use guard_common::{dynamic::DynLens, map_names};

use super::{Element, MapKind, VerdictMaps};
use crate::kernel::{KernelError, batch, elem, pins::PinLayout, runtime::RuntimeCell};

/// Batches from this size write the two maps the kernel never reads side by side, on a
/// second thread (each insert is ~1 us of kernel time; a thread costs more than a small
/// batch saves).
pub const BULK_FROM: usize = 1024;

/// The maps, in the order `new` takes their handles; reading needs all but the last.
pub(in crate::kernel) const NAMES: [&str; 5] = [
    map_names::DYN_V4,
    map_names::DYN_V6,
    map_names::DYN_META,
    map_names::BAN_HIST,
    map_names::DYN_REGIONS,
];

pub struct KernelVerdictMaps {
    maps: Vec<(&'static str, MapData)>,
    /// `CONFIG`'s lengths; None when read from the pins (nothing is written then).
    runtime: Option<Arc<RuntimeCell>>,
}

impl KernelVerdictMaps {
    /// `maps`: the handles of `NAMES`, in order.
    pub(in crate::kernel) fn new(
        maps: [MapData; 5],
        runtime: Option<Arc<RuntimeCell>>,
    ) -> KernelVerdictMaps {
        KernelVerdictMaps {
            maps: NAMES.into_iter().zip(maps).collect(),
            runtime,
        }
    }

    /// The pinned bans-and-allows maps, to read when guardd is not running.
    pub fn open_pinned(pins: &PinLayout) -> Result<KernelVerdictMaps, KernelError> {
        let open = |name| MapData::from_pin(pins.map(name)).map_err(KernelError::map(name));
        // DYN_REGIONS is written only.
        let maps = NAMES[..4]
            .iter()
            .map(|&name| Ok((name, open(name)?)))
            .collect::<Result<_, KernelError>>()?;
        Ok(KernelVerdictMaps {
            maps,
            runtime: None,
        })
    }

    fn map<M: MapKind>(&self) -> Result<&MapData, KernelError> {
        self.maps
            .iter()
            .find(|(n, _)| *n == M::NAME)
            .map(|(_, d)| d)
            .ok_or(KernelError::MissingMap { name: M::NAME })
    }
}

impl VerdictMaps for KernelVerdictMaps {
    fn put<M: MapKind>(&mut self, keys: &[M::K], values: &[M::V]) -> Result<(), KernelError> {
        batch::update(self.map::<M>()?, keys, values).map_err(KernelError::map(M::NAME))
    }

    fn put_two<A: MapKind, B: MapKind>(
        &mut self,
        a: (&[A::K], &[A::V]),
        b: (&[B::K], &[B::V]),
    ) -> Result<(), KernelError> {
        let (ma, mb) = (self.map::<A>()?, self.map::<B>()?);
        let (ra, rb) = match a.0.len() >= BULK_FROM {
            true => std::thread::scope(|s| {
                let ra = s.spawn(|| batch::update(ma, a.0, a.1));
                let rb = batch::update(mb, b.0, b.1);
                (ra.join().expect("side-by-side writer"), rb)
            }),
            false => (batch::update(ma, a.0, a.1), batch::update(mb, b.0, b.1)),
        };
        ra.map_err(KernelError::map(A::NAME))?;
        rb.map_err(KernelError::map(B::NAME))
    }

    fn delete<M: MapKind>(&mut self, key: &M::K) -> Result<(), KernelError> {
        elem::delete(self.map::<M>()?, key)
            .map(|_| ())
            .map_err(KernelError::map(M::NAME))
    }

    fn get<M: MapKind>(&self, key: &M::K) -> Result<Option<M::V>, KernelError> {
        elem::lookup(self.map::<M>()?, key).map_err(KernelError::map(M::NAME))
    }

    fn all<M: MapKind>(&self) -> Result<Vec<Element<M>>, KernelError> {
        let map = self.map::<M>()?;
        let keys: Vec<M::K> = elem::keys(map).map_err(KernelError::map(M::NAME))?;
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            // A key deleted since the walk saw it is skipped.
            if let Some(v) = elem::lookup(map, &k).map_err(KernelError::map(M::NAME))? {
                out.push((k, v));
            }
        }
        Ok(out)
    }

    fn capacity<M: MapKind>(&self) -> Result<usize, KernelError> {
        let info = self.map::<M>()?.info().map_err(KernelError::map(M::NAME))?;
        Ok(info.max_entries() as usize)
    }

    fn lens(&self) -> DynLens {
        self.runtime
            .as_ref()
            .map_or(DynLens::EMPTY, |r| r.get().dyn_lens)
    }

    fn set_lens(&mut self, lens: &DynLens) -> Result<(), KernelError> {
        let runtime = self.runtime.as_ref().ok_or(KernelError::MissingMap {
            name: map_names::CONFIG,
        })?;
        runtime.update(|rc| {
            rc.dyn_lens = *lens;
            rc.dyn_any = lens.v4_count | lens.v6_count;
        })
    }
}

//! The loaded XDP program and its maps: loading (adopting pinned maps), writing the list
//! tables and the runtime config, reading the counters.

use std::collections::BTreeSet;

use aya::{
    Ebpf, EbpfError, EbpfLoader,
    maps::{Array, HashMap, Map, MapData, MapError, PerCpuArray},
    programs::{ProgramError, Xdp},
};
use guard_common::{
    PROGRAM_NAME, RuntimeConfig, V6Key,
    lists::{Bitmap512, MAX_V6_LENS, V6Len},
    map_names,
};

use crate::{model::Counters, pins::PinLayout, tables::Tables};

#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error("cannot load the XDP object: {0}")]
    Load(#[source] EbpfError),
    #[error("the XDP object has no map {name}")]
    MissingMap { name: &'static str },
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: MapError,
    },
    #[error("program {PROGRAM_NAME}: {0}")]
    Program(#[source] ProgramError),
    #[error("the XDP object has no program {PROGRAM_NAME}")]
    MissingProgram,
}

/// The program and typed handles on its maps.
pub struct Datapath {
    ebpf: Ebpf,
    config: Array<MapData, RuntimeConfig>,
    stats: PerCpuArray<MapData, u64>,
    v4_dir24: Array<MapData, Bitmap512>,
    v4_tbl8: HashMap<MapData, u32, Bitmap512>,
    v6_top24: Array<MapData, Bitmap512>,
    v6_prefix: HashMap<MapData, V6Key, u32>,
    runtime: RuntimeConfig,
    /// What was last written to the list maps, to write only what changed.
    written: Option<Tables>,
}

impl Datapath {
    /// Loads `object` (see `crate::objects`) and its `guard` program. With `pins`, the maps are
    /// pinned there, or adopted with their contents when a previous daemon pinned them.
    pub fn load(object: &[u8], pins: Option<&PinLayout>) -> Result<Datapath, DatapathError> {
        let mut loader = EbpfLoader::new();
        if let Some(pins) = pins {
            for name in map_names::ALL {
                loader.map_pin_path(name, pins.map(name));
            }
        }
        let mut ebpf = loader.load(object).map_err(DatapathError::Load)?;
        let prog: &mut Xdp = ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or(DatapathError::MissingProgram)?
            .try_into()
            .map_err(DatapathError::Program)?;
        prog.load().map_err(DatapathError::Program)?;
        let config = typed(&mut ebpf, map_names::CONFIG)?;
        let runtime = match Array::get(&config, &0, 0) {
            Ok(rc) => rc,
            Err(source) => {
                return Err(DatapathError::Map {
                    name: map_names::CONFIG,
                    source,
                });
            }
        };
        Ok(Datapath {
            config,
            stats: typed(&mut ebpf, map_names::STATS)?,
            v4_dir24: typed(&mut ebpf, map_names::V4_DIR24)?,
            v4_tbl8: typed(&mut ebpf, map_names::V4_TBL8)?,
            v6_top24: typed(&mut ebpf, map_names::V6_TOP24)?,
            v6_prefix: typed(&mut ebpf, map_names::V6_PREFIX)?,
            ebpf,
            runtime,
            written: None,
        })
    }

    pub fn program_mut(&mut self) -> &mut Xdp {
        self.ebpf
            .program_mut(PROGRAM_NAME)
            .and_then(|p| p.try_into().ok())
            .expect("checked in load")
    }

    /// The kernel's id of the loaded program.
    pub fn program_id(&self) -> Option<u32> {
        let prog: &Xdp = self.ebpf.program(PROGRAM_NAME)?.try_into().ok()?;
        prog.info().ok().map(|i| i.id())
    }

    /// Sets the flag bits of the runtime config (`guard_common::lists::flags`).
    pub fn set_flags(&mut self, flags: u32) -> Result<(), DatapathError> {
        self.runtime.flags = flags;
        self.write_runtime()
    }

    fn write_runtime(&mut self) -> Result<(), DatapathError> {
        let rc = self.runtime;
        self.config
            .set(0, rc, 0)
            .map_err(|source| DatapathError::Map {
                name: map_names::CONFIG,
                source,
            })
    }

    /// Writes new list tables. The order keeps every address answered by either the old or
    /// the new lists throughout: new entries first, then the direct tables that point at
    /// them, then the removal of entries nothing points at any more.
    pub fn write_tables(&mut self, tables: Tables) -> Result<(), DatapathError> {
        let err = |name| move |source| DatapathError::Map { name, source };
        for (&k, v) in &tables.v4_tbl8 {
            self.v4_tbl8
                .insert(k, v, 0)
                .map_err(err(map_names::V4_TBL8))?;
        }
        for (k, &v) in &tables.v6_prefix {
            self.v6_prefix
                .insert(k, v, 0)
                .map_err(err(map_names::V6_PREFIX))?;
        }
        // While both generations are in the hash, probe the lengths of both.
        let old_lens = self.current_v6_lens();
        let union: BTreeSet<u32> = old_lens.iter().chain(&tables.v6_lens).copied().collect();
        if union.len() <= MAX_V6_LENS {
            self.set_v6_lens(&union.iter().rev().copied().collect::<Vec<_>>())?;
        }
        let previous = self.written.take();
        write_array(
            &mut self.v4_dir24,
            &tables.v4_dir24,
            previous.as_ref().map(|t| &t.v4_dir24),
        )
        .map_err(err(map_names::V4_DIR24))?;
        write_array(
            &mut self.v6_top24,
            &tables.v6_top24,
            previous.as_ref().map(|t| &t.v6_top24),
        )
        .map_err(err(map_names::V6_TOP24))?;
        self.set_v6_lens(&tables.v6_lens)?;
        let stale4: Vec<u32> = self
            .v4_tbl8
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !tables.v4_tbl8.contains_key(k))
            .collect();
        for k in stale4 {
            self.v4_tbl8.remove(&k).map_err(err(map_names::V4_TBL8))?;
        }
        let stale6: Vec<V6Key> = self
            .v6_prefix
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !tables.v6_prefix.contains_key(k))
            .collect();
        for k in stale6 {
            self.v6_prefix
                .remove(&k)
                .map_err(err(map_names::V6_PREFIX))?;
        }
        self.written = Some(tables);
        Ok(())
    }

    fn current_v6_lens(&self) -> Vec<u32> {
        let rc = &self.runtime;
        rc.v6_lens[..rc.v6_len_count as usize]
            .iter()
            .map(|l| l.prefix_len)
            .collect()
    }

    fn set_v6_lens(&mut self, lens: &[u32]) -> Result<(), DatapathError> {
        let mut masks = [V6Len::EMPTY; MAX_V6_LENS];
        for (slot, &len) in masks.iter_mut().zip(lens) {
            *slot = V6Len::new(len);
        }
        self.runtime.v6_lens = masks;
        self.runtime.v6_len_count = lens.len().min(MAX_V6_LENS) as u32;
        self.write_runtime()
    }

    pub fn counters(&self) -> Result<Counters, DatapathError> {
        read_counters(&self.stats).map_err(|source| DatapathError::Map {
            name: map_names::STATS,
            source,
        })
    }
}

fn typed<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, DatapathError>
where
    T: TryFrom<Map, Error = MapError>,
{
    let map = ebpf
        .take_map(name)
        .ok_or(DatapathError::MissingMap { name })?;
    T::try_from(map).map_err(|source| DatapathError::Map { name, source })
}

/// Writes the elements of `want` that differ from `previous` (all of them without one).
fn write_array(
    map: &mut Array<MapData, Bitmap512>,
    want: &[Bitmap512],
    previous: Option<&Vec<Bitmap512>>,
) -> Result<(), MapError> {
    for (i, v) in want.iter().enumerate() {
        if previous.is_some_and(|p| p[i] == *v) {
            continue;
        }
        map.set(i as u32, v, 0)?;
    }
    Ok(())
}

/// Sums the per-CPU packet counters.
pub fn read_counters(stats: &PerCpuArray<MapData, u64>) -> Result<Counters, MapError> {
    let mut counters = Counters::default();
    for index in 0..guard_common::stats::STATS_LEN {
        let total: u64 = stats.get(&index, 0)?.iter().sum();
        counters.add(index, total);
    }
    Ok(counters)
}

/// Reads the counters from the pinned map, for when the daemon is not running.
pub fn read_pinned_counters(pins: &PinLayout) -> Result<Counters, DatapathError> {
    let err = |source| DatapathError::Map {
        name: map_names::STATS,
        source,
    };
    let data = MapData::from_pin(pins.map(map_names::STATS)).map_err(err)?;
    let map = Map::from_map_data(data).map_err(err)?;
    let stats = PerCpuArray::<MapData, u64>::try_from(map).map_err(err)?;
    read_counters(&stats).map_err(err)
}

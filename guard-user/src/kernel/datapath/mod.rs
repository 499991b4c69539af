//! The loaded XDP program and its maps: loading (adopting pinned maps), writing the list
//! tables and the runtime config, reading the counters.

mod writes;

use std::{io::Read, sync::Arc};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, Map, MapData, MapError, MapInfo, PerCpuArray},
    programs::{ProgramError, Xdp},
};
use guard_common::{
    PROGRAM_NAME, RuntimeConfig, V6Key,
    lists::Bitmap512,
    map_names,
    rules::{MAX_RULES, RuleSpec, rule_stat_limited, rule_stat_overload, rule_stat_passed},
};
use tracing::warn;

use crate::{
    kernel::{
        KernelError,
        buckets::{Buckets, Heartbeat},
        known::KnownTable,
        pins::PinLayout,
        runtime::RuntimeCell,
        verdict_maps::{self, KernelVerdictMaps},
        verifier::{self, ProgramLoad, Refused},
    },
    lists::tables::Tables,
    model::{report::Counters, rules::CompiledRule},
};

/// Map sizes fixed at load.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Rate-rule buckets in all rules.
    pub buckets: u32,
    /// Entries in each bans-and-allows map.
    pub dynamic: u32,
    /// Escalation histories (`BAN_HIST`): only bans have one.
    pub histories: u32,
    /// Slots of the verified-sources table (`[known] slots`).
    pub known_slots: u32,
}

const DYN_MAPS: [&str; 3] = [map_names::DYN_V4, map_names::DYN_V6, map_names::DYN_META];

/// What a reload writes (see `Datapath::apply`).
pub struct Change<'a> {
    pub tables: Tables,
    pub rules: &'a [CompiledRule],
    /// `guard_common::runtime::flags`.
    pub flags: u32,
    pub refill_ticks: u32,
    pub stale_after: std::time::Duration,
    /// `[known] verified_for`.
    pub verified_for: std::time::Duration,
}

/// The program and typed handles on its maps.
pub struct Datapath {
    pub(in crate::kernel) ebpf: Ebpf,
    /// What this load of the program cost the verifier.
    program: ProgramLoad,
    /// `CONFIG`, shared with the verdict maps (each writes its own fields).
    runtime: Arc<RuntimeCell>,
    stats: PerCpuArray<MapData, u64>,
    v4_dir24: Array<MapData, Bitmap512>,
    v4_tbl8: HashMap<MapData, u32, Bitmap512>,
    v6_top24: Array<MapData, Bitmap512>,
    v6_prefix: HashMap<MapData, V6Key, u32>,
    v6_root: Array<MapData, u32>,
    v6_nodes: Array<MapData, guard_common::lists::V6Node>,
    /// Where the nodes of the IPv6 trie in force start in `V6_NODES` (None: not known yet,
    /// after adopting pins).
    v6_base: Option<u32>,
    rules: Array<MapData, RuleSpec>,
    rule_ports: Array<MapData, Bitmap512>,
    rule_stats: PerCpuArray<MapData, u64>,
    buckets: Arc<Buckets>,
    heartbeat: Arc<Heartbeat>,
    known: Arc<KnownTable>,
    /// True when `BUCKETS` was created by this load (its buckets start empty).
    pub fresh_buckets: bool,
    /// True when the bans-and-allows maps were created by this load (none were pinned).
    pub fresh_dynamic: bool,
    dynamic: Option<KernelVerdictMaps>,
    dyn_capacity: u32,
    /// The bucket-index key (in `CONFIG`, fixed for the maps' life).
    key: [u64; 2],
    /// What was last written to the list maps, to write only what changed.
    written: Option<Tables>,
}

impl Datapath {
    /// Loads `object` (see `crate::objects`) and its `guard` program with `buckets` rate-rule
    /// buckets in all. With `pins`, the maps are pinned there, or adopted with their contents
    /// when a previous daemon pinned them (a `BUCKETS` of another size is replaced).
    pub fn load(
        object: &[u8],
        pins: Option<&PinLayout>,
        sizes: Sizes,
    ) -> Result<Datapath, KernelError> {
        let buckets = sizes.buckets;
        let mut loader = EbpfLoader::new();
        loader.verifier_log_level(verifier::log_level());
        loader.map_max_entries(map_names::BUCKETS, buckets);
        loader.map_max_entries(map_names::LIMIT_SEEN, buckets);
        loader.map_max_entries(map_names::KNOWN, sizes.known_slots);
        for name in DYN_MAPS {
            loader.map_max_entries(name, sizes.dynamic);
        }
        loader.map_max_entries(map_names::BAN_HIST, sizes.histories);
        let mut fresh_buckets = true;
        // No pinned bans: a first start, or the host rebooted (bpffs is memory).
        let fresh_dynamic = pins.is_none_or(|p| !p.map(map_names::DYN_V4).exists());
        // New list maps hold the empty tables: the first write skips those ~98,000 elements.
        let fresh_lists = pins.is_none_or(|p| {
            [map_names::V4_DIR24, map_names::V6_TOP24]
                .iter()
                .all(|m| !p.map(m).exists())
        });
        if let Some(pins) = pins {
            let path = pins.map(map_names::BUCKETS);
            if let Ok(info) = MapInfo::from_pin(&path) {
                if info.max_entries() == buckets {
                    fresh_buckets = false;
                } else {
                    warn!(
                        old = info.max_entries(),
                        new = buckets,
                        "the rules' bucket layout changed: buckets start anew"
                    );
                    let _ = std::fs::remove_file(&path);
                }
            }
            // Report stamps follow the buckets' layout (they only hold seconds).
            let seen = pins.map(map_names::LIMIT_SEEN);
            if MapInfo::from_pin(&seen).is_ok_and(|i| i.max_entries() != buckets) {
                let _ = std::fs::remove_file(&seen);
            }
            // A heartbeat of another layout is replaced (it only holds refill times), and
            // a table of verified sources of another size (they prove themselves again).
            for (name, size) in [
                (map_names::HEARTBEAT, guard_common::tokens::HEARTBEAT_WORDS),
                (map_names::KNOWN, sizes.known_slots),
            ] {
                let path = pins.map(name);
                if MapInfo::from_pin(&path).is_ok_and(|i| i.max_entries() != size) {
                    let _ = std::fs::remove_file(&path);
                }
            }
            for name in map_names::ALL {
                loader.map_pin_path(name, pins.map(name));
            }
            // Bans are never dropped to resize: a pinned map keeps its capacity.
            if let Ok(info) = MapInfo::from_pin(pins.map(map_names::DYN_V4))
                && info.max_entries() != sizes.dynamic
            {
                warn!(
                    pinned = info.max_entries(),
                    wanted = sizes.dynamic,
                    "the ban maps keep their pinned capacity; a new [bans] max_entries takes full effect after `guardctl detach`"
                );
            }
        }
        let mut ebpf = loader.load(object).map_err(KernelError::Load)?;
        let prog: &mut Xdp = ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or(KernelError::MissingProgram)?
            .try_into()
            .map_err(KernelError::Program)?;
        let started = std::time::Instant::now();
        prog.load().map_err(|e| match e {
            ProgramError::LoadError {
                io_error,
                verifier_log,
            } => KernelError::Refused(Box::new(Refused::new(&io_error, &verifier_log.to_string()))),
            e => KernelError::Program(e),
        })?;
        let took = started.elapsed();
        let verified = prog
            .info()
            .ok()
            .and_then(|i| i.verified_instruction_count());
        let program = ProgramLoad::new(verified, took);
        let config: Array<MapData, RuntimeConfig> = typed(&mut ebpf, map_names::CONFIG)?;
        let mut runtime = match Array::get(&config, &0, 0) {
            Ok(rc) => rc,
            Err(source) => {
                return Err(KernelError::Map {
                    name: map_names::CONFIG,
                    source,
                });
            }
        };
        // A CONFIG pinned by a version without `dyn_any` (the word was reserved, zero).
        runtime.dyn_any = runtime.dyn_lens.v4_count | runtime.dyn_lens.v6_count;
        if runtime.key == [0, 0] {
            // First start on these pins: a new secret key. An adopted CONFIG keeps its key,
            // so sources keep their buckets across restarts.
            runtime.key = random_key()?;
        }
        let mmap_err = |name| move |source| KernelError::Mmap { name, source };
        let buckets = Buckets::new(take_data(&mut ebpf, map_names::BUCKETS)?, buckets)
            .map_err(mmap_err(map_names::BUCKETS))?;
        let heartbeat = Heartbeat::new(take_data(&mut ebpf, map_names::HEARTBEAT)?)
            .map_err(mmap_err(map_names::HEARTBEAT))?;
        let known = KnownTable::new(take_data(&mut ebpf, map_names::KNOWN)?, sizes.known_slots)
            .map_err(mmap_err(map_names::KNOWN))?;
        runtime.known_mask = sizes.known_slots - 1;
        let dyn_capacity = match ebpf.map(map_names::DYN_V4) {
            Some(Map::HashMap(d)) => d.info().map_or(0, |i| i.max_entries()),
            _ => 0,
        };
        let mut dp = Datapath {
            program,
            dyn_capacity,
            rules: typed(&mut ebpf, map_names::RULES)?,
            rule_ports: typed(&mut ebpf, map_names::RULE_PORTS)?,
            rule_stats: typed(&mut ebpf, map_names::RULE_STATS)?,
            buckets: Arc::new(buckets),
            heartbeat: Arc::new(heartbeat),
            known: Arc::new(known),
            fresh_buckets,
            fresh_dynamic,
            dynamic: None,
            key: runtime.key,
            runtime: Arc::new(RuntimeCell::new(config, runtime)),
            stats: typed(&mut ebpf, map_names::STATS)?,
            v4_dir24: typed(&mut ebpf, map_names::V4_DIR24)?,
            v4_tbl8: typed(&mut ebpf, map_names::V4_TBL8)?,
            v6_top24: typed(&mut ebpf, map_names::V6_TOP24)?,
            v6_prefix: typed(&mut ebpf, map_names::V6_PREFIX)?,
            v6_root: typed(&mut ebpf, map_names::V6_ROOT)?,
            v6_nodes: typed(&mut ebpf, map_names::V6_NODES)?,
            v6_base: fresh_lists.then_some(0),
            ebpf,
            written: fresh_lists.then(Tables::empty),
        };
        // The key of a first start, and `dyn_any` of an older version's CONFIG, go in.
        dp.runtime.update(|_| {})?;
        let mut maps = Vec::with_capacity(verdict_maps::NAMES.len());
        for name in verdict_maps::NAMES {
            maps.push(take_data(&mut dp.ebpf, name)?);
        }
        let maps = maps.try_into().expect("one handle per name");
        dp.dynamic = Some(KernelVerdictMaps::new(maps, Some(dp.runtime.clone())));
        Ok(dp)
    }

    /// What loading the program cost the kernel's verifier.
    pub fn program_load(&self) -> &ProgramLoad {
        &self.program
    }

    /// Entries each bans-and-allows map holds (its pinned capacity when adopted).
    pub fn dyn_capacity(&self) -> u32 {
        self.dyn_capacity
    }

    /// The sampled drop events ring buffer, for the reader task (once).
    pub fn take_drop_events(&mut self) -> Option<aya::maps::RingBuf<MapData>> {
        let map = self.ebpf.take_map(map_names::DROP_EVENTS)?;
        aya::maps::RingBuf::try_from(map).ok()
    }

    /// The `ban_after` reports ring buffer, for the reader task (once).
    pub fn take_limit_reports(&mut self) -> Option<aya::maps::RingBuf<MapData>> {
        let map = self.ebpf.take_map(map_names::LIMIT_REPORTS)?;
        aya::maps::RingBuf::try_from(map).ok()
    }

    /// The bans-and-allows maps, for a `DynamicTable` (once).
    pub fn take_dynamic(&mut self) -> Option<KernelVerdictMaps> {
        self.dynamic.take()
    }

    pub fn buckets(&self) -> Arc<Buckets> {
        self.buckets.clone()
    }

    pub fn heartbeat(&self) -> Arc<Heartbeat> {
        self.heartbeat.clone()
    }

    pub fn known(&self) -> Arc<KnownTable> {
        self.known.clone()
    }

    /// The bucket-index key. Never log or export it: it would let a sender aim at buckets.
    pub fn key(&self) -> [u64; 2] {
        self.key
    }

    /// Per rule: packets passed, limited, and dropped for its empty budget, summed over
    /// CPUs.
    pub fn rule_counters(&self, rules: usize) -> Result<Vec<[u64; 3]>, KernelError> {
        let err = |source| KernelError::Map {
            name: map_names::RULE_STATS,
            source,
        };
        let sum = |slot: u32| -> Result<u64, KernelError> {
            Ok(self
                .rule_stats
                .get(&slot, 0)
                .map_err(err)?
                .iter()
                .copied()
                .fold(0u64, u64::wrapping_add))
        };
        (0..rules.min(MAX_RULES) as u32)
            .map(|i| {
                Ok([
                    sum(rule_stat_passed(i))?,
                    sum(rule_stat_limited(i))?,
                    sum(rule_stat_overload(i))?,
                ])
            })
            .collect()
    }

    pub fn program_mut(&mut self) -> &mut Xdp {
        self.ebpf
            .program_mut(PROGRAM_NAME)
            .and_then(|p| p.try_into().ok())
            .expect("checked in load")
    }

    pub fn counters(&self) -> Result<Counters, KernelError> {
        read_counters(&self.stats).map_err(|source| KernelError::Map {
            name: map_names::STATS,
            source,
        })
    }
}

/// A map's handle, whatever its type.
fn take_data(ebpf: &mut Ebpf, name: &'static str) -> Result<MapData, KernelError> {
    match ebpf.take_map(name) {
        Some(Map::HashMap(d) | Map::Array(d)) => Ok(d),
        Some(_) => Err(KernelError::Map {
            name,
            source: MapError::InvalidName { name: name.into() },
        }),
        None => Err(KernelError::MissingMap { name }),
    }
}

fn random_key() -> Result<[u64; 2], KernelError> {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(KernelError::Random)?;
    let (lo, hi) = b.split_at(8);
    Ok([
        u64::from_ne_bytes(lo.try_into().expect("8 bytes")),
        u64::from_ne_bytes(hi.try_into().expect("8 bytes")),
    ])
}

/// A map of the object taken out as its typed handle.
pub(in crate::kernel) fn typed<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, KernelError>
where
    T: TryFrom<Map, Error = MapError>,
{
    let map = ebpf
        .take_map(name)
        .ok_or(KernelError::MissingMap { name })?;
    T::try_from(map).map_err(|source| KernelError::Map { name, source })
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
pub fn read_pinned_counters(pins: &PinLayout) -> Result<Counters, KernelError> {
    let err = |source| KernelError::Map {
        name: map_names::STATS,
        source,
    };
    let data = MapData::from_pin(pins.map(map_names::STATS)).map_err(err)?;
    let map = Map::from_map_data(data).map_err(err)?;
    let stats = PerCpuArray::<MapData, u64>::try_from(map).map_err(err)?;
    read_counters(&stats).map_err(err)
}

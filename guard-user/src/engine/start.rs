//! Loading the datapath (adopting pins) and applying the first configuration.

use std::sync::{Arc, Mutex};
use tracing::info;

use ipnet::IpNet;

use super::{Engine, EngineError, Kernel, MAX_ALLOWS, MAX_VOUCHES, Published};
use crate::{
    config::Config,
    kernel::{
        datapath::{Datapath, Sizes},
        objects,
        pins::PinLayout,
    },
    lists::{self, tables::Tables},
    model::{clock::monotonic_ns, report::ListCounts},
    protect::host::Protection,
    rate::{
        refill::{Refill, Refiller, refill_params, ticks_per_period},
        rules::RuleSet,
    },
    verdicts::DynamicTable,
};

/// The allow and deny lists, parsed.
#[derive(Debug, Clone, Default)]
pub struct Lists {
    pub allow: Vec<IpNet>,
    pub deny: Vec<IpNet>,
}

impl Lists {
    /// Reads the files the config names, each whole or not at all.
    pub fn load(config: &Config) -> Result<Lists, EngineError> {
        let load =
            |which, paths| lists::load(paths).map_err(|source| EngineError::List { which, source });
        Ok(Lists {
            allow: load("allow", &config.lists.allow)?,
            deny: load("deny", &config.lists.deny)?,
        })
    }

    /// Everything applying them with `config` refuses, found before the kernel is touched:
    /// lists that do not fit the tables, a deny entry over a protected address. What the
    /// checks built is what gets applied (`Engine::start`, `apply_lists`).
    pub fn check(self, config: &Config) -> Result<Checked, EngineError> {
        let tables = Tables::build(&self.allow, &self.deny)?;
        let protection = super::apply::protection(config, &self, &tables)?;
        Ok(Checked {
            allow: self.allow,
            tables,
            protection,
        })
    }
}

/// Lists that passed `Lists::check` for a configuration: the kernel's tables built from
/// them, the allow entries (a ban inside one is refused), the protected addresses.
pub struct Checked {
    pub(super) allow: Vec<IpNet>,
    pub(super) tables: Tables,
    pub(super) protection: Protection,
}

/// Who refills the buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refilling {
    /// The refill thread, on `refill_period`.
    Thread,
    /// Nobody (fixtures): buckets start full and the kernel's accrual is all they earn.
    None,
}

impl Engine {
    /// Loads the program with every map pinned under `pins` (adopting what an earlier guardd
    /// pinned: counters, buckets, bans, the key) or private without, and applies `config`
    /// and the `lists` checked for it. Nothing is attached.
    pub fn start(
        config: &Config,
        lists: Checked,
        pins: Option<&PinLayout>,
        refilling: Refilling,
    ) -> Result<Engine, EngineError> {
        let Checked {
            allow,
            tables,
            protection,
        } = lists;
        let rules = RuleSet::compile(&config.rules);
        let sizes = Sizes {
            buckets: rules.total_buckets(),
            dynamic: config.bans.max_entries + (MAX_ALLOWS + MAX_VOUCHES) as u32,
            histories: config.bans.max_entries + MAX_ALLOWS as u32,
            known_slots: config.known.slots,
        };
        // The state database is read while the verifier checks the program (most of a
        // start's time), not after.
        info!("loading guard's XDP program (the kernel's verifier checks it)");
        let (durable, datapath) = std::thread::scope(|s| {
            let durable = s.spawn(|| super::durable::Durable::open(config));
            let datapath = Datapath::load(objects::guard(), pins, sizes);
            (
                durable.join().expect("opening the state database"),
                datapath,
            )
        });
        let durable = durable.map_err(|e| EngineError::State(Box::new(e)))?;
        let mut datapath = datapath?;
        let ticks = ticks_per_period(config.refill_period, config.refill_batches_per_second);
        let work = first_refill(&datapath, &rules, ticks);
        let fresh_dynamic = datapath.fresh_dynamic;
        let (refiller, unattended) = match refilling {
            Refilling::Thread => (
                Some(
                    Refiller::start(
                        work,
                        datapath.buckets(),
                        datapath.heartbeat(),
                        config.refill_period,
                    )
                    .map_err(EngineError::Refill)?,
                ),
                None,
            ),
            Refilling::None => (None, Some(work)),
        };
        // Bans and allows pinned by an earlier guardd are adopted (expired ones dropped).
        let maps = datapath
            .take_dynamic()
            .expect("a fresh datapath has its bans-and-allows maps");
        let shape = super::shape::ShapeState::new(
            Some(datapath.take_shape()?),
            shape_rows(&durable.lock().expect("durable lock")),
        );
        // Nothing of `config` is in force yet: `commit` below writes it, as a reload would.
        let kernel = Kernel {
            rules: RuleSet::compile(&[]),
            lists: ListCounts::default(),
            allow_nets: std::sync::Arc::new(Vec::new()),
            config: config.clone(),
            refiller,
            datapath,
            protection: Protection::default(),
        };
        let mut table = DynamicTable::new(maps, kernel.max_bans(), MAX_ALLOWS, monotonic_ns())?;
        table.max_vouches = MAX_VOUCHES;
        table.set_node(config.node_name());
        let queued = durable.lock().expect("durable lock").take_outbox();
        // Coalesced per kind and prefix: room for every entry and as many removals.
        let outbox_capacity = 2 * (config.bans.max_entries as usize + MAX_ALLOWS + MAX_VOUCHES);
        let fleet = crate::fleet::Fleet::new(config, queued, outbox_capacity).map(Arc::new);
        let engine = Engine {
            program: kernel.datapath.program_load().clone(),
            fleet,
            buckets: kernel.datapath.buckets(),
            heartbeat: kernel.datapath.heartbeat(),
            refill_stats: kernel.refiller.as_ref().map(|r| r.stats.clone()),
            key: kernel.datapath.key(),
            published: Published::default(),
            started: std::time::Instant::now(),
            durable,
            auto: super::auto::Auto::default(),
            verdicts: Mutex::new(table),
            kernel: Mutex::new(kernel),
            shape,
        };
        engine.commit(
            config,
            tables,
            allow,
            protection,
            super::apply::Check::First,
        )?;
        engine.settle_durable(fresh_dynamic)?;
        if let Some(mut work) = unattended {
            // Nobody refills: the buckets are full and their slices stamped as of now, when
            // the engine is ready, so what they accrue counts from here (a slow start, as
            // under qemu, would otherwise have earned tokens already).
            work.fill_all(&engine.buckets, &engine.heartbeat, monotonic_ns());
            engine.heartbeat.beat(monotonic_ns());
        }
        engine.publish(&engine.verdicts());
        Ok(engine)
    }
}

/// The refill's starting point. New buckets start full now, recorded for every slice, so a
/// restart resumes the rotation from here. Adopted buckets are refilled from where the
/// previous daemon left each slice (pinned in HEARTBEAT), so tokens keep accruing across a
/// restart; the burst caps what a long absence adds.
fn first_refill(datapath: &Datapath, rules: &RuleSet, ticks: u32) -> Refill {
    let now = monotonic_ns();
    let heartbeat = datapath.heartbeat();
    let beat = match heartbeat.last() {
        0 => now,
        beat => beat.min(now),
    };
    let last = match (datapath.fresh_buckets, heartbeat.slices(ticks)) {
        (true, _) => vec![now; ticks as usize],
        // A slice no daemon has refilled yet (time 0) is the oldest: it goes first in the
        // rotation and earns up to its burst. Counting it as refilled at the last heartbeat
        // starved it when every daemon lived less than one period (found by restart_netns).
        (false, Some(slices)) => slices.into_iter().map(|t| t.min(now)).collect(),
        (false, None) => vec![beat; ticks as usize],
    };
    let mut work = Refill::new(refill_params(rules), last);
    if datapath.fresh_buckets {
        work.fill_all(&datapath.buckets(), &heartbeat, now);
    } else {
        // The kernel reads each slice's time with this slicing (`ticks` may have changed).
        work.save_slices(&heartbeat);
    }
    work
}

/// The rules' shapes the state database kept (none when it cannot be read: the baselines
/// warm up again, the verdicts are unaffected).
fn shape_rows(d: &super::durable::Durable) -> Vec<(String, Vec<u8>)> {
    match d.db().map(|db| db.shape_rows()) {
        Some(Ok(rows)) => rows,
        Some(Err(e)) => {
            tracing::warn!(
                "cannot read the shape baselines: {}; they warm up again",
                crate::error_chain(&e)
            );
            Vec::new()
        }
        None => Vec::new(),
    }
}

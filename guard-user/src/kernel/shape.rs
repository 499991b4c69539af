//! The attack shape's maps (`guard_common::shape`): the daemon flips the window in force,
//! reads and clears the one that ended, and sets the engaged budgets' bits. The kernel only
//! adds to the sketches and counts; nothing else in guardd touches these maps.

use aya::maps::{Array, MapData, PerCpuArray, PerCpuValues};
use guard_common::{
    map_names,
    rules::MAX_RULES,
    shape::{STATE_ENGAGED, STATE_WINDOW, Sketch, WINDOW_OFF, slot},
};

use super::{
    KernelError,
    datapath::{Datapath, typed},
};

pub struct ShapeMaps {
    sketch: Array<MapData, Sketch>,
    packets: PerCpuArray<MapData, u64>,
    state: Array<MapData, u64>,
    /// The window in force (0 or 1); None before `begin`.
    window: Option<u32>,
    /// Possible CPUs: the per-CPU counters' width.
    cpus: usize,
}

/// What rule `i` matched in a window that ended.
pub struct Reading {
    pub packets: u64,
    pub sketch: Box<Sketch>,
}

impl Datapath {
    /// The shape maps, for the engine's shape state (once). The kernel skips the sketches
    /// until `ShapeMaps::begin`.
    pub fn take_shape(&mut self) -> Result<ShapeMaps, KernelError> {
        let mut maps = ShapeMaps {
            sketch: typed(&mut self.ebpf, map_names::SHAPE_SKETCH)?,
            packets: typed(&mut self.ebpf, map_names::SHAPE_PACKETS)?,
            state: typed(&mut self.ebpf, map_names::SHAPE_STATE)?,
            window: None,
            cpus: aya::util::nr_cpus().map_err(|(_, e)| KernelError::Cpus(e))?,
        };
        maps.write_state(STATE_WINDOW, WINDOW_OFF)?;
        Ok(maps)
    }
}

impl ShapeMaps {
    /// Clears both windows of every rule and starts window 0.
    pub fn begin(&mut self) -> Result<(), KernelError> {
        for rule in 0..MAX_RULES as u32 {
            self.clear(slot(rule, 0))?;
            self.clear(slot(rule, 1))?;
        }
        self.write_state(STATE_WINDOW, 0)?;
        self.window = Some(0);
        Ok(())
    }

    /// Ends the window in force: the other one (cleared) starts. The one that ended, for
    /// `take` once packets being judged meanwhile are done with it.
    pub fn flip(&mut self) -> Result<Option<u32>, KernelError> {
        let Some(ended) = self.window else {
            return Ok(None);
        };
        self.write_state(STATE_WINDOW, (ended ^ 1) as u64)?;
        self.window = Some(ended ^ 1);
        Ok(Some(ended))
    }

    /// The first `rules` rules' readings of window `window`, which is cleared for its next
    /// turn (every rule's slot: one a reload removed must not hand its packets to one a
    /// later reload adds).
    pub fn take(&mut self, window: u32, rules: usize) -> Result<Vec<Reading>, KernelError> {
        let mut out = Vec::with_capacity(rules);
        for rule in 0..MAX_RULES as u32 {
            let at = slot(rule, window);
            if rule as usize >= rules {
                self.clear(at)?;
                continue;
            }
            let packets = self
                .packets
                .get(&at, 0)
                .map_err(KernelError::map(map_names::SHAPE_PACKETS))?
                .iter()
                .fold(0u64, |a, &b| a.wrapping_add(b));
            let sketch = self
                .sketch
                .get(&at, 0)
                .map_err(KernelError::map(map_names::SHAPE_SKETCH))?;
            out.push(Reading {
                packets,
                sketch: Box::new(sketch),
            });
            self.clear(at)?;
        }
        Ok(out)
    }

    /// Rule i's budget is enforced while bit i is set (rules with `budget_mode =
    /// "under_attack"`; the others ignore it).
    pub fn set_engaged(&mut self, bits: u64) -> Result<(), KernelError> {
        self.write_state(STATE_ENGAGED, bits)
    }

    fn clear(&mut self, at: u32) -> Result<(), KernelError> {
        self.sketch
            .set(at, Sketch::EMPTY, 0)
            .map_err(KernelError::map(map_names::SHAPE_SKETCH))?;
        let zeros = PerCpuValues::try_from(vec![0u64; self.cpus]).map_err(KernelError::Cpus)?;
        self.packets
            .set(at, zeros, 0)
            .map_err(KernelError::map(map_names::SHAPE_PACKETS))
    }

    fn write_state(&mut self, word: u32, value: u64) -> Result<(), KernelError> {
        self.state
            .set(word, value, 0)
            .map_err(KernelError::map(map_names::SHAPE_STATE))
    }
}

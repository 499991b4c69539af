//! The engine's side of the attack shape: the sketch maps (`kernel::shape`), the rules'
//! shapes (`crate::shape`), their rows in the state database, and the engaged budgets. The
//! `shape` lock is taken alone, or before `durable` or `kernel` for a moment.

use std::sync::{Mutex, MutexGuard};

use tracing::{info, warn};

use super::{Engine, EngineError};
use crate::{
    kernel::shape::ShapeMaps,
    shape::{Class, RuleInput, RuleShape, Shapes, hll},
};

pub(super) struct ShapeState {
    maps: Option<ShapeMaps>,
    shapes: Shapes,
    /// The rules' names when the window in force began: a window a reload changed them in
    /// is not classified (its slots may hold another rule's packets).
    names: Vec<String>,
    /// The window that ended, until it is read.
    ended: Option<u32>,
    /// The window's length (`crate::shape::window`, read once).
    window: std::time::Duration,
}

impl ShapeState {
    pub(super) fn new(maps: Option<ShapeMaps>, rows: Vec<(String, Vec<u8>)>) -> Mutex<ShapeState> {
        let (shapes, bad) = Shapes::restore(rows);
        for b in bad {
            warn!("the state database's shape of {b}: that rule's baseline starts anew");
        }
        Mutex::new(ShapeState {
            maps,
            shapes,
            names: Vec::new(),
            ended: None,
            window: crate::shape::window().unwrap_or(crate::shape::WINDOW),
        })
    }
}

/// `GET /v1/shape`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ShapeReport {
    pub window_secs: f64,
    /// Windows closed since guardd started.
    pub windows: u64,
    pub rules: Vec<RuleShape>,
}

impl Engine {
    fn shape_state(&self) -> MutexGuard<'_, ShapeState> {
        self.shape.lock().expect("engine shape lock")
    }

    /// The rules in force, as the shape sees them.
    fn shape_inputs(&self) -> Vec<(String, Option<crate::config::BudgetMode>)> {
        let k = self.kernel();
        k.config
            .rules
            .iter()
            .map(|r| {
                (
                    r.name.as_str().to_string(),
                    r.budget().map(|_| r.budget_mode),
                )
            })
            .collect()
    }

    /// How long a window lasts.
    pub fn shape_window(&self) -> std::time::Duration {
        self.shape_state().window
    }

    /// Starts measuring: both windows cleared, the first begins; the budgets engaged as the
    /// shapes restored from the state database say.
    pub fn shape_begin(&self) -> Result<(), EngineError> {
        self.shape_engage()?;
        let inputs = self.shape_inputs();
        let mut s = self.shape_state();
        let Some(maps) = s.maps.as_mut() else {
            return Ok(());
        };
        maps.begin()?;
        s.names = inputs.into_iter().map(|(n, _)| n).collect();
        Ok(())
    }

    /// Writes the engaged budgets' bits for the rules in force (after a reload).
    pub(super) fn shape_engage(&self) -> Result<(), EngineError> {
        let inputs = self.shape_inputs();
        let mut s = self.shape_state();
        let bits = s.shapes.engaged_bits(&as_inputs(&inputs));
        if let Some(maps) = s.maps.as_mut() {
            maps.set_engaged(bits)?;
        }
        Ok(())
    }

    /// Ends the window in force; `shape_close` reads it a moment later.
    pub fn shape_flip(&self) -> Result<(), EngineError> {
        let names: Vec<String> = self.shape_inputs().into_iter().map(|(n, _)| n).collect();
        let mut s = self.shape_state();
        let Some(maps) = s.maps.as_mut() else {
            return Ok(());
        };
        s.ended = maps.flip()?;
        // The window that ended is judged under the names it began with.
        let began = std::mem::replace(&mut s.names, names);
        if began != s.names {
            s.ended = s.ended.map(|w| w | RELOADED);
        }
        Ok(())
    }

    /// Reads the window that ended, classifies every rule, engages or releases budgets, and
    /// keeps the shapes in the state database.
    pub fn shape_close(&self) -> Result<(), EngineError> {
        let inputs = self.shape_inputs();
        let rules = as_inputs(&inputs);
        let mut s = self.shape_state();
        let (Some(ended), Some(maps)) = (s.ended.take(), s.maps.as_mut()) else {
            return Ok(());
        };
        let readings = maps.take(ended & 1, rules.len())?;
        if ended & RELOADED != 0 {
            info!("the rules changed during this shape window: it is not classified");
            return Ok(());
        }
        let figures: Vec<(u64, f64)> = readings
            .iter()
            .map(|r| (r.packets, hll::estimate(&r.sketch.registers)))
            .collect();
        let closed = s.shapes.close(&rules, &figures);
        let bits = s.shapes.engaged_bits(&rules);
        if let Some(maps) = s.maps.as_mut() {
            maps.set_engaged(bits)?;
        }
        drop(s);
        for t in &closed.transitions {
            let w = &t.window;
            let engaged = rules
                .iter()
                .find(|r| r.name == t.rule)
                .is_some_and(|r| r.budget == Some(crate::config::BudgetMode::UnderAttack));
            let what = match (t.to, engaged) {
                (Class::Distributed, true) => "its endpoint budget is engaged",
                (_, true) if t.from == Class::Distributed => "its endpoint budget is released",
                _ => "",
            };
            warn!(
                rule = %t.rule,
                from = t.from.label(),
                to = t.to.label(),
                packets = w.packets,
                sources = w.sources.round() as u64,
                packets_per_source = format!("{:.2}", w.packets_per_source),
                "the rule's traffic shape changed{}{what}",
                if what.is_empty() { "" } else { ": " }
            );
        }
        let d = self.durable_alone();
        if let Some(db) = d.db()
            && let Err(e) = db.save_shape(&closed.rows)
        {
            warn!(
                "cannot keep the shape baselines in the state database: {}",
                crate::error_chain(&e)
            );
        }
        Ok(())
    }

    /// Every rule's shape now.
    pub fn shape(&self) -> ShapeReport {
        let inputs = self.shape_inputs();
        let s = self.shape_state();
        ShapeReport {
            window_secs: s.window.as_secs_f64(),
            windows: s.shapes.windows,
            rules: s.shapes.report(&as_inputs(&inputs)),
        }
    }
}

/// Marks an ended window whose rules changed before it was read.
const RELOADED: u32 = 1 << 31;

fn as_inputs(v: &[(String, Option<crate::config::BudgetMode>)]) -> Vec<RuleInput<'_>> {
    v.iter()
        .map(|(name, budget)| RuleInput {
            name,
            budget: *budget,
        })
        .collect()
}

//! Attack shape (docs/SHAPE.md): per rule and window, packets N and distinct sources D
//! (estimated from the kernel's sketch, `hll`), against a baseline the daemon keeps
//! (`baseline`), give a class (`classify`); a budget with `budget_mode = "under_attack"`
//! is engaged while its rule is `distributed`. The engine owns one `Shapes`; this module
//! decides, the kernel layer reads and writes the maps.

pub mod baseline;
pub mod classify;
pub mod hll;

use std::{collections::BTreeMap, time::Duration};

use serde::Serialize;

pub use baseline::Baseline;
pub use classify::{Class, Classifier};

use crate::config::BudgetMode;

/// The window a sketch covers.
pub const WINDOW: Duration = Duration::from_secs(10);
/// Shortens the window, and with it the baseline's hour and day, which are counted in
/// windows: for tests that compress a day (docs/SHAPE.md). Not a config key.
pub const WINDOW_ENV: &str = "GUARD_SHAPE_WINDOW";

/// The window in force: `WINDOW`, or `GUARD_SHAPE_WINDOW` (1 s to 10 s).
pub fn window() -> Result<Duration, String> {
    let Ok(text) = std::env::var(WINDOW_ENV) else {
        return Ok(WINDOW);
    };
    match humantime::parse_duration(&text) {
        Ok(d) if (Duration::from_secs(1)..=WINDOW).contains(&d) => Ok(d),
        _ => Err(format!(
            "{WINDOW_ENV}={text:?}: must be a duration from 1s to 10s"
        )),
    }
}

/// What the shape needs of a rule in force.
pub struct RuleInput<'a> {
    pub name: &'a str,
    /// None without an endpoint budget.
    pub budget: Option<BudgetMode>,
}

/// One window's figures.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct Window {
    pub packets: u64,
    /// Estimated distinct sources (at the rule's prefix).
    pub sources: f64,
    pub packets_per_source: f64,
    /// The window's class taken alone; none while the baseline warms up.
    pub class: Option<Class>,
}

#[derive(Debug, Default, Clone)]
struct Tracked {
    base: Baseline,
    classifier: Classifier,
    last: Option<Window>,
}

/// A change of a rule's class, for the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub rule: String,
    pub from: Class,
    pub to: Class,
    pub window: Window,
}

/// What closing a window decided.
pub struct Closed {
    pub transitions: Vec<Transition>,
    /// State database rows (rule name, bytes) of the rules whose state changed.
    pub rows: Vec<(String, Vec<u8>)>,
}

/// Every rule's shape, by name (a reload that keeps a rule's name keeps its baseline).
#[derive(Debug, Default)]
pub struct Shapes {
    rules: BTreeMap<String, Tracked>,
    /// Windows closed since guardd started.
    pub windows: u64,
}

impl Shapes {
    /// From the state database's rows; a row that does not decode starts its rule anew (the
    /// reason returned for the log).
    pub fn restore(rows: Vec<(String, Vec<u8>)>) -> (Shapes, Vec<String>) {
        let mut shapes = Shapes::default();
        let mut bad = Vec::new();
        for (name, bytes) in rows {
            let decoded = (bytes.len() >= 25)
                .then_some(())
                .ok_or_else(|| format!("a row of {} bytes", bytes.len()))
                .and_then(|()| {
                    Ok(Tracked {
                        classifier: Classifier::decode(&bytes[..25])?,
                        base: Baseline::decode(&bytes[25..])?,
                        last: None,
                    })
                });
            match decoded {
                Ok(t) => drop(shapes.rules.insert(name, t)),
                Err(e) => bad.push(format!("rule {name:?}: {e}")),
            }
        }
        (shapes, bad)
    }

    /// A window closed: `readings[i]` is rule i's packets and estimated sources.
    pub fn close(&mut self, rules: &[RuleInput], readings: &[(u64, f64)]) -> Closed {
        self.windows += 1;
        let mut closed = Closed {
            transitions: Vec::new(),
            rows: Vec::new(),
        };
        self.rules
            .retain(|name, _| rules.iter().any(|r| r.name == name));
        for (rule, &(packets, sources)) in rules.iter().zip(readings) {
            let t = self.rules.entry(rule.name.to_string()).or_default();
            let n = packets as f64;
            let raw = classify::raw(n, sources, &t.base, t.classifier.level);
            let from = t.classifier.class;
            let to = t.classifier.step(raw, sources);
            if raw.is_none_or(|c| matches!(c, Class::Normal | Class::Growth)) {
                t.base.learn(n, sources);
            }
            let window = Window {
                packets,
                sources,
                packets_per_source: if sources >= 1.0 { n / sources } else { 0.0 },
                class: raw,
            };
            t.last = Some(window);
            if from != to {
                closed.transitions.push(Transition {
                    rule: rule.name.to_string(),
                    from,
                    to,
                    window,
                });
            }
            let mut row = t.classifier.encode().to_vec();
            row.extend_from_slice(&t.base.encode());
            closed.rows.push((rule.name.to_string(), row));
        }
        closed
    }

    /// Bit i set: rule i's budget is enforced now (`distributed` under `under_attack`).
    pub fn engaged_bits(&self, rules: &[RuleInput]) -> u64 {
        rules.iter().enumerate().fold(0, |bits, (i, r)| {
            let on = r.budget == Some(BudgetMode::UnderAttack)
                && self
                    .rules
                    .get(r.name)
                    .is_some_and(|t| t.classifier.class == Class::Distributed);
            bits | (on as u64) << i
        })
    }

    /// Every rule's figures now.
    pub fn report(&self, rules: &[RuleInput]) -> Vec<RuleShape> {
        rules
            .iter()
            .map(|r| {
                let t = self.rules.get(r.name).cloned().unwrap_or_default();
                let figure = |f: &baseline::Figure| FigureView {
                    mean: f.mean,
                    high: f.high(),
                };
                RuleShape {
                    rule: r.name.to_string(),
                    class: t.classifier.class,
                    window: t.last,
                    baseline: BaselineView {
                        windows: t.base.windows,
                        warming_up: t.base.warming_up(),
                        packets: figure(&t.base.packets),
                        sources: figure(&t.base.sources),
                        packets_per_source: figure(&t.base.per_source),
                    },
                    budget_mode: r.budget,
                    budget_engaged: r.budget.map(|m| {
                        m == BudgetMode::Always || t.classifier.class == Class::Distributed
                    }),
                    engagements: t.classifier.engagements,
                }
            })
            .collect()
    }
}

/// A rule's shape as `GET /v1/shape` shows it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct RuleShape {
    pub rule: String,
    /// The class in force (with the way in and out of `distributed`).
    pub class: Class,
    /// The last window closed; none before the first.
    pub window: Option<Window>,
    pub baseline: BaselineView,
    /// None without an endpoint budget.
    pub budget_mode: Option<BudgetMode>,
    pub budget_engaged: Option<bool>,
    /// Times the rule's shape turned `distributed`.
    pub engagements: u64,
}

#[derive(Debug, Clone, Copy, Serialize, serde::Deserialize)]
pub struct FigureView {
    /// The mean of the last hour's calm windows.
    pub mean: f64,
    /// The 95th percentile of the last day's calm windows.
    pub high: f64,
}

#[derive(Debug, Clone, Copy, Serialize, serde::Deserialize)]
pub struct BaselineView {
    /// Calm windows learned.
    pub windows: u64,
    pub warming_up: bool,
    pub packets: FigureView,
    pub sources: FigureView,
    pub packets_per_source: FigureView,
}

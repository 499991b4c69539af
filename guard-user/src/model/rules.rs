//! A compiled rate rule: what the kernel layer writes into `RULES` and `RULE_PORTS`, and
//! what the refiller and penalties read (compiled from the config by `rate::rules`).

use guard_common::{lists::Bitmap512, rules::RuleSpec};

/// One rule as the kernel and the refiller see it.
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledRule {
    pub name: String,
    pub spec: RuleSpec,
    /// The rule's 128-element slice of `RULE_PORTS` (all zero without ports).
    pub ports: Vec<Bitmap512>,
    /// Refill: units per second and the bucket size in units.
    pub rate_units: u64,
    pub burst_units: u64,
    /// The endpoint budget's refill (its bucket is `spec.budget_bucket`), if the rule has one.
    pub budget: Option<BudgetRefill>,
}

/// An endpoint budget's rate and size, in units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetRefill {
    pub rate_units: u64,
    pub burst_units: u64,
}

impl CompiledRule {
    pub fn buckets(&self) -> u32 {
        self.spec.bucket_mask + 1
    }
}

//! Checks of the endpoint budgets and the table of known sources.

use super::{BudgetMode, Config, Rule, limits};

impl Config {
    /// `total_rate` and `total_burst` go together, within the rate bounds; the budget holds a
    /// refill tick's worth (it is refilled on every tick, not accrued in between).
    pub(super) fn validate_budget(&self, i: usize, rule: &Rule) -> Result<(), (String, String)> {
        let key = |field: &str| format!("rules[{i}].{field}");
        match (rule.total_rate, rule.total_burst) {
            (None, None) => {
                if rule.budget_mode != BudgetMode::Always {
                    return Err((
                        key("budget_mode"),
                        "needs total_rate and total_burst".into(),
                    ));
                }
                return Ok(());
            }
            (Some(_), None) => {
                return Err((key("total_burst"), "total_rate needs total_burst".into()));
            }
            (None, Some(_)) => {
                return Err((key("total_rate"), "total_burst needs total_rate".into()));
            }
            (Some(_), Some(_)) => {}
        }
        let (rate, burst) = rule.budget().expect("both set");
        if !(rate.is_finite() && (limits::MIN_RATE..=limits::MAX_RATE).contains(&rate)) {
            return Err((
                key("total_rate"),
                format!(
                    "must be between {} and {} tokens/s",
                    limits::MIN_RATE,
                    limits::MAX_RATE
                ),
            ));
        }
        let tick = rate / self.refill_batches_per_second as f64;
        if !(1..=limits::MAX_BURST).contains(&burst) || (burst as f64) < tick {
            return Err((
                key("total_burst"),
                format!(
                    "must be between {} (what one refill tick adds: total_rate / refill_batches_per_second) and {}",
                    tick.ceil().max(1.0),
                    limits::MAX_BURST
                ),
            ));
        }
        Ok(())
    }

    pub(super) fn validate_known(&self) -> Result<(), (String, String)> {
        let k = &self.known;
        if !(limits::MIN_VERIFIED_FOR..=limits::MAX_VERIFIED_FOR).contains(&k.verified_for) {
            return Err((
                "known.verified_for".into(),
                "must be between 10s and 7days".into(),
            ));
        }
        let (lo, hi) = (
            guard_common::known::MIN_SLOTS,
            guard_common::known::MAX_SLOTS,
        );
        if !k.slots.is_power_of_two() || !(lo..=hi).contains(&k.slots) {
            return Err((
                "known.slots".into(),
                format!("must be a power of two between {lo} and {hi}"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn budgets_and_known_are_checked() {
        let bad = |extra: &str| {
            let text = format!("[[rules]]\nname = \"r\"\nrate = 1.0\nburst = 1\n{extra}");
            Config::parse(&text, "t").unwrap_err().to_string()
        };
        assert!(
            bad("total_rate = 10.0\n")
                .contains("rules[0].total_burst: total_rate needs total_burst")
        );
        assert!(
            bad("total_burst = 10\n").contains("rules[0].total_rate: total_burst needs total_rate")
        );
        let e = bad("total_rate = 3200.0\ntotal_burst = 10\n");
        assert!(
            e.contains("must be between 100 (what one refill tick adds"),
            "{e}"
        );
        assert!(bad("total_rate = 0.0\ntotal_burst = 10\n").contains("rules[0].total_rate"));
        assert!(bad("budget_mode = \"under_attack\"\n").contains("needs total_rate"));
        assert!(bad("budget_mode = \"sometimes\"\n").contains("budget_mode"));
        let attack = Config::parse(
            "[[rules]]\nname = \"r\"\nrate = 1.0\nburst = 1\ntotal_rate = 10.0\ntotal_burst = 10\nbudget_mode = \"under_attack\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(attack.rules[0].budget_mode, BudgetMode::UnderAttack);
        let ok = Config::parse(
            "[[rules]]\nname = \"r\"\nrate = 1.0\nburst = 1\ntotal_rate = 5000.0\ntotal_burst = 10000\n",
            "t",
        )
        .unwrap();
        assert_eq!(ok.rules[0].budget(), Some((5000.0, 10000)));
        assert_eq!(ok.known.slots, 1 << 20, "the documented default");
        assert_eq!(ok.known.verified_for, Duration::from_secs(3600));
        let known =
            |k: &str| Config::parse(&format!("[known]\n{k}\n"), "t").map_err(|e| e.to_string());
        assert!(
            known("slots = 1000")
                .unwrap_err()
                .contains("known.slots: must be a power of two")
        );
        assert!(
            known("verified_for = \"1s\"")
                .unwrap_err()
                .contains("known.verified_for")
        );
        assert!(known("slots = 1024\nverified_for = \"10m\"").is_ok());
    }
}

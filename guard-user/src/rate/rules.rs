//! Config rules compiled for the kernel: `RULES` entries, port bitmaps, bucket layout and
//! the refill parameters the daemon needs.

use guard_common::{
    V6Len,
    lists::Bitmap512,
    rules::{self, PORT_ELEMS_PER_RULE, RuleSpec, rule_flags},
    siphash,
    tokens::{TOKEN_SCALE, accrual, rate_units},
};

use crate::config::{Protocol, Rule};
pub use crate::model::rules::{BudgetRefill, CompiledRule};

/// All rules, laid out back to back in `BUCKETS`, then one bucket per endpoint budget.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSet {
    pub rules: Vec<CompiledRule>,
}

impl RuleSet {
    pub fn compile(rules: &[Rule]) -> RuleSet {
        let cpus = aya::util::nr_cpus().map_or(1, |n| n as u32);
        let per_source: u32 = rules.iter().map(|r| r.buckets.get()).sum();
        let mut budgets = 0u32;
        let mut base = 0u32;
        let rules = rules
            .iter()
            .map(|r| {
                let buckets = r.buckets.get();
                let mut flags = 0;
                let mut ports = vec![Bitmap512::ZERO; PORT_ELEMS_PER_RULE as usize];
                if !r.ports.is_empty() {
                    flags |= rule_flags::PORTS;
                    for &p in &r.ports {
                        rules::set_port(&mut ports, p);
                    }
                }
                if r.tcp_syn_only {
                    flags |= rule_flags::SYN_ONLY;
                }
                if r.monitor {
                    flags |= rule_flags::MONITOR;
                }
                if r.ban_after.is_some() {
                    flags |= rule_flags::REPORT_LIMITED;
                }
                let rate_units = rate_units(r.rate);
                let burst_units = r.burst as u64 * TOKEN_SCALE;
                let (accrue_mul, accrue_shift) = accrual(rate_units);
                let budget = r.budget().map(|(rate, burst)| BudgetRefill {
                    rate_units: guard_common::tokens::rate_units(rate),
                    burst_units: burst as u64 * TOKEN_SCALE,
                });
                let (mut budget_bucket, mut budget_chunk) = (0, 0);
                if let Some((rate, _)) = r.budget() {
                    flags |= rule_flags::BUDGET;
                    budget_bucket = per_source + budgets;
                    budget_chunk = rules::budget_chunk(rate as u64, cpus);
                    budgets += 1;
                    if r.budget_mode == crate::config::BudgetMode::UnderAttack {
                        flags |= rule_flags::UNDER_ATTACK;
                    }
                }
                let spec = RuleSpec {
                    proto: match r.protocol {
                        Protocol::Any => rules::PROTO_ANY,
                        Protocol::Tcp => rules::PROTO_TCP,
                        Protocol::Udp => rules::PROTO_UDP,
                        Protocol::Icmp => rules::PROTO_ICMP,
                    },
                    flags,
                    ipv4_prefix: r.ipv4_prefix,
                    ipv6_prefix: r.ipv6_prefix,
                    bucket_mask: buckets - 1,
                    bucket_base: base,
                    v4_mask: siphash::mask_v4(u32::MAX, r.ipv4_prefix),
                    v6_mask: V6Len::new(r.ipv6_prefix as u32).mask,
                    burst_units,
                    accrue_mul,
                    accrue_shift,
                    bucket_shift: buckets.trailing_zeros(),
                    budget_bucket,
                    budget_chunk,
                };
                base += buckets;
                CompiledRule {
                    name: r.name.as_str().to_string(),
                    spec,
                    ports,
                    rate_units,
                    burst_units,
                    budget,
                }
            })
            .collect();
        RuleSet { rules }
    }

    /// Buckets in all rules and their budgets: the size of `BUCKETS` (at least 1, the
    /// kernel's minimum).
    pub fn total_buckets(&self) -> u32 {
        let budgets = self.rules.iter().filter(|r| r.budget.is_some()).count() as u32;
        (self.rules.iter().map(CompiledRule::buckets).sum::<u32>() + budgets).max(1)
    }

    /// Whether `other` keeps every rule's bucket slice and budget where they are (so state
    /// carries over).
    pub fn same_layout(&self, other: &RuleSet) -> bool {
        self.rules.len() == other.rules.len()
            && self.rules.iter().zip(&other.rules).all(|(a, b)| {
                a.spec.bucket_base == b.spec.bucket_base
                    && a.spec.bucket_mask == b.spec.bucket_mask
                    && a.budget.is_some() == b.budget.is_some()
                    && a.spec.budget_bucket == b.spec.budget_bucket
            })
    }

    /// The bucket a source has in rule `index`, as the kernel computes it.
    pub fn bucket_of(&self, index: usize, key: &[u64; 2], addr: std::net::IpAddr) -> Option<u32> {
        let spec = &self.rules.get(index)?.spec;
        let hash = match addr {
            std::net::IpAddr::V4(a) => siphash::hash_v4(key, u32::from(a), spec.ipv4_prefix),
            std::net::IpAddr::V6(a) => {
                siphash::hash_v6(key, &crate::model::v6_words(&a), spec.ipv6_prefix)
            }
        };
        Some(spec.bucket_base + (hash as u32 & spec.bucket_mask))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn set(toml: &str) -> RuleSet {
        RuleSet::compile(&Config::parse(toml, "t").unwrap().rules)
    }

    #[test]
    fn layout_is_back_to_back() {
        let s = set(
            "[[rules]]\nname = \"a\"\nrate = 1.0\nburst = 1\nbuckets = 16\n\
             [[rules]]\nname = \"b\"\nrate = 1.0\nburst = 1\nbuckets = 64\n",
        );
        assert_eq!((s.rules[0].spec.bucket_base, s.rules[0].buckets()), (0, 16));
        assert_eq!(
            (s.rules[1].spec.bucket_base, s.rules[1].buckets()),
            (16, 64)
        );
        assert_eq!(s.total_buckets(), 80);
        assert_eq!(RuleSet::compile(&[]).total_buckets(), 1);
    }

    #[test]
    fn flags_ports_and_units() {
        let s = set(
            "[[rules]]\nname = \"syn\"\nprotocol = \"tcp\"\nports = [443, 80]\ntcp_syn_only = true\n\
             ipv4_prefix = 24\nipv6_prefix = 48\nrate = 0.5\nburst = 3\nmonitor = true\n\
             ban_after = \"10s\"\n",
        );
        let r = &s.rules[0];
        assert_eq!(r.spec.proto, rules::PROTO_TCP);
        assert_eq!(
            r.spec.flags,
            rule_flags::PORTS
                | rule_flags::SYN_ONLY
                | rule_flags::MONITOR
                | rule_flags::REPORT_LIMITED
        );
        assert_eq!(r.spec.v4_mask, 0xffff_ff00);
        assert_eq!(r.spec.v6_mask, V6Len::new(48).mask);
        assert_eq!(
            (r.rate_units, r.burst_units),
            (TOKEN_SCALE / 2, 3 * TOKEN_SCALE)
        );
        for (port, set) in [(443u16, true), (80, true), (8080, false), (0, false)] {
            let (e, b) = rules::port_slot(0, port);
            assert_eq!(r.ports[e as usize].bit(b), set, "port {port}");
        }
    }

    #[test]
    fn same_layout_ignores_rates_but_not_sizes() {
        let a = set("[[rules]]\nname = \"a\"\nrate = 1.0\nburst = 1\nbuckets = 16\n");
        let b = set("[[rules]]\nname = \"a\"\nrate = 9.0\nburst = 5\nbuckets = 16\n");
        let c = set("[[rules]]\nname = \"a\"\nrate = 1.0\nburst = 1\nbuckets = 32\n");
        assert!(a.same_layout(&b));
        assert!(!a.same_layout(&c));
    }

    #[test]
    fn aggregated_sources_share_a_bucket() {
        let s = set(
            "[[rules]]\nname = \"net\"\nipv4_prefix = 24\nipv6_prefix = 64\nrate = 1.0\nburst = 1\n",
        );
        let key = [7, 9];
        let b = |a: &str| s.bucket_of(0, &key, a.parse().unwrap()).unwrap();
        assert_eq!(b("198.18.7.1"), b("198.18.7.200"));
        assert_eq!(b("2001:db8:1:2::1"), b("2001:db8:1:2:ffff::9"));
        assert!(b("198.18.7.1") < s.total_buckets());
    }
}

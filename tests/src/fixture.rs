//! BPF_PROG_TEST_RUN harness: the production program with private (unpinned) maps.

use aya::programs::{TestRun, TestRunOptions};
use guard_common::{
    Reason, Verdict,
    runtime::flags,
    tokens::{MAX_REFILL_PERIOD_NS, earned},
};
use guard_user::{
    config::Config,
    control::model::Counters,
    engine::{Engine, Lists, Refilling},
    kernel::datapath::Datapath,
    lists,
    rate::rules::RuleSet,
};
use ipnet::IpNet;

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;

/// The production engine without pins or refill thread, as guardd starts it.
pub struct Fixture {
    pub engine: Engine,
    pub rules: RuleSet,
}

impl Fixture {
    /// The program loaded with the given lists; panics with the verifier log on failure.
    pub fn new(allow: &[&str], deny: &[&str]) -> Fixture {
        Fixture::with_rules(allow, deny, "")
    }

    /// With rate rules (`[[rules]]` TOML): buckets full, heartbeat fresh, stale after 5 s.
    pub fn with_rules(allow: &[&str], deny: &[&str], rules_toml: &str) -> Fixture {
        let parse = |v: &[&str]| -> Vec<IpNet> {
            lists::parse(&v.join("\n"), "fixture").expect("test list")
        };
        Fixture::with_lists(&parse(allow), &parse(deny), rules_toml, 4096)
    }

    /// Lists already parsed, and room for `bans` bans (`[bans] max_entries`; `rules_toml` may
    /// have a `[bans]` section of its own).
    pub fn with_lists(allow: &[IpNet], deny: &[IpNet], rules_toml: &str, bans: u32) -> Fixture {
        // No durable state: fixtures start from nothing, like a first start.
        // Room for `bans` in the config's own `[bans]` section, or in one of its own.
        let room = format!("[bans]\nmax_entries = {bans}\n");
        let text = match rules_toml.contains("[bans]") {
            true => format!(
                "state_dir = \"\"\n{}",
                rules_toml.replacen("[bans]\n", &room, 1)
            ),
            false => format!("state_dir = \"\"\n{rules_toml}\n{room}"),
        };
        let config = Config::parse(&text, "fixture config").expect("test config");
        let lists = Lists {
            allow: allow.to_vec(),
            deny: deny.to_vec(),
        };
        let engine = lists
            .check(&config)
            .and_then(|lists| Engine::start(&config, lists, None, Refilling::None))
            .unwrap_or_else(|e| panic!("loading the XDP program: {}", guard_user::error_chain(&e)));
        Fixture {
            rules: engine.rules(),
            engine,
        }
    }

    /// Runs `f` on the datapath (the program, the maps).
    pub fn with_datapath<T>(&self, f: impl FnOnce(&mut Datapath) -> T) -> T {
        self.engine.with_datapath(f)
    }

    /// The bucket `addr` has in rule `rule`, computed in userspace.
    pub fn bucket_of(&self, rule: usize, addr: std::net::IpAddr) -> u32 {
        self.rules
            .bucket_of(rule, &self.engine.key(), addr)
            .expect("rule exists")
    }

    /// Spends every token of a bucket, and what it could earn before a refill.
    pub fn empty_bucket(&self, index: u32) {
        let b = self.engine.buckets();
        let now = b.get(index);
        // Also what the rule's rate can earn over the longest refill period: the kernel adds
        // that since the last refill, and fixtures run no refill.
        let rule = self
            .rules
            .rules
            .iter()
            .find(|r| (r.spec.bucket_base..r.spec.bucket_base + r.buckets()).contains(&index))
            .expect("a bucket of some rule");
        let accrual = earned(rule.rate_units, MAX_REFILL_PERIOD_NS);
        b.add_spent(index, now.credit.wrapping_sub(now.spent) + accrual);
    }

    /// Per rule (passed, limited) packet counters.
    pub fn rule_counters(&self) -> Vec<(u64, u64)> {
        self.rule_stats().iter().map(|c| (c[0], c[1])).collect()
    }

    /// Per rule: packets dropped for its empty endpoint budget.
    pub fn rule_overloads(&self) -> Vec<u64> {
        self.rule_stats().iter().map(|c| c[2]).collect()
    }

    fn rule_stats(&self) -> Vec<[u64; 3]> {
        self.with_datapath(|d| d.rule_counters(self.rules.rules.len()))
            .expect("reading RULE_STATS")
    }

    /// Tokens in rule `rule`'s endpoint budget (its shared bucket), in units.
    pub fn budget_units(&self, rule: usize) -> i64 {
        let b = self
            .engine
            .buckets()
            .get(self.rules.rules[rule].spec.budget_bucket);
        guard_common::tokens::available(b.credit, b.spent)
    }

    pub fn set_flags(&mut self, f: u32) {
        self.with_datapath(|d| d.set_flags(f))
            .expect("writing runtime config");
    }

    pub fn monitor(&mut self, on: bool) {
        self.set_flags(if on { flags::MONITOR } else { 0 });
    }

    /// Runs the program once on `frame`; returns the XDP action.
    pub fn run(&mut self, frame: &[u8]) -> u32 {
        let opts = TestRunOptions {
            data_in: Some(frame),
            repeat: 1,
            ..Default::default()
        };
        self.with_datapath(|d| d.program_mut().test_run(opts))
            .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN: {e}"))
            .return_value
    }

    pub fn counters(&self) -> Counters {
        self.with_datapath(|d| d.counters()).expect("reading STATS")
    }

    /// Runs `frame` and checks the action and that exactly one counter moved, by one.
    pub fn expect(
        &mut self,
        name: &str,
        frame: &[u8],
        action: u32,
        verdict: Verdict,
        reason: Reason,
    ) {
        let before = self.counters();
        let got = self.run(frame);
        let after = self.counters();
        assert_eq!(got, action, "{name}: XDP action");
        for (b, a) in before.packets.iter().zip(&after.packets) {
            let moved = a.packets - b.packets;
            let want = u64::from(a.verdict == verdict.as_str() && a.reason == reason.as_str());
            assert_eq!(
                moved, want,
                "{name}: counter {}/{} moved by {moved}",
                a.verdict, a.reason
            );
        }
    }
}

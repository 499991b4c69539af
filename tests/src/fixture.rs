//! BPF_PROG_TEST_RUN harness: the production program with private (unpinned) maps.

use aya::programs::{TestRun, TestRunOptions};
use guard_common::{Reason, Verdict, lists::flags};
use guard_user::{datapath::Datapath, lists, model::Counters, objects, tables::Tables};
use ipnet::IpNet;

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;

pub struct Fixture {
    pub datapath: Datapath,
}

impl Fixture {
    /// The program loaded with the given lists; panics with the verifier log on failure.
    pub fn new(allow: &[&str], deny: &[&str]) -> Fixture {
        let parse = |v: &[&str]| -> Vec<IpNet> {
            lists::parse(&v.join("\n"), "fixture").expect("test list")
        };
        let mut datapath = Datapath::load(objects::guard(), None, 1)
            .unwrap_or_else(|e| panic!("loading the XDP program: {e}"));
        let tables = Tables::build(&parse(allow), &parse(deny)).expect("test lists fit");
        datapath.write_tables(tables).expect("writing tables");
        Fixture { datapath }
    }

    pub fn set_flags(&mut self, f: u32) {
        self.datapath.set_flags(f).expect("writing runtime config");
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
        self.datapath
            .program_mut()
            .test_run(opts)
            .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN: {e}"))
            .return_value
    }

    pub fn counters(&self) -> Counters {
        self.datapath.counters().expect("reading STATS")
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

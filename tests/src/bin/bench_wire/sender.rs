//! The traffic generator: `gen_tx` run by BPF_PROG_TEST_RUN in live-frames mode on the
//! sender's veth, so frames go out at the rate the kernel can build them (raw sockets
//! would be the bottleneck).
//!
//! The kernel sends in batches of 64 and re-enables bottom halves after each one, which
//! runs the receiving veth's NAPI poll right there, on the same CPU: every frame is
//! generated, received, filtered and (when it passes) taken up the stack before the next
//! batch. So the sending thread's wall time per frame is the whole path's cost on one
//! core, the veth ring never overflows, and no page crosses CPUs.

use std::time::{Duration, Instant};

use aya::{
    Ebpf,
    maps::Array,
    programs::{TestRun, TestRunAttrs, TestRunOptions, Xdp},
};
use guard_common::bench::*;
use guard_tests::{
    bench_record::pin_to_cpu,
    netns::Netns,
    packet::{self, DST6, ETH_P_IPV6, UDP},
};

/// Frames per BPF_PROG_TEST_RUN call.
const CHUNK: u32 = 1 << 16;
/// Upper bound on the generator's speed, to bound the loop by count as well as time.
const MAX_PPS: f64 = 50e6;

/// Who sends, from which sources.
#[derive(Clone, Copy)]
pub struct Mix {
    /// Sources vary over 2^bits addresses (0: one source).
    pub bits: u32,
    pub random: bool,
    /// Every n-th frame comes from the attacker (0: never).
    pub attacker_every: u32,
}

pub struct Sender {
    frame: Vec<u8>,
    ifindex: u32,
}

impl Sender {
    /// `gen_tx` must be loaded in `ebpf`; `iface` is the sender's veth in `ns`.
    pub fn new(ns: &Netns, iface: &str) -> Sender {
        let iface = iface.to_string();
        let ifindex = ns
            .run(move || nix::net::if_::if_nametoindex(iface.as_str()))
            .expect("sender interface");
        let mut udp = Vec::new();
        for v in [40000u16, GEN_CROWD_PORT, 10, 0] {
            udp.extend_from_slice(&v.to_be_bytes());
        }
        udp.extend_from_slice(&[0, 0]);
        let src = std::net::Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 1);
        let frame = [
            packet::eth(&[], ETH_P_IPV6),
            packet::ipv6(src, DST6, &[], UDP, udp.len()),
            udp,
        ]
        .concat();
        assert_eq!(frame.len(), GEN_FRAME_LEN, "generator frame layout");
        Sender { frame, ifindex }
    }

    pub fn set_mix(&self, ebpf: &mut Ebpf, mix: Mix) {
        let mut cfg: Array<_, u32> =
            Array::try_from(ebpf.map_mut("GEN").expect("GEN map")).expect("GEN array");
        for (i, v) in [
            (gen_cfg::BITS, mix.bits),
            (gen_cfg::RANDOM, u32::from(mix.random)),
            (gen_cfg::ATTACKER_EVERY, mix.attacker_every),
        ] {
            cfg.set(i, v, 0).expect("writing GEN");
        }
    }

    /// Sends for `secs` from a thread in `ns` pinned to `cpu`; returns the frames sent.
    pub fn send_for(&self, ns: &Netns, ebpf: &mut Ebpf, secs: f64, cpu: usize) -> u64 {
        let prog: &mut Xdp = ebpf
            .program_mut("gen_tx")
            .expect("gen_tx")
            .try_into()
            .expect("xdp");
        let mut ctx = Vec::new();
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index,
        // egress_ifindex.
        for v in [0, GEN_FRAME_LEN as u32, 0, self.ifindex, 0, 0] {
            ctx.extend_from_slice(&v.to_ne_bytes());
        }
        let frame = &self.frame;
        ns.run(move || {
            pin_to_cpu(cpu).expect("pinning the sender");
            let limit = Duration::from_secs_f64(secs);
            let max_chunks = (secs * MAX_PPS / CHUNK as f64).ceil() as u64 + 1;
            let start = Instant::now();
            let mut sent = 0u64;
            for _ in 0..max_chunks {
                let r = prog
                    .test_run(TestRunOptions {
                        data_in: Some(frame),
                        ctx_in: Some(&ctx),
                        repeat: CHUNK,
                        attrs: TestRunAttrs::new().xdp_live_frames(64),
                        ..Default::default()
                    })
                    .unwrap_or_else(|e| panic!("live-frames BPF_PROG_TEST_RUN: {e}"));
                assert_eq!(r.return_value, 0, "test run status");
                sent += u64::from(CHUNK);
                if start.elapsed() >= limit {
                    break;
                }
            }
            sent
        })
    }
}

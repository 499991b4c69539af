//! Test support for guard: packet builders, a BPF_PROG_TEST_RUN harness, network-namespace
//! testbeds, bounded traffic and a guardd process handle. Everything it creates is removed
//! on drop.
pub mod bench_record;
pub mod daemon;
pub mod fixture;
pub mod http;
pub mod netns;
pub mod packet;
pub mod traffic;

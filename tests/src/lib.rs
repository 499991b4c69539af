//! Test support for guard: packet builders, a BPF_PROG_TEST_RUN harness, network-namespace
//! testbeds, bounded traffic and a guardd process handle. Everything it creates is removed
//! on drop.
pub mod apps;
pub mod bed;
pub mod bench_record;
pub mod connections;
pub mod daemon;
pub mod disk;
pub mod fixture;
pub mod fleet;
pub mod http;
pub mod inject;
pub mod latency;
pub mod lists6;
pub mod nats_auth;
pub mod netns;
pub mod packet;
pub mod shape;
pub mod tools;
pub mod traffic;
pub mod unit_caps;

/// Positional argument `n` of this process parsed as `T`, or `default` when it is absent or
/// does not parse (the bench and demo binaries' optional arguments).
pub fn arg_or<T: std::str::FromStr>(n: usize, default: T) -> T {
    std::env::args()
        .nth(n)
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

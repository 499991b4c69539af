//! The kernel's clock, read from userspace.

/// CLOCK_MONOTONIC in ns: the clock of the kernel's `bpf_ktime_get_ns`, so times the daemon
/// writes into maps (refill slices, ban expiries) compare with the kernel's.
pub fn monotonic_ns() -> u64 {
    let ts =
        nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC");
    ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64
}

/// Wall-clock ns since the Unix epoch: what outlives a reboot (creation times, escalation
/// windows, expiries kept in the state database).
pub fn unix_now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

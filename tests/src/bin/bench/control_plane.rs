//! The control plane's costs: the refill at its largest, and loading lists.

use std::net::Ipv4Addr;

use guard_tests::{
    bench_record::{record, summary},
    fixture::Fixture,
};
use guard_user::lists::tables::Tables;
use ipnet::IpNet;

/// Refill cost at 16 rules x 2^17 buckets and 32 ticks per 1 s period: the tick duration
/// measured in-process on the real mmapped map, and the refill thread's CPU from getrusage.
pub fn refill_bench() -> anyhow::Result<()> {
    use guard_user::{
        model::clock::monotonic_ns,
        rate::refill::{Refill, Refiller, refill_params},
    };
    let mut toml = String::new();
    for i in 0..16 {
        toml +=
            &format!("[[rules]]\nname = \"r{i}\"\nrate = 100.0\nburst = 200\nbuckets = 131072\n");
    }
    let f = Fixture::with_rules(&[], &[], &toml);
    let buckets = f.engine.buckets();
    // Half the buckets have spent tokens, so the refill writes as well as reads.
    for i in (0..buckets.len()).step_by(2) {
        buckets.add_spent(i, 50 * guard_common::tokens::TOKEN_SCALE);
    }
    let mut work = Refill::starting_at(refill_params(&f.rules), 32, monotonic_ns());
    let mut ticks = Vec::new();
    for _ in 0..64 {
        let t = std::time::Instant::now();
        work.tick(&buckets, &f.engine.heartbeat(), monotonic_ns());
        ticks.push(t.elapsed().as_secs_f64() * 1e6);
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let per_tick = summary(&mut ticks, 1);
    // The real thread for 3 s: CPU time of the whole process over wall time.
    let cpu = || {
        let u = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF)
            .expect("getrusage");
        let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
        t(u.user_time()) + t(u.system_time())
    };
    let work = Refill::starting_at(refill_params(&f.rules), 32, monotonic_ns());
    let (c0, w0) = (cpu(), std::time::Instant::now());
    let refiller = Refiller::start(
        work,
        buckets.clone(),
        f.engine.heartbeat(),
        std::time::Duration::from_secs(1),
    )?;
    std::thread::sleep(std::time::Duration::from_secs(3));
    drop(refiller);
    let share = (cpu() - c0) / w0.elapsed().as_secs_f64() * 100.0;
    println!("refill, 16 rules x 131072 buckets (2,097,152), 32 ticks/s, 1 s period");
    println!("  per tick (65,536 buckets): {per_tick} us");
    println!("  refill thread CPU over 3 s: {share:.2}% of one core (getrusage, whole process)");
    record(
        "control",
        "refill tick, 65,536 of 2,097,152 buckets",
        "us",
        &ticks,
    );
    record(
        "control",
        "refill CPU, 16 x 131,072 buckets at 32 ticks/s",
        "% of a core",
        &[share],
    );
    Ok(())
}

/// Time to turn lists into kernel tables and write them: the real blocklist, and a
/// generated 1,000,000-prefix list (900,000 /24s and 100,000 /32s in 20,000 /24s).
pub fn list_load_bench(allow: &[IpNet], deny: &[IpNet]) -> anyhow::Result<()> {
    let mut generated = Vec::with_capacity(1_000_000);
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..900_000u32 {
        // Distinct /24s spread over 1.0.0.0 - 223.255.255.0.
        let slash24 = 0x01_0000 + (i.wrapping_mul(2_654_435_761) % 0xde_0000);
        generated.push(IpNet::V4(ipnet::Ipv4Net::new(
            Ipv4Addr::from(slash24 << 8),
            24,
        )?));
    }
    for _ in 0..100_000 {
        let slash24 = 0xe0_0000 - 1 - (next() % 20_000) as u32;
        generated.push(IpNet::V4(ipnet::Ipv4Net::new(
            Ipv4Addr::from((slash24 << 8) | (next() % 256) as u32),
            32,
        )?));
    }
    println!("list load (build the tables, then write them into the kernel maps)");
    for (name, a, d) in [
        (
            "FireHOL level1 (6,272) + 5,000 IPv6 + 100 allows",
            allow,
            deny,
        ),
        ("generated, 1,000,000 prefixes", &[][..], &generated[..]),
    ] {
        let f = Fixture::new(&[], &[]);
        let t = std::time::Instant::now();
        let tables = Tables::build(a, d)?;
        let built = t.elapsed();
        f.with_datapath(|d| d.write_tables(tables))?;
        let total = t.elapsed();
        println!(
            "  {name:<48} build {:>6.3} s, total {:>6.3} s",
            built.as_secs_f64(),
            total.as_secs_f64()
        );
        record(
            "control",
            &format!("list load: {name}"),
            "s",
            &[total.as_secs_f64()],
        );
    }
    Ok(())
}

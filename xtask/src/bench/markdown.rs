//! BENCHMARKS.md: the method, the targets (ratios of figures of one run, and the product's
//! promises in time), the verifier's cost per kernel, and the benchmarks' own tables.

use serde_json::Value;

use super::stat;

pub fn markdown(
    date: &str,
    machine: &Value,
    quick: bool,
    text: &str,
    results: &[Value],
    chart: bool,
    vm: &Value,
) -> String {
    use crate::chart::SCENARIOS;
    let get = |n: &str| stat(results, n, "median");
    let field = |n: &str, f: &str| stat(results, n, f);
    let wire = |scenario: usize, contender: &str, what: &str| {
        get(&format!("{}: {contender}: {what}", SCENARIOS[scenario]))
    };
    // Ratios of two figures of the same run: absolute ns do not carry between machines.
    let ratio = |a: &str, b: &str| Some(get(a)? / get(b)?);
    // The whole program on the full configuration (lists, 10,000 bans, 2 rules) against the
    // reference limiter alone (an LRU hash of per-source buckets, one source).
    let full_vs_lru = ["full, ipv4 pass (2 rules)", "full, ipv6 pass (2 rules)"]
        .iter()
        .filter_map(|c| ratio(c, "sources 1: lru hash"))
        .reduce(f64::max);
    // Each list lookup against an LPM trie holding the same lists, worst case.
    let lists_vs_lpm = [
        "ipv4 pass",
        "ipv4 deny",
        "ipv6 pass",
        "ipv6 pass*",
        "ipv6 deny",
        "ipv6 deny host",
    ]
    .iter()
    .filter_map(|c| {
        ratio(
            &format!("lists: guard, {c}"),
            &format!("lists: lpm trie, {c}"),
        )
    })
    .reduce(f64::max);
    // Drop path: the limiter's own cost (over XDP_DROP) in the one-source flood.
    let drop_ratio = wire(0, "guard", "ns over XDP_DROP").and_then(|g| {
        let theirs = wire(0, "nft meter", "ns over XDP_DROP")?.min(wire(
            0,
            "iptables hashlimit",
            "ns over XDP_DROP",
        )?);
        Some(theirs / g)
    });
    // Pass path: cost over no filter (paired per round) with 65,536 sources under the limit.
    let pass_share = (|| {
        let g = wire(1, "guard", "ns over no filter")?;
        let theirs = wire(1, "nft meter", "ns over no filter")?.min(wire(
            1,
            "iptables hashlimit",
            "ns over no filter",
        )?);
        Some(g / theirs)
    })();
    let ratio_of = |a: Option<f64>, b: Option<f64>| Some(a? / b?);
    let excess = field(&format!("{}: guard: attacker excess", SCENARIOS[2]), "max");
    let target =
        |what: &str, figure: Option<f64>, unit: &str, ok: &dyn Fn(f64) -> bool| -> String {
            match figure {
                Some(f) if f.is_finite() => format!(
                    "| {what} | {f:.2} {unit} | {} |\n",
                    if ok(f) { "met" } else { "missed" }
                ),
                _ => format!("| {what} | not measured | - |\n"),
            }
        };
    let mut t = String::new();
    t += &target(
        "full configuration pass path <= the reference LRU limiter alone (worse of IPv4/IPv6)",
        full_vs_lru,
        "x",
        &|f| f <= 1.0,
    );
    t += &target(
        "list lookups <= an LPM trie of the same lists (worst case)",
        lists_vs_lpm,
        "x",
        &|f| f <= 1.0,
    );
    // Like for like: both sources in a region holding bans (the ban table probed), and both
    // in one without; the worse of the two.
    let v6_vs_v4 = [
        (
            "full, ipv6 pass (2 rules)",
            "full, ipv4 pass, bans in its /16",
        ),
        (
            "full, ipv6 pass, no ban in its /32",
            "full, ipv4 pass (2 rules)",
        ),
    ]
    .iter()
    .filter_map(|(a, b)| ratio(a, b))
    .reduce(f64::max);
    t += &target(
        "full configuration: IPv6 pass <= 1.3x IPv4 pass (like for like, the worse of near and far from a ban)",
        v6_vs_v4,
        "x",
        &|f| f <= 1.3,
    );
    t += &target(
        "full configuration: IPv6 ban <= 1.3x IPv4 ban",
        ratio("full, ipv6 drop: ban", "full, ipv4 drop: ban"),
        "x",
        &|f| f <= 1.3,
    );
    t += &target(
        "16M forged sources <= 1.1x one source (program cost, pass path)",
        get("sources 2^24: guard ratio"),
        "x",
        &|f| f <= 1.1,
    );
    t += &target(
        "drop path >= 4x cheaper than nft meter and hashlimit (whole path, over XDP_DROP)",
        drop_ratio,
        "x cheaper than the cheaper of the two",
        &|f| f >= 4.0,
    );
    t += &target(
        "pass-path overhead <= 1/5 of theirs (whole path, over no filter)",
        pass_share,
        "of the cheaper of the two",
        &|f| f <= 0.2,
    );
    t += &target(
        "zero packets wrongly let through under the forged-source flood (worst round)",
        excess,
        "packets",
        &|f| f == 0.0,
    );
    t += &target(
        "verdict latency p99 < 1 ms (call return to first drop, over 1,000 bans)",
        field("verdict latency, call return to first drop", "p99"),
        "us",
        &|f| f < 1000.0,
    );
    t += &target(
        "100,000 durable bans applied in one call in < 1.5 s",
        get("100,000 bans in one call"),
        "s",
        &|f| f < 1.5,
    );
    t += &target(
        "one durable ban through the API: round trip p99 < 5 ms",
        field("API call round trip", "p99").map(|us| us / 1000.0),
        "ms",
        &|f| f < 5.0,
    );
    t += &target(
        "100,000+ bans restored after a reboot, guardd ready in < 2 s",
        get("start after a reboot, 100,000+ bans restored"),
        "s",
        &|f| f < 2.0,
    );
    t += &target(
        &format!(
            "acknowledged bans lost across a hard power-off: 0 of {} (vm-test --system, {})",
            vm["bans_acknowledged"].as_f64().unwrap_or(0.0),
            vm["date"].as_str().unwrap_or("not run")
        ),
        vm["bans_lost"].as_f64(),
        "bans",
        &|f| f == 0.0,
    );
    t += &target(
        "fleet propagation, API return on A to first drop on C: p50 <= 5 ms",
        field("propagation, API return on A to first drop on C", "median").map(|us| us / 1000.0),
        "ms",
        &|f| f <= 5.0,
    );
    t += &target(
        "fleet propagation: p99 <= 25 ms (over 1,000 bans)",
        field("propagation, API return on A to first drop on C", "p99").map(|us| us / 1000.0),
        "ms",
        &|f| f <= 25.0,
    );
    t += &target(
        "a host joining a fleet of 100,000+ bans: all in its kernel within 5 s",
        get("a host joining 100,000+ bans: all in its kernel"),
        "s",
        &|f| f <= 5.0,
    );
    t += &target(
        "2,000 bans/s made across the fleet for 10 s (rate reached)",
        get("sustained bans: rate made across the fleet"),
        "bans/s",
        &|f| f >= 1950.0,
    );
    t += &target(
        "... none lost: all on another host within 5 s of the last call",
        get("2,000 bans/s for 10 s: C complete after the last call"),
        "s",
        &|f| f <= 5.0,
    );
    t += &target(
        "NATS down: local ban round trip p99 within 10% of a host without a fleet",
        ratio_of(
            field("NATS down: local ban round trip", "p99"),
            field("no fleet: local ban round trip", "p99"),
        ),
        "x",
        &|f| f <= 1.1,
    );
    t += &target(
        "a 10,000-ban backlog on the other hosts within 5 s of NATS returning",
        get("backlog of 10,000+ bans on C after NATS returns"),
        "s",
        &|f| f <= 5.0,
    );
    t += &target(
        "1,000,000 prefixes loaded in < 5 s",
        get("list load: generated, 1,000,000 prefixes"),
        "s",
        &|f| f < 5.0,
    );
    t += &target(
        "refill at 16 x 2^17 buckets < 2% of a core",
        get("refill CPU, 16 x 131,072 buckets at 32 ticks/s"),
        "%",
        &|f| f < 2.0,
    );
    t += &target(
        "daemon RSS < 30 MiB (at rest, default rule)",
        get("guardd RSS at rest (default rule)"),
        "MiB",
        &|f| f < 30.0,
    );
    // The verifier's work for guard's program: here (the bench loads it) and on every
    // kernel vm-test booted.
    let native = get("verifier: processed insns").map(|n| {
        (
            machine["kernel"].as_str().unwrap_or("?").to_string(),
            n,
            get("verifier: load ms").unwrap_or(f64::NAN),
        )
    });
    let (verifier, worst) = crate::vm::verifier_table(native);
    t += &target(
        "the verifier's processed instructions <= 200,000 (a fifth of its limit) on every kernel measured (worst)",
        worst,
        "insns",
        &|f| f <= 200_000.0,
    );
    let image = if chart {
        "![whole path: ns per packet by scenario and contender](bench/whole-path.png)\n\n"
    } else {
        ""
    };
    format!(
        "# guard benchmarks\n\n\
         Measured {date} on {} CPUs ({}), kernel {}{}. Rerun with `sudo cargo xtask bench` \
         (`--quick` for a short run); the figures are also in `bench/results.json`.\n\n\
         ## Method\n\n\
         - Program cost: BPF_PROG_TEST_RUN (aya `TestRun`), {} repetitions per measurement, the \
         process pinned to CPU 1, reported as ns per packet over an XDP_PASS program measured in the \
         same round; contenders interleaved round by round; median (min-max) over the rounds. \
         Forged sources: a bench-only program steps the frame's source through 2^k addresses and \
         tail-calls the program under test; the stepping alone (tail-calling XDP_PASS) is \
         subtracted; guard runs with its default 131,072 buckets (2 MiB) and with 4,096 (64 KiB, \
         cache-resident), so the difference is what the bucket line's miss costs.\n\
         - Whole path: a veth pair between two namespaces. A bench-only XDP program, run by \
         BPF_PROG_TEST_RUN in live-frames mode on the sender's end, rewrites each 64-byte UDP/IPv6 \
         frame's source and sends it with XDP_TX. The kernel runs the receiving veth's NAPI poll \
         when it re-enables bottom halves after each batch of 64, on the same CPU, so the figure \
         is wall time per frame on one core for generation, reception, filtering and (for what \
         passes) the stack up to UDP. The generator's share is the same for every contender; \
         \"over XDP_DROP\" is the filter's own cost. A receiver NAPI thread on another CPU was \
         tried first and measured the page pool's lock contention (frames refused by a full veth \
         ring are freed on the sender's CPU) and thread wake-ups rather than the filters. \
         Limiters: 1000/s burst 2000 per source address, room for 131,072 sources; the nft meter \
         (netdev ingress) and ip6tables hashlimit (raw PREROUTING) run behind an XDP_PASS program \
         because veth only takes XDP_TX frames while its peer has one. Delivery is counted in an \
         nft input-hook chain, the same for every contender. \"guard, no rule\" is guard with \
         its rule removed (lists, counters and parsing left): the removal experiment that splits \
         guard's pass overhead into the rule stage and the rest, paired round by round. The \
         forged flood (random sources \
         over 2^24) runs 0.5 s before the attacker joins, as it would be in practice. \
         \"Attacker excess\" counts the attacker's packets delivered beyond burst + rate x (time + \
         1 s), guard's documented admission bound at its refill period (1 s here, the default): \
         a source that spent part of its burst earlier in a period keeps what its bucket earns \
         until the next refill, so a window may hold up to rate x period packets beyond an ideal \
         token bucket; failing open (the nft meter with its set full) shows as thousands beyond \
         it.\n\
         - Control plane: a release guardd in a network-namespace testbed. Verdict latency: a \
         source streams sequence-numbered AF_PACKET frames at 20k pps while it is banned; the first \
         sequence number never received marks when the ban took effect, relative to the API call's \
         return (negative: before the answer reached the caller).\n\
         - Absolute times on a shared VM drift between runs and differ between machines: every \
         performance target is a ratio of two figures of the same run (guard against an LPM \
         trie, the reference LRU limiter, XDP_DROP, the nft meter and hashlimit, one source); \
         the control-plane targets are the product's promises in time (a verdict in force \
         within a millisecond).\n\n\
         ## Targets\n\n| target | measured | |\n|---|---|---|\n{t}\n\
         ## Verifier\n\nWhat the kernel's verifier spent on guard's XDP program (`verified_insns` \
         after each load; its limit is 1,000,000, guard's budget a fifth of that). The rule step \
         and the two steps of rare paths (the proof that a limited source is real, the fleet's \
         own connections) are global functions the verifier checks once, not once per state \
         reaching them (docs/ARCHITECTURE.md, the invariants of the packet path). The VM rows come from `cargo xtask vm-test` \
         (bench/verifier.json), load times there under qemu's TCG emulation.\n\n{verifier}\n\
         ## Whole path\n\n{image}\
         ## Figures\n\n```text\n{}```\n",
        machine["cpus"].as_str().unwrap_or("?"),
        machine["cpu"].as_str().unwrap_or("?"),
        machine["kernel"].as_str().unwrap_or("?"),
        if quick { " (quick run)" } else { "" },
        if quick { "1,000,000" } else { "10,000,000" },
        text
    )
}

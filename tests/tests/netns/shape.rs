//! Attack shape: the kernel's estimate of distinct sources against the truth, forged
//! sources over AF_PACKET at the default window (10 s).

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use guard_tests::{
    bed::GuardBed,
    packet::udp_from,
    shape::{forged, rule, shape, wait_for, windows},
    traffic::RawSender,
};

#[test]
fn the_kernels_count_of_distinct_sources_is_within_five_percent() {
    // Default window (10 s): the estimate a user sees.
    let b = GuardBed::start(
        "[[rules]]\nname = \"collector\"\nprotocol = \"udp\"\nrate = 1.0\nburst = 1\n",
    );
    let port = b.rx.port;
    let cpus = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(2);
    for n in [1_000usize, 50_000, 1_000_000] {
        let stop = AtomicBool::new(false);
        let s = std::thread::scope(|scope| {
            let senders: Vec<_> = (0..cpus)
                .map(|cpu| {
                    let stop = &stop;
                    let b = &b;
                    scope.spawn(move || {
                        let _ = guard_tests::bench_record::pin_to_cpu(cpu);
                        let tx = RawSender::open(&b.bed.client, &b.bed.client_if);
                        // Every source in turn, over and over: each one appears in every
                        // window while a pass over them takes less than one.
                        // A pass over the sources every 4 s (2.5 in a window): room for
                        // a machine that sends at half that pace; the CPUs spared for the
                        // tests that run alongside.
                        let pps = (n as u32 / 4).clamp(10_000, 1_000_000) / cpus as u32;
                        tx.flood_generated(pps, Duration::from_secs(45), stop, |k| {
                            udp_from(forged((k * cpus + cpu) % n), port)
                        })
                    })
                })
                .collect();
            // The window in progress began before the flood: the next one is the first
            // wholly inside it.
            let first = windows(&shape(&b)) + 2;
            let s = wait_for(
                &b,
                Duration::from_secs(40),
                "a window inside the flood",
                |s| windows(s) >= first,
            );
            stop.store(true, Ordering::Relaxed);
            let sent: usize = senders
                .into_iter()
                .map(|t| t.join().expect("sender").0)
                .sum();
            eprintln!("{n} sources: {sent} frames sent");
            s
        });
        let w = &rule(&s)["window"];
        let est = w["sources"].as_f64().expect("sources");
        let err = est / n as f64 - 1.0;
        eprintln!(
            "{n} distinct sources: estimated {est:.0} ({:+.2}%), {} packets in the window",
            err * 100.0,
            w["packets"]
        );
        assert!(err.abs() < 0.05, "{n} sources estimated as {est:.0}: {s:#}");
        // Quiet between sizes: the next size's first whole window holds only its sources.
        std::thread::sleep(Duration::from_millis(500));
    }
    let scraped = b.metric("guard_rule_sources{rule=\"collector\"}");
    assert!(scraped >= 0.0, "the metric is exported");
}

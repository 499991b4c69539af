//! Benchmark results as machine-readable lines (`RESULT {json}`) that `cargo xtask bench`
//! collects into bench/results.json, their printed summaries, and CPU pinning.

/// One measurement: a median with its min-max and 99th percentile over rounds (or
/// samples), or a single value.
pub fn record(section: &str, name: &str, unit: &str, values: &[f64]) {
    let mut v = values.to_vec();
    let p99 = percentile(&mut v, 0.99);
    let line = serde_json::json!({
        "section": section,
        "name": name,
        "unit": unit,
        "median": v[v.len() / 2],
        "min": v[0],
        "max": v[v.len() - 1],
        "p99": p99,
        "samples": v.len(),
    });
    println!("RESULT {line}");
}

/// The `p` quantile (0..=1), nearest rank; sorts `v`.
pub fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// The median; sorts `v`.
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// "median (min-max)" with `digits` decimals; sorts `v`.
pub fn summary(v: &mut [f64], digits: usize) -> String {
    let m = median(v);
    format!(
        "{m:.digits$} ({:.digits$}-{:.digits$})",
        v[0],
        v[v.len() - 1]
    )
}

/// Pins the calling thread to `cpu`.
pub fn pin_to_cpu(cpu: usize) -> nix::Result<()> {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu)?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
}

//! Benchmark results as machine-readable lines (`RESULT {json}`) that `cargo xtask bench`
//! collects into bench/results.json.

/// One measurement: a median with its min-max over rounds, or a single value.
pub fn record(section: &str, name: &str, unit: &str, values: &[f64]) {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let line = serde_json::json!({
        "section": section,
        "name": name,
        "unit": unit,
        "median": v[v.len() / 2],
        "min": v[0],
        "max": v[v.len() - 1],
        "samples": v.len(),
    });
    println!("RESULT {line}");
}

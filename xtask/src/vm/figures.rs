//! What guard's program cost each kernel's verifier: vm-test records every guest's figure in
//! bench/verifier.json (one entry per kernel package, its last measurement), and the bench
//! report shows them in a table beside the native kernel's, measured by the bench itself.

use anyhow::Context;
use serde_json::{Value, json};

use crate::setup;

/// How the verifier test's line starts (tests/tests/fixtures/verifier.rs).
pub const LINE: &str = "verifier: kernel ";

/// One kernel's figure, parsed from the test's line: "verifier: kernel 6.1.0-57-amd64
/// processed 13434 insns (budget 200000, limit 1000000), load 117.7 ms".
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    pub kernel: String,
    pub insns: u64,
    pub load_ms: f64,
}

impl Figure {
    pub fn parse(line: &str) -> Option<Figure> {
        let rest = &line[line.find(LINE)? + LINE.len()..];
        let (kernel, rest) = rest.split_once(" processed ")?;
        let (insns, rest) = rest.split_once(" insns")?;
        let load = rest
            .split_once(", load ")?
            .1
            .trim_end()
            .strip_suffix(" ms")?;
        Some(Figure {
            kernel: kernel.to_string(),
            insns: insns.parse().ok()?,
            load_ms: load.parse().ok()?,
        })
    }
}

/// bench/verifier.json and the figures it holds (none when it is missing or unreadable).
fn recorded() -> (std::path::PathBuf, Vec<Value>) {
    let path = setup::workspace_root().join("bench/verifier.json");
    let all = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v["kernels"].as_array().cloned())
        .unwrap_or_default();
    (path, all)
}

/// Records a guest's figure under its matrix label and package.
pub fn record(label: &str, image: &str, f: &Figure) -> anyhow::Result<()> {
    let (path, mut all) = recorded();
    all.retain(|k| k["package"] != image);
    all.push(json!({
        "label": label,
        "package": image,
        "kernel": f.kernel,
        "verified_insns": f.insns,
        "load_ms": f.load_ms,
        "date": crate::bench::sh("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        "how": "vm-test under qemu (TCG)",
    }));
    all.sort_by_key(|k| k["kernel"].as_str().unwrap_or("").to_string());
    std::fs::create_dir_all(path.parent().expect("bench/"))?;
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&json!({ "kernels": all }))? + "\n",
    )
    .with_context(|| format!("{}", path.display()))
}

/// BENCHMARKS.md's table: the native kernel (from the bench's results) and every kernel
/// vm-test recorded. Returns the table and the worst count.
pub fn table(native: Option<(String, f64, f64)>) -> (String, Option<f64>) {
    let (_, vms) = recorded();
    let mut t = String::from("| kernel | how | processed insns | load ms |\n|---|---|---|---|\n");
    let mut worst: Option<f64> = None;
    if let Some((kernel, insns, ms)) = native {
        t += &format!("| {kernel} | this machine, in the bench | {insns:.0} | {ms:.1} |\n");
        worst = Some(insns);
    }
    for k in &vms {
        let insns = k["verified_insns"].as_f64().unwrap_or(f64::NAN);
        t += &format!(
            "| {} | `vm-test --kernel {}` ({}), {} | {insns:.0} | {:.1} |\n",
            k["kernel"].as_str().unwrap_or("?"),
            k["label"].as_str().unwrap_or("?"),
            k["package"].as_str().unwrap_or("?"),
            k["date"].as_str().unwrap_or("?"),
            k["load_ms"].as_f64().unwrap_or(f64::NAN),
        );
        worst = Some(worst.map_or(insns, |w| w.max(insns)));
    }
    (t, worst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guest_line_parses() {
        let l = "test verifier::x ... verifier: kernel 6.1.0-57-amd64 processed 13434 insns \
                 (budget 200000, limit 1000000), load 117.7 ms\r";
        assert_eq!(
            Figure::parse(l.trim_end_matches('\r')),
            Some(Figure {
                kernel: "6.1.0-57-amd64".into(),
                insns: 13434,
                load_ms: 117.7
            })
        );
        assert_eq!(Figure::parse("test result: ok"), None);
    }
}

//! Runs `cargo test`, echoing its output, and ends with one plain line over all test
//! binaries: `test: N passed, N failed` (cargo prints one result line per binary).

use std::{
    io::{BufRead, BufReader},
    process::Stdio,
};

use anyhow::{Context, bail};

pub fn run_cargo_test(args: &[&str]) -> anyhow::Result<()> {
    let mut child = crate::cargo_command(args)
        .stdout(Stdio::piped())
        .spawn()
        .context("running cargo test")?;
    let (mut passed, mut failed) = (0u64, 0u64);
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let line = line?;
        println!("{line}");
        if let Some((p, f)) = parse_result(&line) {
            passed += p;
            failed += f;
        }
    }
    let status = child.wait()?;
    println!("test: {passed} passed, {failed} failed");
    if !status.success() || failed > 0 {
        bail!("cargo test failed ({status})");
    }
    if passed == 0 {
        bail!("cargo test ran no test");
    }
    Ok(())
}

/// `test result: ok. 7 passed; 0 failed; ...` -> (7, 0)
fn parse_result(line: &str) -> Option<(u64, u64)> {
    let rest = line.strip_prefix("test result: ")?;
    let count = |word: &str| {
        rest.split(';').find_map(|part| {
            part.trim()
                .strip_suffix(word)
                .and_then(|n| n.trim().rsplit(' ').next()?.parse().ok())
        })
    };
    Some((count("passed")?, count("failed")?))
}

#[cfg(test)]
mod tests {
    use super::parse_result;

    #[test]
    fn reads_cargo_result_lines() {
        let ok = "test result: ok. 21 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 8.30s";
        assert_eq!(parse_result(ok), Some((21, 0)));
        let bad = "test result: FAILED. 5 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1s";
        assert_eq!(parse_result(bad), Some((5, 2)));
        assert_eq!(parse_result("running 3 tests"), None);
    }
}

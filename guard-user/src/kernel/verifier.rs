//! What the kernel's verifier spent on the XDP program, measured at every load, and a
//! refusal explained in one line.
//!
//! The verifier's work depends on the kernel's version and build, not only on the program:
//! the same object has cost 40,000 processed instructions on one kernel and over the limit
//! (1,000,000) on another. So guardd reports the figure of every load it makes
//! (`bpf_prog_info.verified_insns`, Linux 5.16+), and a refused load names the kernel and
//! the verifier's last message rather than a raw errno.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The verifier's instruction budget for one program; guard keeps a fifth of it.
pub const VERIFIER_LIMIT: u32 = 1_000_000;
/// What guard's program may cost on any kernel: a fifth of the limit, so a kernel whose
/// verifier works harder still loads it.
pub const BUDGET: u32 = VERIFIER_LIMIT / 5;

/// One load of the XDP program, as `/v1/status` reports it under `program`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgramLoad {
    /// The verifier's processed instructions (null: a kernel before 5.16 does not say).
    pub verified_insns: Option<u32>,
    /// How long BPF_PROG_LOAD took, verification included.
    pub load_ms: f64,
    /// The running kernel's release.
    pub kernel: String,
}

impl ProgramLoad {
    pub fn new(verified_insns: Option<u32>, took: Duration) -> ProgramLoad {
        ProgramLoad {
            verified_insns,
            load_ms: (took.as_secs_f64() * 10_000.0).round() / 10.0,
            kernel: kernel_release(),
        }
    }
}

/// The kernel refused the program: its reason in one line, the whole log for a file.
#[derive(Debug, thiserror::Error)]
#[error("the kernel's verifier refused guard's XDP program on Linux {kernel}: {summary}")]
pub struct Refused {
    pub kernel: String,
    pub summary: String,
    /// The verifier's log as the kernel wrote it (may be long).
    pub log: String,
}

impl Refused {
    pub fn new(errno: &std::io::Error, log: &str) -> Refused {
        Refused {
            kernel: kernel_release(),
            summary: summarize(errno, log),
            log: log.to_string(),
        }
    }
}

/// What the verifier prints after its verdict (BPF_LOG_STATS): not the reason.
const STATISTICS: [&str; 2] = ["verification time", "stack depth"];

/// The verifier's last message, with the processed instruction count from its statistics
/// line when it printed one: "BPF program is too large (processed 1000001 insns)".
fn summarize(errno: &std::io::Error, log: &str) -> String {
    let lines: Vec<&str> = log
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let is_stats = |l: &str| l.starts_with("processed ") && l.contains(" insns (limit ");
    let processed = lines
        .iter()
        .rev()
        .find(|l| is_stats(l))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse::<u64>().ok());
    let message = lines
        .iter()
        .rev()
        .find(|l| !is_stats(l) && !STATISTICS.iter().any(|s| l.starts_with(s)))
        .map(|l| {
            // "BPF program is too large. Processed 1000001 insn" (lower case before 6.x):
            // the count comes from the statistics.
            let end = l
                .to_ascii_lowercase()
                .find(". processed ")
                .unwrap_or(l.len());
            l[..end].trim_end_matches('.').to_string()
        });
    match (message, processed) {
        (Some(m), Some(n)) => format!("{m} (processed {n} insns; {errno})"),
        (Some(m), None) => format!("{m} ({errno})"),
        (None, Some(n)) => format!("{errno} (processed {n} insns)"),
        (None, None) => errno.to_string(),
    }
}

/// The log a refused load asks the kernel for: its messages and statistics only, by default.
/// Each log level costs a second verification (a load is first tried without a log), and an
/// instruction trace of a program near the limit is hundreds of megabytes; developers raise
/// it with `GUARD_VERIFIER_LOG=1` (the trace) or `2` (with every state).
pub fn log_level() -> aya::VerifierLogLevel {
    match std::env::var("GUARD_VERIFIER_LOG").as_deref() {
        Ok("1") => aya::VerifierLogLevel::DEBUG | aya::VerifierLogLevel::STATS,
        Ok("2") => aya::VerifierLogLevel::VERBOSE | aya::VerifierLogLevel::STATS,
        _ => aya::VerifierLogLevel::STATS,
    }
}

/// The running kernel's release ("6.1.0-57-amd64"), or "unknown". From uname(2): the unit's
/// `ProcSubset=pid` hides /proc/sys.
pub fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_a_program_too_large() {
        let log = "0: (bf) r6 = r1\n...\nBPF program is too large. processed 1000001 insn\n\
                   processed 1000001 insns (limit 1000000) max_states_per_insn 72 total_states 29287 \
                   peak_states 50124 mark_read 0\n";
        let e = std::io::Error::from_raw_os_error(libc::E2BIG);
        let s = summarize(&e, log);
        assert!(
            s.starts_with("BPF program is too large (processed 1000001 insns; "),
            "{s}"
        );
        // As Linux 6.18 words it.
        let log = log.replace(". processed", ". Processed");
        assert_eq!(summarize(&e, &log), s);
    }

    #[test]
    fn summary_of_an_invalid_access_and_of_no_log() {
        let e = std::io::Error::from_raw_os_error(libc::EACCES);
        let log = "R1 invalid mem access 'scalar'\nverification time 596 usec\nstack depth 40+0\n\
                   processed 12 insns (limit 1000000) max_states_per_insn 0\n";
        assert!(
            summarize(&e, log).starts_with("R1 invalid mem access 'scalar' (processed 12 insns; "),
            "{}",
            summarize(&e, log)
        );
        assert_eq!(summarize(&e, ""), e.to_string());
    }
}

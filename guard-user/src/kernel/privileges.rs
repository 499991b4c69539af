//! The capabilities guardd needs, and which of them the process lacks.
//!
//! This list and `packaging/guard.service` (guardd runs as user guard, with this set as its
//! `AmbientCapabilities` and `CapabilityBoundingSet`) name the same set; a unit test keeps
//! them equal.

/// A capability guardd needs, and why.
#[derive(Debug, Clone, Copy)]
pub struct Capability {
    /// As systemd and capabilities(7) spell it.
    pub name: &'static str,
    pub bit: u32,
    pub why: &'static str,
}

/// Every capability guardd uses, and nothing else. CAP_SYS_ADMIN implies the first two.
pub const REQUIRED: [Capability; 3] = [
    Capability {
        name: "CAP_BPF",
        bit: 39,
        why: "to create maps, load the XDP program and open their pins",
    },
    Capability {
        name: "CAP_PERFMON",
        bit: 38,
        why: "for the verifier to accept the program's pointer arithmetic on packet and map \
              values (refused to unprivileged loaders)",
    },
    Capability {
        name: "CAP_NET_ADMIN",
        bit: 12,
        why: "to load an XDP program and attach it to interfaces",
    },
];

const CAP_SYS_ADMIN: u32 = 21;

/// The required capabilities missing from the effective set `eff` (CapEff of
/// /proc/self/status).
pub fn missing(eff: u64) -> Vec<Capability> {
    let has = |bit: u32| eff & (1 << bit) != 0;
    REQUIRED
        .into_iter()
        .filter(|c| !has(c.bit) && !(c.bit != 12 && has(CAP_SYS_ADMIN)))
        .collect()
}

/// This process's effective capabilities.
pub fn effective() -> std::io::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .ok_or_else(|| std::io::Error::other("no CapEff in /proc/self/status"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The capability names on `key=` lines of the shipped unit.
    fn unit_caps(key: &str) -> Vec<String> {
        let unit = include_str!("../../../packaging/guard.service");
        let mut caps: Vec<String> = unit
            .lines()
            .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .flat_map(|v| v.split_whitespace().map(str::to_string))
            .collect();
        caps.sort();
        caps
    }

    #[test]
    fn the_unit_grants_exactly_what_guardd_needs() {
        let mut want: Vec<String> = REQUIRED.iter().map(|c| c.name.to_string()).collect();
        want.sort();
        assert_eq!(unit_caps("CapabilityBoundingSet"), want);
        // A user other than root has only what it is given.
        assert_eq!(unit_caps("AmbientCapabilities"), want);
        let unit = include_str!("../../../packaging/guard.service");
        assert!(unit.lines().any(|l| l == "User=guard"), "{unit}");
    }

    #[test]
    fn missing_names_each_absent_capability() {
        let all = REQUIRED.iter().fold(0u64, |m, c| m | 1 << c.bit);
        assert!(missing(all).is_empty());
        let names = |eff| missing(eff).into_iter().map(|c| c.name).collect::<Vec<_>>();
        assert_eq!(names(0), ["CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN"]);
        assert_eq!(names(all & !(1 << 38)), ["CAP_PERFMON"]);
        assert_eq!(names(1 << CAP_SYS_ADMIN), ["CAP_NET_ADMIN"]);
    }
}

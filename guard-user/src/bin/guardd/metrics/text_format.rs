//! OpenMetrics text (what `prometheus_client` encodes) as the Prometheus text format 0.0.4,
//! for scrapers that do not ask for OpenMetrics (promtool, older Prometheus, curl).
//!
//! The formats differ where guardd's metrics use them: a counter family `x` has samples
//! `x_total` in OpenMetrics, while the text format names the family after its samples, so
//! HELP and TYPE must say `x_total` (else promtool finds samples with no help text); `# EOF`
//! and `# UNIT` do not exist in the text format.

/// The content type of what `to_text_format` returns.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The OpenMetrics content type, for scrapers that accept it.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Converts one OpenMetrics exposition to the text format.
pub fn to_text_format(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|tag| {
            let rest = line.strip_prefix(tag)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{tag}{name}_total {tail}"))
        });
        match renamed {
            Some(l) => out += &l,
            None => out += line,
        }
        out.push('\n');
    }
    out
}

/// Whether the request's `Accept` header asks for OpenMetrics.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/openmetrics-text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_after_their_samples() {
        let om = "# HELP guard_packets Packets seen.\n# TYPE guard_packets counter\n\
                  guard_packets_total{verdict=\"pass\"} 3\n\
                  # HELP guard_bans_active Bans in force.\n# TYPE guard_bans_active gauge\n\
                  guard_bans_active 1\n# HELP d Duration.\n# TYPE d histogram\n# UNIT d seconds\n\
                  d_bucket{le=\"+Inf\"} 0\nd_sum 0.0\nd_count 0\n# EOF\n";
        assert_eq!(
            to_text_format(om),
            "# HELP guard_packets_total Packets seen.\n# TYPE guard_packets_total counter\n\
             guard_packets_total{verdict=\"pass\"} 3\n\
             # HELP guard_bans_active Bans in force.\n# TYPE guard_bans_active gauge\n\
             guard_bans_active 1\n# HELP d Duration.\n# TYPE d histogram\n\
             d_bucket{le=\"+Inf\"} 0\nd_sum 0.0\nd_count 0\n"
        );
    }

    #[test]
    fn only_an_openmetrics_accept_gets_openmetrics() {
        assert!(wants_openmetrics(Some(
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
        )));
        assert!(!wants_openmetrics(Some("text/plain")));
        assert!(!wants_openmetrics(None));
    }
}

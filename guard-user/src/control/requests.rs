//! Validation of control-API requests: every bound the API promises, as pure functions.

use std::{net::IpAddr, time::Duration};

use guard_common::dynamic::REASON_MAX;
use serde::de::DeserializeOwned;

pub use crate::model::ttl::{MAX_TTL_SECS, ttl, ttl_duration};
use crate::{control::model::EntryRequest, lists::parse_net, model::Request};

/// The largest request body the API reads.
pub const MAX_BODY: usize = 16 << 20;
/// Entries in one `POST /v1/bans` or `/v1/allows`.
pub const MAX_BULK: usize = 100_000;
pub const MAX_PENALTY_TOKENS: u64 = 1_000_000_000;

/// One object or an array of them, each decoded with its index in errors. An array is
/// split into its items' raw text first (no intermediate JSON tree: a 100,000-entry bulk
/// call spent a tenth of its time building one).
pub fn one_or_many<T: DeserializeOwned>(body: &[u8]) -> Result<Vec<T>, String> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        Some(b'[') => {}
        // Straight into the type: no JSON tree of a body that may be 16 MiB.
        Some(b'{') => {
            return serde_json::from_slice::<T>(body)
                .map(|one| vec![one])
                .map_err(|e| match e.classify() {
                    serde_json::error::Category::Data => strip_position(&e),
                    _ => format!("invalid JSON: {e}"),
                });
        }
        _ => {
            // Still say "invalid JSON" for what is not JSON at all.
            serde_json::from_slice::<serde::de::IgnoredAny>(body)
                .map_err(|e| format!("invalid JSON: {e}"))?;
            return Err("expected a JSON object or an array of objects".into());
        }
    }
    let items: Vec<&serde_json::value::RawValue> =
        serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    if items.is_empty() {
        return Err("empty array: nothing to apply".into());
    }
    if items.len() > MAX_BULK {
        return Err(format!(
            "{} entries: at most {MAX_BULK} per request",
            items.len()
        ));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, raw)| {
            serde_json::from_str::<T>(raw.get())
                .map_err(|e| format!("entry {i}: {}", strip_position(&e)))
        })
        .collect()
}

/// An item's error without serde's position (it counts within the item, not the body).
fn strip_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

/// A single JSON object.
pub fn one<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))
}

/// A TTL as people write it (`--ttl 10m`, `escalation = ["1h"]`): whole seconds from 1 s to
/// 30 days, the bounds of the API's `ttl_secs`.
pub fn ttl_text(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| format!("{text:?}: {e}"))?;
    ttl_duration(d).map_err(|e| format!("{text:?}: {e}"))
}

/// An address or CIDR as the API takes it (checked where it is typed: guardctl says a bad
/// one is a usage error whether or not guardd runs). The text as given.
pub fn cidr_text(text: &str) -> Result<String, String> {
    crate::lists::parse_net(text)
        .map(|_| text.to_string())
        .map_err(|e| format!("{text:?}: {e}"))
}

/// A single address, as a penalty takes it. The text as given.
pub fn ip_text(text: &str) -> Result<String, String> {
    text.parse::<IpAddr>()
        .map(|_| text.to_string())
        .map_err(|_| format!("{text:?}: not an IP address"))
}

pub fn reason(r: Option<&str>) -> Result<String, String> {
    let r = r.unwrap_or("");
    if r.len() > REASON_MAX {
        return Err(format!("reason is {} bytes: at most {REASON_MAX}", r.len()));
    }
    if r.chars().any(char::is_control) {
        return Err("reason has control characters".into());
    }
    Ok(r.to_string())
}

/// Validates entries (all of them, before anything is applied); errors name the entry.
pub fn entries(reqs: &[EntryRequest]) -> Result<Vec<Request>, String> {
    let many = reqs.len() > 1;
    reqs.iter()
        .enumerate()
        .map(|(i, r)| {
            let at = |e: String| if many { format!("entry {i}: {e}") } else { e };
            let net = parse_net(&r.cidr).map_err(|e| at(format!("cidr {:?}: {e}", r.cidr)))?;
            let ttl = r.ttl_secs.map(ttl).transpose().map_err(at)?;
            let reason = reason(r.reason.as_deref()).map_err(at)?;
            Ok(Request {
                net,
                ttl,
                reason,
                local: r.local,
                remote: None,
                unverified: false,
            })
        })
        .collect()
}

/// The address of a penalty (a single address, not a prefix) and its token count.
pub fn penalty(ip: &str, tokens: u64) -> Result<(IpAddr, u64), String> {
    let addr: IpAddr = ip
        .parse()
        .map_err(|_| format!("ip {ip:?}: not an IP address"))?;
    if !(1..=MAX_PENALTY_TOKENS).contains(&tokens) {
        return Err(format!(
            "tokens {tokens}: must be between 1 and {MAX_PENALTY_TOKENS}"
        ));
    }
    Ok((addr, tokens))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reqs(json: &str) -> Result<Vec<Request>, String> {
        entries(&one_or_many::<EntryRequest>(json.as_bytes())?)
    }

    #[test]
    fn single_and_bulk_shapes() {
        let one = reqs(r#"{"cidr":"198.18.0.7","ttl_secs":600,"reason":"junk payload"}"#).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].net.to_string(), "198.18.0.7/32");
        assert_eq!(one[0].ttl, Some(Duration::from_secs(600)));
        assert_eq!(one[0].reason, "junk payload");
        let many =
            reqs(r#"[{"cidr":"198.18.0.0/24"},{"cidr":"2001:db8::/64","ttl_secs":1}]"#).unwrap();
        assert_eq!(many.len(), 2);
        assert_eq!(many[0].ttl, None);
    }

    #[test]
    fn every_bad_input_is_refused_with_a_reason() {
        let cases = [
            ("{", "invalid JSON"),
            ("[]", "empty array"),
            ("42", "expected a JSON object"),
            (r#"{"cidr": 7}"#, "invalid type"),
            (r#"{"cidr":"198.18.0.7","ttl":5}"#, "unknown field `ttl`"),
            (r#"{"ttl_secs":5}"#, "missing field `cidr`"),
            (r#"{"cidr":"198.18.0.300"}"#, "not an IP address or CIDR"),
            (r#"{"cidr":"0.0.0.0/0"}"#, "/0 prefix"),
            (r#"{"cidr":"::/0"}"#, "/0 prefix"),
            (r#"{"cidr":"198.18.0.0/33"}"#, "not an IP address or CIDR"),
            (r#"{"cidr":"2001:db8::/129"}"#, "not an IP address or CIDR"),
            (r#"{"cidr":"198.18.0.1/24"}"#, "host bits are set"),
            (
                r#"{"cidr":"198.18.0.7","ttl_secs":0}"#,
                "between 1 and 2592000",
            ),
            (
                r#"{"cidr":"198.18.0.7","ttl_secs":2592001}"#,
                "between 1 and 2592000",
            ),
            (r#"{"cidr":"198.18.0.7","ttl_secs":-1}"#, "invalid value"),
            (
                r#"{"cidr":"198.18.0.7","reason":"a\nb"}"#,
                "control characters",
            ),
            (r#"[{"cidr":"198.18.0.7"},{"cidr":"x"}]"#, "entry 1: cidr"),
            (
                r#"[{"cidr":"198.18.0.7"},{"cidr":"198.18.0.8","x":1}]"#,
                "entry 1: unknown field",
            ),
        ];
        for (json, want) in cases {
            let e = reqs(json).expect_err(json);
            assert!(e.contains(want), "{json}: {e} (wanted {want:?})");
        }
        let long = format!(
            r#"{{"cidr":"198.18.0.7","reason":"{}"}}"#,
            "x".repeat(REASON_MAX + 1)
        );
        assert!(reqs(&long).unwrap_err().contains("at most"));
        let too_many = format!(
            "[{}]",
            vec![r#"{"cidr":"198.18.0.7"}"#; MAX_BULK + 1].join(",")
        );
        assert!(reqs(&too_many).unwrap_err().contains("at most 100000"));
    }

    #[test]
    fn penalties() {
        assert_eq!(penalty("198.18.0.7", 50).unwrap().1, 50);
        assert!(
            penalty("198.18.0.0/24", 5)
                .unwrap_err()
                .contains("not an IP address")
        );
        assert!(penalty("198.18.0.7", 0).unwrap_err().contains("between 1"));
        assert!(
            penalty("198.18.0.7", MAX_PENALTY_TOKENS + 1)
                .unwrap_err()
                .contains("between 1")
        );
    }
}

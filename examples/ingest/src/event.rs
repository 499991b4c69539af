//! What a valid event looks like: known fields, bounded lengths, a plausible timestamp.

use std::{collections::BTreeMap, time::SystemTime};

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    pub site: String,
    pub event: String,
    pub url: String,
    /// Unix milliseconds, from the browser's clock.
    pub ts: u64,
    #[serde(default)]
    pub props: BTreeMap<String, String>,
}

const EVENTS: [&str; 4] = ["pageview", "click", "signup", "scroll"];
const MAX_SKEW_MS: u64 = 10 * 60 * 1000;

pub fn validate(body: &[u8], now: SystemTime) -> Result<Event, String> {
    if body.len() > 8192 {
        return Err(format!("event of {} bytes: at most 8192", body.len()));
    }
    let e: Event = serde_json::from_slice(body).map_err(|e| format!("not an event: {e}"))?;
    if e.site.is_empty()
        || e.site.len() > 64
        || !e
            .site
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err("site: 1-64 characters of [A-Za-z0-9.-]".into());
    }
    if !EVENTS.contains(&e.event.as_str()) {
        return Err(format!("event {:?}: one of {EVENTS:?}", e.event));
    }
    if e.url.len() > 2048 || !(e.url.starts_with("https://") || e.url.starts_with("http://")) {
        return Err("url: an http(s) URL of at most 2048 characters".into());
    }
    let now_ms = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    if e.ts.abs_diff(now_ms) > MAX_SKEW_MS {
        return Err("ts: more than 10 minutes away from now".into());
    }
    if e.props.len() > 16 || e.props.iter().any(|(k, v)| k.len() > 64 || v.len() > 256) {
        return Err("props: at most 16, keys up to 64 and values up to 256 characters".into());
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now_ms() -> u64 {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    }

    #[test]
    fn good_and_junk_events() {
        let good = format!(
            r#"{{"site":"shop.example","event":"pageview","url":"https://shop.example/a","ts":{}}}"#,
            now_ms()
        );
        assert!(validate(good.as_bytes(), SystemTime::now()).is_ok());
        let junk = [
            "not json".to_string(),
            r#"{"site":"x","event":"pageview","url":"https://x/","ts":1}"#.to_string(),
            format!(
                r#"{{"site":"x","event":"buy-now!!","url":"https://x/","ts":{}}}"#,
                now_ms()
            ),
            format!(
                r#"{{"site":"x","event":"click","url":"javascript:alert(1)","ts":{}}}"#,
                now_ms()
            ),
            format!(
                r#"{{"site":"x","event":"click","url":"https://x/","ts":{},"extra":1}}"#,
                now_ms()
            ),
            format!(
                r#"{{"site":"{}","event":"click","url":"https://x/","ts":{}}}"#,
                "s".repeat(65),
                now_ms()
            ),
        ];
        for j in junk {
            assert!(validate(j.as_bytes(), SystemTime::now()).is_err(), "{j}");
        }
    }
}

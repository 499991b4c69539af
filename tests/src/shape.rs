//! Reading guardd's attack shape (`GET /v1/shape`) in tests.

use std::{
    net::{IpAddr, Ipv4Addr},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::bed::GuardBed;

/// The whole shape report.
pub fn shape(b: &GuardBed) -> Value {
    let (code, json) = b.g.api("GET", "/v1/shape", None);
    assert_eq!(code, 200, "{json}");
    json
}

/// Rule 0's shape.
pub fn rule(s: &Value) -> &Value {
    &s["rules"][0]
}

/// Windows closed since guardd started.
pub fn windows(s: &Value) -> u64 {
    s["windows"].as_u64().expect("windows")
}

/// Waits (bounded) until `done` holds for the shape; the shape then.
pub fn wait_for(
    b: &GuardBed,
    limit: Duration,
    what: &str,
    mut done: impl FnMut(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    loop {
        let s = shape(b);
        if done(&s) {
            return s;
        }
        assert!(start.elapsed() < limit, "{what} within {limit:?}: {s:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Forged source `n` (198.19.1.0 onwards).
pub fn forged(n: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(
        u32::from(Ipv4Addr::new(198, 19, 0, 0)) + 256 + n as u32,
    ))
}

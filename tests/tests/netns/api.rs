//! Every control-API route against a real guardd, with every kind of bad input: each
//! answer's status code and its `{"error": ...}` reason.

use guard_tests::{daemon::Guardd, netns::Testbed};

const CONFIG: &str = r#"
[[rules]]
name = "per-source"
rate = 10.0
burst = 20
buckets = 1024

[bans]
max_entries = 5
escalation = ["10m", "1h"]
"#;

fn start() -> (Testbed, Guardd, tempfile::TempDir) {
    let bed = Testbed::new();
    let dir = guard_tests::daemon::workdir();
    let allow = dir.path().join("allow.txt");
    std::fs::write(&allow, "198.18.9.0/24\n").unwrap();
    let guardd = Guardd::start(
        &bed.server,
        &bed.server_if,
        &format!("[lists]\nallow = [{allow:?}]\n{CONFIG}"),
    );
    (bed, guardd, dir)
}

/// Asserts the status and that the error names the problem.
fn refused(g: &Guardd, method: &str, path: &str, body: Option<&str>, status: u16, reason: &str) {
    let (code, json) = g.api(method, path, body);
    assert_eq!(code, status, "{method} {path} {body:?}: {json}");
    let err = json["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error field: {json}"));
    assert!(
        err.contains(reason),
        "{method} {path} {body:?}: {err:?} should mention {reason:?}"
    );
}

#[test]
fn every_route_answers_and_refuses_bad_input() {
    let (_bed, g, _dir) = start();

    // Status and stats.
    let (code, status) = g.api("GET", "/v1/status", None);
    assert_eq!(code, 200);
    assert!(
        status["refill_heartbeat_age_secs"].as_f64().unwrap() < 1.0,
        "{status}"
    );
    // What loading the program cost the verifier, measured by this load.
    let program = &status["program"];
    let insns = program["verified_insns"].as_u64().expect("verified_insns");
    assert!(
        (1..=guard_user::kernel::verifier::BUDGET as u64).contains(&insns),
        "{status}"
    );
    assert!(
        program["load_ms"].as_f64().is_some_and(|ms| ms > 0.0),
        "{status}"
    );
    assert_eq!(
        program["kernel"].as_str(),
        Some(
            std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap()
                .trim()
        ),
        "{status}"
    );
    let (code, stats) = g.api("GET", "/v1/stats", None);
    assert_eq!((code, stats["bans_active"].as_u64()), (200, Some(0)));

    for route in ["/v1/bans", "/v1/allows"] {
        refused(&g, "POST", route, Some("{"), 400, "invalid JSON");
        refused(&g, "POST", route, Some("[]"), 400, "empty array");
        refused(
            &g,
            "POST",
            route,
            Some("\"198.18.0.7\""),
            400,
            "expected a JSON object",
        );
        refused(
            &g,
            "POST",
            route,
            Some(r#"{"cidr": 7}"#),
            400,
            "invalid type",
        );
        refused(
            &g,
            "POST",
            route,
            Some(r#"{"cidr":"198.18.0.7","ttl_secs":"10m"}"#),
            400,
            "invalid type",
        );
        refused(
            &g,
            "POST",
            route,
            Some(r#"{"cidr":"198.18.0.7","tll":5}"#),
            400,
            "unknown field `tll`",
        );
        refused(
            &g,
            "POST",
            route,
            Some(r#"{"cidr":"198.18.0.999"}"#),
            400,
            "not an IP address or CIDR",
        );
        refused(
            &g,
            "POST",
            route,
            Some(r#"{"cidr":"0.0.0.0/0"}"#),
            400,
            "/0 prefix",
        );
        refused(
            &g,
            "POST",
            route,
            Some(r#"{"cidr":"198.18.0.0/33"}"#),
            400,
            "not an IP address or CIDR",
        );
        refused(
            &g,
            "POST",
            route,
            Some(r#"{"cidr":"2001:db8::/129"}"#),
            400,
            "not an IP address or CIDR",
        );
        refused(
            &g,
            "POST",
            route,
            Some(r#"{"cidr":"198.18.0.7/24"}"#),
            400,
            "host bits are set",
        );
        refused(
            &g,
            "POST",
            route,
            Some(r#"{"cidr":"198.18.0.7","ttl_secs":0}"#),
            400,
            "between 1 and 2592000",
        );
        refused(
            &g,
            "POST",
            route,
            Some(r#"{"cidr":"198.18.0.7","ttl_secs":2592001}"#),
            400,
            "between 1 and 2592000",
        );
        refused(
            &g,
            "POST",
            route,
            Some(r#"[{"cidr":"198.18.0.7"},{"cidr":"nope"}]"#),
            400,
            "entry 1: cidr",
        );
        let (code, json) = g.api_oversized(route, 17 << 20);
        assert_eq!(code, 413, "{route}: {json}");
        assert!(
            json["error"].as_str().unwrap().contains("larger than"),
            "{json}"
        );
        refused(
            &g,
            "DELETE",
            &format!("{route}/198.18.0.77"),
            None,
            404,
            "no ",
        );
        refused(
            &g,
            "DELETE",
            &format!("{route}/not-a-cidr"),
            None,
            400,
            "not an IP address",
        );
        refused(&g, "PUT", route, Some("{}"), 405, "not allowed");
    }
    // Nothing above was applied.
    assert_eq!(
        g.api("GET", "/v1/bans", None).1["entries"],
        serde_json::json!([])
    );

    // A ban inside the allow list, or inside a temporary allow, is refused.
    refused(
        &g,
        "POST",
        "/v1/bans",
        Some(r#"{"cidr":"198.18.9.5"}"#),
        409,
        "covered by the allow entry 198.18.9.0/24",
    );
    let (code, _) = g.api(
        "POST",
        "/v1/allows",
        Some(r#"{"cidr":"2001:db8:5::/48","reason":"partner"}"#),
    );
    assert_eq!(code, 200);
    refused(
        &g,
        "POST",
        "/v1/bans",
        Some(r#"{"cidr":"2001:db8:5:1::/64"}"#),
        409,
        "2001:db8:5::/48",
    );

    // The table bound: max_entries = 5. A batch that would pass it is refused whole.
    let six: Vec<String> = (10..16)
        .map(|h| format!(r#"{{"cidr":"198.18.0.{h}"}}"#))
        .collect();
    refused(
        &g,
        "POST",
        "/v1/bans",
        Some(&format!("[{}]", six.join(","))),
        507,
        "max_entries 5",
    );
    assert_eq!(
        g.api("GET", "/v1/bans", None).1["entries"],
        serde_json::json!([]),
        "all or nothing"
    );
    let (code, applied) = g.api(
        "POST",
        "/v1/bans",
        Some(&format!("[{}]", six[..5].join(","))),
    );
    assert_eq!(
        (code, applied["applied"].as_array().unwrap().len()),
        (200, 5)
    );
    refused(
        &g,
        "POST",
        "/v1/bans",
        Some(r#"{"cidr":"198.18.0.20"}"#),
        507,
        "full",
    );
    assert_eq!(g.api("GET", "/v1/stats", None).1["bans_refused_full"], 2);
    // Re-banning an active entry does not need room.
    assert_eq!(
        g.api(
            "POST",
            "/v1/bans",
            Some(r#"{"cidr":"198.18.0.10","ttl_secs":30}"#)
        )
        .0,
        200
    );

    // Removal with the prefix percent-encoded.
    let (code, gone) = g.api("DELETE", "/v1/bans/198.18.0.11%2F32", None);
    assert_eq!((code, gone["cidr"].as_str()), (200, Some("198.18.0.11/32")));

    // Penalties.
    refused(
        &g,
        "POST",
        "/v1/penalties",
        Some(r#"{"ip":"198.18.0.2"}"#),
        400,
        "missing field `tokens`",
    );
    refused(
        &g,
        "POST",
        "/v1/penalties",
        Some(r#"{"ip":"198.18.0.2","tokens":"5"}"#),
        400,
        "invalid type",
    );
    refused(
        &g,
        "POST",
        "/v1/penalties",
        Some(r#"{"ip":"198.18.0.0/24","tokens":5}"#),
        400,
        "not an IP address",
    );
    refused(
        &g,
        "POST",
        "/v1/penalties",
        Some(r#"{"ip":"198.18.0.2","tokens":0}"#),
        400,
        "between 1",
    );
    refused(
        &g,
        "POST",
        "/v1/penalties",
        Some(r#"{"ip":"198.18.0.2","tokens":5,"rule":"nope"}"#),
        404,
        "no rule named",
    );
    let (code, p) = g.api(
        "POST",
        "/v1/penalties",
        Some(r#"{"ip":"198.18.0.2","tokens":5,"rule":"per-source"}"#),
    );
    assert_eq!(code, 200, "{p}");
    assert_eq!(p["rules"][0]["tokens_charged"], 5.0);
    assert_eq!(p["rules"][0]["tokens_available"], 15.0);

    // Reload and unknown routes.
    assert_eq!(g.api("POST", "/v1/reload", None).1["reloaded"], true);
    refused(
        &g,
        "GET",
        "/v1/nothing",
        None,
        404,
        "no route GET /v1/nothing",
    );

    // Every change was logged with the peer's credentials.
    let log = g.log();
    assert!(log.contains("uid=0 pid="), "{log}");
}

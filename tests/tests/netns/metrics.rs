//! The Prometheus endpoint under real traffic: the scrape passes Prometheus' own
//! `promtool check metrics` (HELP on every metric), parses as Prometheus text (with the
//! prometheus-parse crate) and its counters equal the packets the test sent, by reason.

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use guard_tests::{
    daemon::Guardd,
    http::{Outcome, Route, get},
    netns::{Testbed, client4},
    packet::udp_from,
    traffic::RawSender,
};

fn scrape(bed: &Testbed) -> HashMap<String, f64> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = "127.0.0.1".parse().unwrap();
    let route = Route {
        ns: &bed.server,
        src: local,
        dst: SocketAddr::new(local, 9752),
        timeout: Duration::from_secs(2),
    };
    let (outcome, body) = get(&rt, route, "/metrics");
    assert_eq!(outcome, Outcome::Answered(200), "{body}");
    guard_tests::tools::promtool_check(&body);
    let lines = body.lines().map(|l| Ok(l.to_string()));
    let parsed =
        prometheus_parse::Scrape::parse(lines).expect("the scrape parses as Prometheus text");
    parsed
        .samples
        .iter()
        .map(|s| {
            let mut labels: Vec<String> =
                s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            labels.sort();
            let value = match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            };
            (format!("{}{{{}}}", s.metric, labels.join(",")), value)
        })
        .collect()
}

/// `promtool check metrics` on the scrape (Debian's prometheus package, unpacked by
/// `cargo xtask test` into target/tools).
#[test]
fn scrape_parses_and_counts_what_was_sent() {
    let bed = Testbed::new();
    let dir = guard_tests::daemon::workdir();
    std::fs::write(dir.path().join("deny.txt"), "198.18.0.3\n").unwrap();
    std::fs::write(dir.path().join("allow.txt"), "198.18.0.4\n").unwrap();
    let config = format!(
        "[lists]\ndeny = [{:?}]\nallow = [{:?}]\n\
         [[rules]]\nname = \"tight\"\nprotocol = \"udp\"\nports = [9999]\nrate = 0.001\nburst = 5\nbuckets = 1024\n",
        dir.path().join("deny.txt"),
        dir.path().join("allow.txt")
    );
    let g = Guardd::start(&bed.server, &bed.server_if, &config);
    g.ban("198.18.0.6", 600);
    let tx = RawSender::open(&bed.client, &bed.client_if);
    let send = |host: u8, port: u16, n: usize| {
        let (sent, _) = tx.flood(
            &[udp_from(client4(host), port)],
            2000,
            Duration::from_secs_f64(n as f64 / 2000.0),
        );
        assert_eq!(sent[0], n);
    };
    send(3, 80, 30); // denied
    send(4, 80, 20); // allowed
    send(6, 80, 10); // banned
    send(5, 9999, 50); // 5 pass the rule, 45 limited
    std::thread::sleep(Duration::from_millis(200));
    let m = scrape(&bed);
    let v = |k: &str| {
        m.get(k)
            .copied()
            .unwrap_or_else(|| panic!("no sample {k}; have {:?}", m.keys().collect::<Vec<_>>()))
    };
    assert_eq!(v("guard_packets_total{reason=deny,verdict=drop}"), 30.0);
    assert_eq!(v("guard_packets_total{reason=allow,verdict=pass}"), 20.0);
    assert_eq!(v("guard_packets_total{reason=ban,verdict=drop}"), 10.0);
    assert_eq!(v("guard_packets_total{reason=rate,verdict=drop}"), 45.0);
    assert!(v("guard_packets_total{reason=none,verdict=pass}") >= 5.0);
    assert_eq!(
        v("guard_packets_total{reason=stale_refill,verdict=pass}"),
        0.0
    );
    assert_eq!(v("guard_rule_packets_total{rule=tight,verdict=pass}"), 5.0);
    assert_eq!(
        v("guard_rule_packets_total{rule=tight,verdict=limited}"),
        45.0
    );
    assert_eq!(v("guard_bans_active{}"), 1.0);
    assert_eq!(v("guard_allows_active{}"), 0.0);
    assert!(v("guard_refill_heartbeat_age_seconds{}") < 1.0);
    assert!(v("guard_refill_duration_seconds_count{}") >= 1.0);
    assert_eq!(v("guard_api_requests_total{code=200,route=/v1/bans}"), 1.0);
}

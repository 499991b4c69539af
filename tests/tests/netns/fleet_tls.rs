//! The fleet as docs/FLEET.md says to run it: NATS over TLS with a private CA, one client
//! certificate per node mapped to a user allowed exactly what guardd needs. Verdicts travel;
//! a node's credentials cannot purge or delete the buckets; a node whose user lacks a bucket
//! says so in one clear line; a node that only receives keeps applying the others' verdicts.

use std::time::Duration;

use guard_tests::{
    fleet::{FleetBed, Hub, NATS_PORTS, NatsServer, within},
    nats_auth::{Pki, node_permissions},
    netns::client4,
};

const ALL: [&str; 3] = ["guard_bans", "guard_allows", "guard_vouches"];

fn banned(b: &guard_tests::bed::GuardBed, cidr: &str) -> bool {
    let (code, json) = b.g.api("GET", "/v1/bans", None);
    code == 200
        && json["entries"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["cidr"] == cidr))
}

/// With node `node`'s certificate, from the hub: purge and delete the bans' stream, and
/// delete a key's message. Returns what NATS answered to each.
fn attack_buckets(pki: &Pki, hub: &Hub, node: &str) -> Vec<(String, Result<(), String>)> {
    let (ca, cert, key) = (
        pki.path("ca.pem"),
        pki.path(&format!("{node}.pem")),
        pki.path(&format!("{node}.key")),
    );
    hub.ns.run(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let client = async_nats::ConnectOptions::new()
                .require_tls(true)
                .add_root_certificates(ca)
                .add_client_certificate(cert, key)
                .connect(format!("nats://127.0.0.1:{}", NATS_PORTS[0]))
                .await
                .expect("the node's certificate connects");
            let mut js = async_nats::jetstream::new(client);
            js.set_timeout(Duration::from_secs(2));
            let mut out = Vec::new();
            let purge = js
                .get_stream("KV_guard_bans")
                .await
                .map_err(|e| e.to_string());
            let purged = match purge {
                Ok(s) => s.purge().await.map(drop).map_err(|e| e.to_string()),
                Err(e) => Err(e),
            };
            out.push(("purge KV_guard_bans".to_string(), purged));
            let deleted = js
                .delete_stream("KV_guard_bans")
                .await
                .map(drop)
                .map_err(|e| e.to_string());
            out.push(("delete stream KV_guard_bans".to_string(), deleted));
            out
        })
    })
}

#[test]
fn a_fleet_over_tls_with_a_user_per_node_shares_verdicts_and_cannot_purge() {
    let hub_addrs: Vec<String> = (1..=4).map(|i| format!("198.19.{i}.1")).collect();
    let mut ips = hub_addrs.clone();
    ips.push("127.0.0.1".into());
    let pki = Pki::new(&ips);
    for node in ["a", "b", "c", "r"] {
        pki.client(node);
    }
    let conf = pki.server_config(&[
        ("a", node_permissions(&ALL, true)),
        ("b", node_permissions(&ALL, true)),
        // A user without the allows' bucket.
        ("c", node_permissions(&["guard_bans"], true)),
        // The read-only variant: it receives, never publishes.
        ("r", node_permissions(&ALL, false)),
    ]);
    let hub = Hub::new();
    let nats = vec![NatsServer::configured(&hub, NATS_PORTS[0], &conf)];
    let mut f = FleetBed::on(hub, nats);
    f.add_host_with("a", "", &pki.fleet_tls("a"));
    f.add_host_with("b", "", &pki.fleet_tls("b"));
    f.wait_in_sync(Duration::from_secs(30));
    let (a, b) = (&f.hosts[0], &f.hosts[1]);
    a.ok(
        "POST",
        "/v1/bans",
        r#"{"cidr":"198.18.0.5","ttl_secs":600,"reason":"over tls"}"#,
    );
    a.ok(
        "POST",
        "/v1/allows",
        r#"{"cidr":"198.18.0.6","ttl_secs":600}"#,
    );
    let travelled = within(Duration::from_secs(5), || banned(b, "198.18.0.5/32"));
    assert!(travelled.is_some(), "the ban reached b:\n{}", b.g.log());
    assert_eq!(b.deliver(client4(5), 20), 0, "b drops the banned source");
    let log = f.nats[0].log();
    assert!(
        !log.contains("Violation"),
        "a node's user is allowed all guardd does:\n{log}"
    );
    // A node's credentials cannot empty or remove the buckets.
    for (what, answer) in attack_buckets(&pki, &f.hub, "a") {
        assert!(
            answer.is_err(),
            "{what} with a node's certificate: {answer:?}"
        );
    }
    let log = f.nats[0].log();
    for call in ["PURGE", "DELETE"] {
        let refused = format!(
            "Publish Violation - User \"CN=a\", Subject \"$JS.API.STREAM.{call}.KV_guard_bans\""
        );
        assert!(log.contains(&refused), "the server refused {call}:\n{log}");
    }
    // A node whose user lacks the allows' bucket: one clear line, and it stays alone.
    let c = f.add_host_with("c", "", &pki.fleet_tls("c"));
    let c = &f.hosts[c];
    assert!(
        c.g.wait_for_log(
            "fleet: NATS refused this node's user",
            Duration::from_secs(15)
        ),
        "{}",
        c.g.log()
    );
    let log = c.g.log();
    assert!(
        log.contains("KV_guard_allows"),
        "the line names the bucket: {log}"
    );
    // A node that only receives: it applies the ban, its own verdicts stay at home.
    let r = f.add_host_with("r", "", &pki.fleet_tls("r"));
    let r = &f.hosts[r];
    let applied = within(Duration::from_secs(15), || banned(r, "198.18.0.5/32"));
    assert!(applied.is_some(), "the receiver caught up:\n{}", r.g.log());
    r.ok(
        "POST",
        "/v1/bans",
        r#"{"cidr":"198.18.0.7","ttl_secs":600}"#,
    );
    assert!(
        r.g.wait_for_log("may not publish verdicts", Duration::from_secs(10)),
        "{}",
        r.g.log()
    );
    let a = &f.hosts[0];
    a.ok(
        "POST",
        "/v1/bans",
        r#"{"cidr":"198.18.0.8","ttl_secs":600}"#,
    );
    let live = within(Duration::from_secs(5), || banned(r, "198.18.0.8/32"));
    assert!(
        live.is_some(),
        "the receiver still applies live verdicts:\n{}",
        r.g.log()
    );
    assert!(
        !banned(a, "198.18.0.7/32"),
        "the receiver's own ban stayed on it"
    );
}

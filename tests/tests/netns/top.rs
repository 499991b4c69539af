//! `guardctl top` names the sources of a flood, ranked by (sampled) drops, and the kernel's
//! sampling stays bounded while a flood runs.

use std::time::Duration;

use guard_tests::{
    daemon::Guardd,
    netns::{Testbed, client4, client6},
    packet::udp_from,
    traffic::RawSender,
};

#[test]
fn guardctl_top_names_the_flooding_sources() {
    let bed = Testbed::new();
    let dir = guard_tests::daemon::workdir();
    let deny = dir.path().join("deny.txt");
    std::fs::write(&deny, "198.18.0.3\n198.18.0.5\n2001:db8::6\n").unwrap();
    let mut g = Guardd::start(
        &bed.server,
        &bed.server_if,
        &format!("[lists]\ndeny = [{deny:?}]\n"),
    );
    // After a restart the new daemon reads the pinned ring buffer the kept program writes.
    assert!(g.stop().success());
    let tx = RawSender::open(&bed.client, &bed.client_if);
    // Drops while no daemon reads: the events wait in the pinned ring buffer.
    tx.flood(&[udp_from(client4(3), 9)], 2000, Duration::from_millis(200));
    g.spawn(&bed.server, &bed.server_if);
    // Interleaved 6 : 3 : 1, so sampling keeps the proportions.
    let (big, mid, small) = (client4(3), client4(5), client6(6));
    let mut frames = vec![udp_from(big, 9); 6];
    frames.extend(vec![udp_from(mid, 9); 3]);
    frames.push(udp_from(small, 9));
    let (sent, _) = tx.flood(&frames, 5000, Duration::from_secs(1));
    std::thread::sleep(Duration::from_millis(300));
    let top = g.ctl_json(&["top", "-n", "3"]);
    let names: Vec<&str> = top["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["source"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["198.18.0.3", "198.18.0.5", "2001:db8::6"], "{top}");
    assert_eq!(
        top["sources"][0]["reasons"]["deny"],
        top["sources"][0]["dropped"]
    );
    let sampled = top["sampled_drops"].as_u64().unwrap();
    let dropped: usize = sent.iter().sum();
    assert!(
        sampled > 0 && sampled as usize <= dropped,
        "sampled {sampled} of {dropped}"
    );
    // At most 256 events per CPU per 100 ms: a 1 s flood yields at most 2560 per CPU.
    let cpus = std::thread::available_parallelism().unwrap().get() as u64;
    assert!(
        sampled <= 2560 * cpus + 256 * cpus,
        "sampling is bounded: {sampled}"
    );
    let text = String::from_utf8(g.ctl(&["top"]).stdout).unwrap();
    assert!(
        text.lines().nth(2).unwrap().starts_with("198.18.0.3"),
        "{text}"
    );
    // Bad queries are refused.
    assert_eq!(g.api("GET", "/v1/top?n=0", None).0, 400);
    assert_eq!(g.api("GET", "/v1/top?x=1", None).0, 400);
}

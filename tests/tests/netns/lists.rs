//! guardd on a real veth in a network namespace, traffic from another namespace: the deny
//! list drops, the allow list bypasses it, unlisted sources pass, for IPv4 and IPv6.
//! Enforcement survives guardd's exit and `guardctl detach` removes it.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use guard_tests::{
    daemon::Guardd,
    netns::{SERVER4, SERVER6, Testbed, client4, client6},
    traffic::{Receiver, send_udp},
};
use nix::sys::signal::Signal;

const PER_SOURCE: usize = 200;

/// Client .2 unlisted, .3 denied, .4 allowed inside the denied .4/30, .5 denied by the /30.
fn lists_config(dir: &std::path::Path) -> String {
    let allow = dir.join("allow.txt");
    let deny = dir.join("deny.txt");
    std::fs::write(&allow, "# test allow list\n198.18.0.4\n2001:db8::4\n").unwrap();
    std::fs::write(
        &deny,
        "198.18.0.3\n198.18.0.4/30  # .4-.7\n2001:db8::3\n2001:db8::4/126\n",
    )
    .unwrap();
    format!("[lists]\nallow = [{allow:?}]\ndeny = [{deny:?}]\n")
}

fn sources() -> Vec<(IpAddr, bool)> {
    // (source, expected to pass)
    vec![
        (client4(2), true),
        (client4(3), false),
        (client4(4), true),
        (client4(5), false),
        (client6(2), true),
        (client6(3), false),
        (client6(4), true),
        (client6(5), false),
    ]
}

fn blast(bed: &Testbed, rx: &Receiver, srcs: &[(IpAddr, bool)]) -> HashMap<IpAddr, usize> {
    for (src, _) in srcs {
        let dst = match src {
            IpAddr::V4(_) => SocketAddr::new(SERVER4.into(), rx.port),
            IpAddr::V6(_) => SocketAddr::new(SERVER6.into(), rx.port),
        };
        send_udp(&bed.client, *src, dst, PER_SOURCE);
    }
    rx.collect(Duration::from_millis(400), Duration::from_secs(10))
}

fn assert_enforced(got: &HashMap<IpAddr, usize>, srcs: &[(IpAddr, bool)], when: &str) {
    for (src, passes) in srcs {
        let n = got.get(src).copied().unwrap_or(0);
        if *passes {
            assert_eq!(
                n, PER_SOURCE,
                "{when}: {src} should pass all {PER_SOURCE} datagrams, got {n}"
            );
        } else {
            assert_eq!(n, 0, "{when}: {src} is denied but {n} datagrams arrived");
        }
    }
}

#[test]
fn deny_drops_allow_bypasses_unlisted_passes() {
    let bed = Testbed::new();
    let dir = guard_tests::daemon::workdir();
    let guardd = Guardd::start(&bed.server, &bed.server_if, &lists_config(dir.path()));
    let rx = Receiver::bind(&bed.server);
    let srcs = sources();
    let got = blast(&bed, &rx, &srcs);
    assert_enforced(&got, &srcs, "guardd running");

    // The kernel's counters agree with what the receiver saw.
    let denied = srcs.iter().filter(|(_, p)| !p).count() as u64 * PER_SOURCE as u64;
    let allowed = 2 * PER_SOURCE as u64;
    assert_eq!(guardd.packets("drop", "deny"), denied);
    assert_eq!(guardd.packets("pass", "allow"), allowed);
    assert!(guardd.packets("pass", "none") >= 2 * PER_SOURCE as u64);

    let status = guardd.ctl_json(&["status"]);
    assert_eq!(status["interfaces"][0]["name"], bed.server_if.as_str());
    assert_eq!(
        status["interfaces"][0]["xdp_mode"], "driver",
        "veth supports native XDP"
    );
    assert!(status["interfaces"][0]["program_id"].as_u64().is_some());
    let stats = guardd.ctl_json(&["stats"]);
    assert_eq!(stats["lists"]["deny"], 4);
    assert_eq!(stats["lists"]["allow"], 2);
}

#[test]
fn enforcement_outlives_guardd_and_detach_removes_it() {
    let bed = Testbed::new();
    let dir = guard_tests::daemon::workdir();
    let mut guardd = Guardd::start(&bed.server, &bed.server_if, &lists_config(dir.path()));
    let first_id = guardd.ctl_json(&["status"])["interfaces"][0]["program_id"]
        .as_u64()
        .unwrap();
    let status = guardd.stop();
    assert!(status.success(), "SIGTERM exit: {status}\n{}", guardd.log());
    assert!(!guardd.socket.exists(), "the API socket is removed on exit");

    // Daemon down: the pinned program still enforces the lists.
    let rx = Receiver::bind(&bed.server);
    let srcs = sources();
    assert_enforced(&blast(&bed, &rx, &srcs), &srcs, "guardd stopped");

    // guardctl answers from the pins.
    let out = guardd.ctl(&["--json", "status"]);
    assert_eq!(out.status.code(), Some(3), "status of a guardd not running");
    let offline: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON status");
    assert_eq!(offline["daemon"], "down");
    assert_eq!(offline["interfaces"][0]["name"], bed.server_if.as_str());
    let stats = guardd.ctl_json(&["stats"]);
    let dropped: u64 = stats["packets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["verdict"] == "drop" && p["reason"] == "deny")
        .map(|p| p["packets"].as_u64().unwrap())
        .sum();
    assert_eq!(
        dropped,
        4 * PER_SOURCE as u64,
        "counters from the pinned map"
    );

    // A new guardd adopts the pinned link; its program is the same code, so it stays.
    guardd.spawn(&bed.server, &bed.server_if);
    let status = guardd.ctl_json(&["status"]);
    let second_id = status["interfaces"][0]["program_id"].as_u64().unwrap();
    assert_eq!(first_id, second_id, "the same program keeps running");
    assert!(
        guardd.log().contains("kept the attached program"),
        "{}",
        guardd.log()
    );
    assert_enforced(&blast(&bed, &rx, &srcs), &srcs, "after restart");
    // The counters were adopted with the maps, not reset.
    assert_eq!(guardd.packets("drop", "deny"), 8 * PER_SOURCE as u64);

    // detach refuses while guardd runs, then removes everything.
    let refused = guardd.ctl(&["detach"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("is running"));
    assert!(guardd.stop().success());
    let out = guardd.ctl(&["detach"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!guardd.pin_dir.exists(), "pins removed");
    let everyone: Vec<(IpAddr, bool)> = srcs.iter().map(|(s, _)| (*s, true)).collect();
    assert_enforced(&blast(&bed, &rx, &everyone), &everyone, "after detach");
}

#[test]
fn sighup_reloads_lists() {
    let bed = Testbed::new();
    let dir = guard_tests::daemon::workdir();
    let guardd = Guardd::start(&bed.server, &bed.server_if, &lists_config(dir.path()));
    let rx = Receiver::bind(&bed.server);

    // New deny list: .2 denied, .3 no longer.
    std::fs::write(dir.path().join("deny.txt"), "198.18.0.2\n").unwrap();
    guardd.signal(Signal::SIGHUP);
    let want = [(client4(2), false), (client4(3), true), (client4(4), true)];
    let ok = guardd.wait_for_log("reloaded", Duration::from_secs(5));
    assert!(ok, "no reload logged:\n{}", guardd.log());
    assert_enforced(&blast(&bed, &rx, &want), &want, "after reload");

    // A bad list is refused and the running lists stay.
    std::fs::write(dir.path().join("deny.txt"), "198.18.0.3\nnot-an-address\n").unwrap();
    guardd.signal(Signal::SIGHUP);
    let refused = guardd.wait_for_log("reload refused", Duration::from_secs(5));
    assert!(refused, "no refusal logged:\n{}", guardd.log());
    assert!(guardd.log().contains("deny.txt:2"), "{}", guardd.log());
    assert_enforced(&blast(&bed, &rx, &want), &want, "after refused reload");
}

//! Protected addresses, attacked through every channel that makes a ban: the API (one,
//! a prefix over it, a bulk batch), `ban_after`, aggregation, and a deny list covering the
//! host (check-config, start, reload). The fleet's channel is in `fleet_trust`.

use std::{
    net::{IpAddr, Ipv4Addr},
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use guard_tests::{
    bed::GuardBed,
    daemon::{Guardd, PinDir, bin, run_guardd},
    netns::{Netns, Testbed},
    packet::udp_from,
};
use serde_json::Value;

fn ban(b: &GuardBed, body: &str) -> (u16, Value) {
    b.g.api("POST", "/v1/bans", Some(body))
}

fn banned(b: &GuardBed) -> Vec<String> {
    let list = b.ok("GET", "/v1/bans", "");
    list["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["cidr"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The first resolver of this host's /etc/resolv.conf, if any (guardd reads the same file).
fn resolver() -> Option<IpAddr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").ok()?;
    text.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        (w.next()? == "nameserver").then_some(())?;
        w.next()?.split('%').next()?.parse().ok()
    })
}

#[test]
fn bans_of_protected_addresses_are_refused_naming_them() {
    let b = GuardBed::start(
        "[[rules]]\nname = \"all\"\nrate = 10.0\nburst = 10\n\n\
         [bans]\nprotect = [\"198.18.64.0/24\", \"198.18.0.7\"]\n",
    );
    let iface = b.bed.server_if.clone();
    // (ban, what the refusal must name)
    let own = format!("198.18.0.1 (an address of {iface})");
    let own6 = format!("2001:db8::1 (an address of {iface})");
    let attempts = [
        ("198.18.0.1", own.as_str()),
        ("198.18.0.0/24", own.as_str()),
        ("198.18.0.0/15", own.as_str()),
        ("2001:db8::1", own6.as_str()),
        ("2001:db8::/64", own6.as_str()),
        ("198.18.0.7", "198.18.0.7 (listed in [bans] protect)"),
        ("198.18.64.9", "198.18.64.0/24 (listed in [bans] protect)"),
        (
            "198.18.64.0/23",
            "198.18.64.0/24 (listed in [bans] protect)",
        ),
    ];
    for (cidr, names) in attempts {
        let (code, json) = ban(&b, &format!(r#"{{"cidr":"{cidr}","ttl_secs":60}}"#));
        assert_eq!(code, 409, "ban {cidr}: {json}");
        let error = json["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(names) && error.contains("never bans"),
            "ban {cidr}: the refusal names {names}: {error}"
        );
    }
    match resolver() {
        Some(r) => {
            let (code, json) = ban(&b, &format!(r#"{{"cidr":"{r}","ttl_secs":60}}"#));
            assert_eq!(code, 409, "ban the resolver {r}: {json}");
            assert!(
                json["error"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("a resolver in /etc/resolv.conf"),
                "{json}"
            );
        }
        None => eprintln!("this host has no resolver in /etc/resolv.conf: not tried"),
    }
    // A bulk batch with one protected entry applies nothing.
    let (code, json) = ban(
        &b,
        r#"[{"cidr":"198.18.0.20","ttl_secs":60},{"cidr":"198.18.0.7","ttl_secs":60}]"#,
    );
    assert_eq!(code, 409, "{json}");
    assert!(
        banned(&b).is_empty(),
        "nothing half-applied: {:?}",
        banned(&b)
    );
    // guardctl says the same, as an error.
    let out = b.g.ctl(&["ban", "198.18.0.1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains(&own),
        "guardctl: {err}"
    );
    // Beside them, bans go on as before.
    b.ok(
        "POST",
        "/v1/bans",
        r#"{"cidr":"198.18.0.20","ttl_secs":60}"#,
    );
    assert_eq!(banned(&b), ["198.18.0.20/32"]);
    // Protected is not allowed: a flood from a protected source is still limited.
    let passed = b.deliver(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 7)), 200);
    assert!(
        (10..=40).contains(&passed),
        "a protected source is held to its rule (10/s, burst 10): {passed} of 200 passed"
    );
}

#[test]
fn automatic_bans_skip_protected_addresses_and_aggregates_stop_short() {
    let b = GuardBed::start(
        "[[rules]]\nname = \"per-source\"\nrate = 100.0\nburst = 100\nban_after = \"2s\"\nban_unverified = true\n\n\
         [bans]\nprotect = [\"198.18.40.7\"]\naggregate_sources = 3\n",
    );
    // A protected source limited for twice ban_after: limited, never banned.
    let src = IpAddr::V4(Ipv4Addr::new(198, 18, 40, 7));
    let frames = [udp_from(src, b.rx.port)];
    let stop = AtomicBool::new(false);
    let limited_before = b.g.packets("drop", "rate");
    std::thread::scope(|s| {
        let flood = s.spawn(|| {
            b.tx.flood_until(&frames, 1000, Duration::from_secs(6), &stop)
        });
        let skipped = "guard_auto_bans_skipped_total{kind=\"rule\",reason=\"protected\"} ";
        let start = Instant::now();
        while b.count(skipped) == 0 && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(50));
        }
        // Twice ban_after in all.
        std::thread::sleep(Duration::from_secs(4).saturating_sub(start.elapsed()));
        stop.store(true, Ordering::Relaxed);
        flood.join().expect("flood");
        assert!(b.count(skipped) >= 1, "counted:\n{}", b.scrape());
    });
    assert!(banned(&b).is_empty(), "{:?}", banned(&b));
    assert!(
        b.g.packets("drop", "rate") > limited_before + 1000,
        "the flood was limited all along"
    );
    assert!(
        b.g.log().contains(
            "not banned automatically: 198.18.40.7/32 covers 198.18.40.7 (listed in [bans] protect)"
        ),
        "{}",
        b.g.log()
    );
    // Three bans in 198.18.50.0/24 become one ban of it; three in 198.18.0.0/24 (which holds
    // the host's own 198.18.0.1) stay three.
    for host in 1..=3 {
        b.ok(
            "POST",
            "/v1/bans",
            &format!(r#"{{"cidr":"198.18.50.{host}"}}"#),
        );
        b.ok(
            "POST",
            "/v1/bans",
            &format!(r#"{{"cidr":"198.18.0.{}"}}"#, 20 + host),
        );
    }
    let mut now = banned(&b);
    now.sort();
    assert_eq!(
        now,
        [
            "198.18.0.21/32",
            "198.18.0.22/32",
            "198.18.0.23/32",
            "198.18.50.0/24"
        ],
        "only the unprotected prefix is aggregated"
    );
    let stopped = "guard_auto_bans_skipped_total{kind=\"aggregate\",reason=\"protected\"} ";
    assert_eq!(b.count(stopped), 1, "{}", b.scrape());
}

/// guardctl check-config in `ns` (where the interfaces and routes are).
fn check_config(ns: &Netns, config: &std::path::Path) -> (bool, String) {
    let out = Command::new("nsenter")
        .arg(format!("--net={}", ns.path()))
        .arg(bin("guardctl"))
        .args(["check-config", config.to_str().expect("utf-8")])
        .output()
        .expect("run guardctl");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn a_deny_list_covering_the_host_is_refused_at_check_config_start_and_reload() {
    let bed = Testbed::new();
    let dir = guard_tests::daemon::workdir();
    let (deny, allow) = (dir.path().join("deny.txt"), dir.path().join("allow.txt"));
    // A public blocklist's shape: a range with the host's own network in it, on line 3.
    std::fs::write(&deny, "198.18.5.0/24\n# reserved\n198.18.0.0/15\n").expect("deny");
    std::fs::write(&allow, "").expect("allow");
    let config = dir.path().join("guard.toml");
    let text = format!(
        "interfaces = [\"{}\"]\n[lists]\ndeny = [{deny:?}]\nallow = [{allow:?}]\n",
        bed.server_if
    );
    std::fs::write(&config, &text).expect("config");
    let refusal = format!(
        "{}:3: \"198.18.0.0/15\": covers 198.18.0.1 (an address of {})",
        deny.display(),
        bed.server_if
    );
    let (ok, out) = check_config(&bed.server, &config);
    assert!(
        !ok && out.contains(&refusal) && out.contains("allow list"),
        "check-config: {out}"
    );
    let pin_dir = PinDir::new();
    let args = [
        "--foreground",
        "--config",
        config.to_str().expect("utf-8"),
        "--pin-dir",
        pin_dir.as_str(),
    ];
    let started = run_guardd(&bed.server, &args, Duration::from_secs(30));
    let err = String::from_utf8_lossy(&started.stderr);
    assert_eq!(started.status.code(), Some(1), "{err}");
    assert!(err.contains(&refusal), "start: {err}");
    let pinned: Vec<_> = std::fs::read_dir(&pin_dir.0).expect("pin dir").collect();
    assert!(
        pinned.is_empty(),
        "nothing was loaded or pinned: {pinned:?}"
    );
    // The fix the message gives: allow the host's own network.
    std::fs::write(&allow, "198.18.0.0/24\n2001:db8::/64\n").expect("allow");
    let (ok, out) = check_config(&bed.server, &config);
    assert!(ok, "check-config with the allow entry: {out}");
    // A reload whose deny list reaches the host's IPv6 address is refused whole.
    let g = Guardd::start(
        &bed.server,
        &bed.server_if,
        &format!("[lists]\ndeny = [{deny:?}]\nallow = [{allow:?}]\n"),
    );
    let before = g.api("GET", "/v1/stats", None).1;
    std::fs::write(&allow, "198.18.0.0/24\n").expect("allow");
    std::fs::write(&deny, "198.18.0.0/15\n2001:db8::/32\n").expect("deny");
    let (code, json) = g.api("POST", "/v1/reload", None);
    assert_eq!(code, 400, "{json}");
    let error = json["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("\"2001:db8::/32\": covers 2001:db8::1 (an address of"),
        "reload: {error}"
    );
    let after = g.api("GET", "/v1/stats", None).1;
    assert_eq!(before["lists"], after["lists"], "the lists in force stay");
}

//! Nothing half-applied: a bulk ban or a reload that hits a real kernel-map failure part-way
//! (a pinned hash map filled from outside until it refuses inserts) leaves no trace of
//! itself (in the kernel and the state database), the caller hears the error, and the same change applies whole once there is
//! room. A reload of a setting only a restart can apply is refused, not half-taken.

use std::net::{IpAddr, Ipv4Addr};

use guard_common::{
    dynamic::{BanHistory, DynEntry, DynKeyV4, DynMeta, DynMetaKey, KIND_BAN, V4Len},
    lists::Bitmap512,
    map_names,
};
use guard_tests::{
    bed::GuardBed,
    daemon::bulk_bans_body,
    inject::{Filled, keys},
    netns::client4,
};

/// The bulk's addresses, from 198.18.100.0.
fn bulk_addr(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 100, 0)) + i)
}

#[test]
fn a_bulk_ban_that_fails_part_way_leaves_nothing() {
    bulk_ban_fails_part_way(100);
}

/// From 1,024 entries guardd writes `BAN_HIST` and `DYN_META` on two threads and stages the
/// state database's rows while the kernel maps are written: the staged rows must go too.
#[test]
fn a_large_bulk_ban_that_fails_part_way_leaves_nothing_in_the_kernel_or_the_database() {
    bulk_ban_fails_part_way(3000);
}

fn bulk_ban_fails_part_way(bulk: u32) {
    let mut b = GuardBed::start(&format!("[bans]\nmax_entries = {}\n", bulk + 900));
    b.g.ban("198.18.0.9", 600);
    let meta_before = keys::<DynMetaKey, DynMeta>(&b.map_pin(map_names::DYN_META));
    let hist_before = keys::<DynMetaKey, BanHistory>(&b.map_pin(map_names::BAN_HIST));
    // Expired (never enforced) junk bans of 198.19.x.y until 40 slots are left: the 41st
    // of the bulk's inserts fails in the kernel.
    let expired = DynEntry {
        expires_ns: 1,
        kind: KIND_BAN,
        _reserved: 0,
    };
    let mut junk = Filled::new(&b.map_pin(map_names::DYN_V4), 40, expired, |i| {
        V4Len::new(32).key(u32::from(Ipv4Addr::new(198, 19, 0, 0)) + i)
    });
    let body = bulk_bans_body(bulk_addr(0), bulk, 600);
    let (code, json) = b.g.api("POST", "/v1/bans", Some(&body));
    assert_eq!(code, 500, "a kernel failure is the server's: {json}");
    assert!(json.to_string().contains("DYN_V4"), "names the map: {json}");
    // Nothing of the batch remains: kernel entries, metadata, histories, the list.
    let bulk_keys: Vec<DynKeyV4> = (0..bulk)
        .map(|i| V4Len::new(32).key(u32::from(bulk_addr(i))))
        .collect();
    let v4 = keys::<DynKeyV4, DynEntry>(&b.map_pin(map_names::DYN_V4));
    let left: Vec<_> = bulk_keys.iter().filter(|k| v4.contains(k)).collect();
    assert!(
        left.is_empty(),
        "{} bulk entries left in DYN_V4",
        left.len()
    );
    let mut meta_after = keys::<DynMetaKey, DynMeta>(&b.map_pin(map_names::DYN_META));
    let mut hist_after = keys::<DynMetaKey, BanHistory>(&b.map_pin(map_names::BAN_HIST));
    for (before, after) in [
        (meta_before, &mut meta_after),
        (hist_before, &mut hist_after),
    ] {
        let mut before = before;
        before.sort();
        after.sort();
        assert_eq!(&before, after, "DYN_META and BAN_HIST as they were");
    }
    let bans = b.g.ctl_json(&["bans"]);
    assert_eq!(bans["entries"].as_array().unwrap().len(), 1, "{bans}");
    assert_eq!(b.deliver(IpAddr::V4(bulk_addr(7)), 20), 20, "not enforced");
    assert_eq!(b.deliver(client4(9), 20), 0, "the earlier ban holds");
    // Nor in the state database: after a reboot (the pins and the junk gone) only the
    // earlier ban comes back.
    junk.clear();
    b.reboot();
    b.g.spawn(&b.bed.server, &b.bed.server_if);
    let bans = b.g.ctl_json(&["bans"]);
    assert_eq!(
        bans["entries"].as_array().unwrap().len(),
        1,
        "bans after a reboot: only the earlier one"
    );
    assert_eq!(b.deliver(IpAddr::V4(bulk_addr(7)), 20), 20, "not enforced");
    // With room, the same request applies whole, durably.
    let applied = b.ok("POST", "/v1/bans", &body);
    assert_eq!(applied["applied"].as_array().unwrap().len(), bulk as usize);
    assert_eq!(applied["durable"], true, "{}", applied["durable"]);
    assert_eq!(b.deliver(IpAddr::V4(bulk_addr(7)), 20), 0, "enforced");
    b.reboot();
    b.g.spawn(&b.bed.server, &b.bed.server_if);
    let bans = b.g.ctl_json(&["bans"]);
    assert_eq!(
        bans["entries"].as_array().unwrap().len(),
        bulk as usize + 1,
        "all restored"
    );
    assert_eq!(b.deliver(IpAddr::V4(bulk_addr(7)), 20), 0, "enforced");
}

/// `deny.txt` of the reloaded config: the old entry, a new one, 300 IPv4 hosts in 300
/// other /24s (each a `V4_TBL8` element) and 300 IPv6 /48s.
fn new_deny_list() -> String {
    let mut text = String::from("198.18.0.3\n198.18.0.4\n");
    for i in 0..300u32 {
        let slash24 = u32::from(Ipv4Addr::new(198, 18, 1, 0)) + (i << 8);
        text += &format!("{}\n", Ipv4Addr::from(slash24 + 1));
        text += &format!("2001:db8:{:x}::/48\n", 0x1000 + i);
    }
    text
}
#[test]
fn a_reload_that_fails_part_way_leaves_the_old_config() {
    let b = GuardBed::start("[lists]\ndeny = [\"{dir}/deny.txt\"]\n");
    let deny = b.dir.path().join("deny.txt");
    std::fs::write(&deny, "198.18.0.3\n").unwrap();
    b.ok("POST", "/v1/reload", "");
    let (old, new) = (client4(3), client4(4));
    assert_eq!(b.deliver(old, 20), 0);
    // New lists, and monitor mode, in one reload.
    std::fs::write(&deny, new_deny_list()).unwrap();
    std::fs::write(
        &b.g.config,
        b.g.with_state_dir(&format!("monitor = true\n[lists]\ndeny = [{deny:?}]\n")),
    )
    .unwrap();
    // Junk /24s of 240.0.0.0/4 (never split, so never read) until 100 slots are left: the
    // 101st new host table fails, part-way through the new lists.
    let tbl8_pin = b.map_pin(map_names::V4_TBL8);
    let mut junk = Filled::new(&tbl8_pin, 100, Bitmap512::ZERO, |i| 0x00f0_0000 + i);
    let out = b.g.ctl(&["reload"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the previous configuration stays in force") && err.contains("V4_TBL8"),
        "{err}"
    );
    // The old config, whole: flags, lists in the kernel, lists in the daemon.
    let status = b.g.ctl_json(&["status"]);
    assert_eq!(status["monitor"], false, "{status}");
    let tbl8 = keys::<u32, Bitmap512>(&tbl8_pin);
    let new_keys = (0..300u32).map(|i| (u32::from(Ipv4Addr::new(198, 18, 1, 0)) >> 8) + i);
    let left = new_keys.filter(|k| tbl8.contains(k)).count();
    assert_eq!(left, 0, "no host table of the new list stays in V4_TBL8");
    let stats = b.g.ctl_json(&["stats"]);
    assert_eq!(stats["lists"]["deny"], 1, "{stats}");
    assert_eq!(b.deliver(old, 20), 0, "the old deny list still drops");
    assert_eq!(b.deliver(new, 20), 20, "the new one is not in force");
    // With room, the same reload applies whole.
    junk.clear();
    b.ok("POST", "/v1/reload", "");
    assert_eq!(b.g.ctl_json(&["status"])["monitor"], true);
    assert_eq!(b.deliver(new, 20), 20, "monitor mode passes it");
    assert_eq!(
        b.g.packets("monitor", "deny"),
        20,
        "and counts the would-drop"
    );
}

#[test]
fn a_reload_of_a_restart_only_setting_is_refused_whole() {
    let b = GuardBed::start("[lists]\ndeny = [\"{dir}/deny.txt\"]\n");
    let deny = b.dir.path().join("deny.txt");
    std::fs::write(&deny, "198.18.0.3\n").unwrap();
    std::fs::write(
        &b.g.config,
        b.g.with_state_dir(&format!(
            "[lists]\ndeny = [{deny:?}]\n[metrics]\nlisten = \"127.0.0.1:9753\"\n"
        )),
    )
    .unwrap();
    let out = b.g.ctl(&["reload"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("metrics.listen changed; restart guardd to apply it"),
        "{err}"
    );
    assert_eq!(
        b.deliver(client4(3), 20),
        20,
        "the list change in the same reload is not taken either"
    );
}

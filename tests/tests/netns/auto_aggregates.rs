//! Automatic aggregation under real floods: bans inside one prefix become one ban of it
//! unless an allow lies inside, members come back when it goes, and an aggregate survives a
//! reboot. The rule and floods are `auto_bans`'.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::atomic::AtomicBool,
    time::Duration,
};

use guard_tests::{bed::GuardBed, connections::Connections, packet::udp_from};

use super::auto_bans::{ban_of, bans, config, flood_until, flood_until_banned, proven_config};

fn sixteen(b: &GuardBed, port: u16, src: impl Fn(u16) -> IpAddr) -> (Connections, Vec<Vec<u8>>) {
    let sources: Vec<IpAddr> = (1..=16).map(src).collect();
    let c = Connections::open(&b.bed, &sources, port);
    let frames = c.acks();
    (c, frames)
}

#[test]
fn sixteen_sources_in_one_slash_24_become_one_ban_and_come_back_when_it_goes() {
    let b = GuardBed::start(&proven_config("aggregate_sources = 8"));
    let (_c, frames) = sixteen(&b, 8077, |i| {
        IpAddr::V4(Ipv4Addr::new(198, 19, 77, i as u8 * 10))
    });
    let (after, e) = flood_until_banned(
        &b,
        &frames,
        16_000,
        "198.19.77.0/24",
        Duration::from_secs(10),
    );
    eprintln!(
        "aggregate: {e} {:.2}s after the flood started",
        after.as_secs_f64()
    );
    let all = bans(&b);
    assert_eq!(all.len(), 1, "one prefix ban, the members gone: {all:?}");
    let reason = e["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("aggregate: ") && reason.contains("inside 198.19.77.0/24"),
        "{reason}"
    );
    let members: u64 = reason["aggregate: ".len()..]
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a count");
    assert!(members >= 8, "{reason}");
    let listed = String::from_utf8_lossy(&b.g.ctl(&["bans"]).stdout).to_string();
    assert!(
        listed.contains("198.19.77.0/24") && listed.contains("aggregate"),
        "{listed}"
    );
    assert_eq!(b.count("guard_auto_bans_total{kind=\"aggregate\"}"), 1);
    assert_eq!(
        b.deliver(IpAddr::V4(Ipv4Addr::new(198, 19, 77, 250)), 20),
        0,
        "the whole /24 drops"
    );
    // The prefix ban lifted: the member bans still in force are back.
    b.ok("DELETE", "/v1/bans/198.19.77.0%2F24", "");
    let back = bans(&b);
    assert_eq!(back.len() as u64, members, "members back: {back:?}");
    assert!(back.iter().all(|e| {
        e["cidr"]
            .as_str()
            .is_some_and(|c| c.starts_with("198.19.77.") && c.ends_with("/32"))
    }));
    assert_eq!(
        b.deliver(IpAddr::V4(Ipv4Addr::new(198, 19, 77, 250)), 20),
        20,
        "the rest of the /24 passes"
    );
}

#[test]
fn an_allow_inside_the_slash_24_prevents_aggregation() {
    let b = GuardBed::start(&proven_config("aggregate_sources = 8"));
    b.ok(
        "POST",
        "/v1/allows",
        r#"{"cidr":"198.19.78.250","reason":"a partner"}"#,
    );
    let (_c, frames) = sixteen(&b, 8078, |i| {
        IpAddr::V4(Ipv4Addr::new(198, 19, 78, i as u8 * 10))
    });
    // Every flooding source ends banned on its own: all within a second of each other (a
    // source whose first limited packet fell just after a second began is a second later).
    let (after, all) = flood_until(&b, &frames, 16_000, Duration::from_secs(10), &|bans| {
        bans.len() >= 16
    });
    eprintln!(
        "16 bans {:.2}s after the flood started",
        after.as_secs_f64()
    );
    assert!(
        all.iter()
            .all(|e| e["cidr"].as_str().is_some_and(|c| c.ends_with("/32"))),
        "no prefix ban: {all:?}"
    );
    assert_eq!(all.len(), 16, "{all:?}");
    assert_eq!(b.count("guard_auto_bans_total{kind=\"aggregate\"}"), 0);
}

#[test]
fn sixteen_ipv6_slash_64s_in_one_slash_48_become_one_ban() {
    let b = GuardBed::start(&proven_config(
        "aggregate_sources = 8\naggregate_ipv6_prefix = 48",
    ));
    let (_c, frames) = sixteen(&b, 8079, |i| {
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x77, i, 0, 0, 0, 1))
    });
    let (_, e) = flood_until_banned(
        &b,
        &frames,
        16_000,
        "2001:db8:77::/48",
        Duration::from_secs(10),
    );
    let all = bans(&b);
    assert_eq!(all.len(), 1, "one /48 ban, the /64s gone: {all:?}");
    assert!(
        e["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("inside 2001:db8:77::/48"),
        "{e}"
    );
}

#[test]
fn a_forged_flood_over_2_pow_24_sources_bans_only_the_real_flooder() {
    let b = GuardBed::start(&config(""));
    let real = IpAddr::V4(Ipv4Addr::new(198, 18, 40, 9));
    let real_frame = [udp_from(real, b.rx.port)];
    let stop = AtomicBool::new(false);
    let (sent, elapsed) = std::thread::scope(|s| {
        // IPv6 sources in 2^24 /64s of 2001:db8::/32 (each /64 a source of the rule),
        // spread by a multiplicative hash so consecutive packets are far apart.
        let forged = s.spawn(|| {
            b.tx.flood_generated(20_000, Duration::from_secs(10), &stop, |n| {
                let k = (n as u32).wrapping_mul(0x9e37_79b1) >> 8;
                let src = Ipv6Addr::new(0x2001, 0xdb8, (k >> 16) as u16, k as u16, 0, 0, 0, 1);
                udp_from(IpAddr::V6(src), b.rx.port)
            })
        });
        let never = AtomicBool::new(false);
        // The real flooder from the third second to the ninth.
        std::thread::sleep(Duration::from_secs(3));
        b.tx.flood_until(&real_frame, 1000, Duration::from_secs(6), &never);
        forged.join().expect("forged flood")
    });
    eprintln!("forged: {sent} frames in {:.1}s", elapsed.as_secs_f64());
    assert!(sent >= 100_000, "the forged flood ran: {sent}");
    let all = bans(&b);
    assert_eq!(all.len(), 1, "only the real flooder: {all:?}");
    assert_eq!(all[0]["cidr"], "198.18.40.9/32");
    assert_eq!(b.count("guard_auto_bans_total{kind=\"rule\"}"), 1);
}

/// Eight API bans inside 198.19.`third`.0/24 with a 10-minute TTL (aggregation counts bans
/// made by any means).
pub(crate) fn eight_bans(b: &GuardBed, third: u8) {
    let body: Vec<String> = (1..=8)
        .map(|i| {
            format!(
                r#"{{"cidr":"198.19.{third}.{}","ttl_secs":600,"reason":"junk {i}"}}"#,
                i * 10
            )
        })
        .collect();
    b.ok("POST", "/v1/bans", &format!("[{}]", body.join(",")));
}

pub(crate) fn cidrs(b: &GuardBed) -> Vec<String> {
    let mut v: Vec<String> = bans(b)
        .iter()
        .map(|e| e["cidr"].as_str().expect("cidr").to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn an_aggregate_and_its_members_survive_a_reboot() {
    let mut b = GuardBed::start(&config("aggregate_sources = 8"));
    eight_bans(&b, 80);
    assert_eq!(cidrs(&b), ["198.19.80.0/24"]);
    // A reboot: guardd gone, bpffs empty.
    assert!(b.g.stop().success(), "{}", b.g.log());
    std::fs::remove_dir_all(&b.g.pin_dir).expect("remove the pins");
    b.g.spawn(&b.bed.server, &b.bed.server_if);
    assert_eq!(cidrs(&b), ["198.19.80.0/24"], "restored");
    let left = ban_of(&b, "198.19.80.0/24").unwrap()["ttl_remaining_secs"]
        .as_u64()
        .unwrap();
    assert!(
        (590..=600).contains(&left),
        "the longest member's TTL: {left}"
    );
    // The members were kept in the state database: lifting the prefix ban gives them back.
    b.ok("DELETE", "/v1/bans/198.19.80.0%2F24", "");
    let back = bans(&b);
    assert_eq!(back.len(), 8, "{back:?}");
    let e = back
        .iter()
        .find(|e| e["cidr"] == "198.19.80.30/32")
        .expect("a member");
    assert_eq!(e["reason"], "junk 3", "as it was: {e}");
}

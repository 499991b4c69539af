//! The demo's third act: two servers behind one client network, each with its own guardd,
//! sharing verdicts through a nats-server. The same junk sender and a good client send to
//! both (as a load balancer spreads them); the application on web-1 bans the junk sender,
//! and it is cut off on web-2 as well, within milliseconds.

use std::time::{Duration, Instant};

use guard_tests::{
    bed::GuardBed,
    fleet::{FleetBed, within},
    netns::client4,
};

/// Frames per second each source sends to each server.
const PPS: usize = 200;

pub fn run(seconds: u32) -> anyhow::Result<bool> {
    println!(
        "\nact 3: a fleet. Two servers, web-1 and web-2, each with its guardd, share verdicts \
         through NATS JetStream (one nats-server in its own namespace)."
    );
    let mut f = FleetBed::new(false);
    f.add_host("web-1", "");
    f.add_host("web-2", "");
    f.wait_in_sync(Duration::from_secs(20));
    let (good, junk) = (client4(2), client4(6));
    let second = |f: &FleetBed, n: u32| -> [[usize; 2]; 2] {
        let got: Vec<[usize; 2]> = f
            .hosts
            .iter()
            .map(|h: &GuardBed| [h.deliver(good, PPS), h.deliver(junk, PPS)])
            .collect();
        println!(
            "  second {n}: web-1 got {:>3} of {PPS} from the client, {:>3} of {PPS} from the junk \
             sender; web-2 got {:>3} and {:>3}",
            got[0][0], got[0][1], got[1][0], got[1][1]
        );
        [got[0], got[1]]
    };
    let before = second(&f, 1);
    let ban = Instant::now();
    f.hosts[0].ok(
        "POST",
        "/v1/bans",
        r#"{"cidr":"198.18.0.6","reason":"junk payload (seen by web-1's application)"}"#,
    );
    let answered = ban.elapsed();
    let on_web2 = within(Duration::from_secs(5), || {
        let (_, list) = f.hosts[1].g.api("GET", "/v1/bans", None);
        list["entries"]
            .as_array()
            .is_some_and(|l| l.iter().any(|e| e["cidr"] == "198.18.0.6/32"))
    });
    println!(
        "  web-1's application bans 198.18.0.6: web-1 answered in {:.1} ms; in force on web-2 {}",
        answered.as_secs_f64() * 1e3,
        on_web2.map_or("NOT within 5 s".into(), |d| format!(
            "{:.1} ms after the call",
            (d + answered).as_secs_f64() * 1e3
        ))
    );
    let mut after = Vec::new();
    for n in 2..=seconds.max(3) {
        after.push(second(&f, n));
    }
    println!("  guardctl bans on web-2:");
    let out = f.hosts[1].g.ctl(&["bans"]);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        println!("    {line}");
    }
    let ok = before.iter().all(|h| h[0] == PPS && h[1] == PPS)
        && on_web2.is_some()
        && after.iter().flatten().all(|h| h[0] == PPS && h[1] == 0);
    println!(
        "  the junk sender, banned on web-1, cut off on both servers while the client passes: {}",
        if ok { "yes" } else { "NO" }
    );
    Ok(ok)
}

//! Restarts: guardd restarted under traffic loses no legitimate packet and forgets no ban or
//! bucket; the program is replaced (new id) only when it changed.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use aya::{
    Ebpf,
    programs::{Xdp, XdpMode, links::FdLink},
};
use guard_tests::{
    daemon::Guardd,
    netns::{Testbed, client4},
    packet::udp_from,
    traffic::{RawSender, Receiver},
};
use guard_user::kernel::objects;

const RESTARTS: usize = 5;

#[test]
fn five_restarts_under_traffic_lose_nothing() {
    let bed = Testbed::new();
    // Burst below one period's earnings (the default period, 1 s): the rate must hold
    // through restarts as between them.
    let rules = "[[rules]]\nname = \"per-source\"\nrate = 100.0\nburst = 50\nbuckets = 4096\n";
    let mut g = Guardd::start(&bed.server, &bed.server_if, rules);
    let first_id = g.ctl_json(&["status"])["interfaces"][0]["program_id"]
        .as_u64()
        .unwrap();
    g.ban("198.18.0.6", 600);
    let rx = Receiver::bind(&bed.server);
    let tx = RawSender::open(&bed.client, &bed.client_if);
    let (legit, flood, banned) = (client4(2), client4(5), client4(6));
    // Long enough that all five restarts happen while traffic flows.
    let duration = Duration::from_secs(8);
    let flood_frames = [udp_from(flood, rx.port), udp_from(banned, rx.port)];
    let mut ids = Vec::new();
    let ((legit_sent, flood_sent, elapsed), got) = std::thread::scope(|s| {
        // Read while the traffic runs: XDP-passed frames carry page-sized buffers, and
        // 6 s of them would overflow even a large socket buffer.
        let reader = s.spawn(|| rx.collect(Duration::from_millis(1500), Duration::from_secs(20)));
        let traffic = s.spawn(|| {
            let t = Instant::now();
            let f = s.spawn(|| tx.flood(&flood_frames, 3000, duration));
            let (l, _) = tx.flood(&[udp_from(legit, rx.port)], 50, duration);
            let (fs, _) = f.join().unwrap();
            (l[0], fs, t.elapsed())
        });
        for _ in 0..RESTARTS {
            std::thread::sleep(Duration::from_millis(700));
            assert!(g.stop().success(), "{}", g.log());
            std::thread::sleep(Duration::from_millis(200));
            g.spawn(&bed.server, &bed.server_if);
            ids.push(
                g.ctl_json(&["status"])["interfaces"][0]["program_id"]
                    .as_u64()
                    .unwrap(),
            );
        }
        (traffic.join().unwrap(), reader.join().unwrap())
    });
    let delivered = |a| got.get(&a).copied().unwrap_or(0);
    eprintln!(
        "5 restarts in {:.1}s: legitimate {}/{legit_sent}, flood {}/{} (rate 100/s, burst 50), banned {}/{}",
        elapsed.as_secs_f64(),
        delivered(legit),
        delivered(flood),
        flood_sent[0],
        delivered(banned),
        flood_sent[1]
    );
    if delivered(legit) != legit_sent {
        eprintln!("DIAG top {}", g.ctl_json(&["top"]));
    }
    assert_eq!(
        delivered(legit),
        legit_sent,
        "no legitimate packet lost across restarts"
    );
    assert_eq!(delivered(banned), 0, "the ban held through every restart");
    // Buckets kept: a reset per restart would add a burst each time. The admission bound is
    // burst + rate x (time + refill_period).
    let t = elapsed.as_secs_f64();
    let ceiling = 50.0 + 100.0 * (t + 1.0);
    assert!(
        (delivered(flood) as f64) <= ceiling,
        "flood {} > {ceiling:.0}: buckets were reset",
        delivered(flood)
    );
    // The refill resumes from each slice's pinned refill time and the kernel accrues while
    // no daemon runs, so the flood still gets its rate: burst + rate x T, within 5%.
    let want = 50.0 + 100.0 * t;
    assert!(
        delivered(flood) as f64 >= 0.95 * want,
        "the rate held through restarts: the flood got {}, {want:.0} due",
        delivered(flood)
    );
    assert!(
        ids.iter().all(|&id| id == first_id),
        "same program, same id: {first_id} then {ids:?}"
    );
    assert!(
        g.log().matches("kept the attached program").count() >= 5,
        "{}",
        g.log()
    );
}

/// Pins another program's link where guardd keeps its own: guardd must replace it.
fn pin_foreign_program(bed: &Testbed, pin_dir: &Path) {
    let link_dir = pin_dir.join(format!("v{}/links/driver", guard_common::SCHEMA_VERSION));
    std::fs::create_dir_all(&link_dir).unwrap();
    let iface = bed.server_if.clone();
    bed.server.run(move || {
        let mut ebpf = Ebpf::load(objects::bench()).expect("bench object");
        let prog: &mut Xdp = ebpf.program_mut("xdp_pass").unwrap().try_into().unwrap();
        prog.load().unwrap();
        let id = prog
            .attach(&iface, XdpMode::Driver)
            .expect("attach xdp_pass");
        let link = FdLink::try_from(prog.take_link(id).unwrap()).expect("bpf_link");
        link.pin(link_dir.join(&iface)).expect("pin");
    });
}

#[test]
fn a_changed_program_is_replaced_atomically() {
    let bed = Testbed::new();
    let dir = guard_tests::daemon::workdir();
    let deny = dir.path().join("deny.txt");
    std::fs::write(&deny, "198.18.0.3\n").unwrap();
    let config = format!("[lists]\ndeny = [{deny:?}]\n");
    let mut g = Guardd::start(&bed.server, &bed.server_if, &config);
    assert!(g.stop().success());
    // Swap the pinned link's program for a plain XDP_PASS, as an older guard would have.
    let link = g.pin_dir.join(format!(
        "v{}/links/driver/{}",
        guard_common::SCHEMA_VERSION,
        bed.server_if
    ));
    std::fs::remove_file(&link).unwrap();
    pin_foreign_program(&bed, &g.pin_dir);
    let rx = Receiver::bind(&bed.server);
    let tx = RawSender::open(&bed.client, &bed.client_if);
    let (sent, _) = tx.flood(
        &[udp_from(client4(3), rx.port)],
        1000,
        Duration::from_millis(100),
    );
    let got = rx.collect(Duration::from_millis(250), Duration::from_secs(5));
    assert_eq!(
        got.get(&client4(3)).copied(),
        Some(sent[0]),
        "the foreign program passes everything"
    );
    g.spawn(&bed.server, &bed.server_if);
    assert!(
        g.log().contains("replaced the program of the pinned link"),
        "{}",
        g.log()
    );
    let (sent, _) = tx.flood(
        &[udp_from(client4(3), rx.port)],
        1000,
        Duration::from_millis(100),
    );
    assert!(sent[0] > 0);
    let got = rx.collect(Duration::from_millis(250), Duration::from_secs(5));
    assert_eq!(
        got.get(&client4(3)).copied().unwrap_or(0),
        0,
        "guard's program enforces the deny list again"
    );
}

#[test]
fn an_older_schemas_pins_are_taken_over_without_a_moment_unguarded() {
    let bed = Testbed::new();
    let mut g = Guardd::start(&bed.server, &bed.server_if, "");
    g.ban("198.18.0.6", 600);
    assert!(g.stop().success(), "{}", g.log());
    // What an older release leaves: its pins under an older schema's directory, its link
    // live. (Its maps are this release's here; guardd reads none of them either way.)
    let ours = format!("v{}", guard_common::SCHEMA_VERSION);
    let older = format!("v{}", guard_common::SCHEMA_VERSION - 1);
    std::fs::rename(g.pin_dir.join(&ours), g.pin_dir.join(&older)).expect("rename on bpffs");
    let rx = Receiver::bind(&bed.server);
    let tx = RawSender::open(&bed.client, &bed.client_if);
    let banned = client4(6);
    // The banned source floods throughout the takeover: not one frame may pass.
    let (sent, got) = std::thread::scope(|s| {
        let reader = s.spawn(|| rx.collect(Duration::from_millis(1500), Duration::from_secs(30)));
        let flood =
            s.spawn(|| tx.flood(&[udp_from(banned, rx.port)], 2000, Duration::from_secs(4)));
        std::thread::sleep(Duration::from_millis(300));
        g.spawn(&bed.server, &bed.server_if);
        (flood.join().unwrap().0[0], reader.join().unwrap())
    });
    let log = g.log();
    assert!(
        log.contains("took over from an older guard's pins"),
        "{log}"
    );
    assert!(!g.pin_dir.join(&older).exists(), "the older pins are gone");
    let link = g
        .pin_dir
        .join(format!("{ours}/links/driver/{}", bed.server_if));
    assert!(link.exists(), "the link's pin moved to {}", link.display());
    assert!(sent > 4000, "the flood ran: {sent}");
    assert_eq!(
        got.get(&banned).copied().unwrap_or(0),
        0,
        "the ban held throughout"
    );
    let bans = g.ctl_json(&["bans"]);
    assert_eq!(
        bans["entries"][0]["cidr"], "198.18.0.6/32",
        "restored: {bans}"
    );
    // A source nobody banned passes.
    let (sent, _) = tx.flood(
        &[udp_from(client4(2), rx.port)],
        1000,
        Duration::from_millis(100),
    );
    let got = rx.collect(Duration::from_millis(250), Duration::from_secs(5));
    assert_eq!(got.get(&client4(2)).copied(), Some(sent[0]));
}

//! The demo's second act: the example ingest app (examples/ingest) in the server namespace
//! reports junk to guard; real TCP clients post events; the junk poster is cut off in the
//! kernel while good clients keep posting.

use std::{
    net::{IpAddr, SocketAddr},
    process::{Child, Command, Stdio},
    time::{Duration, SystemTime},
};

use guard_tests::{
    daemon::{Guardd, bin},
    http::{Outcome, Route, post},
    netns::{SERVER4, SERVER6, Testbed, client4, client6},
};

struct App(Child);

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Client {
    addr: IpAddr,
    role: &'static str,
    junk: bool,
    posts: usize,
    accepted: usize,
    rejected: usize,
    no_answer: usize,
}

impl Client {
    fn new(addr: IpAddr, role: &'static str, junk: bool) -> Client {
        Client {
            addr,
            role,
            junk,
            posts: 0,
            accepted: 0,
            rejected: 0,
            no_answer: 0,
        }
    }
}

fn event(junk: bool) -> String {
    let ts = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    if junk {
        r#"{"site":"shop.example","event":"FREE-MONEY","url":"javascript:void(0)","ts":1}"#
            .to_string()
    } else {
        format!(
            r#"{{"site":"shop.example","event":"pageview","url":"https://shop.example/","ts":{ts}}}"#
        )
    }
}

pub fn run(bed: &Testbed, guardd: &Guardd, seconds: u32) -> anyhow::Result<bool> {
    println!("\nact two: an analytics-ingest app reports junk senders to guard (examples/ingest)");
    let _app = App(Command::new("nsenter")
        .arg(format!("--net={}", bed.server.path()))
        .arg(bin("guard-example-ingest"))
        .args(["--listen", "[::]:8080", "--guard-socket"])
        .arg(&guardd.socket)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let to = |addr: IpAddr| match addr {
        IpAddr::V4(_) => SocketAddr::new(SERVER4.into(), 8080),
        IpAddr::V6(_) => SocketAddr::new(SERVER6.into(), 8080),
    };
    let ready = (0..50).any(|_| {
        let route = Route {
            ns: &bed.client,
            src: client4(9),
            dst: to(client4(9)),
            timeout: Duration::from_millis(200),
        };
        let o = post(&rt, route, "/collect", event(false));
        o == Outcome::Answered(202) || {
            std::thread::sleep(Duration::from_millis(100));
            false
        }
    });
    anyhow::ensure!(ready, "the example app did not answer");
    let mut clients = vec![
        Client::new(client4(2), "good client", false),
        Client::new(client6(2), "good client (v6)", false),
        Client::new(client4(4), "junk poster", true),
    ];
    for second in 1..=seconds {
        for c in &mut clients {
            for _ in 0..5 {
                c.posts += 1;
                let route = Route {
                    ns: &bed.client,
                    src: c.addr,
                    dst: to(c.addr),
                    timeout: Duration::from_millis(250),
                };
                match post(&rt, route, "/collect", event(c.junk)) {
                    Outcome::Answered(202) => c.accepted += 1,
                    Outcome::Answered(_) => c.rejected += 1,
                    Outcome::NoAnswer => c.no_answer += 1,
                }
            }
        }
        println!("second {second}");
        println!(
            "{:<16} {:<18} {:>6} {:>9} {:>9} {:>10}",
            "CLIENT", "ROLE", "POSTS", "ACCEPTED", "REJECTED", "NO ANSWER"
        );
        for c in &clients {
            println!(
                "{:<16} {:<18} {:>6} {:>9} {:>9} {:>10}",
                c.addr.to_string(),
                c.role,
                c.posts,
                c.accepted,
                c.rejected,
                c.no_answer
            );
        }
    }
    let bans = guardd.ctl(&["bans"]);
    println!(
        "\nguardctl bans:\n{}",
        String::from_utf8_lossy(&bans.stdout)
    );
    let good_ok = clients
        .iter()
        .filter(|c| !c.junk)
        .all(|c| c.accepted == c.posts);
    let junk = &clients[2];
    let cut_off = junk.rejected <= 3 && junk.no_answer >= junk.posts - 3;
    println!(
        "good clients kept posting: {}; the junk poster was answered {} times, then cut off in the kernel: {}",
        if good_ok { "yes" } else { "NO" },
        junk.rejected,
        if cut_off { "yes" } else { "NO" }
    );
    Ok(good_ok && cut_off)
}

//! A guardd on a testbed with a sender and a receiver: the start-up every verdict test
//! repeats. The config may name `{dir}`, a temporary directory whose `deny.txt` starts
//! empty (tests write lists there and reload).

use std::{net::IpAddr, time::Duration};

use crate::{
    daemon::Guardd,
    netns::Testbed,
    packet::udp_from,
    traffic::{RawSender, Receiver},
};

pub struct GuardBed {
    pub bed: Testbed,
    pub g: Guardd,
    pub rx: Receiver,
    pub tx: RawSender,
    pub dir: tempfile::TempDir,
}

impl GuardBed {
    pub fn start(config: &str) -> GuardBed {
        GuardBed::start_on(Testbed::new(), config)
    }

    /// Starts guardd on a testbed made beforehand (joined to other namespaces, say).
    pub fn start_on(bed: Testbed, config: &str) -> GuardBed {
        let ifaces = [bed.server_if.clone()];
        GuardBed::start_guarding(bed, &ifaces, config)
    }

    /// As `start_on`, guarding `ifaces` (the testbed's own first).
    pub fn start_guarding(bed: Testbed, ifaces: &[String], config: &str) -> GuardBed {
        GuardBed::start_with_env(bed, ifaces, config, &[])
    }

    /// As `start_guarding`, with `env` for guardd.
    pub fn start_with_env(
        bed: Testbed,
        ifaces: &[String],
        config: &str,
        env: &[(&str, &str)],
    ) -> GuardBed {
        let dir = crate::daemon::workdir();
        std::fs::write(dir.path().join("deny.txt"), "").expect("deny.txt");
        let config = config.replace("{dir}", dir.path().to_str().expect("utf-8 tempdir"));
        let names: Vec<&str> = ifaces.iter().map(String::as_str).collect();
        let g = Guardd::start_with_env(&bed.server, &names, &config, env);
        let rx = Receiver::bind(&bed.server);
        let tx = RawSender::open(&bed.client, &bed.client_if);
        GuardBed {
            bed,
            g,
            rx,
            tx,
            dir,
        }
    }

    /// Sends `n` frames from `src` (paced, bounded) and returns how many arrived.
    pub fn deliver(&self, src: IpAddr, n: usize) -> usize {
        let pps = 2000;
        let (sent, _) = self.tx.flood(
            &[udp_from(src, self.rx.port)],
            pps,
            Duration::from_secs_f64(n as f64 / pps as f64),
        );
        let got = self
            .rx
            .collect(Duration::from_millis(250), Duration::from_secs(5));
        assert_eq!(sent[0], n, "sent");
        got.get(&src).copied().unwrap_or(0)
    }

    /// An API call that must answer 200; its JSON.
    pub fn ok(&self, method: &str, path: &str, body: &str) -> serde_json::Value {
        let (code, json) = self.g.api(method, path, Some(body));
        let shown: String = body.chars().take(200).collect();
        assert_eq!(code, 200, "{method} {path} {shown}: {json}");
        json
    }

    /// guardd's metrics (at the default `metrics.listen`, in the server's namespace).
    pub fn scrape(&self) -> String {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let local = "127.0.0.1".parse().expect("address");
        let route = crate::http::Route {
            ns: &self.bed.server,
            src: local,
            dst: std::net::SocketAddr::new(local, 9752),
            timeout: Duration::from_secs(5),
        };
        crate::http::get(&rt, route, "/metrics").1
    }

    /// The value on the scraped line that starts with `line` (a name and its labels, if
    /// any); panics with the scrape when there is none.
    pub fn metric(&self, line: &str) -> f64 {
        let body = self.scrape();
        value_of(&body, line).unwrap_or_else(|| panic!("no {line:?} in:\n{body}"))
    }

    /// A counter's value, 0 while absent (a labelled series appears on its first count).
    pub fn count(&self, line: &str) -> u64 {
        value_of(&self.scrape(), line).unwrap_or(0)
    }

    /// The path of a pinned map.
    pub fn map_pin(&self, name: &str) -> std::path::PathBuf {
        guard_user::kernel::pins::PinLayout::new(&self.g.pin_dir).map(name)
    }

    /// What a reboot does to guard: guardd gone, bpffs empty (which also detaches XDP, once
    /// the kernel releases the unpinned link: waited for, as after a real reboot).
    pub fn reboot(&mut self) {
        assert!(self.g.stop().success(), "{}", self.g.log());
        std::fs::remove_dir_all(&self.g.pin_dir).expect("remove the pins");
        let (ns, iface) = (&self.bed.server.name, &self.bed.server_if);
        let gone = crate::fleet::within(Duration::from_secs(5), || {
            let out = std::process::Command::new("ip")
                .args(["-n", ns, "link", "show", "dev", iface])
                .output()
                .expect("ip link show");
            !String::from_utf8_lossy(&out.stdout).contains("xdp")
        });
        assert!(
            gone.is_some(),
            "guard still attached 5 s after its pins were removed"
        );
    }
}

fn value_of<T: std::str::FromStr>(scrape: &str, line: &str) -> Option<T> {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(line)?.trim().parse().ok())
}

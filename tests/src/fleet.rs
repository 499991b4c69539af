//! A fleet on one machine: guard hosts (each a `GuardBed`: guardd, a sender and a receiver
//! in namespaces of their own) and NATS servers in a hub namespace joined to every host by
//! a veth pair (198.19.<host>.0/24), so the hosts reach NATS the way real ones would and
//! nothing else. Servers, namespaces and links are removed on drop.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::{
    bed::GuardBed,
    netns::{Netns, Testbed, sh, unique_tag},
};

/// The hub namespace where NATS runs; host `i` (1-based) is joined to it.
pub struct Hub {
    pub ns: Netns,
    links: usize,
}

impl Hub {
    pub fn new() -> Hub {
        Hub {
            ns: Netns::new(format!("guard-t{}-nats", unique_tag())),
            links: 0,
        }
    }

    /// Joins `host`'s namespace to the hub; returns the hub's address as that host sees it.
    pub fn join(&mut self, host: &Netns) -> String {
        self.join_via(host).0
    }

    /// As `join`, also naming the host's end of the link.
    pub fn join_via(&mut self, host: &Netns) -> (String, String) {
        self.links += 1;
        let i = self.links;
        let tag = unique_tag();
        let (hub_if, host_if) = (format!("gh{tag}"), format!("gn{tag}"));
        sh(
            "ip",
            &[
                "link",
                "add",
                &hub_if,
                "netns",
                &self.ns.name,
                "type",
                "veth",
                "peer",
                "name",
                &host_if,
                "netns",
                &host.name,
            ],
        );
        self.ns
            .ip(&["addr", "add", &format!("198.19.{i}.1/24"), "dev", &hub_if]);
        host.ip(&["addr", "add", &format!("198.19.{i}.2/24"), "dev", &host_if]);
        self.ns.ip(&["link", "set", &hub_if, "up"]);
        host.ip(&["link", "set", &host_if, "up"]);
        (format!("198.19.{i}.1"), host_if)
    }
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new()
    }
}

/// One nats-server with JetStream in the hub, on its own port and store.
pub struct NatsServer {
    child: Option<Child>,
    pub port: u16,
    args: Vec<String>,
    ns: String,
    pub store: tempfile::TempDir,
    log: PathBuf,
}

impl NatsServer {
    /// A single server on `port`.
    pub fn single(hub: &Hub, port: u16) -> NatsServer {
        NatsServer::start(hub, port, &[])
    }

    /// A single server on `port` with a configuration file (TLS, users).
    pub fn configured(hub: &Hub, port: u16, conf: &std::path::Path) -> NatsServer {
        NatsServer::start(hub, port, &["-c".into(), conf.display().to_string()])
    }

    /// A cluster of three on `ports` (cluster routes on the ports + 2000).
    pub fn cluster(hub: &Hub, ports: [u16; 3]) -> Vec<NatsServer> {
        let routes = ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{}", p + 2000))
            .collect::<Vec<_>>()
            .join(",");
        ports
            .iter()
            .map(|&p| {
                let args = [
                    "--cluster_name".to_string(),
                    "guard".into(),
                    "--cluster".into(),
                    format!("nats://127.0.0.1:{}", p + 2000),
                    "--routes".into(),
                    routes.clone(),
                ];
                NatsServer::start(hub, p, &args)
            })
            .collect()
    }

    fn start(hub: &Hub, port: u16, extra: &[String]) -> NatsServer {
        let store = tempfile::tempdir().expect("tempdir");
        let mut args: Vec<String> = [
            "-a",
            "0.0.0.0",
            "-p",
            &port.to_string(),
            "-js",
            "-sd",
            store.path().to_str().expect("utf-8"),
            "-n",
            &format!("nats-{port}"),
        ]
        .map(String::from)
        .to_vec();
        args.extend_from_slice(extra);
        let log = store.path().join("nats.log");
        args.extend(["-l".into(), log.display().to_string()]);
        let mut s = NatsServer {
            child: None,
            port,
            args,
            ns: hub.ns.path(),
            store,
            log,
        };
        s.resume();
        s
    }

    /// Starts the server (again, with the same store).
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "nats-server {} is running", self.port);
        let child = Command::new("nsenter")
            .arg(format!("--net={}", self.ns))
            .arg(crate::tools::nats_server())
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nats-server");
        self.child = Some(child);
        let start = Instant::now();
        while !self.log().contains("Server is ready") {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "nats-server {} not ready in 20 s:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Kills it, as a crash or a partition would look to guardd.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // The next start appends to the log: a fresh log waits for its own "ready".
        let _ = std::fs::remove_file(&self.log);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Guard hosts sharing NATS through the hub. Dropped hosts first, then NATS, then the hub.
pub struct FleetBed {
    pub hosts: Vec<GuardBed>,
    pub nats: Vec<NatsServer>,
    pub hub: Hub,
}

/// Client ports of the NATS servers (a cluster uses all three).
pub const NATS_PORTS: [u16; 3] = [4222, 4223, 4224];

impl FleetBed {
    /// One NATS server (or a cluster of three) and no host yet.
    pub fn new(cluster: bool) -> FleetBed {
        let hub = Hub::new();
        let nats = match cluster {
            true => NatsServer::cluster(&hub, NATS_PORTS),
            false => vec![NatsServer::single(&hub, NATS_PORTS[0])],
        };
        FleetBed {
            hosts: Vec::new(),
            nats,
            hub,
        }
    }

    /// Hosts to come on NATS servers started beforehand in `hub` (configured ones, say).
    pub fn on(hub: Hub, nats: Vec<NatsServer>) -> FleetBed {
        FleetBed {
            hosts: Vec::new(),
            nats,
            hub,
        }
    }

    /// Starts a host named `node` with `config` and the fleet section; returns its index.
    pub fn add_host(&mut self, node: &str, config: &str) -> usize {
        self.add_host_with(node, config, "")
    }

    /// As `add_host`, with guardd guarding the host's link to NATS too: the fleet's own
    /// traffic crosses the XDP program, as on a host with one interface.
    pub fn add_host_guarding_nats(&mut self, node: &str, config: &str) -> usize {
        let bed = Testbed::new();
        let (addr, link) = self.hub.join_via(&bed.server);
        let ports: Vec<u16> = self.nats.iter().map(|n| n.port).collect();
        let config = format!("{config}\n{}", fleet_config(node, &addr, &ports));
        let ifaces = [bed.server_if.clone(), link];
        self.hosts
            .push(GuardBed::start_guarding(bed, &ifaces, &config));
        self.hosts.len() - 1
    }

    /// As `add_host`, with more `[fleet]` lines (TLS files, say).
    pub fn add_host_with(&mut self, node: &str, config: &str, fleet: &str) -> usize {
        let bed = Testbed::new();
        let addr = self.hub.join(&bed.server);
        let ports: Vec<u16> = self.nats.iter().map(|n| n.port).collect();
        let config = format!("{config}\n{}{fleet}", fleet_config(node, &addr, &ports));
        self.hosts.push(GuardBed::start_on(bed, &config));
        self.hosts.len() - 1
    }

    /// Waits until every host says it is connected and in sync.
    pub fn wait_in_sync(&self, limit: Duration) {
        for (i, h) in self.hosts.iter().enumerate() {
            let ok = within(limit, || {
                let (code, s) = h.g.api("GET", "/v1/status", None);
                code == 200 && s["fleet"]["in_sync"] == true && s["fleet"]["connected"] == true
            });
            assert!(
                ok.is_some(),
                "host {i} not in sync in {limit:?}:\n{}",
                h.g.log()
            );
        }
    }
}

/// The `[fleet]` section for node `name` reaching NATS at `addr` on `ports`.
pub fn fleet_config(name: &str, addr: &str, ports: &[u16]) -> String {
    let servers = ports
        .iter()
        .map(|p| format!("\"nats://{addr}:{p}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!("[fleet]\nservers = [{servers}]\nnode = \"{name}\"\n")
}

/// Polls `f` every 20 ms until it is true or `limit` passes; returns the time it took.
pub fn within(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

impl NatsServer {
    /// Publishes `payload` to `subject` as any NATS client could (a key-value put is a
    /// publish to `$KV.<bucket>.<key>`), from inside the hub, over the plain protocol;
    /// returns what JetStream answered (its acknowledgement or its error).
    pub fn raw_publish(&self, hub: &Hub, subject: &str, payload: &[u8]) -> String {
        use std::io::{BufRead, BufReader, Read, Write};
        let port = self.port;
        let (subject, payload) = (subject.to_string(), payload.to_vec());
        hub.ns.run(move || {
            let stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("reach nats");
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut line = String::new();
            reader.read_line(&mut line).expect("INFO"); // the server's INFO
            let mut w = stream;
            let mut msg = format!(
                "CONNECT {{\"verbose\":false,\"pedantic\":false}}\r\nSUB _INBOX.t 1\r\nPUB {subject} _INBOX.t {}\r\n",
                payload.len()
            )
            .into_bytes();
            msg.extend_from_slice(&payload);
            msg.extend_from_slice(b"\r\n");
            w.write_all(&msg).expect("publish");
            // The answer: `MSG _INBOX.t 1 <n>` then n bytes (or -ERR, PING).
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return "connection closed".into();
                }
                if line.starts_with("PING") {
                    w.write_all(b"PONG\r\n").expect("pong");
                } else if line.starts_with("-ERR") {
                    return line.trim().to_string();
                } else if let Some(rest) = line.strip_prefix("MSG ") {
                    let n: usize = rest.split_whitespace().last().and_then(|n| n.parse().ok()).expect("size");
                    let mut body = vec![0; n + 2];
                    reader.read_exact(&mut body).expect("body");
                    return String::from_utf8_lossy(&body[..n]).into_owned();
                }
            }
        })
    }
}

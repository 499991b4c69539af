//! Network-namespace testbeds. Every namespace, link and address is removed on drop.
//!
//! Addresses come from 198.18.0.0/15 and 2001:db8::/32 only, and there is no default route,
//! so nothing a test sends can leave the pair of namespaces it created.

use std::{
    fs::File,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

use nix::sched::{CloneFlags, setns};

pub const SERVER4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const SERVER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const CLIENT_MAC: &str = "02:00:00:00:00:02";
const SERVER_MAC: &str = "02:00:00:00:00:01";

/// The client side's IPv4 address `198.18.0.<host>` (hosts 2..=9 exist).
pub fn client4(host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 18, 0, host))
}

/// The client side's IPv6 address `2001:db8::<host>` (hosts 2..=9 exist).
pub fn client6(host: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, host))
}

/// Runs a command and panics with its output when it fails.
pub fn sh(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("{program}: {e} (is iproute2 installed? cargo xtask test installs it)")
        });
    assert!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Mounts bpffs on /sys/fs/bpf when nothing is mounted there (a fresh VM may lack it).
pub fn ensure_bpffs() {
    let mounted = std::fs::read_to_string("/proc/self/mounts")
        .map(|m| {
            m.lines()
                .any(|l| l.split_whitespace().nth(1) == Some("/sys/fs/bpf") && l.contains(" bpf "))
        })
        .unwrap_or(false);
    if !mounted {
        sh("mount", &["-t", "bpf", "bpf", "/sys/fs/bpf"]);
    }
}

/// A unique short tag for names in this process: interface names are limited to 15 bytes.
pub fn unique_tag() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}{}",
        std::process::id() % 100_000,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(name: String) -> Netns {
        sh("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// `ip -n <ns> ...`
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        sh("ip", &all);
    }

    /// Writes a sysctl of this namespace (`/proc/sys/net/...` follows the writer's netns).
    pub fn sysctl(&self, key: &str, value: &str) {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        let value = value.to_string();
        self.run(move || std::fs::write(&path, value).unwrap_or_else(|e| panic!("{path}: {e}")));
    }

    /// Runs `f` on a thread that entered this namespace; sockets it creates stay in it.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = self.path();
        std::thread::scope(|s| {
            s.spawn(move || {
                let ns = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
                setns(ns, CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| panic!("setns {path}: {e}"));
                f()
            })
            .join()
            .expect("netns thread panicked")
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace destroys its veth end, which detaches any XDP on it.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Two namespaces joined by a veth pair: `client` (198.18.0.2-9, 2001:db8::2-9) and
/// `server` (198.18.0.1, 2001:db8::1), with static neighbours so no ARP/ND is in the way.
pub struct Testbed {
    pub server: Netns,
    pub client: Netns,
    pub server_if: String,
    pub client_if: String,
}

impl Testbed {
    pub fn new() -> Testbed {
        ensure_bpffs();
        let tag = unique_tag();
        let server = Netns::new(format!("guard-t{tag}-s"));
        let client = Netns::new(format!("guard-t{tag}-c"));
        let (server_if, client_if) = (format!("gs{tag}"), format!("gc{tag}"));
        sh(
            "ip",
            &[
                "link",
                "add",
                &client_if,
                "netns",
                &client.name,
                "address",
                CLIENT_MAC,
                "type",
                "veth",
                "peer",
                "name",
                &server_if,
                "netns",
                &server.name,
                "address",
                SERVER_MAC,
            ],
        );
        let bed = Testbed {
            server,
            client,
            server_if,
            client_if,
        };
        bed.server
            .ip(&["addr", "add", "198.18.0.1/24", "dev", &bed.server_if]);
        bed.server.ip(&[
            "addr",
            "add",
            "2001:db8::1/64",
            "dev",
            &bed.server_if,
            "nodad",
        ]);
        for host in 2..=9u16 {
            let a4 = format!("198.18.0.{host}/24");
            let a6 = format!("2001:db8::{host:x}/64");
            bed.client.ip(&["addr", "add", &a4, "dev", &bed.client_if]);
            bed.client
                .ip(&["addr", "add", &a6, "dev", &bed.client_if, "nodad"]);
        }
        // Forged sources from the rest of 198.18.0.0/15 must reach the server's sockets.
        for key in [
            "net.ipv4.conf.all.rp_filter",
            "net.ipv4.conf.default.rp_filter",
        ] {
            bed.server.sysctl(key, "0");
        }
        bed.server
            .sysctl(&format!("net.ipv4.conf.{}.rp_filter", bed.server_if), "0");
        for (ns, dev, peer_mac, peers) in [
            (
                &bed.client,
                &bed.client_if,
                SERVER_MAC,
                vec!["198.18.0.1".to_string(), "2001:db8::1".to_string()],
            ),
            (
                &bed.server,
                &bed.server_if,
                CLIENT_MAC,
                (2..=9u16)
                    .flat_map(|h| [format!("198.18.0.{h}"), format!("2001:db8::{h:x}")])
                    .collect(),
            ),
        ] {
            ns.ip(&["link", "set", dev, "up"]);
            for p in peers {
                ns.ip(&[
                    "neigh",
                    "replace",
                    &p,
                    "lladdr",
                    peer_mac,
                    "dev",
                    dev,
                    "nud",
                    "permanent",
                ]);
            }
        }
        bed
    }
}

impl Default for Testbed {
    fn default() -> Self {
        Testbed::new()
    }
}

//! What the host always protects, read from the host itself: the guarded interfaces'
//! addresses, the default gateways (`/proc/net/route`, `/proc/net/ipv6_route`), the
//! resolvers (`/etc/resolv.conf`) and the fleet's servers. Interfaces, routes and resolvers
//! change under a running daemon (DHCP, a new route), so they are read again when the set
//! is older than `REFRESH`; the fleet's servers are resolved once per configuration.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs},
    sync::{Arc, mpsc},
    thread,
    time::{Duration, Instant},
};

use ipnet::IpNet;
use tracing::warn;

use super::{Protect, Protected, Why};
use crate::{config::Config, kernel::netif};

pub const RESOLV_CONF: &str = "/etc/resolv.conf";
const ROUTES_V4: &str = "/proc/net/route";
const ROUTES_V6: &str = "/proc/net/ipv6_route";

/// How old the host's part may get before it is read again.
pub const REFRESH: Duration = Duration::from_secs(5);
/// How long resolving a fleet server's name may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

/// The protected set of a configuration, kept current with the host.
#[derive(Debug)]
pub struct Protection {
    /// `[bans] protect` and the fleet's servers.
    fixed: Vec<Protect>,
    /// The fleet's servers as resolved (address and port).
    fleet: Vec<SocketAddr>,
    interfaces: Vec<String>,
    read_at: Instant,
    set: Arc<Protected>,
}

impl Default for Protection {
    /// Nothing protected (before the first configuration is applied).
    fn default() -> Self {
        Protection {
            fixed: Vec::new(),
            fleet: Vec::new(),
            interfaces: Vec::new(),
            read_at: Instant::now(),
            set: Arc::default(),
        }
    }
}

impl Protection {
    /// Reads the host and resolves the fleet's servers (a name that does not resolve in
    /// time is logged and left out).
    pub fn new(config: &Config) -> Self {
        let mut fixed: Vec<Protect> = config
            .bans
            .protect
            .iter()
            .map(|c| Protect {
                net: c.0,
                why: Why::Config,
            })
            .collect();
        let mut fleet = Vec::new();
        for server in &config.fleet.servers {
            match server_endpoints(server) {
                Ok(addrs) => {
                    fixed.extend(addrs.iter().map(|a| Protect {
                        net: IpNet::from(a.ip()),
                        why: Why::FleetServer(server.clone()),
                    }));
                    fleet.extend(addrs);
                }
                Err(e) => warn!("cannot protect the fleet server {server}: {e}"),
            }
        }
        let interfaces = config.interfaces.clone();
        let set = Arc::new(read(&fixed, &interfaces));
        Protection {
            fixed,
            fleet,
            interfaces,
            read_at: Instant::now(),
            set,
        }
    }

    /// The fleet's servers, resolved when the configuration was applied.
    pub fn fleet_servers(&self) -> &[SocketAddr] {
        &self.fleet
    }

    /// The set in force, read again from the host when older than `REFRESH`.
    pub fn current(&mut self) -> Arc<Protected> {
        if self.read_at.elapsed() >= REFRESH {
            self.set = Arc::new(read(&self.fixed, &self.interfaces));
            self.read_at = Instant::now();
        }
        self.set.clone()
    }
}

/// `fixed` and what the host protects. A configuration that guards no interface (the
/// fixtures' engines, which load the program into no network) protects no host.
fn read(fixed: &[Protect], interfaces: &[String]) -> Protected {
    let mut nets = fixed.to_vec();
    if interfaces.is_empty() {
        return Protected::new(nets);
    }
    for iface in interfaces {
        nets.extend(netif::addresses(iface).into_iter().map(|a| Protect {
            net: IpNet::from(a),
            why: Why::Interface(iface.clone()),
        }));
    }
    let text = |path| std::fs::read_to_string(path).unwrap_or_default();
    let gateways = default_gateways_v4(&text(ROUTES_V4))
        .into_iter()
        .chain(default_gateways_v6(&text(ROUTES_V6)));
    nets.extend(gateways.map(|a| Protect {
        net: IpNet::from(a),
        why: Why::Gateway,
    }));
    nets.extend(resolvers(&text(RESOLV_CONF)).into_iter().map(|a| Protect {
        net: IpNet::from(a),
        why: Why::Resolver,
    }));
    Protected::new(nets)
}

/// Gateways of IPv4 default routes, from `/proc/net/route` (addresses in the kernel's
/// byte order, written as hex of a little-endian word).
fn default_gateways_v4(text: &str) -> Vec<IpAddr> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (dest, gw, mask) = (f.get(1)?, f.get(2)?, f.get(7)?);
            if *dest != "00000000" || *mask != "00000000" {
                return None;
            }
            let gw = u32::from_str_radix(gw, 16).ok().filter(|g| *g != 0)?;
            Some(IpAddr::V4(Ipv4Addr::from(gw.to_le_bytes())))
        })
        .collect()
}

/// Next hops of IPv6 default routes, from `/proc/net/ipv6_route`.
fn default_gateways_v6(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.get(1)? != &"00" {
                return None;
            }
            let hop = u128::from_str_radix(f.get(4)?, 16)
                .ok()
                .filter(|h| *h != 0)?;
            Some(IpAddr::V6(Ipv6Addr::from(hop)))
        })
        .collect()
}

/// The `nameserver` addresses of a resolv.conf (a zone index is dropped).
fn resolvers(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            let addr = words.next()?;
            addr.split('%').next()?.parse().ok()
        })
        .collect()
}

/// NATS's port when a server names none.
const NATS_PORT: u16 = 4222;

/// The addresses and port of a `[fleet] servers` entry (`nats://host:4222`,
/// `tls://user:pw@host`, `host:port`, `[2001:db8::1]:4222`): the host itself when it is an
/// address, else what it resolves to within `RESOLVE_TIMEOUT`.
pub fn server_endpoints(server: &str) -> Result<Vec<SocketAddr>, String> {
    let rest = server.split_once("://").map_or(server, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']').unwrap_or((v6, ""));
            (host, after.strip_prefix(':'))
        }
        None => match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    let port = match port {
        Some(p) => p.parse().map_err(|_| format!("port {p:?} is not a port"))?,
        None => NATS_PORT,
    };
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    if host.is_empty() {
        return Err("no host in it".into());
    }
    let (tx, rx) = mpsc::channel();
    let name = host.to_string();
    // The system's resolver blocks and has no timeout of its own.
    thread::spawn(move || {
        let _ = tx.send(
            (name.as_str(), port)
                .to_socket_addrs()
                .map(Iterator::collect::<Vec<_>>),
        );
    });
    match rx.recv_timeout(RESOLVE_TIMEOUT) {
        Ok(Ok(addrs)) => Ok(addrs),
        Ok(Err(e)) => Err(format!("resolving {host}: {e}")),
        Err(_) => Err(format!("resolving {host} took over {RESOLVE_TIMEOUT:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_routes_give_their_gateways() {
        let v4 = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                  eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                  eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        assert_eq!(
            default_gateways_v4(v4),
            ["192.0.2.1".parse::<IpAddr>().unwrap()]
        );
        let v6 = "fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 eth0\n\
                  00000000000000000000000000000000 00 00000000000000000000000000000000 00 20010db8000000000000000000000001 00000400 00000002 00000000 00000003 eth0\n\
                  00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200 lo\n";
        assert_eq!(
            default_gateways_v6(v6),
            ["2001:db8::1".parse::<IpAddr>().unwrap()]
        );
    }

    #[test]
    fn resolvers_are_the_nameserver_lines() {
        let text = "# generated\nsearch example.org\nnameserver 198.18.0.53\nnameserver fe80::1%eth0\noptions edns0\nnameserver bogus\n";
        let got: Vec<String> = resolvers(text).iter().map(ToString::to_string).collect();
        assert_eq!(got, ["198.18.0.53", "fe80::1"]);
    }

    #[test]
    fn fleet_servers_name_their_host() {
        for (url, want) in [
            ("nats://198.18.9.1:4222", "198.18.9.1:4222"),
            ("tls://user:secret@198.18.9.2:4223", "198.18.9.2:4223"),
            ("198.18.9.3:4224", "198.18.9.3:4224"),
            ("198.18.9.4", "198.18.9.4:4222"),
            ("nats://[2001:db8::9]:4225", "[2001:db8::9]:4225"),
            ("nats://[2001:db8::9]", "[2001:db8::9]:4222"),
        ] {
            assert_eq!(
                server_endpoints(url).unwrap(),
                [want.parse::<SocketAddr>().unwrap()],
                "{url}"
            );
        }
        // A name is resolved.
        let local = server_endpoints("nats://localhost:4222").unwrap();
        assert!(
            !local.is_empty() && local.iter().all(|a| a.ip().is_loopback()),
            "{local:?}"
        );
        assert!(server_endpoints("nats://:4222").is_err());
        assert!(server_endpoints("nats://198.18.9.1:http").is_err());
    }
}

//! Real TCP connections from chosen client addresses to a listener in the server's
//! namespace: the evidence a source is real (`guard-ebpf/src/proof.rs`). Addresses beyond
//! the testbed's own (198.18.0.2-9) are added to the client side, with a host route and a
//! static neighbour on the server side (no default route anywhere).

use std::{
    net::{IpAddr, SocketAddr, TcpListener, TcpStream},
    time::Duration,
};

use socket2::{Domain, Socket, Type};

use crate::netns::Testbed;
use crate::packet::{DST4, DST6};

/// Established connections, kept open while this lives.
pub struct Connections {
    /// Each connection's client address and port.
    pub tuples: Vec<(IpAddr, u16)>,
    /// The server's port.
    pub port: u16,
    _client: Vec<TcpStream>,
    _server: Vec<TcpStream>,
}

/// The testbed's client addresses, which need no setting up.
fn native(a: &IpAddr) -> bool {
    match a {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            o[..3] == [198, 18, 0] && (2..=9).contains(&o[3])
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            s[..7] == [0x2001, 0xdb8, 0, 0, 0, 0, 0] && (2..=9).contains(&s[7])
        }
    }
}

impl Connections {
    /// One connection from each of `sources` to the server's `port`.
    pub fn open(bed: &Testbed, sources: &[IpAddr], port: u16) -> Connections {
        for src in sources.iter().filter(|a| !native(a)) {
            let (len, extra) = match src {
                IpAddr::V4(_) => ("32", None),
                IpAddr::V6(_) => ("128", Some("nodad")),
            };
            let mut add = vec!["addr", "add"];
            let host = format!("{src}/{len}");
            add.extend([host.as_str(), "dev", bed.client_if.as_str()]);
            add.extend(extra);
            bed.client.ip(&add);
            let s = src.to_string();
            bed.server
                .ip(&["route", "replace", &s, "dev", &bed.server_if]);
            bed.server.ip(&[
                "neigh",
                "replace",
                &s,
                "lladdr",
                "02:00:00:00:00:02",
                "dev",
                &bed.server_if,
                "nud",
                "permanent",
            ]);
        }
        let listener = bed.server.run(|| {
            TcpListener::bind(("::", port)).unwrap_or_else(|e| panic!("listen on {port}: {e}"))
        });
        let client: Vec<TcpStream> = bed.client.run(|| {
            sources
                .iter()
                .map(|src| {
                    let dst = match src {
                        IpAddr::V4(_) => SocketAddr::new(DST4.into(), port),
                        IpAddr::V6(_) => SocketAddr::new(DST6.into(), port),
                    };
                    let s =
                        Socket::new(Domain::for_address(dst), Type::STREAM, None).expect("socket");
                    s.bind(&SocketAddr::new(*src, 0).into())
                        .unwrap_or_else(|e| panic!("bind {src}: {e}"));
                    s.connect_timeout(&dst.into(), Duration::from_secs(5))
                        .unwrap_or_else(|e| panic!("connect from {src}: {e}"));
                    s.into()
                })
                .collect()
        });
        let server = (0..client.len())
            .map(|_| listener.accept().expect("accept").0)
            .collect();
        let tuples = client
            .iter()
            .map(|c| {
                let a = c.local_addr().expect("local address");
                (a.ip(), a.port())
            })
            .collect();
        Connections {
            tuples,
            port,
            _client: client,
            _server: server,
        }
    }

    /// A bare ACK on each connection's 4-tuple (what a client flooding over its established
    /// connections sends, as the XDP program sees it).
    pub fn acks(&self) -> Vec<Vec<u8>> {
        self.tuples
            .iter()
            .map(|(src, sport)| crate::packet::tcp_from(*src, *sport, self.port, 0x10))
            .collect()
    }
}

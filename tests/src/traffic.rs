//! Bounded UDP traffic between testbed namespaces, counted per source at the receiver.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv6Addr, SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use crate::netns::Netns;

/// A UDP receiver in the server namespace (dual-stack), counting datagrams per source.
pub struct Receiver {
    socket: UdpSocket,
    pub port: u16,
}

impl Receiver {
    pub fn bind(server: &Netns) -> Receiver {
        let socket =
            server.run(|| UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0)).expect("bind receiver"));
        let port = socket.local_addr().unwrap().port();
        // Tests send before they read: make room for every datagram of a run (root only).
        nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::RcvBufForce, &(32 << 20))
            .expect("SO_RCVBUFFORCE");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        Receiver { socket, port }
    }

    /// Reads until the line is quiet for `quiet` (and at most `limit`), then returns counts.
    pub fn collect(&self, quiet: Duration, limit: Duration) -> HashMap<IpAddr, usize> {
        let mut counts = HashMap::new();
        let mut buf = [0u8; 2048];
        let start = Instant::now();
        let mut last = Instant::now();
        while start.elapsed() < limit && last.elapsed() < quiet {
            if let Ok((_, from)) = self.socket.recv_from(&mut buf) {
                *counts.entry(from.ip().to_canonical()).or_insert(0) += 1;
                last = Instant::now();
            }
        }
        counts
    }
}

/// Sends `count` datagrams from `src` (an address of the client namespace) to `dst`.
pub fn send_udp(client: &Netns, src: IpAddr, dst: SocketAddr, count: usize) {
    client.run(|| {
        let sock =
            UdpSocket::bind(SocketAddr::new(src, 0)).unwrap_or_else(|e| panic!("bind {src}: {e}"));
        for i in 0..count {
            let payload = (i as u32).to_be_bytes();
            // A full socket buffer is retried briefly; the loop is bounded by `count`.
            let mut tries = 0;
            while sock.send_to(&payload, dst).is_err() && tries < 100 {
                std::thread::sleep(Duration::from_millis(1));
                tries += 1;
            }
            if i % 64 == 63 {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    });
}

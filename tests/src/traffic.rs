//! Bounded UDP traffic between testbed namespaces, counted per source at the receiver.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv6Addr, SocketAddr, UdpSocket},
    sync::atomic::{AtomicBool, Ordering},
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

/// Sends prepared Ethernet frames through an AF_PACKET socket in a namespace: sources can be
/// anything (forged floods), and the rate is paced.
pub struct RawSender {
    fd: std::os::fd::OwnedFd,
    ifindex: i32,
}

impl RawSender {
    pub fn open(ns: &Netns, iface: &str) -> RawSender {
        let iface = iface.to_string();
        ns.run(move || {
            // SAFETY: plain socket(2); the fd is owned right away.
            let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
            assert!(
                raw >= 0,
                "AF_PACKET socket: {}",
                std::io::Error::last_os_error()
            );
            let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
            let ifindex = nix::net::if_::if_nametoindex(iface.as_str()).expect("ifindex") as i32;
            RawSender { fd, ifindex }
        })
    }

    /// Sends one frame; false when the kernel refused it (full queue).
    pub fn send(&self, frame: &[u8]) -> bool {
        use std::os::fd::AsRawFd;
        // SAFETY: a zeroed sockaddr_ll is valid; the fields set are the ones sendto reads.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = self.ifindex;
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&frame[..6]);
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const addr).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        n == frame.len() as isize
    }

    /// Sends `frames` round-robin at `pps` for `duration`; returns (frames sent per index,
    /// elapsed). Bounded by `duration` and by `pps * duration` frames.
    pub fn flood(
        &self,
        frames: &[Vec<u8>],
        pps: u32,
        duration: Duration,
    ) -> (Vec<usize>, Duration) {
        self.flood_until(frames, pps, duration, &AtomicBool::new(false))
    }

    /// As `flood`, but also ends as soon as `stop` is set: for a flood that must last
    /// exactly as long as something else takes, whatever this machine's speed.
    pub fn flood_until(
        &self,
        frames: &[Vec<u8>],
        pps: u32,
        duration: Duration,
        stop: &AtomicBool,
    ) -> (Vec<usize>, Duration) {
        let mut sent = vec![0usize; frames.len()];
        let elapsed = self.pace(pps, duration, stop, |n| {
            let i = n % frames.len();
            if self.send(&frames[i]) {
                sent[i] += 1;
            }
        });
        (sent, elapsed)
    }

    /// Sends `frame(n)` for n = 0, 1, ... at `pps` for `duration` (or until `stop`): floods
    /// of more sources than frames can be prepared for. Returns (frames sent, elapsed).
    pub fn flood_generated(
        &self,
        pps: u32,
        duration: Duration,
        stop: &AtomicBool,
        mut frame: impl FnMut(usize) -> Vec<u8>,
    ) -> (usize, Duration) {
        let mut sent = 0;
        let elapsed = self.pace(pps, duration, stop, |n| {
            if self.send(&frame(n)) {
                sent += 1;
            }
        });
        (sent, elapsed)
    }

    /// Calls `send_one(n)` at `pps` for `duration` or until `stop`: bounded by both and by
    /// `pps x duration` calls.
    fn pace(
        &self,
        pps: u32,
        duration: Duration,
        stop: &AtomicBool,
        mut send_one: impl FnMut(usize),
    ) -> Duration {
        let total = (pps as f64 * duration.as_secs_f64()) as usize;
        let start = Instant::now();
        let limit = duration + Duration::from_millis(500);
        let mut n = 0usize;
        while n < total && start.elapsed() < limit && !stop.load(Ordering::Relaxed) {
            let due = ((start.elapsed().as_secs_f64() * pps as f64) as usize).min(total);
            // A rate above what this machine sends: the clock is read every 1,024 frames.
            while n < due && (!n.is_multiple_of(1024) || start.elapsed() < limit) {
                send_one(n);
                n += 1;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        start.elapsed()
    }
}

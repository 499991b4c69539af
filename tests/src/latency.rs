//! Verdict latency on the wire: a source streams sequence-numbered frames (AF_PACKET,
//! 20k pps) to a receiver while a verdict is made; the first sequence number that never
//! arrives is the first packet dropped, and its send time minus the moment the verdict call
//! returned is the latency (negative: in force before the answer reached the caller).

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, UdpSocket},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::{netns::Netns, packet::udp4, traffic::RawSender};

/// Frames per second of the stream.
const PPS: f64 = 20_000.0;

/// A receiver recording the highest sequence number seen per source.
pub struct DropClock {
    port: u16,
    seen: Arc<Mutex<HashMap<IpAddr, u32>>>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

impl DropClock {
    /// Listens in `ns` (the protected host's namespace).
    pub fn start(ns: &Netns) -> DropClock {
        let sock = ns.run(|| UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("bind"));
        let port = sock.local_addr().expect("local address").port();
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .expect("timeout");
        let seen: Arc<Mutex<HashMap<IpAddr, u32>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 256];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((len, from)) = sock.recv_from(&mut buf)
                        && len >= 4
                    {
                        let seq = u32::from_be_bytes(buf[..4].try_into().expect("4 bytes"));
                        let mut s = seen.lock().expect("seen");
                        let e = s.entry(from.ip()).or_insert(0);
                        *e = (*e).max(seq);
                    }
                }
            })
        };
        DropClock {
            port,
            seen,
            stop,
            reader: Some(reader),
        }
    }

    /// Streams from `src` through `tx` while `verdict` runs (it returns when its call
    /// returned) and for `settle` after it (bounded to 2 s + `settle` in all); the latency in
    /// seconds from that return to the first frame dropped.
    pub fn measure(
        &self,
        tx: &RawSender,
        src: Ipv4Addr,
        settle: Duration,
        verdict: impl FnOnce() -> Instant,
    ) -> anyhow::Result<f64> {
        let frame = |seq: u32| {
            let mut f = udp4(src, self.port);
            f[42..46].copy_from_slice(&seq.to_be_bytes());
            f[40..42].copy_from_slice(&[0, 0]); // IPv4 UDP: checksum 0 means none
            f
        };
        let done = AtomicBool::new(false);
        let limit = Duration::from_secs(2) + settle;
        let (sends, returned) = std::thread::scope(|s| {
            let sender = s.spawn(|| {
                let mut sends = Vec::new();
                let start = Instant::now();
                let mut seq = 1u32;
                while !done.load(Ordering::Relaxed) && start.elapsed() < limit {
                    let due = (start.elapsed().as_secs_f64() * PPS) as u32 + 1;
                    while seq <= due {
                        tx.send(&frame(seq));
                        sends.push(Instant::now());
                        seq += 1;
                    }
                    std::hint::spin_loop();
                }
                sends
            });
            std::thread::sleep(Duration::from_millis(5));
            let returned = verdict();
            std::thread::sleep(settle);
            done.store(true, Ordering::Relaxed);
            (sender.join().expect("sender"), returned)
        });
        std::thread::sleep(Duration::from_millis(10));
        let last = self
            .seen
            .lock()
            .expect("seen")
            .get(&IpAddr::V4(src))
            .copied()
            .unwrap_or(0);
        let first_dropped = last as usize; // sends[k] is seq k + 1
        anyhow::ensure!(
            first_dropped < sends.len(),
            "{src}: every packet arrived (the verdict never took effect within {settle:?})"
        );
        let at = sends[first_dropped];
        Ok(if at >= returned {
            (at - returned).as_secs_f64()
        } else {
            -(returned - at).as_secs_f64()
        })
    }
}

impl Drop for DropClock {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

//! An abusive local client for the abuse tests: opens COUNT connections to a Unix socket or a
//! TCP address, optionally sends each half a request head, holds them SECS seconds, then
//! says how many the server had closed.
//!
//! `guard-hold unix:PATH|tcp:ADDR COUNT SECS [partial]`
//! Prints `held N` once connected (N may be short of COUNT: the error follows), then
//! `closed_by_server M of N`.

use std::{
    io::{Read, Write},
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

trait Conn: Read + Write + AsRawFd {}
impl Conn for std::net::TcpStream {}
impl Conn for std::os::unix::net::UnixStream {}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [target, count, secs, rest @ ..] = &args[..] else {
        eprintln!("usage: guard-hold unix:PATH|tcp:ADDR COUNT SECS [partial]");
        std::process::exit(2);
    };
    let count: usize = count.parse().expect("COUNT");
    let secs: u64 = secs.parse().expect("SECS");
    let partial = rest.iter().any(|a| a == "partial");
    raise_nofile();
    let mut held: Vec<Box<dyn Conn>> = Vec::with_capacity(count);
    let mut error = None;
    for _ in 0..count {
        let conn: std::io::Result<Box<dyn Conn>> = if let Some(path) = target.strip_prefix("unix:")
        {
            std::os::unix::net::UnixStream::connect(path).map(|s| Box::new(s) as Box<dyn Conn>)
        } else if let Some(addr) = target.strip_prefix("tcp:") {
            std::net::TcpStream::connect_timeout(
                &addr.parse().expect("ADDR"),
                Duration::from_secs(2),
            )
            .map(|s| Box::new(s) as Box<dyn Conn>)
        } else {
            panic!("target {target}: unix:PATH or tcp:ADDR");
        };
        match conn {
            Ok(mut c) => {
                if partial {
                    // A head that never ends: no blank line.
                    let _ = c.write_all(b"POST /v1/bans HTTP/1.1\r\nHost: guard\r\nContent-Le");
                }
                held.push(c);
            }
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    println!("held {}", held.len());
    if let Some(e) = error {
        println!("error {e}");
    }
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(200));
    }
    let closed = held
        .iter()
        .filter(|c| closed_by_peer(c.as_raw_fd()))
        .count();
    println!("closed_by_server {closed} of {}", held.len());
}

/// Whether the other end closed (or answered, which it does only before closing): a
/// non-blocking peek finds anything but "nothing yet".
fn closed_by_peer(fd: i32) -> bool {
    let mut b = [0u8; 1];
    // SAFETY: fd is an open socket owned by the caller; b is a valid one-byte buffer.
    let n = unsafe {
        libc::recv(
            fd,
            b.as_mut_ptr().cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n >= 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EAGAIN)
}

fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: lim is a valid rlimit for the kernel to fill and read.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

//! The bottom layer: what every other module speaks of and none owns. Entries and their
//! kinds, the bounds every channel holds a TTL to, addresses as the kernel's words, the
//! clocks. It imports nothing else of this crate (`tests/architecture.rs`).

pub mod clock;
mod entry;
pub mod report;
pub mod rules;
pub mod ttl;

use std::net::Ipv6Addr;

pub use entry::{Entry, Kind, Remote, Request, origin};

/// An IPv6 address as the kernel sees it: raw network-order words.
pub fn v6_words(a: &Ipv6Addr) -> [u32; 4] {
    let o = a.octets();
    [0, 1, 2, 3].map(|i| u32::from_ne_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]]))
}

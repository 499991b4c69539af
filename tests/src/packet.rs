//! Builds test frames byte by byte, including the broken ones a parser must survive.

use std::net::{Ipv4Addr, Ipv6Addr};

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;

pub use guard_common::rules::{
    PROTO_ICMP as ICMP, PROTO_ICMPV6 as ICMPV6, PROTO_TCP as TCP, PROTO_UDP as UDP,
};

/// The testbed's MAC addresses (`netns::Testbed`): frames go client -> server.
pub const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// Ethernet header with optional VLAN tags (outermost first) and the inner ethertype.
pub fn eth(tags: &[u16], ethertype: u16) -> Vec<u8> {
    let mut f = [SERVER_MAC, CLIENT_MAC].concat();
    for (i, &vid) in tags.iter().enumerate() {
        let tpid = if i == 0 && tags.len() == 2 {
            ETH_P_8021AD
        } else {
            ETH_P_8021Q
        };
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&vid.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

/// IPv4 header; `options` is padded to 4 bytes; `frag` is the flags/offset field.
pub fn ipv4(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    options: &[u8],
    frag: u16,
    payload_len: usize,
) -> Vec<u8> {
    let mut opts = options.to_vec();
    while !opts.len().is_multiple_of(4) {
        opts.push(0);
    }
    let ihl = (20 + opts.len()) / 4;
    let total = (ihl * 4 + payload_len) as u16;
    let mut h = vec![0x40 | ihl as u8, 0];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&[0, 1]);
    h.extend_from_slice(&frag.to_be_bytes());
    h.extend_from_slice(&[64, proto, 0, 0]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h.extend_from_slice(&opts);
    let sum = checksum(&h);
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    h
}

/// An IPv6 extension header: (type, bytes) pairs chained after the fixed header.
pub struct Ext {
    pub kind: u8,
    pub body: Vec<u8>,
}

impl Ext {
    /// Hop-by-hop (0), routing (43) or destination options (60), padded to `8 * units` bytes.
    pub fn options(kind: u8, units: usize) -> Ext {
        Ext {
            kind,
            body: vec![0; 8 * units],
        }
    }

    /// Fragment header with the given offset (in 8-byte units) and more-fragments flag.
    pub fn fragment(offset: u16, more: bool) -> Ext {
        let mut body = vec![0; 8];
        body[2..4].copy_from_slice(&((offset << 3) | more as u16).to_be_bytes());
        Ext { kind: 44, body }
    }
}

/// IPv6 header followed by its extension headers; `proto` is the final next-header.
pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, exts: &[Ext], proto: u8, payload_len: usize) -> Vec<u8> {
    let ext_len: usize = exts.iter().map(|e| e.body.len()).sum();
    let first = exts.first().map_or(proto, |e| e.kind);
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&((ext_len + payload_len) as u16).to_be_bytes());
    h.extend_from_slice(&[first, 64]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    for (i, e) in exts.iter().enumerate() {
        let mut body = e.body.clone();
        body[0] = exts.get(i + 1).map_or(proto, |n| n.kind);
        if e.kind != 44 {
            body[1] = (body.len() / 8 - 1) as u8;
        }
        h.extend_from_slice(&body);
    }
    h
}

pub fn tcp(dport: u16, flags: u8) -> Vec<u8> {
    let mut h = vec![0; 20];
    h[0..2].copy_from_slice(&40000u16.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    h[12] = 5 << 4;
    h[13] = flags;
    h
}

pub fn udp(dport: u16, payload: usize) -> Vec<u8> {
    let mut h = vec![0; 8];
    h[0..2].copy_from_slice(&40000u16.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    h[4..6].copy_from_slice(&((8 + payload) as u16).to_be_bytes());
    h.extend(std::iter::repeat_n(0xab, payload));
    h
}

pub fn icmp_echo() -> Vec<u8> {
    vec![8, 0, 0, 0, 0, 1, 0, 1]
}

/// A complete UDP/IPv4 frame to the testbed server, with a valid checksum.
pub fn udp4(src: Ipv4Addr, dport: u16) -> Vec<u8> {
    let mut l4 = udp(dport, 18);
    let pseudo = [
        &src.octets()[..],
        &DST4.octets(),
        &[0, UDP],
        &(l4.len() as u16).to_be_bytes(),
    ]
    .concat();
    let sum = checksum(&[pseudo, l4.clone()].concat());
    l4[6..8].copy_from_slice(&sum.to_be_bytes());
    [
        eth(&[], ETH_P_IP),
        ipv4(src, DST4, UDP, &[], 0, l4.len()),
        l4,
    ]
    .concat()
}

/// A complete UDP/IPv6 frame to the testbed server, with the checksum IPv6 requires.
pub fn udp6(src: Ipv6Addr, dport: u16) -> Vec<u8> {
    let mut l4 = udp(dport, 18);
    let len = (l4.len() as u32).to_be_bytes();
    let pseudo = [&src.octets()[..], &DST6.octets(), &len, &[0, 0, 0, UDP]].concat();
    let sum = checksum(&[pseudo, l4.clone()].concat());
    l4[6..8].copy_from_slice(&sum.to_be_bytes());
    [
        eth(&[], ETH_P_IPV6),
        ipv6(src, DST6, &[], UDP, l4.len()),
        l4,
    ]
    .concat()
}

/// A UDP frame from `src` of either family.
pub fn udp_from(src: std::net::IpAddr, dport: u16) -> Vec<u8> {
    match src {
        std::net::IpAddr::V4(a) => udp4(a, dport),
        std::net::IpAddr::V6(a) => udp6(a, dport),
    }
}

pub const DST4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const DST6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);

fn checksum(b: &[u8]) -> u16 {
    let mut sum: u32 = b
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32)
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A TCP segment from `src:sport` to the testbed server's `dport` (either family) with
/// `flags` and a valid checksum: a forged one, or one of a real connection's 4-tuple.
pub fn tcp_from(src: std::net::IpAddr, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let l4 = segment(src, sport, dport, flags);
    let (ip, ethertype) = match src {
        std::net::IpAddr::V4(a) => (ipv4(a, DST4, TCP, &[], 0, l4.len()), ETH_P_IP),
        std::net::IpAddr::V6(a) => (ipv6(a, DST6, &[], TCP, l4.len()), ETH_P_IPV6),
    };
    [eth(&[], ethertype), ip, l4].concat()
}

/// The TCP header of `tcp_from`, checksummed for its addresses.
fn segment(src: std::net::IpAddr, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut l4 = tcp(dport, flags);
    l4[0..2].copy_from_slice(&sport.to_be_bytes());
    // A window, so the segment looks like one a stack sends.
    l4[14..16].copy_from_slice(&64240u16.to_be_bytes());
    let len = (l4.len() as u16).to_be_bytes();
    let pseudo = match src {
        std::net::IpAddr::V4(a) => [&a.octets()[..], &DST4.octets(), &[0, TCP], &len].concat(),
        std::net::IpAddr::V6(a) => [
            &a.octets()[..],
            &DST6.octets(),
            &[0, 0],
            &len,
            &[0, 0, 0, TCP],
        ]
        .concat(),
    };
    let sum = checksum(&[pseudo, l4.clone()].concat());
    l4[16..18].copy_from_slice(&sum.to_be_bytes());
    l4
}

/// A TCP segment from `src:sport` as two IPv4 fragments of datagram `id`, the first
/// carrying only 8 bytes of its header (the ports; the flags come in the second): the
/// tiny-fragment evasion.
pub fn tiny_fragments(src: Ipv4Addr, id: u16, sport: u16, dport: u16, flags: u8) -> [Vec<u8>; 2] {
    let l4 = segment(std::net::IpAddr::V4(src), sport, dport, flags);
    let fragment = |frag: u16, payload: &[u8]| {
        let mut ip = ipv4(src, DST4, TCP, &[], frag, payload.len());
        ip[4..6].copy_from_slice(&id.to_be_bytes());
        ip[10..12].fill(0);
        let sum = checksum(&ip);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        [eth(&[], ETH_P_IP), ip, payload.to_vec()].concat()
    };
    // More fragments at offset 0, then the rest at offset 1 (8 bytes), the last.
    [fragment(0x2000, &l4[..8]), fragment(1, &l4[8..])]
}

/// A TCP segment from `src:sport` behind `n` Destination Options headers.
pub fn tcp_behind_options(src: Ipv6Addr, sport: u16, dport: u16, flags: u8, n: usize) -> Vec<u8> {
    let l4 = segment(std::net::IpAddr::V6(src), sport, dport, flags);
    let exts: Vec<Ext> = (0..n).map(|_| Ext::options(60, 1)).collect();
    [
        eth(&[], ETH_P_IPV6),
        ipv6(src, DST6, &exts, TCP, l4.len()),
        l4,
    ]
    .concat()
}

//! Header parsing for the XDP program.
//!
//! Every read is bounds-checked against `data_end`. A frame whose source address cannot be
//! read (Ethernet, VLAN tags or the fixed IP header cut short, a bad version) is
//! [`Parsed::Malformed`]; anything that is not IPv4 or IPv6 is [`Parsed::NotIp`] and passes.
//! A frame whose source can be read is [`Parsed::Ip`] whatever follows, so that the lists
//! and bans judge it; when what follows does not fit (IPv4 options, an extension header, the
//! transport header) or the IPv6 chain is longer than the walk, it is marked `truncated`.
//! Non-first fragments carry no transport header by design: not truncated, `l4_present` 0.

use aya_ebpf::programs::XdpContext;

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const MAX_VLAN_TAGS: usize = 2;
const MAX_IPV6_EXT_HEADERS: usize = 6;

use guard_common::rules::{PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};

pub const TCP_FLAG_SYN: u8 = 0x02;
pub const TCP_FLAG_RST: u8 = 0x04;
pub const TCP_FLAG_ACK: u8 = 0x10;

/// Source address as it is in the packet: IPv4 in host order (for table indexing),
/// IPv6 as raw network-order words (masked and hashed as they are).
#[derive(Clone, Copy)]
pub enum Source {
    V4(u32),
    V6([u32; 4]),
}

/// What the stages judge a packet by: plain integers (the source as words, its family).
/// Transport fields are plain fields rather than an `Option`: LLVM loads an `Option`'s
/// payload before testing it, and on the paths without one that is a stack slot nothing
/// wrote, which Linux 6.1's verifier refuses ("invalid read from stack").
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Packet {
    /// IPv6: the source's four words as in the packet (network order). IPv4: word 0, in
    /// host order; the others zero.
    pub src: [u32; 4],
    /// 4 or 6.
    pub family: u8,
    /// IPv4 protocol or the IPv6 header chain's last next-header; 0 when the chain is
    /// longer than the walk.
    pub proto: u8,
    /// 1 when `dport` and `tcp_flags` come from a TCP, UDP or ICMP header; 0 for non-first
    /// fragments, unknown protocols and over-long IPv6 header chains.
    pub l4_present: u8,
    /// TCP flags byte; 0 for other protocols.
    pub tcp_flags: u8,
    /// Destination port (host order); 0 for ICMP.
    pub dport: u16,
    /// Offsets of the IP header and (with `l4_present`) the transport header, for the
    /// rare stage that reads more of them (`proof`): the common path copies no more.
    pub l3_off: u16,
    pub l4_off: u16,
    /// `CUT` when a header after the IP source does not fit, `LONG_CHAIN` when the IPv6
    /// chain is longer than the walk (then `proto` is 0), else 0. Either is counted
    /// `malformed`, and dropped when a rule needs the transport header to judge it.
    pub truncated: u8,
    pub _pad: u8,
}

impl Packet {
    pub const EMPTY: Packet = Packet {
        src: [0; 4],
        family: 0,
        proto: 0,
        l4_present: 0,
        tcp_flags: 0,
        dport: 0,
        l3_off: 0,
        l4_off: 0,
        truncated: 0,
        _pad: 0,
    };

    #[inline(always)]
    pub fn source(&self) -> Source {
        if self.family == 6 {
            Source::V6(self.src)
        } else {
            Source::V4(self.src[0])
        }
    }

    #[inline(always)]
    fn new(src: Source, proto: u8, l3: usize) -> Packet {
        let (family, src) = match src {
            Source::V4(a) => (4, [a, 0, 0, 0]),
            Source::V6(w) => (6, w),
        };
        Packet {
            src,
            family,
            proto,
            l3_off: l3 as u16,
            ..Packet::EMPTY
        }
    }
}

/// `Packet::truncated`: a header after the source does not fit.
pub const CUT: u8 = 1;
/// `Packet::truncated`: an IPv6 chain longer than the walk.
pub const LONG_CHAIN: u8 = 2;

/// `pkt`, cut short after its source.
#[inline(always)]
fn truncated(mut pkt: Packet) -> Parsed {
    pkt.truncated = CUT;
    Parsed::Ip(pkt)
}

pub enum Parsed {
    NotIp,
    Malformed,
    Ip(Packet),
}

/// A bounds-checked pointer to `len` bytes at `off` from the start of the packet.
#[inline(always)]
fn bytes_at(ctx: &XdpContext, off: usize, len: usize) -> Option<*const u8> {
    let start = ctx.data();
    let end = ctx.data_end();
    let p = start + off;
    if p + len > end {
        return None;
    }
    Some(p as *const u8)
}

#[inline(always)]
fn be16_at(ctx: &XdpContext, off: usize) -> Option<u16> {
    let p = bytes_at(ctx, off, 2)?;
    Some(u16::from_be(unsafe { (p as *const u16).read_unaligned() }))
}

// Inlined into every program: an outlined copy passes packet pointers as scalars, which
// the verifier rejects.
#[inline(always)]
pub fn parse(ctx: &XdpContext) -> Parsed {
    let Some(mut proto) = be16_at(ctx, 12) else {
        return Parsed::Malformed;
    };
    let mut off = ETH_HLEN;
    for _ in 0..MAX_VLAN_TAGS {
        if proto != ETH_P_8021Q && proto != ETH_P_8021AD {
            break;
        }
        // A tag is 2 bytes of TCI and the next ethertype.
        let Some(inner) = be16_at(ctx, off + 2) else {
            return Parsed::Malformed;
        };
        proto = inner;
        off += 4;
    }
    match proto {
        ETH_P_IP => parse_ipv4(ctx, off),
        ETH_P_IPV6 => parse_ipv6(ctx, off),
        _ => Parsed::NotIp,
    }
}

#[inline(always)]
fn parse_ipv4(ctx: &XdpContext, l3: usize) -> Parsed {
    // Fixed part of the header: 20 bytes.
    let Some(h) = bytes_at(ctx, l3, 20) else {
        return Parsed::Malformed;
    };
    let ver_ihl = unsafe { *h };
    let ihl = (ver_ihl & 0x0f) as usize * 4;
    if ver_ihl >> 4 != 4 || ihl < 20 {
        return Parsed::Malformed;
    }
    let frag = u16::from_be(unsafe { (h.add(6) as *const u16).read_unaligned() });
    let proto = unsafe { *h.add(9) };
    let src = u32::from_be(unsafe { (h.add(12) as *const u32).read_unaligned() });
    let pkt = Packet::new(Source::V4(src), proto, l3);
    // Options, if any, must be in the packet too.
    if bytes_at(ctx, l3, ihl).is_none() {
        return truncated(pkt);
    }
    if frag & 0x1fff != 0 {
        // Non-first fragment: no transport header to look at.
        return Parsed::Ip(pkt);
    }
    parse_l4(ctx, pkt, l3 + ihl)
}

#[inline(always)]
fn parse_ipv6(ctx: &XdpContext, l3: usize) -> Parsed {
    let Some(h) = bytes_at(ctx, l3, 40) else {
        return Parsed::Malformed;
    };
    if unsafe { *h } >> 4 != 6 {
        return Parsed::Malformed;
    }
    let mut next = unsafe { *h.add(6) };
    let src = Source::V6(unsafe { (h.add(8) as *const [u32; 4]).read_unaligned() });
    let mut off = l3 + 40;
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        if !is_ext_header(next) {
            break;
        }
        // Every extension header starts with next-header and a length byte. Reads are
        // kept 2+ bytes wide: LLVM turns a 1-byte check into `p >= end`, which the
        // verifier does not accept as a bound at offset 0.
        let Some(h) = bytes_at(ctx, off, 4) else {
            return truncated(Packet::new(src, 0, l3));
        };
        let (kind, hdr_len) = (next, unsafe { *h.add(1) } as usize);
        next = unsafe { *h };
        off += match kind {
            // Fragment header: 8 bytes; only the first fragment carries the L4 header.
            44 => {
                let frag = u16::from_be(unsafe { (h.add(2) as *const u16).read_unaligned() });
                if frag & 0xfff8 != 0 {
                    return Parsed::Ip(Packet::new(src, next, l3));
                }
                8
            }
            // Authentication header: (payload_len + 2) * 4 bytes.
            51 => (hdr_len + 2) * 4,
            // Hop-by-hop, routing, destination options: (hdr_ext_len + 1) * 8 bytes.
            _ => (hdr_len + 1) * 8,
        };
    }
    if is_ext_header(next) {
        // Longer chain than we walk: no protocol to judge by.
        let mut pkt = Packet::new(src, 0, l3);
        pkt.truncated = LONG_CHAIN;
        return Parsed::Ip(pkt);
    }
    // One transport parse after the walk, not one per place the walk can end.
    parse_l4(ctx, Packet::new(src, next, l3), off)
}

/// Hop-by-hop, routing, fragment, authentication, destination options.
#[inline(always)]
fn is_ext_header(next: u8) -> bool {
    matches!(next, 0 | 43 | 44 | 51 | 60)
}

#[inline(always)]
fn parse_l4(ctx: &XdpContext, mut pkt: Packet, off: usize) -> Parsed {
    let (dport, tcp_flags) = match pkt.proto {
        PROTO_TCP => {
            let Some(h) = bytes_at(ctx, off, 20) else {
                return truncated(pkt);
            };
            if unsafe { *h.add(12) } >> 4 < 5 {
                return truncated(pkt);
            }
            (
                u16::from_be(unsafe { (h.add(2) as *const u16).read_unaligned() }),
                unsafe { *h.add(13) },
            )
        }
        PROTO_UDP => {
            let Some(h) = bytes_at(ctx, off, 8) else {
                return truncated(pkt);
            };
            (
                u16::from_be(unsafe { (h.add(2) as *const u16).read_unaligned() }),
                0,
            )
        }
        PROTO_ICMP | PROTO_ICMPV6 => {
            if bytes_at(ctx, off, 8).is_none() {
                return truncated(pkt);
            }
            (0, 0)
        }
        _ => return Parsed::Ip(pkt),
    };
    pkt.l4_present = 1;
    pkt.l4_off = off as u16;
    pkt.dport = dport;
    pkt.tcp_flags = tcp_flags;
    Parsed::Ip(pkt)
}

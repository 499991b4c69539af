//! Builds the kernel's allow/deny tables from the lists (layout: `guard_common::lists`).
//!
//! Every address gets one effective code: allow if any allow entry covers it, else deny if
//! any deny entry covers it, else none. [`Tables::lookup`] answers exactly as the XDP
//! program does, so userspace can ask what the kernel will do with an address.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    net::{IpAddr, Ipv6Addr},
};

use guard_common::{
    ListCode, V6Key, V6Len,
    lists::{
        self, Bitmap512, MAX_V6_LENS, V4_DIR24_ENTRIES, V4_TBL8_ENTRIES, V6_LONGER,
        V6_PREFIX_ENTRIES, V6_TOP24_ENTRIES, V6_TRIE_MAX_LEN,
    },
};

use super::trie6::{TooManyNodes, Trie6};
use crate::model::{report::ListCounts, v6_words};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TableError {
    #[error(
        "the lists split {split} IPv4 /24s into single hosts; at most {max} fit the kernel table"
    )]
    TooManyV4Splits { split: usize, max: u32 },
    #[error(transparent)]
    TooManyV6Nodes(#[from] TooManyNodes),
    #[error(
        "the lists hold {count} distinct IPv6 prefixes longer than /64; at most {max} fit the kernel table"
    )]
    TooManyV6Prefixes { count: usize, max: u32 },
    #[error(
        "the lists use {count} distinct IPv6 prefix lengths longer than /64 ({lengths}); at most {max} are supported"
    )]
    TooManyV6Lengths {
        count: usize,
        lengths: String,
        max: usize,
    },
}

/// The contents of the list maps.
#[derive(Clone, PartialEq, Eq)]
pub struct Tables {
    /// `V4_DIR24`, all elements.
    pub v4_dir24: Vec<Bitmap512>,
    /// `V4_TBL8`: per-host codes of split /24s.
    pub v4_tbl8: BTreeMap<u32, Bitmap512>,
    /// `V6_TOP24`, all elements.
    pub v6_top24: Vec<Bitmap512>,
    /// `V6_ROOT` and `V6_NODES` (node indices local to this trie): prefixes up to /64.
    pub v6_trie: Trie6,
    /// `V6_PREFIX`: effective code per (length, prefix), for prefixes longer than /64.
    pub v6_prefix: HashMap<V6Key, u32>,
    /// Prefix lengths present in `v6_prefix`, longest first.
    pub v6_lens: Vec<u32>,
    pub counts: ListCounts,
}

impl std::fmt::Debug for Tables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tables")
            .field("v4_tbl8", &self.v4_tbl8.len())
            .field("v6_nodes", &self.v6_trie.nodes.len())
            .field("v6_prefix", &self.v6_prefix.len())
            .field("v6_lens", &self.v6_lens)
            .finish()
    }
}

impl Tables {
    /// What a newly created set of list maps holds (arrays are zero-filled, hashes empty):
    /// the first write to new maps then writes only the non-empty elements.
    pub fn empty() -> Tables {
        Tables::build(&[], &[]).expect("empty lists fit")
    }

    pub fn build(allow: &[IpNet], deny: &[IpNet]) -> Result<Tables, TableError> {
        let (allow4, allow6) = split_families(allow);
        let (deny4, deny6) = split_families(deny);
        let (v4_dir24, v4_tbl8) = build_v4(&allow4, &deny4)?;
        let (v6_top24, v6_trie, v6_prefix, v6_lens) = build_v6(&allow6, &deny6)?;
        Ok(Tables {
            v4_dir24,
            v4_tbl8,
            v6_top24,
            v6_trie,
            v6_prefix,
            v6_lens,
            counts: ListCounts {
                allow: allow.len(),
                deny: deny.len(),
            },
        })
    }

    /// What the XDP program decides for `addr` from these tables.
    pub fn lookup(&self, addr: IpAddr) -> ListCode {
        match addr {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                let (elem, pos) = lists::v4_dir24_slot(a);
                match self.v4_dir24[elem as usize].code(pos) {
                    ListCode::Split => {
                        let (key, host) = lists::v4_tbl8_slot(a);
                        self.v4_tbl8
                            .get(&key)
                            .map_or(ListCode::None, |b| b.code(host))
                    }
                    code => code,
                }
            }
            IpAddr::V6(a) => {
                let words = v6_words(&a);
                let (elem, bit) = lists::v6_top24_slot(u32::from_be(words[0]));
                if !self.v6_top24[elem as usize].bit(bit) {
                    return ListCode::None;
                }
                let leaf = self.v6_trie.leaf(u128::from(a));
                if leaf & V6_LONGER != 0 {
                    for &len in &self.v6_lens {
                        if let Some(&code) = self.v6_prefix.get(&V6Len::new(len).key(&words)) {
                            return ListCode::from_bits(code as u64);
                        }
                    }
                }
                ListCode::from_bits(u64::from(leaf))
            }
        }
    }
}

fn split_families(nets: &[IpNet]) -> (Vec<Ipv4Net>, Vec<Ipv6Net>) {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for net in nets {
        match net.trunc() {
            IpNet::V4(n) => v4.push(n),
            IpNet::V6(n) => v6.push(n),
        }
    }
    (v4, v6)
}

type V4Tables = (Vec<Bitmap512>, BTreeMap<u32, Bitmap512>);

fn build_v4(allow: &[Ipv4Net], deny: &[Ipv4Net]) -> Result<V4Tables, TableError> {
    // One code per /24 from the prefixes of /24 and shorter: deny painted, then allow over it.
    let mut slots = vec![ListCode::None; 1 << 24];
    for (nets, code) in [(deny, ListCode::Deny), (allow, ListCode::Allow)] {
        for net in nets.iter().filter(|n| n.prefix_len() <= 24) {
            let first = (u32::from(net.network()) >> 8) as usize;
            let count = 1usize << (24 - net.prefix_len());
            slots[first..first + count].fill(code);
        }
    }
    // Longer prefixes split their /24 into per-host codes.
    let mut hosts: BTreeMap<u32, [ListCode; 256]> = BTreeMap::new();
    for (nets, code) in [(deny, ListCode::Deny), (allow, ListCode::Allow)] {
        for net in nets.iter().filter(|n| n.prefix_len() > 24) {
            let addr = u32::from(net.network());
            let slash24 = addr >> 8;
            let base = slots[slash24 as usize];
            let h = hosts.entry(slash24).or_insert([base; 256]);
            let first = (addr & 0xff) as usize;
            let count = 1usize << (32 - net.prefix_len());
            for c in &mut h[first..first + count] {
                // Allow beats deny wherever either stands.
                if code == ListCode::Allow || *c != ListCode::Allow {
                    *c = code;
                }
            }
        }
    }
    let mut tbl8 = BTreeMap::new();
    for (slash24, h) in hosts {
        if h.iter().all(|&c| c == h[0]) {
            slots[slash24 as usize] = h[0];
            continue;
        }
        let mut b = Bitmap512::ZERO;
        for (pos, &c) in h.iter().enumerate() {
            b.set_code(pos as u32, c);
        }
        tbl8.insert(slash24, b);
        slots[slash24 as usize] = ListCode::Split;
    }
    if tbl8.len() > V4_TBL8_ENTRIES as usize {
        return Err(TableError::TooManyV4Splits {
            split: tbl8.len(),
            max: V4_TBL8_ENTRIES,
        });
    }
    let mut dir24 = vec![Bitmap512::ZERO; V4_DIR24_ENTRIES as usize];
    for (slash24, &code) in slots.iter().enumerate() {
        if code != ListCode::None {
            let (elem, pos) = lists::v4_dir24_slot((slash24 as u32) << 8);
            dir24[elem as usize].set_code(pos, code);
        }
    }
    Ok((dir24, tbl8))
}

type V6Tables = (Vec<Bitmap512>, Trie6, HashMap<V6Key, u32>, Vec<u32>);

fn build_v6(allow: &[Ipv6Net], deny: &[Ipv6Net]) -> Result<V6Tables, TableError> {
    let key = |n: &Ipv6Net| (u128::from(n.network()), n.prefix_len());
    let allow_keys: HashSet<(u128, u8)> = allow.iter().map(key).collect();
    let allow_lens: BTreeSet<u8> = allow.iter().map(Ipv6Net::prefix_len).collect();
    // An entry covered by an allow entry is an allow: the longest match then decides alone.
    let covered_by_allow = |n: &Ipv6Net| {
        let net = u128::from(n.network());
        allow_lens.range(..=n.prefix_len()).any(|&len| {
            let mask = if len == 0 { 0 } else { !0u128 << (128 - len) };
            allow_keys.contains(&(net & mask, len))
        })
    };
    let mut entries: HashMap<(u128, u8), ListCode> = HashMap::new();
    for n in deny {
        let code = if covered_by_allow(n) {
            ListCode::Allow
        } else {
            ListCode::Deny
        };
        entries.insert(key(n), code);
    }
    for n in allow {
        entries.insert(key(n), ListCode::Allow);
    }
    let mut top24 = vec![Bitmap512::ZERO; V6_TOP24_ENTRIES as usize];
    for &(net, len) in entries.keys() {
        let first = (net >> 104) as u32;
        let count = if len >= 24 { 1 } else { 1u32 << (24 - len) };
        for top in first..first + count {
            let (elem, bit) = lists::v6_top24_slot(top << 8);
            top24[elem as usize].set_bit(bit);
        }
    }
    let (short, long): (Vec<_>, Vec<_>) = entries
        .into_iter()
        .partition(|((_, len), _)| *len <= V6_TRIE_MAX_LEN);
    if long.len() > V6_PREFIX_ENTRIES as usize {
        return Err(TableError::TooManyV6Prefixes {
            count: long.len(),
            max: V6_PREFIX_ENTRIES,
        });
    }
    let lens: BTreeSet<u32> = long.iter().map(|((_, l), _)| u32::from(*l)).collect();
    if lens.len() > MAX_V6_LENS {
        let lengths = lens
            .iter()
            .map(|l| format!("/{l}"))
            .collect::<Vec<_>>()
            .join(" ");
        return Err(TableError::TooManyV6Lengths {
            count: lens.len(),
            lengths,
            max: MAX_V6_LENS,
        });
    }
    let mut prefixes: Vec<(u128, u8, ListCode)> =
        short.into_iter().map(|((n, l), c)| (n, l, c)).collect();
    let trie = Trie6::build(&mut prefixes, long.iter().map(|((n, _), _)| *n))?;
    let words = |n: u128| v6_words(&Ipv6Addr::from(n));
    let hashed: HashMap<V6Key, u32> = long
        .into_iter()
        .map(|((n, l), c)| (V6Len::new(u32::from(l)).key(&words(n)), c as u32))
        .collect();
    Ok((top24, trie, hashed, lens.into_iter().rev().collect()))
}

/// The reference answer: what the lists mean, computed the slow, obvious way.
#[cfg(test)]
pub(crate) fn reference_lookup(allow: &[IpNet], deny: &[IpNet], addr: IpAddr) -> ListCode {
    if allow.iter().any(|n| n.contains(&addr)) {
        ListCode::Allow
    } else if deny.iter().any(|n| n.contains(&addr)) {
        ListCode::Deny
    } else {
        ListCode::None
    }
}

/// Addresses worth probing around a prefix: its edges and just outside them.
#[cfg(test)]
pub(crate) fn probes(net: &IpNet) -> Vec<IpAddr> {
    match net {
        IpNet::V4(n) => {
            let (lo, hi) = (u32::from(n.network()), u32::from(n.broadcast()));
            [
                lo.wrapping_sub(1),
                lo,
                lo + (hi - lo) / 2,
                hi,
                hi.wrapping_add(1),
            ]
            .map(|a| IpAddr::V4(std::net::Ipv4Addr::from(a)))
            .to_vec()
        }
        IpNet::V6(n) => {
            let (lo, hi) = (u128::from(n.network()), u128::from(n.broadcast()));
            [
                lo.wrapping_sub(1),
                lo,
                lo + (hi - lo) / 2,
                hi,
                hi.wrapping_add(1),
            ]
            .map(|a| IpAddr::V6(Ipv6Addr::from(a)))
            .to_vec()
        }
    }
}

#[cfg(test)]
mod tests;

//! The IPv6 multibit trie the kernel walks (layout: `guard_common::lists`): a root entry per
//! /16, then nodes of 16 entries per 4 bits, for prefixes up to /64. Prefixes go in
//! shortest first, each setting every entry it covers (inside existing nodes too: what it
//! overrides is shorter), so the leaves hold the longest match's code and a lookup stops at
//! the first code. A leaf under which longer prefixes lie is marked [`V6_LONGER`].

use guard_common::{
    ListCode,
    lists::{
        V6_LONGER, V6_NODE, V6_NODES_PER_GENERATION, V6_ROOT_BITS, V6_ROOT_ENTRIES, V6_STRIDE,
        V6Node,
    },
};

/// Node indices are local (0..): the writer adds the base of the generation it writes.
#[derive(Clone, PartialEq, Eq)]
pub struct Trie6 {
    pub root: Vec<u32>,
    pub nodes: Vec<V6Node>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "the IPv6 lists need {needed} trie nodes or more; at most {max} fit the kernel table (long prefixes in many distinct /48s need the most)"
)]
pub struct TooManyNodes {
    pub needed: usize,
    pub max: u32,
}

impl Trie6 {
    /// A trie of `(network, length, code)` prefixes up to /64 (the network as a u128),
    /// each at most once, any order; the leaves holding the networks of `longer` marked.
    pub fn build(
        prefixes: &mut [(u128, u8, ListCode)],
        longer: impl Iterator<Item = u128>,
    ) -> Result<Trie6, TooManyNodes> {
        prefixes.sort_by_key(|p| p.1);
        let mut t = Trie6 {
            root: vec![ListCode::None as u32; V6_ROOT_ENTRIES as usize],
            nodes: Vec::new(),
        };
        for &(net, len, code) in prefixes.iter() {
            debug_assert!(len <= guard_common::lists::V6_TRIE_MAX_LEN);
            t.insert(net, len, code as u32)?;
        }
        // After every code is in place: filling never copies the mark.
        for net in longer {
            *t.leaf_mut(net) |= V6_LONGER;
        }
        Ok(t)
    }

    fn leaf_mut(&mut self, addr: u128) -> &mut u32 {
        let top = (addr >> (128 - V6_ROOT_BITS)) as usize;
        if self.root[top] & V6_NODE == 0 {
            return &mut self.root[top];
        }
        let mut node = (self.root[top] & !V6_NODE) as usize;
        let mut depth = V6_ROOT_BITS;
        loop {
            let nibble = ((addr >> (128 - depth - V6_STRIDE)) & 0xf) as usize;
            let e = self.nodes[node].0[nibble];
            if e & V6_NODE == 0 {
                return &mut self.nodes[node].0[nibble];
            }
            node = (e & !V6_NODE) as usize;
            depth += V6_STRIDE;
        }
    }

    fn insert(&mut self, net: u128, len: u8, code: u32) -> Result<(), TooManyNodes> {
        let len = u32::from(len);
        let top = (net >> (128 - V6_ROOT_BITS)) as usize;
        if len <= V6_ROOT_BITS {
            let span = 1usize << (V6_ROOT_BITS - len);
            for i in top & !(span - 1)..(top & !(span - 1)) + span {
                let e = self.root[i];
                self.root[i] = self.fill(e, code);
            }
            return Ok(());
        }
        let mut node = self.child_of_root(top)?;
        let mut depth = V6_ROOT_BITS;
        loop {
            let nibble = ((net >> (128 - depth - V6_STRIDE)) & 0xf) as usize;
            if len <= depth + V6_STRIDE {
                let span = 1usize << (depth + V6_STRIDE - len);
                let first = nibble & !(span - 1);
                for i in first..first + span {
                    let e = self.nodes[node].0[i];
                    self.nodes[node].0[i] = self.fill(e, code);
                }
                return Ok(());
            }
            node = self.child(node, nibble)?;
            depth += V6_STRIDE;
        }
    }

    /// `entry` overridden by `code`: a code replaced, a node's every leaf set.
    fn fill(&mut self, entry: u32, code: u32) -> u32 {
        if entry & V6_NODE == 0 {
            return code;
        }
        let n = (entry & !V6_NODE) as usize;
        for i in 0..16 {
            let e = self.nodes[n].0[i];
            self.nodes[n].0[i] = self.fill(e, code);
        }
        entry
    }

    fn new_node(&mut self, leaf: u32) -> Result<usize, TooManyNodes> {
        if self.nodes.len() >= V6_NODES_PER_GENERATION as usize {
            return Err(TooManyNodes {
                needed: self.nodes.len() + 1,
                max: V6_NODES_PER_GENERATION,
            });
        }
        self.nodes.push(V6Node::filled(leaf));
        Ok(self.nodes.len() - 1)
    }

    fn child_of_root(&mut self, top: usize) -> Result<usize, TooManyNodes> {
        let e = self.root[top];
        if e & V6_NODE != 0 {
            return Ok((e & !V6_NODE) as usize);
        }
        let n = self.new_node(e)?;
        self.root[top] = V6_NODE | n as u32;
        Ok(n)
    }

    fn child(&mut self, node: usize, nibble: usize) -> Result<usize, TooManyNodes> {
        let e = self.nodes[node].0[nibble];
        if e & V6_NODE != 0 {
            return Ok((e & !V6_NODE) as usize);
        }
        let n = self.new_node(e)?;
        self.nodes[node].0[nibble] = V6_NODE | n as u32;
        Ok(n)
    }

    /// The leaf the kernel's walk ends on for `addr` (a code, maybe [`V6_LONGER`]).
    pub fn leaf(&self, addr: u128) -> u32 {
        let mut e = self.root[(addr >> (128 - V6_ROOT_BITS)) as usize];
        let mut depth = V6_ROOT_BITS;
        while e & V6_NODE != 0 {
            let nibble = ((addr >> (128 - depth - V6_STRIDE)) & 0xf) as usize;
            e = self.nodes[(e & !V6_NODE) as usize].0[nibble];
            depth += V6_STRIDE;
        }
        e
    }

    /// The trie's answer for `addr` (before `V6_TOP24` and longer prefixes).
    pub fn lookup(&self, addr: u128) -> ListCode {
        ListCode::from_bits(u64::from(self.leaf(addr)))
    }

    /// The root entries and nodes with local node indices moved by `base`.
    pub fn rebased(&self, base: u32) -> (Vec<u32>, Vec<V6Node>) {
        let nodes = self
            .nodes
            .iter()
            .map(|n| V6Node(n.0.map(|e| rebase(e, base))))
            .collect();
        (self.root_at(base), nodes)
    }

    /// The root entries with node indices moved by `base`.
    pub fn root_at(&self, base: u32) -> Vec<u32> {
        self.root.iter().map(|&e| rebase(e, base)).collect()
    }
}

fn rebase(entry: u32, base: u32) -> u32 {
    if entry & V6_NODE != 0 {
        entry + base
    } else {
        entry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str, code: ListCode) -> (u128, u8, ListCode) {
        let n: ipnet::Ipv6Net = s.parse().unwrap();
        (u128::from(n.network()), n.prefix_len(), code)
    }

    fn a(s: &str) -> u128 {
        u128::from(s.parse::<std::net::Ipv6Addr>().unwrap())
    }

    #[test]
    fn the_longest_match_wins_whatever_the_insert_order() {
        let mut v = vec![
            p("2001:db8:0:1::/64", ListCode::Allow),
            p("2001:db8::/32", ListCode::Deny),
            p("2001:db8:0:2::/63", ListCode::Allow),
            p("2000::/3", ListCode::Allow),
        ];
        let t = Trie6::build(&mut v, [a("2001:db8::1")].into_iter()).unwrap();
        assert_eq!(t.lookup(a("2001:db8::2")), ListCode::Deny);
        assert_ne!(t.leaf(a("2001:db8::2")) & V6_LONGER, 0, "under the /128");
        assert_eq!(t.leaf(a("2001:db8:1::2")) & V6_LONGER, 0);
        assert_eq!(t.lookup(a("2001:db8:0:1::9")), ListCode::Allow);
        assert_eq!(t.lookup(a("2001:db8:0:3:8000::9")), ListCode::Allow);
        assert_eq!(t.lookup(a("2001:db8:0:4::9")), ListCode::Deny);
        assert_eq!(t.lookup(a("2001:db9::1")), ListCode::Allow, "the /3");
        assert_eq!(t.lookup(a("4000::1")), ListCode::None);
    }

    #[test]
    fn lengths_not_on_a_nibble_cover_the_right_entries() {
        for len in 17..=31u8 {
            let net = a("2001:db8::") & (!0u128 << (128 - len as u32));
            let t = Trie6::build(&mut [(net, len, ListCode::Deny)], std::iter::empty()).unwrap();
            let last = net | ((1u128 << (128 - len as u32)) - 1);
            assert_eq!(t.lookup(net), ListCode::Deny, "/{len} first");
            assert_eq!(t.lookup(last), ListCode::Deny, "/{len} last");
            assert_eq!(t.lookup(last + 1), ListCode::None, "/{len} after");
            assert_eq!(t.lookup(net - 1), ListCode::None, "/{len} before");
        }
    }

    #[test]
    fn rebasing_moves_node_pointers_only() {
        let t = Trie6::build(
            &mut [p("2001:db8::/32", ListCode::Deny)],
            std::iter::empty(),
        )
        .unwrap();
        let (root, nodes) = t.rebased(100);
        assert_eq!(root[0x2001], V6_NODE | 100);
        assert_eq!(root[0x2002], ListCode::None as u32);
        assert_eq!(nodes.len(), t.nodes.len());
        assert!(nodes[0].0.iter().any(|&e| e == (V6_NODE | 101)));
    }
}

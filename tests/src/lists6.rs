//! A generated IPv6 deny list shaped like the public ones, for tests and benchmarks (no
//! IPv6 list is kept in `data/`). Its length mix combines the two kinds of public IPv6
//! blocklists: network allocations as in Spamhaus DROPv6 (/29 to /48, mostly /32 and /48)
//! and single abusive hosts as in host-based lists such as myip.ms's IPv6 blacklist (/128s,
//! and the /64 a host sits in). The weights are stated below; the addresses are spread over
//! the regional registries' /12s, deterministic for a seed.

use std::net::Ipv6Addr;

use ipnet::{IpNet, Ipv6Net};

/// (prefix length, weight in 100): hosts and their /64s from host lists, the rest from
/// allocation lists.
pub const LENGTH_MIX: [(u8, u32); 10] = [
    (128, 35),
    (64, 20),
    (56, 2),
    (48, 15),
    (44, 2),
    (40, 3),
    (36, 3),
    (32, 15),
    (29, 4),
    (28, 1),
];

/// The registries' blocks the prefixes are drawn from (the first 12 bits).
const REGISTRY_BLOCKS: [u16; 6] = [0x200, 0x240, 0x260, 0x280, 0x2a0, 0x2c0];

/// SplitMix64: a small, fixed generator so every run gets the same list.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// `count` distinct prefixes with the lengths of [`LENGTH_MIX`].
pub fn ipv6_blocklist(count: usize, seed: u64) -> Vec<IpNet> {
    let mut rng = Rng(seed);
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let mut pick = (rng.next() % 100) as u32;
        let len = LENGTH_MIX
            .iter()
            .find(|(_, w)| {
                let hit = pick < *w;
                pick = pick.saturating_sub(*w);
                hit
            })
            .map_or(128, |(l, _)| *l);
        let block = REGISTRY_BLOCKS[(rng.next() % REGISTRY_BLOCKS.len() as u64) as usize];
        let bits = (u128::from(rng.next()) << 64 | u128::from(rng.next())) >> 12;
        let addr = u128::from(block) << 116 | bits;
        let net = Ipv6Net::new(Ipv6Addr::from(addr), len)
            .expect("a valid length")
            .trunc();
        if seen.insert(net) {
            out.push(IpNet::V6(net));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_add_up_and_lists_repeat() {
        assert_eq!(LENGTH_MIX.iter().map(|(_, w)| w).sum::<u32>(), 100);
        let a = ipv6_blocklist(2000, 7);
        assert_eq!(a, ipv6_blocklist(2000, 7));
        let hosts = a.iter().filter(|n| n.prefix_len() == 128).count();
        assert!((600..800).contains(&hosts), "{hosts} /128s of 2000");
    }
}

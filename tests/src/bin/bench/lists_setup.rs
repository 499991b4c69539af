//! The lists the lookup contenders share, and each contender's maps filled with them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::Context;
use aya::{
    Ebpf,
    maps::{LpmTrie, lpm_trie::Key},
};
use guard_common::ListCode;
use guard_user::{lists, lists::tables::Tables, model::v6_words};
use ipnet::IpNet;

/// IPv6 prefixes in the bench lists (`guard_tests::lists6`: lengths of public lists).
const IPV6_PREFIXES: usize = 5_000;

/// The real IPv4 blocklist (less the test range) plus 1,000 generated IPv6 prefixes and
/// 100 allows.
pub(crate) fn bench_lists() -> anyhow::Result<(Vec<IpNet>, Vec<IpNet>)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/firehol_level1.netset");
    let text = std::fs::read_to_string(path).context(path)?;
    let mut deny: Vec<IpNet> = lists::parse(&text, path)?
        .into_iter()
        .filter(|n| !n.contains(&IpAddr::from(Ipv4Addr::new(198, 18, 0, 1))))
        .collect();
    deny.extend(guard_tests::lists6::ipv6_blocklist(IPV6_PREFIXES, 1));
    let allow = (0..100u32)
        .map(|i| IpNet::from(IpAddr::from(Ipv4Addr::from(0xcb00_7100 + i))))
        .collect();
    Ok((allow, deny))
}

/// IPv6 sources for the list cases, found in the generated list: denied by a /48 (the
/// trie), denied as a listed host (a /128: the trie, then the hash of longer prefixes),
/// and passing in the same top-24 region as a listed /48 (so past `V6_TOP24`).
pub(crate) struct Probes6 {
    pub deny48: Ipv6Addr,
    pub deny128: Ipv6Addr,
    pub pass_region: Ipv6Addr,
}

pub(crate) fn probes6(tables: &Tables, deny: &[IpNet]) -> anyhow::Result<Probes6> {
    let code = |a: Ipv6Addr| tables.lookup(IpAddr::V6(a));
    let of_len = |len: u8| {
        deny.iter().filter_map(move |n| match n {
            IpNet::V6(v) if v.prefix_len() == len => Some(u128::from(v.network())),
            _ => None,
        })
    };
    let deny48 = of_len(48)
        .map(|n| Ipv6Addr::from(n | 9))
        .find(|a| code(*a) == ListCode::Deny)
        .context("a denied /48")?;
    let deny128 = of_len(128)
        .map(Ipv6Addr::from)
        .find(|a| code(*a) == ListCode::Deny)
        .context("a denied host")?;
    // Another /48 of the same /24 (bit 47 flipped, then others) that nothing lists.
    let pass_region = of_len(48)
        .flat_map(|n| (24..48).map(move |b| Ipv6Addr::from((n ^ (1u128 << (127 - b))) | 9)))
        .find(|a| code(*a) == ListCode::None)
        .context("an unlisted address in a listed region")?;
    Ok(Probes6 {
        deny48,
        deny128,
        pass_region,
    })
}

/// guard's previous IPv6 lookup (`hash_ref`) over the same IPv6 lists: the same top-24
/// filter, every prefix's effective code under (length, masked address).
pub(crate) fn fill_hash_ref(
    ebpf: &mut Ebpf,
    tables: &Tables,
    deny: &[IpNet],
) -> anyhow::Result<()> {
    use guard_common::{V6Key, V6Len, lists::MAX_V6_LENS};
    let mut top: aya::maps::Array<_, guard_common::lists::Bitmap512> =
        aya::maps::Array::try_from(ebpf.map_mut("HREF_TOP24").context("HREF_TOP24")?)?;
    for (i, b) in tables.v6_top24.iter().enumerate() {
        if b.0 != [0; 8] {
            top.set(i as u32, b, 0)?;
        }
    }
    let mut hash: aya::maps::HashMap<_, V6Key, u32> =
        aya::maps::HashMap::try_from(ebpf.map_mut("HREF_V6").context("HREF_V6")?)?;
    let mut lens = std::collections::BTreeSet::new();
    for n in deny {
        let IpNet::V6(v) = n else { continue };
        let len = u32::from(v.prefix_len());
        lens.insert(len);
        // The bench's allows are IPv4: every IPv6 entry is a deny.
        hash.insert(
            V6Len::new(len).key(&v6_words(&v.network())),
            ListCode::Deny as u32,
            0,
        )?;
    }
    anyhow::ensure!(lens.len() <= MAX_V6_LENS, "{} IPv6 lengths", lens.len());
    let mut arr: aya::maps::Array<_, V6Len> =
        aya::maps::Array::try_from(ebpf.map_mut("HREF_LENS").context("HREF_LENS")?)?;
    for (i, &len) in lens.iter().rev().enumerate() {
        arr.set(i as u32, V6Len::new(len), 0)?;
    }
    let count = V6Len {
        prefix_len: lens.len() as u32,
        mask: [0; 4],
    };
    arr.set(MAX_V6_LENS as u32, count, 0)?;
    Ok(())
}

pub(crate) fn fill_lpm(ebpf: &mut Ebpf, allow: &[IpNet], deny: &[IpNet]) -> anyhow::Result<()> {
    let mut v4: LpmTrie<_, u32, u32> =
        LpmTrie::try_from(ebpf.take_map("LPM_V4").context("LPM_V4")?)?;
    let mut v6: LpmTrie<_, [u32; 4], u32> =
        LpmTrie::try_from(ebpf.take_map("LPM_V6").context("LPM_V6")?)?;
    // Allows last, so an allow with the same prefix as a deny wins, as in guard.
    for (nets, code) in [(deny, ListCode::Deny), (allow, ListCode::Allow)] {
        for n in nets {
            match n {
                IpNet::V4(n) => v4.insert(
                    &Key::new(n.prefix_len().into(), u32::from(n.network()).to_be()),
                    code as u32,
                    0,
                )?,
                IpNet::V6(n) => v6.insert(
                    &Key::new(n.prefix_len().into(), v6_words(&n.network())),
                    code as u32,
                    0,
                )?,
            }
        }
    }
    std::mem::forget((v4, v6)); // keep the maps alive with the programs
    Ok(())
}

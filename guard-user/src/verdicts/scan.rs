//! Reading the bans-and-allows maps: their keys, every entry they hold (at start, and for
//! guardctl when guardd is down), and the prefix lengths the kernel must probe.

use std::{collections::BTreeSet, net::IpAddr};

use guard_common::V6Len;
use guard_common::dynamic::{
    DynEntry, DynLens, DynMetaKey, KIND_ALLOW, KIND_VOUCH, MAX_DYN_LENS, META_LOCAL,
    META_UNVERIFIED, ORIGIN_MAX, REASON_MAX, V4Len,
};
use ipnet::IpNet;

use super::{DynError, Entry, Kind};
use crate::kernel::{
    KernelError,
    verdict_maps::{self, KernelVerdictMaps, VerdictMaps},
};

pub(super) fn meta_key(net: &IpNet) -> DynMetaKey {
    let (family, addr) = match net.network() {
        IpAddr::V4(a) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&a.octets());
            (4, b)
        }
        IpAddr::V6(a) => (6, a.octets()),
    };
    DynMetaKey {
        family,
        prefix_len: net.prefix_len() as u32,
        addr,
    }
}

pub(super) fn net_of(key: &DynMetaKey) -> Option<IpNet> {
    let addr: IpAddr = match key.family {
        4 => IpAddr::from([key.addr[0], key.addr[1], key.addr[2], key.addr[3]]),
        _ => IpAddr::from(key.addr),
    };
    IpNet::new(addr, key.prefix_len as u8).ok()
}

/// Every entry in the maps with its metadata, and whether it is still live. Reads only.
pub(super) fn scan(
    maps: &impl VerdictMaps,
    now_mono: u64,
) -> Result<Vec<(Entry, bool)>, KernelError> {
    let mut found: Vec<(IpNet, DynEntry)> = Vec::new();
    for (k, e) in maps.all::<verdict_maps::DynV4>()? {
        if let Ok(net) = IpNet::new(IpAddr::from(k.addr.to_be_bytes()), k.prefix_len as u8) {
            found.push((net, e));
        }
    }
    for (k, e) in maps.all::<verdict_maps::DynV6>()? {
        let bytes: Vec<u8> = k.addr.iter().flat_map(|w| w.to_ne_bytes()).collect();
        let octets: [u8; 16] = bytes.try_into().expect("16 bytes");
        if let Ok(net) = IpNet::new(IpAddr::from(octets), k.prefix_len as u8) {
            found.push((net, e));
        }
    }
    let mut out = Vec::with_capacity(found.len());
    for (net, e) in found {
        let key = meta_key(&net);
        let meta = maps.get::<verdict_maps::Meta>(&key)?;
        let ban_number = maps.get::<verdict_maps::Hist>(&key)?.map_or(0, |h| h.count);
        out.push((
            entry_of(net, e, meta.as_ref(), ban_number),
            e.live(now_mono),
        ));
    }
    Ok(out)
}

/// An entry as the maps hold it: the kernel's value, its metadata and its ban number.
fn entry_of(
    net: IpNet,
    e: DynEntry,
    meta: Option<&guard_common::dynamic::DynMeta>,
    ban_number: u32,
) -> Entry {
    Entry {
        net,
        kind: match e.kind {
            KIND_ALLOW => Kind::Allow,
            KIND_VOUCH => Kind::Vouch,
            _ => Kind::Ban,
        },
        expires_mono_ns: e.expires_ns,
        created_unix_ns: meta.map_or(0, |m| m.created_unix_ns),
        reason: meta
            .map(|m| {
                String::from_utf8_lossy(&m.reason[..(m.reason_len as usize).min(REASON_MAX)])
                    .into_owned()
            })
            .unwrap_or_default(),
        ban_number,
        origin: super::origin(&meta.map_or(String::new(), |m| {
            String::from_utf8_lossy(&m.origin[..(m.origin_len as usize).min(ORIGIN_MAX)])
                .into_owned()
        })),
        local: meta.is_some_and(|m| m.flags & META_LOCAL != 0),
        unverified: meta.is_some_and(|m| m.flags & META_UNVERIFIED != 0),
    }
}

/// The live entries of `kind` in the pinned maps, for when guardd is not running.
pub fn pinned_entries(
    pins: &crate::kernel::pins::PinLayout,
    kind: Kind,
    now_mono: u64,
) -> Result<Vec<Entry>, DynError> {
    let maps = KernelVerdictMaps::open_pinned(pins)?;
    let mut out: Vec<Entry> = scan(&maps, now_mono)?
        .into_iter()
        .filter(|(e, live)| *live && e.kind == kind)
        .map(|(e, _)| e)
        .collect();
    out.sort_by_key(|a| a.net);
    Ok(out)
}

/// A prefix's family (true: IPv6) and length: what the kernel probes it by.
pub(super) fn length_of(net: &IpNet) -> (bool, u8) {
    (matches!(net, IpNet::V6(_)), net.prefix_len())
}

/// The distinct lengths among (family, length) pairs, per family, longest first, as the
/// kernel wants them.
pub(super) fn lens_of_lengths(
    lengths: impl Iterator<Item = (bool, u8)>,
) -> Result<DynLens, DynError> {
    let mut v4 = BTreeSet::new();
    let mut v6 = BTreeSet::new();
    for (is_v6, len) in lengths {
        match is_v6 {
            false => v4.insert(len),
            true => v6.insert(len),
        };
    }
    for (family, set) in [("IPv4", &v4), ("IPv6", &v6)] {
        if set.len() > MAX_DYN_LENS {
            return Err(DynError::TooManyLengths {
                family,
                count: set.len(),
            });
        }
    }
    let mut lens = DynLens::EMPTY;
    lens.v4_count = v4.len() as u32;
    lens.v6_count = v6.len() as u32;
    for (slot, len) in lens.v4.iter_mut().zip(v4.iter().rev()) {
        *slot = V4Len::new(*len as u32);
    }
    for (slot, len) in lens.v6.iter_mut().zip(v6.iter().rev()) {
        *slot = V6Len::new(*len as u32);
    }
    Ok(lens)
}

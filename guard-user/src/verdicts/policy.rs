//! The ban policy as pure functions, unit-tested without the kernel: which requests a batch
//! keeps, conflicts with allows, room in the table, and what each entry will be (TTL from
//! the request, the escalation or the default; metadata; history).

use std::collections::{BTreeSet, HashMap, HashSet};

use guard_common::dynamic::{
    BanHistory, DynMeta, META_LOCAL, META_UNVERIFIED, ORIGIN_MAX, REASON_MAX,
};
use ipnet::IpNet;

use super::{
    DynError, Entry, Kind, Request,
    history::{Escalation, History},
};

/// One entry of a batch, planned before anything is written.
pub(super) struct Planned {
    pub entry: Entry,
    pub meta: DynMeta,
    /// Bans: the history the ban writes.
    pub hist: Option<BanHistory>,
}

/// The requests with each prefix once (its last request), in order of first appearance.
pub(super) fn last_of_each(reqs: &[Request]) -> Vec<Request> {
    let mut at: HashMap<IpNet, usize> = HashMap::new();
    let mut out: Vec<Request> = Vec::with_capacity(reqs.len());
    for r in reqs {
        match at.get(&r.net) {
            Some(&i) => out[i] = r.clone(),
            None => {
                at.insert(r.net, out.len());
                out.push(r.clone());
            }
        }
    }
    out
}

/// The first request inside one of `allows` (a ban there is refused), with that allow.
pub(super) fn covered_by_allow(
    reqs: &[Request],
    allows: &HashSet<IpNet>,
) -> Option<(IpNet, IpNet)> {
    let lens: BTreeSet<u8> = allows.iter().map(IpNet::prefix_len).collect();
    reqs.iter().find_map(|r| {
        lens.range(..=r.net.prefix_len()).find_map(|&len| {
            let outer = IpNet::new(r.net.network(), len)
                .map(|n| n.trunc())
                .expect("a shorter prefix of a valid one");
            allows.contains(&outer).then_some((r.net, outer))
        })
    })
}

/// Distinct prefix lengths per family that entries made on other nodes may use: the kernel
/// probes at most `MAX_DYN_LENS`, and a fleet record of each new length would otherwise let
/// whoever writes the buckets use them all, leaving this host unable to ban at any other.
pub const MAX_REMOTE_LENS: usize = 4;

/// Refuses remote requests that would take the lengths remote entries use past
/// `MAX_REMOTE_LENS` in a family.
pub(super) fn remote_room<'a>(
    remote_lengths: &std::collections::BTreeMap<(bool, u8), usize>,
    reqs: impl Iterator<Item = &'a Request>,
) -> Result<(), DynError> {
    let mut lens: BTreeSet<(bool, u8)> = remote_lengths.keys().copied().collect();
    lens.extend(reqs.map(|r| super::scan::length_of(&r.net)));
    for (is_v6, family) in [(false, "IPv4"), (true, "IPv6")] {
        let count = lens.iter().filter(|(v6, _)| *v6 == is_v6).count();
        if count > MAX_REMOTE_LENS {
            return Err(DynError::RemoteLengths { family, count });
        }
    }
    Ok(())
}

/// Refuses a batch adding `adding` entries to `active` of at most `max`.
pub(super) fn room(kind: Kind, active: usize, max: usize, adding: usize) -> Result<(), DynError> {
    if active + adding <= max {
        return Ok(());
    }
    Err(match kind {
        Kind::Ban => DynError::BansFull {
            active,
            max,
            adding,
        },
        Kind::Allow => DynError::AllowsFull {
            active,
            max,
            adding,
        },
        Kind::Vouch => DynError::VouchesFull {
            active,
            max,
            adding,
        },
    })
}

/// What restoring `entry` (kept across a reboot) writes: the entry and its metadata as they
/// were, no new history.
pub(super) fn restored(entry: Entry) -> Planned {
    Planned {
        meta: meta_of(&entry),
        entry,
        hist: None,
    }
}

/// The daemon-only metadata of an entry (`DYN_META`): its reason, creation time and origin.
fn meta_of(e: &Entry) -> DynMeta {
    let mut reason = [0u8; REASON_MAX];
    let n = e.reason.len().min(REASON_MAX);
    reason[..n].copy_from_slice(&e.reason.as_bytes()[..n]);
    let mut origin = [0u8; ORIGIN_MAX];
    let o = e.origin.len().min(ORIGIN_MAX);
    origin[..o].copy_from_slice(&e.origin.as_bytes()[..o]);
    DynMeta {
        created_unix_ns: e.created_unix_ns,
        reason_len: n as u32,
        kind: e.kind.code(),
        reason,
        origin_len: o as u32,
        flags: if e.local { META_LOCAL } else { 0 }
            | if e.unverified { META_UNVERIFIED } else { 0 },
        origin,
    }
}

/// The entries, metadata and histories a batch will write. Made here: a ban's TTL is the
/// request's, else the escalation's for the source's n-th ban within the window; an allow
/// without one lasts until removed, a vouch `vouch_ttl`; the origin is `node`. Made on another node: expiry,
/// creation and escalation step as it was made (the expiry on this clock, so never
/// extended), and the source's history counts that step (escalation is fleet-wide).
pub(super) fn plan(
    kind: Kind,
    reqs: &[Request],
    history: &History,
    escalation: &Escalation,
    clock: (u64, u64),
    node: &str,
) -> Vec<Planned> {
    let (now_mono, now_unix) = clock;
    reqs.iter()
        .map(|r| {
            let (entry, hist) = match &r.remote {
                None => {
                    let hist = (kind == Kind::Ban).then(|| history.next(&r.net, now_unix));
                    let ttl = match hist {
                        Some(h) => Some(r.ttl.unwrap_or_else(|| escalation.ttl(h.count))),
                        None if kind == Kind::Vouch => Some(r.ttl.unwrap_or(escalation.vouch_ttl)),
                        None => r.ttl,
                    };
                    let entry = Entry {
                        net: r.net,
                        kind,
                        expires_mono_ns: ttl.map_or(0, |t| now_mono + t.as_nanos() as u64),
                        created_unix_ns: now_unix,
                        reason: r.reason.clone(),
                        ban_number: hist.map_or(0, |h| h.count),
                        origin: super::origin(node),
                        local: r.local,
                        unverified: r.unverified,
                    };
                    (entry, hist)
                }
                Some(remote) => {
                    let hist = (kind == Kind::Ban)
                        .then(|| history.seen(&r.net, remote.ban_number, remote.created_unix_ns));
                    let entry = Entry {
                        net: r.net,
                        kind,
                        expires_mono_ns: match remote.expires_unix_ns {
                            0 => 0,
                            t => now_mono + t.saturating_sub(now_unix),
                        },
                        created_unix_ns: remote.created_unix_ns,
                        reason: r.reason.clone(),
                        ban_number: remote.ban_number,
                        origin: super::origin(&remote.origin),
                        local: false,
                        unverified: remote.unverified,
                    };
                    (entry, hist)
                }
            };
            Planned {
                meta: meta_of(&entry),
                entry,
                hist,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn req(net: &str, ttl: Option<u64>) -> Request {
        Request {
            net: net.parse().unwrap(),
            ttl: ttl.map(Duration::from_secs),
            ..Request::default()
        }
    }

    #[test]
    fn a_prefix_named_twice_keeps_its_last_request_in_first_place() {
        let out = last_of_each(&[
            req("198.18.0.1/32", Some(1)),
            req("198.18.0.2/32", None),
            req("198.18.0.1/32", Some(9)),
        ]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].ttl, Some(Duration::from_secs(9)));
    }

    #[test]
    fn a_ban_inside_an_allow_is_found_at_any_shorter_length() {
        let allows: HashSet<IpNet> = ["198.18.0.0/24".parse().unwrap()].into();
        let inside = [req("198.18.1.0/24", None), req("198.18.0.128/25", None)];
        let got = covered_by_allow(&inside, &allows).unwrap();
        assert_eq!(got.0.to_string(), "198.18.0.128/25");
        assert_eq!(got.1.to_string(), "198.18.0.0/24");
        // A wider ban than the allow is not inside it.
        assert!(covered_by_allow(&[req("198.18.0.0/16", None)], &allows).is_none());
    }

    #[test]
    fn the_fleet_gets_four_prefix_lengths_per_family() {
        let remote = |net: &str| Request {
            remote: Some(crate::model::Remote {
                origin: "web-2".into(),
                expires_unix_ns: 0,
                created_unix_ns: 0,
                ban_number: 1,
                unverified: false,
            }),
            ..req(net, None)
        };
        let held: std::collections::BTreeMap<(bool, u8), usize> = [
            ((false, 32), 5),
            ((false, 24), 1),
            ((false, 20), 1),
            ((true, 64), 2),
        ]
        .into();
        // A fourth IPv4 length fits, a fifth does not; IPv6 counts on its own.
        assert!(remote_room(&held, [remote("198.18.0.0/16")].iter()).is_ok());
        let e = remote_room(
            &held,
            [remote("198.18.0.0/16"), remote("198.18.0.0/17")].iter(),
        );
        assert!(
            matches!(
                e,
                Err(DynError::RemoteLengths {
                    family: "IPv4",
                    count: 5
                })
            ),
            "{e:?}"
        );
        assert!(
            remote_room(
                &held,
                [remote("2001:db8::/48"), remote("2001:db8::/56")].iter()
            )
            .is_ok()
        );
        // Lengths already held cost nothing.
        assert!(remote_room(&held, [remote("198.18.1.0/24")].iter()).is_ok());
    }

    #[test]
    fn room_counts_what_the_batch_adds() {
        assert!(room(Kind::Ban, 9, 10, 1).is_ok());
        let e = room(Kind::Ban, 9, 10, 2).unwrap_err().to_string();
        assert!(
            e.contains("9 active, max_entries 10; this request adds 2"),
            "{e}"
        );
        assert!(matches!(
            room(Kind::Allow, 1, 1, 1),
            Err(DynError::AllowsFull { .. })
        ));
    }

    #[test]
    fn ttls_come_from_the_request_then_the_escalation() {
        let esc = Escalation {
            ttls: vec![Duration::from_secs(600), Duration::from_secs(3600)],
            default_ttl: Duration::from_secs(60),
            vouch_ttl: Duration::from_secs(3600),
        };
        let net: IpNet = "198.18.0.1/32".parse().unwrap();
        let hist = History::new(
            16,
            [(
                net,
                BanHistory {
                    last_unix_ns: 1_000,
                    count: 1,
                    _reserved: 0,
                },
            )],
        );
        let reqs = [req("198.18.0.1/32", None), req("198.18.0.2/32", Some(5))];
        let p = plan(Kind::Ban, &reqs, &hist, &esc, (0, 2_000), "web-1");
        // A second ban of .1 gets the second TTL; .2 its own, counting as its first.
        assert_eq!(p[0].entry.ban_number, 2);
        assert_eq!(p[0].entry.expires_mono_ns, 3600 * 1_000_000_000);
        assert_eq!(p[1].entry.ban_number, 1);
        assert_eq!(p[1].entry.expires_mono_ns, 5 * 1_000_000_000);
        let allows = plan(
            Kind::Allow,
            &[req("198.18.0.3/32", None)],
            &hist,
            &esc,
            (0, 2_000),
            "web-1",
        );
        assert_eq!(
            allows[0].entry.expires_mono_ns, 0,
            "an allow without TTL stays"
        );
        assert!(allows[0].hist.is_none());
    }
}

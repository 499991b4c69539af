//! The verdict table's policy, plans and rollback against the in-memory stand-in of the
//! kernel's maps: no root, no kernel. What the maps hold after each operation is checked,
//! and every write of a plan is made to fail once to show that nothing is half-applied.

use std::time::Duration;

use guard_common::dynamic::{DYN_REGION_ELEMS, v4_region};
use ipnet::IpNet;

use super::{DynError, DynamicTable, Escalation, Guards};
use crate::{
    kernel::verdict_maps::{DynV4, DynV6, Hist, MapKind, MemoryMaps, Meta, Regions, VerdictMaps},
    model::{Entry, Kind, Request},
    protect::Protected,
};

const SEC: u64 = 1_000_000_000;

fn net(s: &str) -> IpNet {
    s.parse().expect("a prefix")
}

fn ban(s: &str, ttl_secs: Option<u64>) -> Request {
    Request {
        net: net(s),
        ttl: ttl_secs.map(Duration::from_secs),
        reason: "test".into(),
        ..Request::default()
    }
}

fn escalation() -> Escalation {
    Escalation {
        ttls: vec![Duration::from_secs(600), Duration::from_secs(3600)],
        default_ttl: Duration::from_secs(600),
        vouch_ttl: Duration::from_secs(3600),
    }
}

fn table(max_bans: usize) -> DynamicTable<MemoryMaps> {
    DynamicTable::new(MemoryMaps::new(64), max_bans, 8, SEC).expect("empty maps")
}

/// Prepares and applies a batch at monotonic time `now`.
fn add(
    t: &mut DynamicTable<MemoryMaps>,
    kind: Kind,
    reqs: &[Request],
    now: u64,
) -> Result<Vec<Entry>, DynError> {
    let protected = Protected::default();
    let guards = Guards {
        static_allows: &[],
        protected: &protected,
    };
    let prepared = t.prepare(kind, reqs, guards, &escalation(), now)?;
    t.apply(prepared.batch)
}

fn maps(t: &DynamicTable<MemoryMaps>) -> &MemoryMaps {
    &t.maps
}

fn region_bit(m: &MemoryMaps, addr: [u8; 4]) -> bool {
    let bit = v4_region(u32::from_be_bytes(addr));
    let elem = m.get::<Regions>(&(bit / 512)).unwrap().unwrap();
    elem.bit(bit % 512)
}

#[test]
fn a_ban_goes_in_lengths_and_regions_first_and_its_entry_last() {
    let mut t = table(16);
    assert_eq!(
        t.maps.log,
        [Regions::NAME, "CONFIG"],
        "start writes both whole"
    );
    t.maps.log.clear();
    add(&mut t, Kind::Ban, &[ban("198.18.0.7/32", None)], SEC).unwrap();
    let m = maps(&t);
    // The lengths, its region, history and metadata, then the entry the kernel acts on.
    assert_eq!(
        m.log,
        ["CONFIG", Regions::NAME, Hist::NAME, Meta::NAME, DynV4::NAME],
        "{:?}",
        m.log
    );
    assert_eq!(m.count::<DynV4>(), 1);
    assert_eq!(m.count::<Meta>(), 1);
    assert_eq!(m.count::<Hist>(), 1);
    assert_eq!(m.lens().v4_count, 1);
    assert_eq!(m.lens().v4[0].prefix_len, 32);
    assert!(region_bit(m, [198, 18, 0, 7]));
    assert!(!region_bit(m, [198, 19, 0, 7]));
    let e = t.get(&net("198.18.0.7/32")).expect("indexed");
    assert_eq!(e.ban_number, 1);
    assert_eq!(
        e.expires_mono_ns,
        SEC + 600 * SEC,
        "the first escalation TTL"
    );
}

#[test]
fn a_second_ban_of_a_source_escalates_and_rewrites_its_entry() {
    let mut t = table(16);
    add(&mut t, Kind::Ban, &[ban("198.18.0.7/32", None)], SEC).unwrap();
    let before = maps(&t).count::<DynV4>();
    add(&mut t, Kind::Ban, &[ban("198.18.0.7/32", None)], 2 * SEC).unwrap();
    assert_eq!(maps(&t).count::<DynV4>(), before, "the same key, rewritten");
    let e = t.get(&net("198.18.0.7/32")).unwrap();
    assert_eq!(e.ban_number, 2);
    assert_eq!(e.expires_mono_ns, 2 * SEC + 3600 * SEC);
    assert_eq!(t.bans_active(), 1);
}

#[test]
fn every_failed_write_of_a_batch_leaves_the_maps_and_the_index_as_they_were() {
    // A table with entries of both families, then a batch that replaces one, adds new
    // lengths and regions in both: each of its writes is made to fail in turn.
    let mut t = table(16);
    add(
        &mut t,
        Kind::Ban,
        &[ban("198.18.0.7/32", None), ban("2001:db8::/64", Some(60))],
        SEC,
    )
    .unwrap();
    let batch = [
        ban("198.18.0.7/32", Some(30)),
        ban("198.19.0.0/24", None),
        ban("2001:db8:1::/48", None),
        ban("2001:db8::/64", None),
    ];
    let probe = {
        let mut t2 = DynamicTable::new(t.maps.clone(), 16, 8, SEC).unwrap();
        t2.maps.writes = 0;
        add(&mut t2, Kind::Ban, &batch, 2 * SEC).unwrap();
        t2.maps.writes
    };
    assert!(probe >= 8, "the batch writes {probe} elements");
    for fail_at in 0..probe {
        let before = t.maps.clone();
        let listed = t.list(Kind::Ban);
        t.maps.writes = 0;
        t.maps.fail_at = Some(fail_at);
        let res = add(&mut t, Kind::Ban, &batch, 2 * SEC);
        t.maps.fail_at = None;
        let e = res.expect_err("the injected failure");
        assert!(
            matches!(e, DynError::Kernel(crate::kernel::KernelError::Map { .. })),
            "write {fail_at}: rolled back cleanly, so the error is the write's: {e}"
        );
        assert!(
            t.maps.same_contents(&before),
            "write {fail_at} of {probe} failed: the maps differ from before the batch"
        );
        assert_eq!(
            t.list(Kind::Ban),
            listed,
            "write {fail_at}: the index moved"
        );
    }
    // And then it goes in whole.
    add(&mut t, Kind::Ban, &batch, 2 * SEC).unwrap();
    assert_eq!(t.bans_active(), 4);
    assert_eq!(t.maps.lens().v4_count, 2);
    assert_eq!(t.maps.lens().v6_count, 2);
}

#[test]
fn a_refused_batch_writes_nothing() {
    let mut t = table(2);
    add(&mut t, Kind::Ban, &[ban("198.18.0.1/32", None)], SEC).unwrap();
    let before = t.maps.clone();
    let e = add(
        &mut t,
        Kind::Ban,
        &[ban("198.18.0.2/32", None), ban("198.18.0.3/32", None)],
        SEC,
    )
    .unwrap_err();
    assert!(matches!(e, DynError::BansFull { .. }), "{e}");
    assert_eq!(t.refused_full, 1);
    // A ban inside a temporary allow is refused too.
    add(&mut t, Kind::Allow, &[ban("198.18.1.0/24", None)], SEC).unwrap();
    let allowed = t.maps.clone();
    let e = add(&mut t, Kind::Ban, &[ban("198.18.1.9/32", None)], SEC).unwrap_err();
    assert!(matches!(e, DynError::CoveredByAllow { .. }), "{e}");
    assert!(t.maps.same_contents(&allowed));
    assert!(!before.same_contents(&allowed), "the allow itself went in");
}

#[test]
fn removal_takes_the_entry_out_before_its_region_and_length() {
    let mut t = table(16);
    add(&mut t, Kind::Ban, &[ban("198.18.0.7/32", None)], SEC).unwrap();
    t.maps.log.clear();
    t.remove(&net("198.18.0.7/32"), Kind::Ban).unwrap();
    let m = maps(&t);
    let deleted = format!("-{}", DynV4::NAME);
    let meta = format!("-{}", Meta::NAME);
    assert_eq!(
        m.log,
        [deleted.as_str(), meta.as_str(), Regions::NAME, "CONFIG"],
        "{:?}",
        m.log
    );
    assert_eq!(m.count::<DynV4>(), 0);
    assert_eq!(m.count::<Meta>(), 0);
    assert_eq!(m.count::<Hist>(), 1, "the history outlives the ban");
    assert_eq!(m.lens().v4_count, 0);
    assert!(!region_bit(m, [198, 18, 0, 7]));
    assert!(matches!(
        t.remove(&net("198.18.0.7/32"), Kind::Ban),
        Err(DynError::NotFound { .. })
    ));
}

#[test]
fn a_region_stays_while_another_entry_covers_it() {
    let mut t = table(16);
    add(
        &mut t,
        Kind::Ban,
        &[ban("198.18.0.7/32", None), ban("198.18.0.0/24", None)],
        SEC,
    )
    .unwrap();
    t.remove(&net("198.18.0.7/32"), Kind::Ban).unwrap();
    assert!(
        region_bit(maps(&t), [198, 18, 0, 7]),
        "the /24 still needs it"
    );
    assert_eq!(maps(&t).lens().v4_count, 1);
    assert_eq!(maps(&t).lens().v4[0].prefix_len, 24);
}

#[test]
fn a_failed_removal_or_sweep_keeps_everything() {
    let mut t = table(16);
    add(
        &mut t,
        Kind::Ban,
        &[ban("198.18.0.7/32", Some(5)), ban("2001:db8::/64", Some(5))],
        SEC,
    )
    .unwrap();
    for fail_at in 0..4 {
        let before = t.maps.clone();
        t.maps.writes = 0;
        t.maps.fail_at = Some(fail_at);
        let res = t.remove(&net("198.18.0.7/32"), Kind::Ban);
        t.maps.fail_at = None;
        assert!(res.is_err(), "write {fail_at} fails");
        assert!(t.maps.same_contents(&before), "remove, write {fail_at}");
        assert!(t.get(&net("198.18.0.7/32")).is_some());
    }
    for fail_at in 0..6 {
        let before = t.maps.clone();
        t.maps.writes = 0;
        t.maps.fail_at = Some(fail_at);
        let res = t.sweep(10 * SEC);
        t.maps.fail_at = None;
        assert!(res.is_err(), "write {fail_at} fails");
        assert!(t.maps.same_contents(&before), "sweep, write {fail_at}");
        assert_eq!(t.bans_active(), 2);
    }
    let gone = t.sweep(10 * SEC).unwrap();
    assert_eq!(gone.len(), 2);
    assert_eq!(t.maps.count::<DynV4>() + t.maps.count::<DynV6>(), 0);
    assert_eq!(t.maps.lens().v4_count + t.maps.lens().v6_count, 0);
    assert_eq!(t.take_journal().len(), 2, "both deletions journaled");
}

#[test]
fn adopted_maps_lose_their_expired_entries_and_get_their_regions_anew() {
    let mut t = table(16);
    add(
        &mut t,
        Kind::Ban,
        &[
            ban("198.18.0.7/32", Some(5)),
            ban("198.20.0.0/16", Some(500)),
        ],
        SEC,
    )
    .unwrap();
    // A new daemon at 10 s adopts the maps: the first ban expired meanwhile.
    let adopted = DynamicTable::new(t.maps.clone(), 16, 8, 10 * SEC).unwrap();
    assert_eq!(adopted.bans_active(), 1);
    let e = adopted.get(&net("198.20.0.0/16")).unwrap();
    assert_eq!(e.reason, "test", "metadata read back");
    assert_eq!(e.ban_number, 1);
    let m = maps(&adopted);
    assert_eq!(m.count::<DynV4>(), 1);
    assert_eq!(m.count::<Meta>(), 1);
    assert!(!region_bit(m, [198, 18, 0, 7]));
    assert!(region_bit(m, [198, 20, 9, 9]));
    assert_eq!(
        m.count::<Regions>(),
        DYN_REGION_ELEMS as usize,
        "written whole"
    );
    assert_eq!(m.lens().v4_count, 1);
    assert_eq!(m.lens().v4[0].prefix_len, 16);
}

#[test]
fn a_restore_puts_entries_and_histories_back_as_they_were() {
    let mut t = table(16);
    add(&mut t, Kind::Ban, &[ban("198.18.0.7/32", None)], SEC).unwrap();
    add(&mut t, Kind::Ban, &[ban("198.18.0.7/32", None)], SEC).unwrap();
    add(&mut t, Kind::Allow, &[ban("2001:db8::/48", None)], SEC).unwrap();
    let (stored, histories) = t.snapshot(SEC);
    let mut fresh = table(16);
    assert_eq!(fresh.restore(&stored, &histories, SEC).unwrap(), 2);
    // The ban's expiry goes through the wall clock (it is kept as such): within a second.
    let (was, is) = (
        t.get(&net("198.18.0.7/32")),
        fresh.get(&net("198.18.0.7/32")),
    );
    let (was, is) = (was.unwrap().expires_mono_ns, is.unwrap().expires_mono_ns);
    assert!(was.abs_diff(is) < SEC, "expiry {was} restored as {is}");
    let v4 = |m: &MemoryMaps| m.all::<DynV4>().unwrap().into_iter().map(|(k, _)| k);
    assert!(v4(&fresh.maps).eq(v4(&t.maps)));
    for name in [DynV6::NAME, Meta::NAME, Hist::NAME, Regions::NAME] {
        assert_eq!(
            fresh.maps.elements(name),
            t.maps.elements(name),
            "{name} after a reboot"
        );
    }
    assert_eq!(fresh.maps.lens(), t.maps.lens());
    assert_eq!(fresh.get(&net("198.18.0.7/32")).unwrap().ban_number, 2);
    assert_eq!(fresh.histories(), 1);
}

#[test]
fn a_vouch_is_one_address_and_never_replaces_a_ban_or_an_allow() {
    let mut t = table(16);
    t.max_vouches = 4;
    let e = add(&mut t, Kind::Vouch, &[ban("198.18.0.0/24", None)], SEC).unwrap_err();
    assert!(matches!(e, DynError::NotOneAddress { .. }), "{e}");
    add(&mut t, Kind::Ban, &[ban("198.18.0.7/32", Some(60))], SEC).unwrap();
    let e = add(&mut t, Kind::Vouch, &[ban("198.18.0.7/32", None)], SEC).unwrap_err();
    assert!(
        matches!(
            e,
            DynError::VouchOverEntry {
                kind: Kind::Ban,
                ..
            }
        ),
        "{e}"
    );
    let k = guard_common::dynamic::DynKeyV4 {
        prefix_len: 32,
        addr: u32::from_be_bytes([198, 18, 0, 7]),
    };
    assert_eq!(
        maps(&t).get::<DynV4>(&k).unwrap().unwrap().kind,
        guard_common::dynamic::KIND_BAN,
        "the ban stays in the kernel"
    );
    // A vouch without a TTL lasts `vouch_ttl`; a ban replaces it.
    let v = add(&mut t, Kind::Vouch, &[ban("198.18.0.8/32", None)], SEC).unwrap();
    assert_eq!(v[0].expires_mono_ns, SEC + 3600 * SEC);
    assert_eq!(t.vouches_active(), 1);
    add(&mut t, Kind::Ban, &[ban("198.18.0.8/32", Some(60))], SEC).unwrap();
    assert_eq!((t.vouches_active(), t.bans_active()), (0, 2));
    // Room is counted apart from bans and allows.
    let four: Vec<Request> = (10..15)
        .map(|h| ban(&format!("2001:db8::{h}/128"), Some(60)))
        .collect();
    let e = add(&mut t, Kind::Vouch, &four, SEC).unwrap_err();
    assert!(matches!(e, DynError::VouchesFull { max: 4, .. }), "{e}");
    add(&mut t, Kind::Vouch, &four[..4], SEC).unwrap();
    assert_eq!(t.vouches_active(), 4);
}

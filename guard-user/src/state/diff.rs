//! What to write so the database holds what the kernel holds: at start, only the entries
//! that differ (a reboot's restore writes back nothing but what expired meanwhile; a
//! restart nothing but what the database missed), not the whole table again.

use std::collections::HashMap;

use ipnet::IpNet;

use super::{Change, Stored, StoredHistory};

/// Expiry moves through the monotonic clock and back to wall-clock time at each start, so
/// the same entry's expiry may differ by the clocks' read jitter; real changes are whole
/// seconds (TTLs are).
const EXPIRY_SLACK_NS: u64 = 500_000_000;

fn same(a: &Stored, b: &Stored) -> bool {
    a.net == b.net
        && a.kind == b.kind
        && a.reason == b.reason
        && a.ban_number == b.ban_number
        && a.origin == b.origin
        && a.local == b.local
        && a.created_unix_ns == b.created_unix_ns
        && ((a.expires_unix_ns == 0) == (b.expires_unix_ns == 0))
        && a.expires_unix_ns.abs_diff(b.expires_unix_ns) < EXPIRY_SLACK_NS
}

/// The changes that turn `have` (the database) into `want` (the kernel).
pub fn changes_between(
    have: (&[Stored], &[StoredHistory]),
    want: (&[Stored], &[StoredHistory]),
) -> Vec<Change> {
    let mut changes = Vec::new();
    diff(
        (have.0, want.0),
        |s| s.net,
        same,
        |s| Change::Put(s.clone()),
        Change::Delete,
        &mut changes,
    );
    diff(
        (have.1, want.1),
        |h| h.net,
        |a, b| a == b,
        |h| Change::History(*h),
        Change::ForgetHistory,
        &mut changes,
    );
    changes
}

/// Into `out`: `put` for each wanted record the database lacks or holds otherwise, then
/// `delete` for each prefix it holds that is not wanted.
fn diff<T>(
    (have, want): (&[T], &[T]),
    net: impl Fn(&T) -> IpNet,
    same: impl Fn(&T, &T) -> bool,
    put: impl Fn(&T) -> Change,
    delete: impl Fn(IpNet) -> Change,
    out: &mut Vec<Change>,
) {
    let held: HashMap<IpNet, &T> = have.iter().map(|r| (net(r), r)).collect();
    out.extend(
        want.iter()
            .filter(|r| !held.get(&net(r)).is_some_and(|h| same(h, r)))
            .map(&put),
    );
    let wanted: std::collections::HashSet<IpNet> = want.iter().map(&net).collect();
    out.extend(
        have.iter()
            .map(&net)
            .filter(|n| !wanted.contains(n))
            .map(delete),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Kind;

    fn ban(net: &str, expires: u64) -> Stored {
        Stored {
            net: net.parse().unwrap(),
            kind: Kind::Ban,
            expires_unix_ns: expires,
            created_unix_ns: 1,
            reason: "junk".into(),
            ban_number: 1,
            origin: "web-1".into(),
            local: false,
            unverified: false,
        }
    }

    fn history(net: &str, count: u32) -> StoredHistory {
        StoredHistory {
            net: net.parse().unwrap(),
            last_unix_ns: 7,
            count,
        }
    }

    #[test]
    fn only_what_differs_is_written() {
        let have = (
            vec![
                ban("198.18.0.1/32", 10_000_000_000),
                ban("198.18.0.2/32", 10_000_000_000),
                ban("198.18.0.3/32", 10_000_000_000),
            ],
            vec![history("198.18.0.1/32", 1), history("198.18.0.9/32", 2)],
        );
        let want = (
            vec![
                // The clocks' jitter: the same entry.
                ban("198.18.0.1/32", 10_000_000_000 + 3_000),
                // Re-banned for longer: written.
                ban("198.18.0.2/32", 70_000_000_000),
                // Made while the database was not writable: written.
                ban("198.18.0.4/32", 10_000_000_000),
                // 198.18.0.3 expired: deleted.
            ],
            vec![history("198.18.0.1/32", 2)],
        );
        let changes = changes_between((&have.0, &have.1), (&want.0, &want.1));
        let text: Vec<String> = changes
            .iter()
            .map(|c| match c {
                Change::Put(s) => format!("put {}", s.net),
                Change::Delete(n) => format!("delete {n}"),
                Change::History(h) => format!("history {} {}", h.net, h.count),
                Change::ForgetHistory(n) => format!("forget {n}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            text,
            [
                "put 198.18.0.2/32",
                "put 198.18.0.4/32",
                "delete 198.18.0.3/32",
                "history 198.18.0.1/32 2",
                "forget 198.18.0.9/32",
            ]
        );
        assert!(
            changes_between((&want.0, &want.1), (&want.0, &want.1)).is_empty(),
            "nothing to write when the two agree"
        );
    }

    #[test]
    fn a_ban_made_permanent_or_temporary_is_a_change() {
        let forever = ban("198.18.0.1/32", 0);
        let soon = ban("198.18.0.1/32", 1_000);
        assert!(!same(&forever, &soon));
        assert!(!same(&soon, &forever));
    }
}

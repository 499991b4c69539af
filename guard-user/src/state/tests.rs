use super::*;
use crate::model::Kind;

fn ban(net: &str, reason: &str) -> Stored {
    Stored {
        net: net.parse().unwrap(),
        kind: Kind::Ban,
        expires_unix_ns: 1_796_000_000_000_000_000,
        created_unix_ns: 1_795_000_000_000_000_000,
        reason: reason.into(),
        ban_number: 3,
        origin: "web-2".into(),
        local: false,
        unverified: false,
    }
}

#[test]
fn records_round_trip_through_the_binary_tables() {
    let dir = tempfile::tempdir().unwrap();
    let db = StateDb::open(dir.path()).unwrap().db;
    let entries = vec![
        ban("198.18.0.7/32", "junk payload ✓"),
        ban("2001:db8::/64", ""),
        Stored {
            kind: Kind::Allow,
            expires_unix_ns: 0,
            local: true,
            origin: String::new(),
            ..ban("198.18.1.0/24", "partner")
        },
        Stored {
            unverified: true,
            ..ban("198.18.2.7/32", "rule udp: limited")
        },
    ];
    let history = StoredHistory {
        net: "2001:db8::/64".parse().unwrap(),
        last_unix_ns: 42,
        count: 2,
    };
    let mut changes: Vec<Change> = entries.iter().cloned().map(Change::Put).collect();
    changes.push(Change::History(history));
    db.apply(&changes).unwrap();
    drop(db);
    let opened = StateDb::open(dir.path()).unwrap();
    assert!(opened.set_aside.is_none());
    let (mut got, histories) = opened.contents;
    got.sort_by_key(|s| s.net);
    let mut want = entries;
    want.sort_by_key(|s| s.net);
    assert_eq!(got, want);
    assert_eq!(histories, vec![history]);
}

#[test]
fn the_first_format_is_moved_into_the_binary_tables_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE);
    let old = ban("198.18.0.9/32", "from the JSON format");
    let hist = StoredHistory {
        net: old.net,
        last_unix_ns: 7,
        count: 1,
    };
    {
        let db = Database::create(&path).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut e = tx.open_table(LEGACY_ENTRIES).unwrap();
            e.insert(
                "198.18.0.9/32",
                serde_json::to_vec(&old).unwrap().as_slice(),
            )
            .unwrap();
            let mut h = tx.open_table(LEGACY_HISTORY).unwrap();
            h.insert(
                "198.18.0.9/32",
                serde_json::to_vec(&hist).unwrap().as_slice(),
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }
    let opened = StateDb::open(dir.path()).unwrap();
    assert!(opened.set_aside.is_none(), "migrated, not set aside");
    assert_eq!(opened.contents, (vec![old.clone()], vec![hist]));
    let tx = opened.db.db.begin_read().unwrap();
    assert!(
        matches!(
            tx.open_table(LEGACY_ENTRIES),
            Err(redb::TableError::TableDoesNotExist(_))
        ),
        "the JSON tables are gone"
    );
    drop(tx);
    drop(opened);
    // Opened again: the same contents, from the binary tables alone.
    let again = StateDb::open(dir.path()).unwrap();
    assert_eq!(again.contents, (vec![old], vec![hist]));
}

#[test]
fn a_record_that_does_not_decode_sets_the_file_aside() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Database::create(dir.path().join(FILE)).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut e = tx.open_table(ENTRIES).unwrap();
            e.insert([9u8; 3].as_slice(), [1u8; 2].as_slice()).unwrap();
        }
        tx.commit().unwrap();
    }
    let opened = StateDb::open(dir.path()).unwrap();
    let (aside, why) = opened.set_aside.expect("set aside");
    assert!(aside.exists(), "kept, not deleted");
    assert!(why.contains("key of 3 bytes"), "{why}");
    assert_eq!(opened.contents, Contents::default());
}

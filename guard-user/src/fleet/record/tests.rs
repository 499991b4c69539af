use super::*;

#[test]
fn keys_are_nats_keys_and_come_back() {
    for text in [
        "198.18.0.7/32",
        "198.18.0.0/24",
        "2001:db8::/64",
        "2001:db8::7/128",
        "::ffff:198.18.0.1/128",
    ] {
        let net: IpNet = text.parse().unwrap();
        let key = key_of(&net);
        assert!(
            key.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-/_=.".contains(c)),
            "{key}"
        );
        assert!(!key.starts_with('.') && !key.ends_with('.'));
        assert_eq!(net_of(&key).unwrap(), net, "{key}");
    }
    assert!(net_of("198.18.0.7/24").is_err(), "host bits");
    assert!(net_of("junk").is_err());
}

#[test]
fn a_refusal_is_its_index_in_all() {
    for (i, r) in Refusal::ALL.iter().enumerate() {
        assert_eq!(*r as usize, i, "{r:?}");
    }
}

#[test]
fn keys_guard_does_not_write_are_refused() {
    for key in [
        "0.0.0.0/0",
        "--/0",
        "198.18.0.7",
        "198.18.0.7/24",
        "198.18.0.07/32",
        "2001-0db8--/64",
        "2001-DB8--/64",
        "junk",
    ] {
        assert_eq!(net_of(key).map_err(|r| r.why), Err(Refusal::Key), "{key}");
    }
}

#[test]
fn records_the_api_would_refuse_or_no_guard_writes_are_refused() {
    let now = 1_800_000_000_000_000_000;
    let ok = Record {
        origin: "web-1".into(),
        reason: "junk".into(),
        expires_unix_ns: now + 600_000_000_000,
        created_unix_ns: now,
        ban_number: 1,
        unverified: false,
    };
    assert_eq!(Record::decode(&ok.encode(), Kind::Ban, now).unwrap(), ok);
    let forever = Record {
        expires_unix_ns: 0,
        ..ok.clone()
    };
    assert!(Record::decode(&forever.encode(), Kind::Allow, now).is_ok());
    let day = 86_400 * 1_000_000_000;
    for (bad, why) in [
        (
            Record {
                origin: String::new(),
                ..ok.clone()
            },
            Refusal::Origin,
        ),
        (
            Record {
                origin: "a b".into(),
                ..ok.clone()
            },
            Refusal::Origin,
        ),
        (
            Record {
                reason: "x".repeat(REASON_MAX + 1),
                ..ok.clone()
            },
            Refusal::Reason,
        ),
        (
            Record {
                reason: "a\nb".into(),
                ..ok.clone()
            },
            Refusal::Reason,
        ),
        (
            Record {
                expires_unix_ns: now + 40 * day,
                ..ok.clone()
            },
            Refusal::Expiry,
        ),
        (forever.clone(), Refusal::Expiry),
        (
            Record {
                expires_unix_ns: now - day,
                ..ok.clone()
            },
            Refusal::Expiry,
        ),
        (
            Record {
                created_unix_ns: 0,
                expires_unix_ns: 1,
                ..ok.clone()
            },
            Refusal::Created,
        ),
        (
            Record {
                created_unix_ns: now + day,
                ..ok.clone()
            },
            Refusal::Created,
        ),
        (
            Record {
                ban_number: u32::MAX,
                ..ok.clone()
            },
            Refusal::BanNumber,
        ),
    ] {
        assert_eq!(
            Record::decode(&bad.encode(), Kind::Ban, now).map_err(|r| r.why),
            Err(why),
            "{bad:?}"
        );
    }
    assert_eq!(
        Record::decode(b"{}", Kind::Ban, now).map_err(|r| r.why),
        Err(Refusal::Malformed)
    );
    let mut big = ok.encode();
    big.truncate(big.len() - 1);
    big.extend(format!(",\"pad\":\"{}\"}}", "x".repeat(MAX_RECORD_BYTES)).bytes());
    assert_eq!(
        Record::decode(&big, Kind::Ban, now).map_err(|r| r.why),
        Err(Refusal::Size)
    );
    // An expired record (made, then lived its TTL) is not refused: it is not live.
    let old = Record {
        created_unix_ns: now - 2 * day,
        expires_unix_ns: now - day,
        ..ok.clone()
    };
    let r = Record::decode(&old.encode(), Kind::Ban, now).unwrap();
    assert!(!r.live(now));
}

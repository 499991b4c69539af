//! What another node (or anyone who can write to the fleet's buckets) puts in a record and
//! its key: never a panic; what is accepted is a verdict the API could have made, and it
//! reads back the same once written as guard writes it.
#![no_main]

use guard_user::{
    fleet::record::{Record, key_of, net_of},
    model::Kind,
};
use libfuzzer_sys::fuzz_target;

/// 2026-12-05, as a node's clock might read.
const NOW_UNIX: u64 = 1_796_428_800_000_000_000;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let (key, value) = rest.split_at((split as usize).min(rest.len()));
    if let Ok(key) = std::str::from_utf8(key)
        && let Ok(net) = net_of(key)
    {
        assert_eq!(key_of(&net), key);
        assert!(net.prefix_len() > 0 && net.trunc() == net);
    }
    for kind in [Kind::Ban, Kind::Allow] {
        if let Ok(r) = Record::decode(value, kind, NOW_UNIX) {
            assert!(
                !(kind == Kind::Ban && r.expires_unix_ns == 0),
                "a ban expires"
            );
            let again = Record::decode(&r.encode(), kind, NOW_UNIX).expect("re-decodes");
            assert_eq!(again, r);
            let _ = r.remote();
        }
    }
});

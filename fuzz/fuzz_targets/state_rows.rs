//! The state database's rows as read back from disk (a file anyone with the directory could
//! have written): never a panic; a row that decodes encodes back to itself and converts to
//! an entry on any clock.
#![no_main]

use guard_user::state::{Stored, StoredHistory, key_of};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 34 {
        return;
    }
    let (clock, row) = data.split_at(16);
    let now_mono = u64::from_le_bytes(clock[..8].try_into().unwrap());
    let now_unix = u64::from_le_bytes(clock[8..].try_into().unwrap());
    let (key, value) = row.split_at(18);
    if let Ok(s) = Stored::decode(key, value) {
        assert_eq!(key_of(&s.net), key, "a key names one prefix");
        let again = Stored::decode(key, &s.encode()).expect("an encoded row decodes");
        assert_eq!(again, s);
        if let Some(e) = s.to_entry(now_mono, now_unix) {
            assert!(e.expires_mono_ns == 0 || e.expires_mono_ns >= now_mono);
        }
    }
    if let Ok(h) = StoredHistory::decode(key, value) {
        assert_eq!(
            StoredHistory::decode(key, &h.encode()).expect("re-decodes"),
            h
        );
    }
});

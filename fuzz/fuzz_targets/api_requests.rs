//! Decoding of every API request body (bans, allows, penalties): never a panic, and what is
//! accepted respects the API's bounds.
#![no_main]

use guard_user::{
    control::model::{EntryRequest, PenaltyRequest},
    control::requests,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(reqs) = requests::one_or_many::<EntryRequest>(data) {
        assert!(!reqs.is_empty() && reqs.len() <= requests::MAX_BULK);
        if let Ok(valid) = requests::entries(&reqs) {
            for r in valid {
                assert!(r.net.prefix_len() > 0);
                assert!(
                    r.ttl
                        .is_none_or(|t| (1..=requests::MAX_TTL_SECS).contains(&t.as_secs()))
                );
            }
        }
    }
    if let Ok(p) = requests::one::<PenaltyRequest>(data) {
        if let Ok((_, tokens)) = requests::penalty(&p.ip, p.tokens) {
            assert!((1..=requests::MAX_PENALTY_TOKENS).contains(&tokens));
        }
    }
});

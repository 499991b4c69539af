//! The list-file parser: never a panic; accepted entries have no host bits and are not /0.
#![no_main]

use guard_user::lists;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(nets) = lists::parse(text, "fuzz.txt") {
        for n in nets {
            assert_eq!(n.trunc(), n);
            assert!(n.prefix_len() > 0);
        }
    }
});

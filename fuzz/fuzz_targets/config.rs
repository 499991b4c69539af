//! The TOML config parser and validator: any input is refused or accepted, never a panic,
//! and every refusal names a position.
#![no_main]

use guard_user::config::{Config, ConfigError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(text, "fuzz.toml") {
        Ok(c) => assert!(c.rules.len() <= 16),
        Err(ConfigError::Invalid { line, column, .. }) => assert!(line >= 1 && column >= 1),
        Err(e) => panic!("unexpected error kind: {e}"),
    }
});

//! Arbitrary bytes as a JWK set document: never a panic, never more than the cap.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(keys) = mcp_gatekeeper::fuzzing::jwks(data) {
        assert!(keys <= 64);
    }
});

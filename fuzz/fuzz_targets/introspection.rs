//! Arbitrary bytes as an RFC 7662 answer: never a panic; accepted only when active is
//! true and no other issuer is named.
#![no_main]

use libfuzzer_sys::fuzz_target;

const ISSUER: &str = "https://idp.example.com";

fuzz_target!(|data: &[u8]| {
    if mcp_gatekeeper::fuzzing::introspection_answer(ISSUER, data) {
        let answer: serde_json::Value = serde_json::from_slice(data).expect("JSON");
        assert_eq!(answer["active"], true);
        assert!(answer.get("iss").is_none_or(|iss| iss == ISSUER));
    }
});

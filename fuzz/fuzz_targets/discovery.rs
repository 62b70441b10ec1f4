//! Arbitrary bytes as an issuer's metadata document: never a panic; accepted only when
//! it names the issuer exactly.
#![no_main]

use libfuzzer_sys::fuzz_target;

const ISSUER: &str = "https://idp.example.com";

fuzz_target!(|data: &[u8]| {
    if mcp_gatekeeper::fuzzing::discovery_document(ISSUER, data) {
        let document: serde_json::Value = serde_json::from_slice(data).expect("JSON");
        assert_eq!(document["issuer"], ISSUER);
    }
});

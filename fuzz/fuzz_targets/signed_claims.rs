//! Fuzzed JOSE headers and claims, validly signed with the HMAC issuer's secret, through
//! the whole stack: the claim checks run on everything the fuzzer can write. Never a
//! panic; a 200 only for claims that pass every rule this target re-checks.
#![no_main]

#[path = "stack.rs"]
mod stack;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The input is the header and the claims, split at the first 0xFF byte.
    let (header, claims) = match data.iter().position(|b| *b == 0xFF) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (&br#"{"alg":"HS256","typ":"at+jwt"}"#[..], data),
    };
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, stack::SECRET);
    let tag = aws_lc_rs::hmac::sign(&key, message.as_bytes());
    let token = format!("Bearer {message}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
    let Some(status) = stack::status(token.as_bytes()) else {
        return;
    };
    assert!(matches!(status, 200 | 400 | 401 | 403), "status {status}");
    if status == 200 {
        // Whatever got through is an HS256 token of the HMAC issuer, for this
        // resource, with mcp:read, not expired.
        let claims: serde_json::Value = serde_json::from_slice(claims).expect("JSON claims");
        assert_eq!(claims["iss"], stack::HMAC_ISSUER);
        let aud_ok = claims["aud"] == stack::RESOURCE
            || claims["aud"]
                .as_array()
                .is_some_and(|a| a.iter().any(|v| v == stack::RESOURCE));
        assert!(aud_ok, "aud {}", claims["aud"]);
        let scopes = claims["scope"]
            .as_str()
            .or(claims["scp"].as_str())
            .unwrap_or_default();
        let in_scp_array = claims["scp"]
            .as_array()
            .is_some_and(|a| a.iter().any(|v| v == "mcp:read"));
        assert!(scopes.split_ascii_whitespace().any(|s| s == "mcp:read") || in_scp_array);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        let exp = claims["exp"].as_f64().expect("numeric exp");
        assert!(exp + 60.0 >= now, "expired token accepted: {exp}");
    }
});

//! Entry points for the fuzz targets under `fuzz/` (feature `fuzzing`): the parsers
//! that read what identity providers and MCP clients send, which are private to the
//! crate. Not a stable API; the token path is fuzzed through the public layers.

use std::time::Duration;

/// Reads `body` as a metadata document of `issuer`; whether it was accepted.
pub fn discovery_document(issuer: &str, body: &[u8]) -> bool {
    crate::keys::parse_document(body, issuer, crate::uri::Transport::HttpsOrLoopback).is_ok()
}

/// Reads `body` as an introspection answer from `issuer`; whether it vouched for an
/// access token.
pub fn introspection_answer(issuer: &str, body: &[u8]) -> bool {
    crate::verify::parse_answer(body, issuer, Duration::from_secs(300), Default::default()).is_ok()
}

/// Reads `body` as a JWK set, keeping at most 64 keys; the number of usable keys, or
/// `None` when it is not a JWK set.
pub fn jwks(body: &[u8]) -> Option<usize> {
    crate::keys::KeySet::parse(body, 64)
        .ok()
        .map(|parsed| parsed.keys.len())
}

/// Reads `body` as the JSON-RPC message of an MCP request, as the operation layer
/// does for authorization: its method and the name it addresses, or `None` when it
/// is refused.
pub fn mcp_operation(body: &[u8]) -> Option<(Option<String>, Option<String>)> {
    crate::mcp::from_body(
        body,
        &http::HeaderMap::new(),
        &[crate::Argument::new("visibility").header("Visibility")],
    )
    .ok()
    .map(|op| (op.method().map(str::to_owned), op.name().map(str::to_owned)))
}

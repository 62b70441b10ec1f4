//! MCP awareness for authorization: what a request asks the MCP server to do
//! ([`McpOperation`], found by the [`OperationLayer`]), which scopes each operation
//! needs ([`McpScopes`]), and `tools/list` answers without the tools a caller could
//! not call ([`FilterToolsLayer`]), and sessions that stay with the principal they
//! were issued to ([`BindSessionsLayer`]).

mod argument;
mod filter;
mod headers;
mod layer;
mod members;
mod operation;
mod readings;
mod scopes;
mod session;
mod sse;

pub use argument::{Argument, ArgumentValue};
pub use filter::{
    DEFAULT_TOOLS_LIST_LIMIT, FilterToolsFuture, FilterToolsLayer, FilterToolsService, FilteredBody,
};
pub use layer::{
    ANONYMOUS_BODY_LIMIT, DEFAULT_MCP_BODY_LIMIT, McpBody, OperationLayer, OperationService,
    ReadingOperation,
};
#[cfg(feature = "fuzzing")]
pub(crate) use operation::from_body;
pub use operation::{MCP_METHOD, MCP_NAME, MCP_PROTOCOL_VERSION, McpOperation, OperationSource};
pub(crate) use operation::{shorten, shorten_to};
pub use scopes::McpScopes;
pub(crate) use session::SessionBinding;
pub use session::{
    BindSessionsLayer, BindSessionsService, DEFAULT_SESSION_CAPACITY, DEFAULT_SESSION_IDLE,
    MCP_SESSION_ID,
};

/// The `Content-Encoding` of a message other than `identity`, if it has one, quoted
/// safely: a body this crate cannot read, though the other side may decode it.
fn encoding(headers: &http::HeaderMap) -> Option<String> {
    let encodings: Vec<&str> = headers
        .get_all(http::header::CONTENT_ENCODING)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("unreadable").split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty() && !e.eq_ignore_ascii_case("identity"))
        .collect();
    (!encodings.is_empty()).then(|| shorten(&encodings.join(", ")).into_owned())
}

/// A `charset` other than UTF-8 that a message's `Content-Type` declares, if any,
/// quoted safely: servers that decode by it (the TypeScript SDK's Node transport,
/// Express, aiohttp) would read another message than the UTF-8 bytes this crate
/// reads (UTF-7 turns `n+AGE-me` into `name`).
fn foreign_charset(headers: &http::HeaderMap) -> Option<String> {
    for value in headers.get_all(http::header::CONTENT_TYPE) {
        let Ok(value) = value.to_str() else {
            return Some("unreadable".to_owned());
        };
        for param in value.split([';', ',']).skip(1) {
            let Some((name, charset)) = param.split_once('=') else {
                continue;
            };
            let charset = charset.trim().trim_matches('"').to_ascii_lowercase();
            if name.trim().eq_ignore_ascii_case("charset")
                && !matches!(charset.as_str(), "utf-8" | "utf8")
            {
                return Some(shorten(&charset).into_owned());
            }
        }
    }
    None
}

//! [`McpOperation`]: what an MCP request asks for — the JSON-RPC method and the tool,
//! resource or prompt it names — read from the `Mcp-Method` / `Mcp-Name` headers
//! (MCP 2026-07-28, SEP-2243) and from the JSON-RPC body. Parsing only; reading the
//! body off the wire is the [`OperationLayer`](super::OperationLayer)'s job.
//!
//! The body is the truth: it is what the MCP server executes. Headers are checked
//! against it, never trusted instead of it, so a client cannot name one tool in a
//! header and call another in the body.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::HeaderMap;
use http::header::HeaderName;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;
use serde_json::value::RawValue;

/// The `Mcp-Method` request header: the JSON-RPC method of the body.
pub const MCP_METHOD: HeaderName = HeaderName::from_static("mcp-method");
/// The `Mcp-Name` request header: the tool, prompt or resource the body names.
pub const MCP_NAME: HeaderName = HeaderName::from_static("mcp-name");

/// How a header value that is not plain visible ASCII travels (SEP-2243).
const BASE64_PREFIX: &str = "=?base64?";
const BASE64_SUFFIX: &str = "?=";

/// Where the [`McpOperation`] of a request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OperationSource {
    /// The JSON-RPC body, checked against the `Mcp-*` headers when they were sent.
    Body,
    /// The `Mcp-Method` / `Mcp-Name` headers alone: the body was not read because no
    /// rule needed it for this caller. Not verified; use it for logs, not decisions.
    Headers,
    /// Neither: not a POST (an SSE `GET`, a session `DELETE`), or nothing was said.
    Unknown,
}

/// The MCP operation of a request: the JSON-RPC `method` and, for the methods that
/// address one thing, its name — the tool of `tools/call`, the prompt of
/// `prompts/get`, the URI of `resources/read` (and `resources/subscribe`,
/// `resources/unsubscribe`), the task of `tasks/*`.
///
/// The [`OperationLayer`](super::OperationLayer) puts it into the request's
/// extensions; [`Authorize`](crate::Authorize) callbacks receive it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpOperation {
    method: Option<String>,
    name: Option<String>,
    id: Option<Value>,
    source: OperationSource,
}

impl McpOperation {
    /// An operation nothing is known of: `method()` and `name()` are `None`.
    pub const fn unknown() -> Self {
        Self {
            method: None,
            name: None,
            id: None,
            source: OperationSource::Unknown,
        }
    }

    /// The operation `method` on `name`, as if read from a body (for tests, and for
    /// asking a policy "could this caller do that?").
    pub fn new(method: impl Into<String>, name: Option<String>) -> Self {
        Self {
            method: Some(method.into()),
            name,
            id: None,
            source: OperationSource::Body,
        }
    }

    /// `tools/call` of the tool `name`.
    pub fn tool_call(name: impl Into<String>) -> Self {
        Self::new("tools/call", Some(name.into()))
    }

    /// The JSON-RPC method (`tools/call`, `tools/list`, `initialize`, …); `None` for
    /// a JSON-RPC response sent by the client, and when unknown.
    pub fn method(&self) -> Option<&str> {
        self.method.as_deref()
    }

    /// The tool, prompt, resource URI or task the method addresses, if it addresses
    /// one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The JSON-RPC `id` of the request, if the body was read and had one.
    pub fn id(&self) -> Option<&Value> {
        self.id.as_ref()
    }

    /// Where this was learnt from.
    pub fn source(&self) -> OperationSource {
        self.source
    }

    /// Whether this is `method` (on any name).
    pub fn is(&self, method: &str) -> bool {
        self.method.as_deref() == Some(method)
    }
}

/// A client-chosen string cut short enough to quote in a header or a log line, with
/// control characters (a newline forging a log line, say) shown as `?`.
pub(crate) fn shorten(text: &str) -> Cow<'_, str> {
    let short = match text.char_indices().nth(64) {
        Some((at, _)) => &text[..at],
        None => text,
    };
    if short.chars().any(char::is_control) {
        Cow::Owned(
            short
                .chars()
                .map(|c| if c.is_control() { '?' } else { c })
                .collect(),
        )
    } else {
        Cow::Borrowed(short)
    }
}

/// Which member of `params` a method's `Mcp-Name` mirrors (SEP-2243).
pub(crate) fn name_member(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => Some("uri"),
        "tasks/get" | "tasks/update" | "tasks/cancel" => Some("taskId"),
        _ => None,
    }
}

/// The `Mcp-Method` / `Mcp-Name` headers, decoded. `Err` names what is wrong.
pub(crate) fn from_headers(headers: &HeaderMap) -> Result<Option<McpOperation>, String> {
    let Some(method) = single(headers, &MCP_METHOD)? else {
        return Ok(None);
    };
    let name = single(headers, &MCP_NAME)?.map(decode).transpose()?;
    Ok(Some(McpOperation {
        method: Some(method.to_owned()),
        name: name.map(Cow::into_owned),
        id: None,
        source: OperationSource::Headers,
    }))
}

fn single<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<Option<&'a str>, String> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(format!("the {name} header is sent more than once"));
    }
    value
        .to_str()
        .map(|v| Some(v.trim()))
        .map_err(|_| format!("the {name} header is not visible ASCII; encode it as =?base64?…?="))
}

/// Undoes SEP-2243's `=?base64?…?=` wrapping.
fn decode(value: &str) -> Result<Cow<'_, str>, String> {
    match value
        .strip_prefix(BASE64_PREFIX)
        .and_then(|v| v.strip_suffix(BASE64_SUFFIX))
    {
        None => Ok(Cow::Borrowed(value)),
        Some(encoded) => STANDARD
            .decode(encoded)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .map(Cow::Owned)
            .ok_or_else(|| "the mcp-name header is not valid =?base64?…?= UTF-8".to_owned()),
    }
}

/// One JSON-RPC 2.0 message as MCP sends it. Derived structs refuse duplicate
/// members, so a body cannot say `"name"` twice and have the gatekeeper read one and
/// the server the other.
#[derive(Deserialize)]
struct Message {
    jsonrpc: String,
    method: Option<String>,
    id: Option<Value>,
    params: Option<Box<RawValue>>,
    result: Option<IgnoredAny>,
    error: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct Params {
    name: Option<String>,
    uri: Option<String>,
    #[serde(rename = "taskId")]
    task_id: Option<String>,
}

/// Reads the operation from a JSON-RPC body and checks the `Mcp-*` headers against
/// it. `Err` is a description safe to show the client.
pub(crate) fn from_body(body: &[u8], headers: &HeaderMap) -> Result<McpOperation, String> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        return Err(
            "JSON-RPC batches are not accepted: MCP sends one message per POST \
                    since 2025-06-18"
                .to_owned(),
        );
    }
    let message: Message = serde_json::from_slice(body).map_err(|e| {
        // Position only: serde's messages can quote the body back.
        format!(
            "the request body is not a JSON-RPC message ({} error at line {}, column {})",
            match e.classify() {
                serde_json::error::Category::Data => "content",
                serde_json::error::Category::Eof => "truncated",
                _ => "syntax",
            },
            e.line(),
            e.column()
        )
    })?;
    if message.jsonrpc != "2.0" {
        return Err("the request body is not JSON-RPC 2.0 (\"jsonrpc\" must be \"2.0\")".into());
    }
    let name = match (message.method.as_deref(), &message.params) {
        // Only the methods that name something have their params read: other methods'
        // params are the server's business.
        (Some(method), Some(params)) if params.get() != "null" => match name_member(method) {
            Some(member) => {
                let params: Params = serde_json::from_str(params.get()).map_err(|_| {
                    format!(
                        "the params of {} are not an object with a string {member}",
                        shorten(method)
                    )
                })?;
                match member {
                    "name" => params.name,
                    "uri" => params.uri,
                    _ => params.task_id,
                }
            }
            None => None,
        },
        _ => None,
    };
    match message.method.as_deref().map(|m| (m, name_member(m))) {
        Some((method, Some(member))) if name.is_none() => {
            return Err(format!(
                "{method} needs params.{member} to say what it is for"
            ));
        }
        None if message.result.is_none() && message.error.is_none() => {
            return Err("the JSON-RPC message has no method, result or error".into());
        }
        _ => {}
    }
    let operation = McpOperation {
        method: message.method,
        name,
        id: message.id,
        source: OperationSource::Body,
    };
    check_headers(&operation, headers)?;
    Ok(operation)
}

/// The headers, when sent, must say what the body says (SEP-2243).
fn check_headers(operation: &McpOperation, headers: &HeaderMap) -> Result<(), String> {
    let Some(claimed) = from_headers(headers)? else {
        if headers.contains_key(MCP_NAME) {
            return Err("an mcp-name header without mcp-method".into());
        }
        return Ok(());
    };
    if claimed.method != operation.method {
        return Err(format!(
            "the mcp-method header ({}) does not match the body's method ({})",
            shorten(claimed.method.as_deref().unwrap_or_default()),
            shorten(operation.method.as_deref().unwrap_or("none: a response"))
        ));
    }
    match (&claimed.name, &operation.name) {
        (Some(header), Some(body)) if header != body => Err(format!(
            "the mcp-name header does not match the body's {}",
            operation
                .method
                .as_deref()
                .and_then(name_member)
                .map_or("name", |m| m)
        )),
        (Some(_), None) => Err("an mcp-name header for a method that names nothing".into()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    const CALL_WRITE: &[u8] =
        br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"write","arguments":{}}}"#;

    #[test]
    fn a_tool_call_body_names_method_tool_and_id() {
        let op = from_body(CALL_WRITE, &HeaderMap::new()).unwrap();
        assert_eq!(op.method(), Some("tools/call"));
        assert_eq!(op.name(), Some("write"));
        assert_eq!(op.id(), Some(&Value::from(7)));
        assert_eq!(op.source(), OperationSource::Body);
    }

    #[test]
    fn resources_and_prompts_are_named_by_uri_and_name() {
        let body =
            br#"{"jsonrpc":"2.0","id":"a","method":"resources/read","params":{"uri":"file:///x"}}"#;
        assert_eq!(
            from_body(body, &HeaderMap::new()).unwrap().name(),
            Some("file:///x")
        );
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"p"}}"#;
        assert_eq!(
            from_body(body, &HeaderMap::new()).unwrap().name(),
            Some("p")
        );
    }

    #[test]
    fn list_methods_notifications_and_responses_name_nothing() {
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"cursor":"x"}}"#;
        let op = from_body(body, &HeaderMap::new()).unwrap();
        assert!(op.is("tools/list") && op.name().is_none());
        let body = br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
        assert!(from_body(body, &HeaderMap::new()).unwrap().id().is_none());
        let body = br#"{"jsonrpc":"2.0","id":3,"result":{}}"#;
        assert_eq!(from_body(body, &HeaderMap::new()).unwrap().method(), None);
    }

    #[test]
    fn malformed_bodies_are_refused_without_quoting_them() {
        for body in [
            &b"not json at all, secret"[..],
            br#"{"jsonrpc":"1.0","id":1,"method":"tools/list"}"#,
            br#"{"jsonrpc":"2.0","id":1}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{}}}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":5}}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["write"]}"#,
            br#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"}]"#,
        ] {
            let error = from_body(body, &HeaderMap::new()).unwrap_err();
            assert!(!error.contains("secret"), "{error}");
        }
    }

    #[test]
    fn trailing_data_a_bom_and_null_params_are_refused_as_the_server_would() {
        let mut with_bom = b"\xEF\xBB\xBF".to_vec();
        with_bom.extend_from_slice(CALL_WRITE);
        let mut trailing = CALL_WRITE.to_vec();
        trailing.extend_from_slice(b" {}");
        for body in [
            with_bom,
            trailing,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":null}"#.to_vec(),
        ] {
            assert!(from_body(&body, &HeaderMap::new()).is_err());
        }
        let mut spaced = CALL_WRITE.to_vec();
        spaced.extend_from_slice(b" \r\n");
        assert!(from_body(&spaced, &HeaderMap::new()).is_ok());
    }

    #[test]
    fn other_methods_params_are_not_judged() {
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"x/custom","params":{"name":5,"uri":[]}}"#;
        assert!(from_body(body, &HeaderMap::new()).unwrap().name().is_none());
    }

    #[test]
    fn a_long_method_is_not_echoed_whole() {
        let method = "m".repeat(10_000);
        let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}"}}"#);
        let h = headers(&[("mcp-method", "tools/list")]);
        let error = from_body(body.as_bytes(), &h).unwrap_err();
        assert!(error.len() < 200, "{}", error.len());
    }

    #[test]
    fn control_characters_of_a_quoted_method_cannot_forge_a_log_line() {
        let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call\nlevel=ERROR forged","params":{"name":"x"}}"#;
        let h = headers(&[("mcp-method", "tools/call")]);
        let error = from_body(body.as_bytes(), &h).unwrap_err();
        assert!(!error.contains('\n'), "{error}");
        assert!(error.contains("tools/call?level=ERROR forged"), "{error}");
        assert_eq!(shorten("a\u{7}b\rc"), "a?b?c");
        assert!(matches!(shorten("plain"), Cow::Borrowed("plain")));
    }

    #[test]
    fn duplicate_members_cannot_smuggle_a_second_name() {
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read","name":"write"}}"#;
        assert!(from_body(body, &HeaderMap::new()).is_err());
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"write"}}"#;
        assert!(from_body(body, &HeaderMap::new()).is_err());
    }

    #[test]
    fn headers_must_agree_with_the_body() {
        let ok = headers(&[("mcp-method", "tools/call"), ("mcp-name", "write")]);
        assert!(from_body(CALL_WRITE, &ok).is_ok());
        for bad in [
            headers(&[("mcp-method", "tools/list")]),
            headers(&[("mcp-method", "tools/call"), ("mcp-name", "whoami")]),
            headers(&[("mcp-name", "write")]),
            headers(&[("mcp-method", "tools/call"), ("mcp-method", "tools/call")]),
        ] {
            assert!(from_body(CALL_WRITE, &bad).is_err(), "{bad:?}");
        }
        let list = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
        let named = headers(&[("mcp-method", "tools/list"), ("mcp-name", "write")]);
        assert!(from_body(list, &named).is_err());
    }

    #[test]
    fn base64_wrapped_names_are_decoded_before_comparing() {
        let body = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"schreibe ü\"}}";
        let wrapped = format!("=?base64?{}?=", STANDARD.encode("schreibe ü"));
        let h = headers(&[("mcp-method", "tools/call"), ("mcp-name", &wrapped)]);
        assert_eq!(
            from_body(body.as_bytes(), &h).unwrap().name(),
            Some("schreibe ü")
        );
        let h = headers(&[("mcp-method", "tools/call"), ("mcp-name", "=?base64?!!?=")]);
        assert!(from_body(body.as_bytes(), &h).is_err());
    }

    #[test]
    fn headers_alone_give_an_unverified_operation() {
        let op = from_headers(&headers(&[("mcp-method", "tools/call"), ("mcp-name", "w")]))
            .unwrap()
            .unwrap();
        assert_eq!(op.source(), OperationSource::Headers);
        assert_eq!((op.method(), op.name()), (Some("tools/call"), Some("w")));
        assert!(from_headers(&HeaderMap::new()).unwrap().is_none());
    }
}

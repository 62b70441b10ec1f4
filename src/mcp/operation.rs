//! [`McpOperation`]: what an MCP request asks for — the JSON-RPC method and the tool,
//! resource or prompt it names — read from the `Mcp-Method` / `Mcp-Name` headers
//! (MCP 2026-07-28, SEP-2243) and from the JSON-RPC body. Parsing only; reading the
//! body off the wire is the [`OperationLayer`](super::OperationLayer)'s job.
//!
//! The body is the truth: it is what the MCP server executes. Headers are checked
//! against it, never trusted instead of it, so a client cannot name one tool in a
//! header and call another in the body.

use std::borrow::Cow;

use http::HeaderMap;
use http::header::HeaderName;
use serde_json::Value;
use serde_json::value::RawValue;

use super::argument::{Argument, ArgumentValue};
use super::headers;
use super::members::Members;

/// The `Mcp-Method` request header: the JSON-RPC method of the body.
pub const MCP_METHOD: HeaderName = HeaderName::from_static("mcp-method");
/// The `Mcp-Name` request header: the tool, prompt or resource the body names.
pub const MCP_NAME: HeaderName = HeaderName::from_static("mcp-name");
/// The `MCP-Protocol-Version` request header: the protocol revision the client speaks.
pub const MCP_PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");

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
    arguments: Arguments,
}

/// What is known of the `arguments` of a `tools/call`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum Arguments {
    /// Not read: a rule over an argument asks for its scopes (fail closed).
    #[default]
    Unknown,
    /// The members the rules read, as sent (those absent are not here).
    Read(Vec<(String, Value)>),
    /// Asked of a tool as `tools/list` lists it: a rule over an argument asks for
    /// nothing, since some call of the tool may be made without its scopes.
    Listing,
}

impl McpOperation {
    /// The operation the `Mcp-*` headers claim, unverified.
    pub(crate) fn claimed(method: String, name: Option<String>) -> Self {
        Self {
            method: Some(method),
            name,
            id: None,
            source: OperationSource::Headers,
            arguments: Arguments::Unknown,
        }
    }

    /// An operation nothing is known of: `method()` and `name()` are `None`.
    pub const fn unknown() -> Self {
        Self {
            method: None,
            name: None,
            id: None,
            source: OperationSource::Unknown,
            arguments: Arguments::Unknown,
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
            arguments: Arguments::Unknown,
        }
    }

    /// The same operation with the argument `name` set to `value`, as if read from
    /// the body's `params.arguments` (for tests, and for asking a policy "could this
    /// caller make that call?").
    pub fn with_argument(mut self, name: impl Into<String>, value: Value) -> Self {
        let name = name.into();
        let mut read = match std::mem::take(&mut self.arguments) {
            Arguments::Read(read) => read,
            _ => Vec::new(),
        };
        read.retain(|(n, _)| *n != name);
        read.push((name, value));
        self.arguments = Arguments::Read(read);
        self
    }

    /// `tools/call` of the tool `name` as `tools/list` filtering asks about it: with
    /// arguments not known, a rule over an argument asks for nothing (some call of
    /// the tool may be made without its scopes), where a call whose arguments were
    /// not read needs them.
    pub fn tool_listing(name: impl Into<String>) -> Self {
        Self {
            arguments: Arguments::Listing,
            ..Self::tool_call(name)
        }
    }

    /// What the body says of the argument `name` of a `tools/call`: its value, that
    /// it has none, or that the arguments were not read (only the members a policy
    /// names in [`Authorize::arguments`](crate::Authorize::arguments) are read, for
    /// the tools it names them for). [`ArgumentValue::NotRead`] is no value: a policy
    /// must not decide as if it were an allowed one.
    pub fn argument(&self, name: &str) -> ArgumentValue<'_> {
        match &self.arguments {
            Arguments::Read(read) => read
                .iter()
                .find(|(n, _)| n == name)
                .map_or(ArgumentValue::Absent, |(_, v)| ArgumentValue::Present(v)),
            _ => ArgumentValue::NotRead,
        }
    }

    /// Whether this is a [`tool_listing`](Self::tool_listing).
    pub fn is_listing(&self) -> bool {
        self.arguments == Arguments::Listing
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
/// control characters (a newline forging a log line, say) and bidirectional
/// formatting characters shown as `?`.
pub(crate) fn shorten(text: &str) -> Cow<'_, str> {
    shorten_to(text, 64)
}

/// [`shorten`] to at most `max` characters.
pub(crate) fn shorten_to(text: &str, max: usize) -> Cow<'_, str> {
    let short = match text.char_indices().nth(max) {
        Some((at, _)) => &text[..at],
        None => text,
    };
    // Bidirectional formatting characters can make a log line read otherwise.
    let hidden = |c: char| {
        c.is_control()
            || matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
    };
    if short.chars().any(hidden) {
        Cow::Owned(
            short
                .chars()
                .map(|c| if hidden(c) { '?' } else { c })
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

/// The longest tool, prompt or task name or resource URI read: each resource URI is
/// matched under a few dozen readings, so its length is bounded.
const MAX_NAME_BYTES: usize = 8 * 1024;

/// The members of a JSON-RPC 2.0 message.
const MESSAGE_MEMBERS: &[&str] = &["jsonrpc", "method", "id", "params", "result", "error"];

/// The members of MCP request `params` that name or carry what a request does.
const PARAMS_MEMBERS: &[&str] = &["name", "uri", "taskId", "arguments", "_meta", "cursor"];

/// `text` with a control character in it is refused: no MCP method, tool, prompt or
/// URI has one, and servers differ in whether they strip it (WHATWG URL parsing drops
/// tabs and newlines) or keep it.
fn no_controls(text: &str, what: &str) -> Result<(), String> {
    match text.chars().any(char::is_control) {
        true => Err(format!(
            "the {what} {:?} contains a control character",
            shorten(text)
        )),
        false => Ok(()),
    }
}

/// Refuses a resource URI that is, or once percent-decoded is, surrounded by
/// whitespace or holds a tab or line break: servers trim and drop those (JavaScript's
/// `trim`, WHATWG URL parsing, Python's `strip`) in ways no reading can follow.
fn plain_uri(uri: &str) -> Result<(), String> {
    let odd = |text: &str| {
        let space = |c: char| c.is_whitespace() || c == '\u{FEFF}';
        text.starts_with(space) || text.ends_with(space) || text.contains(['\t', '\n', '\r'])
    };
    let mut text = uri.to_owned();
    for _ in 0..3 {
        if odd(&text) {
            return Err(format!(
                "the uri {:?} has surrounding whitespace, or a tab or line break, perhaps \
                 percent-encoded",
                shorten(uri)
            ));
        }
        match super::readings::percent_decode(&text) {
            Some(decoded) if decoded != text => text = decoded,
            _ => break,
        }
    }
    Ok(())
}

/// Reads the operation from a JSON-RPC body and checks the `Mcp-*` headers against
/// it. `Err` is a description safe to show the client.
///
/// The body is read as the most lenient server behind the gatekeeper would read it
/// (R-GW-1): members that only a case-insensitive reader takes for a known one,
/// duplicates, `params` that are not an object, and names with control characters are
/// refused rather than read one way here and another way there.
///
/// The members of a `tools/call`'s `arguments` named in `arguments` (those rules
/// read) are kept, read the same way: a member that differs from one of them only in
/// letter case, or one given twice, is refused.
pub(crate) fn from_body(
    body: &[u8],
    headers: &HeaderMap,
    arguments: &[Argument],
) -> Result<McpOperation, Refused> {
    let message = parse_message(body)?;
    message.check(MESSAGE_MEMBERS, "the JSON-RPC message")?;
    let (method, id) = read_method_and_id(&message)?;
    let member = method.as_deref().and_then(name_member);
    let params = read_params(&message, method.as_deref(), member)?;
    let name = match (member, &params) {
        (Some(member), Some(params)) => read_name(params, member)?,
        _ => None,
    };
    match (&method, member) {
        (Some(method), Some(member)) if name.is_none() => {
            return Err(Refused::Body(format!(
                "{method} needs params.{member} to say what it is for"
            )));
        }
        (None, _) if message.get("result").is_none() && message.get("error").is_none() => {
            return Err(Refused::Body(
                "the JSON-RPC message has no method, result or error".into(),
            ));
        }
        _ => {}
    }
    let read = match (&params, method.as_deref(), name.as_deref()) {
        (Some(params), Some("tools/call"), Some(tool)) => read_arguments(params, arguments, tool)?,
        _ => Arguments::Unknown,
    };
    let operation = McpOperation {
        method,
        name,
        id,
        source: OperationSource::Body,
        arguments: read,
    };
    let version = meta_version(params.as_ref());
    headers::check(&operation, version.as_deref(), headers, arguments).map_err(|description| {
        Refused::Headers {
            id: operation.id.clone(),
            description,
        }
    })?;
    Ok(operation)
}

/// The members of the one JSON-RPC message in `body`; a batch is refused. `Err` says
/// where the JSON breaks, not what is there.
fn parse_message(body: &[u8]) -> Result<Members<'_>, String> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        return Err(
            "JSON-RPC batches are not accepted: MCP sends one message per POST \
                    since 2025-06-18"
                .to_owned(),
        );
    }
    serde_json::from_slice(body).map_err(|e| {
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
    })
}

/// `raw` read as a JSON string; `Err` says that `what` must be one.
fn json_string(raw: &RawValue, what: &str) -> Result<String, String> {
    serde_json::from_str::<String>(raw.get()).map_err(|_| format!("{what} must be a string"))
}

/// The `method` and `id` of a message, once its `jsonrpc` is `"2.0"`; a method with
/// a control character in it is refused.
fn read_method_and_id(message: &Members<'_>) -> Result<(Option<String>, Option<Value>), String> {
    let jsonrpc = message
        .get("jsonrpc")
        .map(|v| json_string(v, "\"jsonrpc\""));
    if !matches!(jsonrpc, Some(Ok(ref v)) if v == "2.0") {
        return Err("the request body is not JSON-RPC 2.0 (\"jsonrpc\" must be \"2.0\")".into());
    }
    let method = match message.get("method") {
        Some(raw) => Some(json_string(raw, "the JSON-RPC \"method\"")?),
        None => None,
    };
    if let Some(method) = &method {
        no_controls(method, "method")?;
    }
    let id = match message.get("id") {
        Some(raw) => Some(
            serde_json::from_str::<Value>(raw.get())
                .map_err(|_| "the JSON-RPC \"id\" is not valid JSON".to_owned())?,
        ),
        None => None,
    };
    Ok((method, id))
}

/// The members of a message's `params`, checked like the message's. `null` params
/// are none when `method` names nothing (its `member` is `None`); any other params
/// must be an object.
fn read_params<'a>(
    message: &Members<'a>,
    method: Option<&str>,
    member: Option<&str>,
) -> Result<Option<Members<'a>>, String> {
    let params = match message.get("params") {
        // JSON-RPC allows by-position params; MCP never sends them, and a reader that
        // takes an array for an object is not something to guess at.
        Some(raw) if raw.get() == "null" && member.is_none() => None,
        Some(raw) => Some(serde_json::from_str::<Members<'_>>(raw.get()).map_err(|_| {
            format!(
                "the params of {} are not a JSON object",
                shorten(method.unwrap_or("the message"))
            )
        })?),
        None => None,
    };
    if let Some(params) = &params {
        params.check(PARAMS_MEMBERS, "params")?;
    }
    Ok(params)
}

/// The name `params.{member}` gives, if it is there: a string without control
/// characters, at most [`MAX_NAME_BYTES`] long, and for a `uri` a [plain](plain_uri)
/// one.
fn read_name(params: &Members<'_>, member: &str) -> Result<Option<String>, String> {
    let Some(raw) = params.get(member) else {
        return Ok(None);
    };
    let name = json_string(raw, &format!("params.{member}"))?;
    no_controls(&name, member)?;
    if member == "uri" {
        plain_uri(&name)?;
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(format!(
            "params.{member} is longer than {MAX_NAME_BYTES} bytes"
        ));
    }
    Ok(Some(name))
}

/// The members of `params.arguments` named in `names`; `Unknown` when there are no
/// arguments or they are not an object (rules over them then ask for their scopes).
///
/// Only the members read for `tool` are looked at: one that differs from such a name
/// only in letter case, or such a name given twice, is refused (a case-insensitive
/// server would read it); so is a value that names a member twice at any depth.
fn read_arguments(
    params: &Members<'_>,
    arguments: &[Argument],
    tool: &str,
) -> Result<Arguments, String> {
    let mut known: Vec<&str> = Vec::new();
    for argument in arguments.iter().filter(|a| a.read_for(tool)) {
        if !known.contains(&argument.name()) {
            known.push(argument.name());
        }
    }
    if known.is_empty() {
        return Ok(Arguments::Unknown);
    }
    let Some(raw) = params.get("arguments") else {
        return Ok(Arguments::Read(Vec::new()));
    };
    let Ok(members) = serde_json::from_str::<Members<'_>>(raw.get()) else {
        return Ok(Arguments::Unknown);
    };
    members.check_only(&known, "params.arguments")?;
    let mut read = Vec::new();
    for name in known {
        if let Some(raw) = members.get(name) {
            let value = crate::verify::parse_strict(raw.get()).map_err(|_| {
                format!(
                    "params.arguments.{} names a member twice (or is not valid JSON); \
                     servers differ in which one they read",
                    shorten(name)
                )
            })?;
            read.push((name.to_owned(), value));
        }
    }
    Ok(Arguments::Read(read))
}

/// The protocol version `params._meta` names, if it names one as a string.
fn meta_version(params: Option<&Members<'_>>) -> Option<String> {
    let meta = params?.get("_meta")?;
    let meta = serde_json::from_str::<Members<'_>>(meta.get()).ok()?;
    serde_json::from_str::<String>(meta.get(headers::META_PROTOCOL_VERSION)?.get()).ok()
}

/// Why a body was refused.
#[derive(Debug)]
pub(crate) enum Refused {
    /// It cannot be read as every server behind would read it (`400
    /// invalid_request`).
    Body(String),
    /// Its MCP headers are missing or disagree with it (`400 HeaderMismatch`).
    Headers {
        /// The request's JSON-RPC id.
        id: Option<Value>,
        /// What disagrees.
        description: String,
    },
}

impl From<String> for Refused {
    fn from(description: String) -> Self {
        Self::Body(description)
    }
}

impl std::ops::Deref for Refused {
    type Target = str;

    fn deref(&self) -> &str {
        match self {
            Self::Body(description) | Self::Headers { description, .. } => description,
        }
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortened_text_shows_control_and_bidirectional_characters_as_question_marks() {
        assert_eq!(shorten("a\nb\u{202E}c\u{2066}d"), "a?b?c?d");
        assert_eq!(shorten(&"x".repeat(100)).len(), 64);
    }
    use crate::mcp::headers::from_headers;
    use crate::mcp::members::fold;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;

    /// The body read with no argument rules.
    fn from_body(body: &[u8], headers: &HeaderMap) -> Result<McpOperation, Refused> {
        super::from_body(body, headers, &[])
    }
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
    fn control_characters_in_a_method_or_name_are_refused_without_forging_a_log_line() {
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call\nlevel=ERROR forged","params":{"name":"x"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"write\u0000"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///se\tcret/k"}}"#,
        ] {
            let error = from_body(body.as_bytes(), &HeaderMap::new()).unwrap_err();
            assert!(!error.contains('\n'), "{error}");
            assert!(error.contains("control character"), "{error}");
        }
        assert_eq!(shorten("a\u{7}b\rc"), "a?b?c");
        assert!(matches!(shorten("plain"), Cow::Borrowed("plain")));
    }

    #[test]
    fn members_that_equal_a_known_one_only_under_case_folding_are_refused_by_name() {
        for (body, member) in [
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","Name":"write"}}"#,
                "Name",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","Method":"tools/call","params":{"name":"write"}}"#,
                "Method",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"NAME":"write","name":"whoami"}}"#,
                "NAME",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{},"paramſ":{"name":"write"}}"#,
                "paramſ",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","tasKId":"t"}}"#,
                "tasKId",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","\u212Aey":1,"key":2}}"#,
                "key",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","arguments":{},"ARGUMENTS":{}}}"#,
                "ARGUMENTS",
            ),
            (r#"{"jsonrpc":"2.0","ıd":1,"method":"tools/list"}"#, "ıd"),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","na_me":"write"}}"#,
                "na_me",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","me-thod":"tools/call"}"#,
                "me-thod",
            ),
        ] {
            let error = from_body(body.as_bytes(), &HeaderMap::new()).unwrap_err();
            assert!(error.contains(&format!("{member:?}")), "{body}: {error}");
        }
        assert_eq!(fold("paramſ"), "params");
        assert_eq!(fold("\u{212A}ey"), "key");
        assert_eq!(fold("İD"), "id");
    }

    #[test]
    fn a_body_with_a_hundred_thousand_members_is_read_and_its_duplicates_found() {
        // Duplicates are found with a set: a pairwise scan would spend minutes of CPU
        // on this body (benches, not this test, measure how long it takes).
        let members: Vec<String> = (0..100_000).map(|n| format!(r#""m{n}":0"#)).collect();
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"w",{}}}}}"#,
            members.join(",")
        );
        assert!(from_body(body.as_bytes(), &HeaderMap::new()).is_ok());
        let duplicate = body.replace(r#""m99999":0"#, r#""M5":0"#);
        assert!(from_body(duplicate.as_bytes(), &HeaderMap::new()).is_err());
    }

    #[test]
    fn params_that_are_not_an_object_are_refused() {
        for params in [r#"["write"]"#, r#""write""#, "5", "true"] {
            for method in ["tools/call", "tools/list", "x/custom"] {
                let body =
                    format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{params}}}"#);
                let error = from_body(body.as_bytes(), &HeaderMap::new()).unwrap_err();
                assert!(error.contains("not a JSON object"), "{body}: {error}");
            }
        }
        let long = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{{"uri":"file:///{}"}}}}"#,
            "a".repeat(MAX_NAME_BYTES)
        );
        let error = from_body(long.as_bytes(), &HeaderMap::new()).unwrap_err();
        assert!(error.contains("longer than 8192 bytes"), "{error}");
        for odd in [
            " file:///secret/k",
            "file:///secret/k ",
            "%20file:///secret/k",
            "\u{a0}file:///secret/k",
            "file:///sec%09ret/k",
            "file:///secret/k%0A",
            "file:///x%2509",
        ] {
            let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "resources/read", "params": {"uri": odd}});
            let error = from_body(body.to_string().as_bytes(), &HeaderMap::new()).unwrap_err();
            assert!(error.contains("whitespace"), "{odd:?}: {error}");
        }
        let fine = br#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///my%20notes.txt"}}"#;
        assert!(from_body(fine, &HeaderMap::new()).is_ok());
        // Absent or null params of a method that names nothing are no params at all.
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":null}"#;
        assert!(from_body(body, &HeaderMap::new()).is_ok());
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

    /// A reader like Go's `encoding/json`: member names match case-insensitively
    /// (with Unicode simple folding), and the last member that matches wins.
    mod lenient_reader {
        use super::*;
        use proptest::prelude::*;

        /// Members in document order, values as JSON text.
        type Object = Vec<(String, String)>;

        fn render(object: &Object) -> String {
            let members: Vec<String> = object
                .iter()
                .map(|(k, v)| format!("{}:{v}", Value::from(k.as_str())))
                .collect();
            format!("{{{}}}", members.join(","))
        }

        fn last<'a>(object: &'a Object, field: &str) -> Option<&'a str> {
            object
                .iter()
                .rev()
                .find(|(k, _)| fold(k) == fold(field))
                .map(|(_, v)| v.as_str())
        }

        fn text(json: Option<&str>) -> Option<String> {
            json.and_then(|v| serde_json::from_str::<String>(v).ok())
        }

        fn members(
            keys: &'static [&'static str],
            values: &'static [&'static str],
        ) -> impl Strategy<Value = Object> {
            let member = (
                proptest::sample::select(keys).prop_map(str::to_owned),
                proptest::sample::select(values).prop_map(|v| Value::from(v).to_string()),
            );
            proptest::collection::vec(member, 0..4)
        }

        /// A message with `jsonrpc` first, then members, then one or more members
        /// named like `params` holding the same params object.
        fn message() -> impl Strategy<Value = (Object, Object)> {
            (
                members(
                    &["method", "Method", "METHOD", "id", "note"],
                    &["tools/call", "tools/list", "resources/read"],
                ),
                members(
                    &[
                        "name",
                        "Name",
                        "NAME",
                        "nAme",
                        "uri",
                        "URI",
                        "arguments",
                        "note",
                    ],
                    &["whoami", "write", "file:///secret/k"],
                ),
                proptest::collection::vec(
                    proptest::sample::select(&["params", "Params", "paramſ", "PARAMS"][..]),
                    0..3,
                ),
            )
                .prop_map(|(mut top, params, params_keys)| {
                    top.insert(0, ("jsonrpc".to_owned(), "\"2.0\"".to_owned()));
                    for k in params_keys {
                        top.push((k.to_owned(), render(&params)));
                    }
                    (top, params)
                })
        }

        /// No member equals a known one only under folding, and none twice.
        fn plain(object: &Object, known: &[&str]) -> bool {
            object.iter().enumerate().all(|(at, (k, _))| {
                !known.iter().any(|n| n != k && fold(n) == fold(k))
                    && !object[..at].iter().any(|(j, _)| fold(j) == fold(k))
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2048))]

            #[test]
            fn the_operation_read_is_the_one_a_case_insensitive_last_wins_reader_takes_or_the_body_is_refused(
                (top, params) in message()
            ) {
                let body = render(&top);
                // What the lenient server runs.
                let method = text(last(&top, "method"));
                let has_params = last(&top, "params").is_some();
                let member = method.as_deref().and_then(name_member);
                let name = member
                    .filter(|_| has_params)
                    .and_then(|member| text(last(&params, member)));
                match from_body(body.as_bytes(), &HeaderMap::new()) {
                    Ok(op) => {
                        prop_assert_eq!(op.method(), method.as_deref(), "{}", body);
                        prop_assert_eq!(op.name(), name.as_deref(), "{}", body);
                    }
                    Err(error) => {
                        // Refusing is always safe, but a plain, complete body must
                        // not be refused, or this property says nothing.
                        let complete = method.is_some() && (member.is_none() || name.is_some());
                        prop_assert!(
                            !(plain(&top, MESSAGE_MEMBERS) && plain(&params, PARAMS_MEMBERS) && complete),
                            "a plain body was refused: {} ({})", body, error
                        );
                    }
                }
            }
        }
    }
}

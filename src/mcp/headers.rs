//! The MCP request headers of SEP-2243 (MCP 2026-07-28, R-MCP-6): `Mcp-Method`,
//! `Mcp-Name`, `Mcp-Param-*` and `MCP-Protocol-Version`, read and checked against
//! what the body says. The body is the truth (it is what the server executes); a
//! header that disagrees with it, or one a 2026-07-28 request leaves out, is refused
//! with the JSON-RPC `HeaderMismatch` error.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::HeaderMap;
use http::header::HeaderName;
use serde_json::Value;

use super::argument::Argument;
use super::operation::{
    MCP_METHOD, MCP_NAME, MCP_PROTOCOL_VERSION, McpOperation, name_member, shorten,
};

/// How a header value that is not plain visible ASCII travels (SEP-2243): between
/// this prefix…
const BASE64_PREFIX: &str = "=?base64?";
/// …and this suffix.
const BASE64_SUFFIX: &str = "?=";

/// The `Mcp-Method` / `Mcp-Name` headers, decoded. `Err` names what is wrong.
pub(crate) fn from_headers(headers: &HeaderMap) -> Result<Option<McpOperation>, String> {
    let Some(method) = single(headers, &MCP_METHOD)? else {
        return Ok(None);
    };
    let name = single(headers, &MCP_NAME)?
        .map(|value| decode(value, &MCP_NAME))
        .transpose()?;
    Ok(Some(McpOperation::claimed(
        method.to_owned(),
        name.map(Cow::into_owned),
    )))
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

/// Undoes SEP-2243's `=?base64?…?=` wrapping of the header `name`'s `value`.
fn decode<'a>(value: &'a str, name: &HeaderName) -> Result<Cow<'a, str>, String> {
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
            .ok_or_else(|| format!("the {name} header is not valid =?base64?…?= UTF-8")),
    }
}

/// The key of `params._meta` that names the request's protocol revision.
pub(crate) const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";

/// The first revision whose requests must carry `Mcp-Method` and `Mcp-Name`.
const HEADERS_REQUIRED_SINCE: &str = "2026-07-28";

/// The methods whose requests must carry `Mcp-Name` since [`HEADERS_REQUIRED_SINCE`].
const NAME_REQUIRED: &[&str] = &["tools/call", "prompts/get", "resources/read"];

/// Whether `version` is a revision that requires the headers: a date from
/// [`HEADERS_REQUIRED_SINCE`] on, or anything that is not an earlier date (a version
/// this crate cannot place is held to the newer rules).
fn requires_headers(version: &str) -> bool {
    let dated = version.len() == 10
        && version.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    !dated || version >= HEADERS_REQUIRED_SINCE
}

/// The headers must say what the body says (SEP-2243, R-MCP-6): when sent, always;
/// under MCP 2026-07-28 and later (by `MCP-Protocol-Version`), `Mcp-Method` on every
/// request and `Mcp-Name` on those that name a tool, prompt or resource must be sent,
/// and the header's version must be the body's `_meta` one. `Mcp-Param-*` headers
/// of the `arguments` rules read are checked against the body's values the same way.
pub(crate) fn check(
    operation: &McpOperation,
    meta_version: Option<&str>,
    headers: &HeaderMap,
    arguments: &[Argument],
) -> Result<(), String> {
    let version = single(headers, &MCP_PROTOCOL_VERSION)?;
    check_version(version, meta_version)?;
    let required = version.is_some_and(requires_headers) && operation.id().is_some();
    let claimed = from_headers(headers)?;
    check_method(operation, claimed.as_ref(), headers, required)?;
    check_name(operation, claimed.as_ref(), required)?;
    if let (true, Some(tool)) = (operation.is("tools/call"), operation.name()) {
        let mut checked: Vec<&HeaderName> = Vec::new();
        for argument in arguments.iter().filter(|a| a.read_for(tool)) {
            let Some(header) = argument.header_name() else {
                continue;
            };
            if !checked.contains(&header) {
                checked.push(header);
                check_param_header(operation, argument, header, headers, required)?;
            }
        }
    }
    Ok(())
}

/// The `MCP-Protocol-Version` header against the body's `_meta` version.
fn check_version(version: Option<&str>, meta_version: Option<&str>) -> Result<(), String> {
    match (version, meta_version) {
        (Some(header), Some(body)) if header != body => {
            return Err(format!(
                "MCP-Protocol-Version header value '{}' does not match body value '{}'",
                shorten(header),
                shorten(body)
            ));
        }
        (None, Some(body)) if requires_headers(body) => {
            return Err(format!(
                "the body's _meta names protocol version '{}' and the MCP-Protocol-Version \
                 header is missing",
                shorten(body)
            ));
        }
        _ => {}
    }
    Ok(())
}

/// `Mcp-Method`: the body's method, and there when `required`.
fn check_method(
    operation: &McpOperation,
    claimed: Option<&McpOperation>,
    headers: &HeaderMap,
    required: bool,
) -> Result<(), String> {
    let method = operation.method();
    match (claimed, method) {
        (None, Some(method)) if required => {
            return Err(format!(
                "the Mcp-Method header is missing; MCP {} requests carry it (here: '{}')",
                HEADERS_REQUIRED_SINCE,
                shorten(method)
            ));
        }
        (None, _) if headers.contains_key(MCP_NAME) => {
            return Err("an Mcp-Name header without Mcp-Method".into());
        }
        (Some(claimed), _) if claimed.method() != method => {
            return Err(format!(
                "Mcp-Method header value '{}' does not match body value '{}'",
                shorten(claimed.method().unwrap_or_default()),
                shorten(method.unwrap_or("none: a response"))
            ));
        }
        _ => {}
    }
    Ok(())
}

/// `Mcp-Name`: the body's name, and there when `required` for a method that names
/// something.
fn check_name(
    operation: &McpOperation,
    claimed: Option<&McpOperation>,
    required: bool,
) -> Result<(), String> {
    let method = operation.method();
    let member = method.and_then(name_member).unwrap_or("name");
    match (claimed.and_then(McpOperation::name), operation.name()) {
        (Some(header), Some(body)) if header != body => {
            return Err(format!(
                "Mcp-Name header value '{}' does not match body value '{}' (params.{member})",
                shorten(header),
                shorten(body)
            ));
        }
        (Some(_), None) => return Err("an Mcp-Name header for a method that names nothing".into()),
        (None, Some(_)) if required && method.is_some_and(|m| NAME_REQUIRED.contains(&m)) => {
            return Err(format!(
                "the Mcp-Name header is missing; MCP {HEADERS_REQUIRED_SINCE} requests carry \
                 params.{member} in it"
            ));
        }
        _ => {}
    }
    Ok(())
}

/// The `Mcp-Param-*` header mirroring `argument`, if the tool declares one, against
/// the body's value: sent, it must equal it (after `=?base64?…?=` decoding; integers
/// compared as numbers, booleans as `true`/`false`); missing, it is an error only when
/// the headers are `required` and the body has a non-null value.
fn check_param_header(
    operation: &McpOperation,
    argument: &Argument,
    name: &HeaderName,
    headers: &HeaderMap,
    required: bool,
) -> Result<(), String> {
    let sent = single(headers, name)?
        .map(|value| decode(value, name))
        .transpose()?;
    let body = operation
        .argument(argument.name())
        .present()
        .filter(|v| !v.is_null());
    match (sent, body) {
        (Some(sent), Some(body)) if !same_value(&sent, body) => Err(format!(
            "{name} header value '{}' does not match body value {} (params.arguments.{})",
            shorten(&sent),
            shorten(&body.to_string()),
            shorten(argument.name())
        )),
        (Some(_), None) => Err(format!(
            "a {name} header for params.arguments.{}, which the body does not have",
            shorten(argument.name())
        )),
        (None, Some(_)) if required => Err(format!(
            "the {name} header is missing; params.arguments.{} is in the body",
            shorten(argument.name())
        )),
        _ => Ok(()),
    }
}

/// Whether a header's text says the JSON value `body` (SEP-2243's encoding).
fn same_value(text: &str, body: &Value) -> bool {
    match body {
        Value::String(s) => s == text,
        Value::Bool(b) => text == if *b { "true" } else { "false" },
        Value::Number(n) => match (n.as_i64(), n.as_u64(), text.parse::<i64>(), n.as_f64()) {
            (Some(n), _, Ok(t), _) => n == t,
            (_, Some(n), _, _) => text.parse::<u64>() == Ok(n),
            // `42.0` in the body is the integer 42 in the header.
            (_, _, Ok(t), Some(f)) => f.fract() == 0.0 && f == t as f64,
            _ => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod sep2243 {
    use super::*;
    use crate::mcp::ArgumentValue;
    use crate::mcp::operation::{Refused, from_body};
    use http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            if let (Ok(k), Ok(v)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                map.append(k, v);
            }
        }
        map
    }

    fn call(meta_version: &str, arguments: &str) -> String {
        format!(
            r#"{{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{{"name":"create_repo","arguments":{arguments},"_meta":{{"io.modelcontextprotocol/protocolVersion":"{meta_version}"}}}}}}"#
        )
    }

    fn visibility() -> [Argument; 1] {
        [Argument::new("visibility")
            .header("Visibility")
            .for_tools("create_*")]
    }

    /// The refusal of `body` with `headers`, as the layer would send it.
    fn refusal(body: &str, pairs: &[(&str, &str)]) -> Option<(bool, Option<Value>, String)> {
        match from_body(body.as_bytes(), &headers(pairs), &visibility()) {
            Ok(_) => None,
            Err(Refused::Headers { id, description }) => Some((true, id, description)),
            Err(Refused::Body(description)) => Some((false, None, description)),
        }
    }

    const MODERN: (&str, &str) = ("mcp-protocol-version", "2026-07-28");

    #[test]
    fn a_2026_07_28_request_needs_mcp_method_and_mcp_name() {
        let body = call("2026-07-28", r#"{"visibility":"public"}"#);
        let all = [
            MODERN,
            ("mcp-method", "tools/call"),
            ("mcp-name", "create_repo"),
            ("mcp-param-visibility", "public"),
        ];
        assert_eq!(refusal(&body, &all), None);
        let (mismatch, id, why) = refusal(&body, &all[..1]).unwrap_or_default();
        assert!(
            mismatch && why.contains("Mcp-Method header is missing"),
            "{why}"
        );
        assert_eq!(id, Some(Value::from(9)));
        let (mismatch, _, why) = refusal(&body, &[all[0], all[1], all[3]]).unwrap_or_default();
        assert!(
            mismatch && why.contains("Mcp-Name header is missing"),
            "{why}"
        );
        // Values are case-sensitive; surrounding whitespace is not part of a value.
        let upper = [MODERN, ("mcp-method", "TOOLS/CALL"), all[2], all[3]];
        assert!(refusal(&body, &upper).is_some_and(|r| r.0));
        let spaced = [MODERN, all[1], ("mcp-name", "  create_repo  "), all[3]];
        assert_eq!(refusal(&body, &spaced), None);
    }

    #[test]
    fn the_protocol_version_header_must_be_the_bodys() {
        let body = call("2026-07-28", "{}");
        let (mismatch, _, why) = refusal(
            &body,
            &[
                ("mcp-protocol-version", "2025-11-25"),
                ("mcp-method", "tools/call"),
                ("mcp-name", "create_repo"),
            ],
        )
        .unwrap_or_default();
        assert!(mismatch && why.contains("MCP-Protocol-Version"), "{why}");
        let (mismatch, _, why) = refusal(&body, &[]).unwrap_or_default();
        assert!(mismatch && why.contains("header is missing"), "{why}");
    }

    #[test]
    fn a_2025_11_25_request_without_the_headers_keeps_todays_rules() {
        let body = call("2025-11-25", r#"{"visibility":"private"}"#);
        assert_eq!(
            refusal(&body, &[("mcp-protocol-version", "2025-11-25")]),
            None
        );
        assert_eq!(refusal(&body, &[]), None);
        // Sent, they are still checked.
        let wrong = [
            ("mcp-protocol-version", "2025-11-25"),
            ("mcp-method", "tools/list"),
        ];
        assert!(refusal(&body, &wrong).is_some_and(|r| r.0));
        let param = [("mcp-param-visibility", "public")];
        assert!(refusal(&body, &param).is_some_and(|r| r.0));
    }

    #[test]
    fn mcp_param_headers_of_read_arguments_must_say_the_bodys_value() {
        let base = [
            MODERN,
            ("mcp-method", "tools/call"),
            ("mcp-name", "create_repo"),
        ];
        let with = |value: &'static str| {
            let mut pairs = base.to_vec();
            pairs.push(("mcp-param-visibility", value));
            pairs
        };
        let private = call("2026-07-28", r#"{"visibility":"private"}"#);
        assert!(refusal(&private, &with("public")).is_some_and(|r| r.0));
        assert_eq!(refusal(&private, &with("private")), None);
        // Base64-sentinel values are decoded; a bad sentinel is refused.
        assert_eq!(refusal(&private, &with("=?base64?cHJpdmF0ZQ==?=")), None);
        assert!(refusal(&private, &with("=?base64?cHJpdmF0ZQ?=")).is_some_and(|r| r.0));
        // The value is in the body, so under 2026-07-28 the header must be sent.
        let (mismatch, _, why) = refusal(&private, &base).unwrap_or_default();
        assert!(mismatch && why.contains("mcp-param-visibility"), "{why}");
        // Integers compare as numbers, booleans as true/false.
        let number = call("2026-07-28", r#"{"visibility":42.0}"#);
        assert_eq!(refusal(&number, &with("42")), None);
        assert!(refusal(&number, &with("42.5")).is_some_and(|r| r.0));
        let flag = call("2026-07-28", r#"{"visibility":true}"#);
        assert_eq!(refusal(&flag, &with("true")), None);
        assert!(refusal(&flag, &with("True")).is_some_and(|r| r.0));
        // Null or absent in the body: the header is not expected, and not allowed.
        let absent = call("2026-07-28", "{}");
        assert_eq!(refusal(&absent, &base), None);
        assert!(refusal(&absent, &with("public")).is_some_and(|r| r.0));
    }

    #[test]
    fn an_argument_a_rule_reads_is_read_as_a_case_insensitive_server_would() {
        let body = call(
            "2025-11-25",
            r#"{"visibility":"public","Visibility":"private"}"#,
        );
        let (mismatch, _, why) = refusal(&body, &[]).unwrap_or_default();
        assert!(!mismatch && why.contains("letter case"), "{why}");
        let body = call(
            "2025-11-25",
            r#"{"visibility":"public","visibility":"private"}"#,
        );
        assert!(refusal(&body, &[]).is_some_and(|r| !r.0));
        let body = call("2025-11-25", r#"{"visibility":"public","other":1}"#);
        let op = from_body(body.as_bytes(), &HeaderMap::new(), &visibility());
        assert_eq!(
            op.ok()
                .and_then(|op| op.argument("visibility").present().cloned()),
            Some(Value::from("public"))
        );
    }

    #[test]
    fn versions_that_are_not_earlier_dates_require_the_headers() {
        assert!(requires_headers("2026-07-28"));
        assert!(requires_headers("2027-01-01"));
        assert!(requires_headers("v999.0.0"));
        assert!(!requires_headers("2025-11-25"));
        assert!(!requires_headers("2025-06-18"));
    }

    #[test]
    fn param_headers_and_argument_reading_hold_only_for_the_rules_tools() {
        // Another tool with an argument of the same name declares no header: a
        // 2026-07-28 call of it without Mcp-Param-Visibility is fine, and its other
        // arguments may be anything, case-folded twins included.
        let body = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"update_repo","arguments":{"visibility":"x","userId":1,"user_id":2},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
        let pairs = [
            MODERN,
            ("mcp-method", "tools/call"),
            ("mcp-name", "update_repo"),
        ];
        assert_eq!(refusal(body, &pairs), None);
        let op = from_body(body.as_bytes(), &headers(&pairs), &visibility());
        assert_eq!(
            op.ok()
                .map(|op| op.argument("visibility") == ArgumentValue::NotRead),
            Some(true)
        );
        // For the rule's tool, a value naming a member twice at any depth is refused.
        let nested = call(
            "2025-11-25",
            r#"{"visibility":{"l":"private","l":"public"}}"#,
        );
        assert!(refusal(&nested, &[]).is_some_and(|r| !r.0));
        // A repeated Mcp-Param header is refused.
        let private = call("2026-07-28", r#"{"visibility":"private"}"#);
        let twice = [
            MODERN,
            ("mcp-method", "tools/call"),
            ("mcp-name", "create_repo"),
            ("mcp-param-visibility", "private"),
            ("mcp-param-visibility", "private"),
        ];
        assert!(refusal(&private, &twice).is_some_and(|r| r.0));
    }

    #[test]
    fn notifications_and_other_named_methods_of_2026_07_28_pass_with_their_headers() {
        let note = r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
        assert_eq!(refusal(note, &[MODERN]), None);
        let subscribe = r#"{"jsonrpc":"2.0","id":4,"method":"resources/subscribe","params":{"uri":"file:///x","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
        let pairs = [
            MODERN,
            ("mcp-method", "resources/subscribe"),
            ("mcp-name", "file:///x"),
        ];
        assert_eq!(refusal(subscribe, &pairs), None);
    }
}

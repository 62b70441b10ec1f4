//! Rendering of refusals: the one place where an [`AuthError`] becomes a status, a
//! `WWW-Authenticate: Bearer` challenge (RFC 6750 §3, RFC 9728 §5.1) and a JSON body
//! (R-ERR-1, R-ERR-2). Also records the decision on the current tracing span (R-OPS-3).
//!
//! Values in the challenge are quoted and restricted to the characters RFC 6750
//! allows, so nothing a client or an identity provider controls can break the header.

use bytes::Bytes;
use http::Response;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use http::request::Parts;

use crate::body::ResponseBody;
use crate::error::{AuthError, AuthErrorKind};
use crate::resource::ProtectedResource;

/// Renders `error` as the response to the request `parts`, and logs the refusal.
///
/// The `resource_metadata` parameter points at the metadata document of the resource
/// the request was for (R-PRM-3). The rendered `AuthError` is also put into the
/// response's extensions for outer middleware that wants to inspect it.
pub(crate) fn reject<B>(
    error: AuthError,
    resource: &ProtectedResource,
    parts: &Parts,
) -> Response<ResponseBody<B>> {
    record(&error);
    crate::audit::decided();
    let grpc = is_grpc(&parts.headers);
    let mut response = if grpc {
        grpc_status(&error)
    } else {
        let mut response = Response::new(ResponseBody::full(body(&error)));
        *response.status_mut() = error.status();
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    };
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    match error.kind() {
        AuthErrorKind::Unavailable => {
            let secs = error.retry_after().map_or(1, |d| {
                (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
            });
            headers.insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        // A JSON-RPC error about the request's headers, not about its token.
        AuthErrorKind::Misconfigured | AuthErrorKind::HeaderMismatch => {}
        _ => {
            let metadata_url = resource
                .resource_for(parts)
                .map(|r| resource.metadata_url(&r).into_owned());
            for challenge in challenges(&error, metadata_url.as_deref(), resource, parts) {
                // Every byte of a challenge is visible ASCII or a space, so this cannot
                // fail; were it to, the response still carries status and body.
                if let Ok(value) = HeaderValue::from_str(&challenge) {
                    headers.append(WWW_AUTHENTICATE, value);
                }
            }
        }
    }
    if let Some(nonce) = error.dpop_nonce()
        && let Ok(value) = HeaderValue::from_str(nonce)
    {
        headers.insert(DPOP_NONCE, value);
    }
    response.extensions_mut().insert(error);
    response
}

fn record(error: &AuthError) {
    let span = tracing::Span::current();
    span.record("decision", "reject");
    span.record("rule", error.rule().id());
    match error.kind() {
        AuthErrorKind::Misconfigured => {
            tracing::error!(
                rule = error.rule().id(),
                "request refused: {}",
                error.description()
            );
        }
        AuthErrorKind::Unavailable => {
            tracing::warn!(
                rule = error.rule().id(),
                "request refused: {}",
                error.description()
            );
        }
        _ => tracing::info!(
            rule = error.rule().id(),
            status = error.status().as_u16(),
            "request refused: {}",
            error.description()
        ),
    }
}

/// The `DPoP-Nonce` response header (RFC 9449 §8.1, §9).
pub(crate) const DPOP_NONCE: http::HeaderName = http::HeaderName::from_static("dpop-nonce");

/// The `WWW-Authenticate` challenges of `error`, one header field each: `Bearer`,
/// and `DPoP` beside it when the resource accepts DPoP (RFC 9449 §7.1, §7.2).
///
/// The error goes on the challenge of the mechanism it is about: `DPoP` for a
/// refusal of a proof or of a DPoP-bound token, or when the request used the `DPoP`
/// scheme; `Bearer` otherwise. `Bearer` comes first (clients of the MCP TypeScript
/// SDK 1.x read the first challenge only) and is left out when every token must be
/// DPoP-bound.
fn challenges(
    error: &AuthError,
    metadata_url: Option<&str>,
    resource: &ProtectedResource,
    parts: &Parts,
) -> Vec<String> {
    if resource.dpop_algorithms().is_empty() {
        return vec![www_authenticate(error, metadata_url, resource)];
    }
    let sent_dpop = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().get(..5))
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case(b"dpop "));
    let on_dpop = error.is_about_dpop() || sent_dpop || resource.dpop_required();
    let mut out = Vec::with_capacity(2);
    if !resource.dpop_required() {
        out.push(render(error, !on_dpop, metadata_url, resource, "Bearer"));
    }
    let mut dpop = render(error, on_dpop, metadata_url, resource, "DPoP");
    dpop.push_str(if dpop.len() > 4 { ", " } else { " " });
    dpop.push_str("algs=\"");
    push_quoted(&mut dpop, &resource.dpop_algs_param(), Quote::Text);
    dpop.push('"');
    out.push(dpop);
    out
}

/// The `Bearer` challenge for `error`.
pub(crate) fn www_authenticate(
    error: &AuthError,
    metadata_url: Option<&str>,
    resource: &ProtectedResource,
) -> String {
    render(error, true, metadata_url, resource, "Bearer")
}

/// One challenge of `scheme`; with `with_error`, it carries the error's code and
/// description.
fn render(
    error: &AuthError,
    with_error: bool,
    metadata_url: Option<&str>,
    resource: &ProtectedResource,
    scheme: &str,
) -> String {
    let mut out = String::with_capacity(160);
    out.push_str(scheme);
    let mut sep = " ";
    let mut param = |out: &mut String, name: &str, value: &str, kind: Quote| {
        out.push_str(sep);
        out.push_str(name);
        out.push_str("=\"");
        push_quoted(out, value, kind);
        out.push('"');
        sep = ", ";
    };
    // RFC 6750 has no code for a policy denial, and insufficient_scope would make
    // clients ask for more scope, which cannot help: a denial carries no code.
    let code = error.error_code().filter(|_| with_error);
    if let Some(code) = code.filter(|_| error.kind() != AuthErrorKind::Forbidden) {
        param(&mut out, "error", code, Quote::Text);
    }
    if code.is_some() {
        param(
            &mut out,
            "error_description",
            error.description(),
            Quote::Text,
        );
    }
    if let Some(url) = metadata_url {
        param(&mut out, "resource_metadata", url, Quote::Url);
    }
    let scope = if error.kind() == AuthErrorKind::InsufficientScope {
        Some(error.required_scopes().join(" "))
    } else if error.kind() == AuthErrorKind::Forbidden {
        None
    } else {
        resource.challenge_scope_value().map(str::to_owned)
    };
    if let Some(scope) = scope.filter(|s| !s.is_empty()) {
        param(&mut out, "scope", &scope, Quote::Text);
    }
    out
}

#[derive(Clone, Copy)]
enum Quote {
    /// RFC 6750 `error_description` / `scope`: %x20-21 / %x23-5B / %x5D-7E only; other
    /// characters are replaced, not escaped, because the grammar has no escapes.
    Text,
    /// A URL: bytes outside visible ASCII, `"` and `\` are percent-encoded.
    Url,
}

fn push_quoted(out: &mut String, value: &str, kind: Quote) {
    for c in value.chars() {
        match (kind, c) {
            (_, ' '..='~') if c != '"' && c != '\\' => out.push(c),
            (Quote::Text, '"') => out.push('\''),
            (Quote::Text, _) => out.push('?'),
            (Quote::Url, _) => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
        }
    }
}

/// Whether a request is gRPC (R-ERR-3), the one rule for the whole crate: every
/// `Content-Type` it sends (at least one) is `application/grpc` or
/// `application/grpc+…` (`+proto`, `+json`), as the gRPC HTTP/2 protocol defines it.
/// Its refusals are gRPC statuses, and its body is never read as JSON-RPC.
pub(crate) fn is_grpc(headers: &http::HeaderMap) -> bool {
    let mut values = headers.get_all(CONTENT_TYPE).iter().peekable();
    values.peek().is_some()
        && values.all(|v| {
            let value = v.to_str().unwrap_or_default();
            let media = value.split(';').next().unwrap_or_default().trim();
            let grpc = |t: &str| t.eq_ignore_ascii_case("application/grpc");
            grpc(media)
                || media
                    .get(..17)
                    .is_some_and(|p| grpc(&p[..16]) && p.ends_with('+'))
        })
}

/// A gRPC "trailers-only" answer: HTTP 200, no body, the status in the headers; the
/// `WWW-Authenticate` challenge rides along as metadata.
fn grpc_status<B>(error: &AuthError) -> Response<ResponseBody<B>> {
    let code: u16 = match error.kind() {
        AuthErrorKind::InvalidRequest | AuthErrorKind::HeaderMismatch => 3, // INVALID_ARGUMENT
        AuthErrorKind::MissingToken
        | AuthErrorKind::InvalidToken
        | AuthErrorKind::InvalidDpopProof
        | AuthErrorKind::UseDpopNonce => 16, // UNAUTHENTICATED
        AuthErrorKind::InsufficientScope | AuthErrorKind::Forbidden => 7,   // PERMISSION_DENIED
        AuthErrorKind::Unavailable => 14,                                   // UNAVAILABLE
        AuthErrorKind::Misconfigured => 13,                                 // INTERNAL
    };
    let mut response = Response::new(ResponseBody::full(Bytes::new()));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert("grpc-status", HeaderValue::from(code));
    let message = match error.kind() {
        AuthErrorKind::Misconfigured => "authentication is misconfigured on this server",
        _ => error.description(),
    };
    // grpc-message is percent-encoded UTF-8 (the gRPC HTTP/2 protocol); every byte of
    // the result is visible ASCII, so the value is always valid.
    let mut encoded = String::with_capacity(message.len());
    for b in message.bytes() {
        match b {
            b' '..=b'~' if b != b'%' => encoded.push(char::from(b)),
            _ => encoded.push_str(&format!("%{b:02X}")),
        }
    }
    if let Ok(value) = HeaderValue::from_str(&encoded) {
        headers.insert("grpc-message", value);
    }
    response
}

/// The JSON-RPC `HeaderMismatch` error code (MCP 2026-07-28 schema, `HEADER_MISMATCH`).
const HEADER_MISMATCH: i64 = -32020;

fn body(error: &AuthError) -> Bytes {
    if error.kind() == AuthErrorKind::HeaderMismatch {
        let mut body = serde_json::json!({
            "jsonrpc": "2.0",
            "error": {
                "code": HEADER_MISMATCH,
                "message": format!("Header mismatch: {}", error.description()),
            },
        });
        // Without an id (none was read) the member is left out, as the schema allows.
        if let Some(id) = error.jsonrpc_id() {
            body["id"] = id.clone();
        }
        return Bytes::from(body.to_string());
    }
    let description = match error.kind() {
        // The real cause is for the operator's log, not for the client.
        AuthErrorKind::Misconfigured => "authentication is misconfigured on this server",
        _ => error.description(),
    };
    let mut body = serde_json::Map::new();
    body.insert(
        "error".into(),
        error.error_code().unwrap_or("unauthorized").into(),
    );
    body.insert("error_description".into(), description.into());
    if !error.required_scopes().is_empty() {
        body.insert("scope".into(), error.required_scopes().join(" ").into());
    }
    Bytes::from(serde_json::Value::Object(body).to_string())
}

/// The answer of a response future polled again after it finished: `500`, never the
/// inner service's answer nor a panic, so a misbehaving executor fails closed.
pub(crate) fn after_completion<B>() -> Response<ResponseBody<B>> {
    let error = AuthError::misconfigured("a response future was polled after it completed");
    record(&error);
    let mut response = Response::new(ResponseBody::full(body(&error)));
    *response.status_mut() = error.status();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response.extensions_mut().insert(error);
    response
}

/// Marks a refusal of this crate that carries no [`AuthError`] (a foreign origin's
/// `403`, a session id's `404`): the rule that refused, and the audit trail's `kind`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Refused {
    pub(crate) rule: crate::rule::Rule,
    pub(crate) kind: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::Rule;
    use http::StatusCode;
    use std::time::Duration;

    #[test]
    fn one_rule_says_what_is_grpc() {
        let with = |types: &[&str]| {
            let mut headers = http::HeaderMap::new();
            for t in types {
                headers.append(CONTENT_TYPE, HeaderValue::from_str(t).unwrap());
            }
            is_grpc(&headers)
        };
        for grpc in [
            &["application/grpc"][..],
            &["application/grpc+proto"],
            &["application/grpc+json"],
            &["Application/GRPC+JSON; charset=utf-8"],
            &["application/grpc", "application/grpc+proto"],
        ] {
            assert!(with(grpc), "{grpc:?}");
        }
        for not in [
            &[][..],
            &["application/json"],
            &["application/grpcx"],
            &["application/grpc-web"],
            &["text/plain", "application/grpc"],
            &["application/json; x=application/grpc"],
        ] {
            assert!(!with(not), "{not:?}");
        }
    }

    #[test]
    fn grpc_callers_get_grpc_statuses_with_the_challenge_as_metadata() {
        // R-ERR-3
        let mut grpc = parts();
        grpc.headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/grpc+proto"),
        );
        let cases = [
            (AuthError::missing_token(), "16"),
            (
                AuthError::invalid_token(Rule::Jwt2, "the token expired"),
                "16",
            ),
            (
                AuthError::insufficient_scope(["mcp:write"], "needs mcp:write"),
                "7",
            ),
            (AuthError::forbidden("no"), "7"),
            (AuthError::unavailable(Duration::from_secs(3), "down"), "14"),
            (AuthError::invalid_request(Rule::Bear1, "bad"), "3"),
            (AuthError::misconfigured("the secret internal reason"), "13"),
        ];
        for (error, code) in cases {
            let kind = error.kind();
            let response: Response<ResponseBody<String>> = reject(error, &resource(), &grpc);
            assert_eq!(response.status(), StatusCode::OK, "{kind:?}");
            let h = response.headers();
            assert_eq!(h["content-type"], "application/grpc");
            assert_eq!(h["grpc-status"], code, "{kind:?}");
            let message = h["grpc-message"].to_str().unwrap();
            assert!(!message.contains("secret"), "{message}");
            match kind {
                AuthErrorKind::Unavailable => assert_eq!(h["retry-after"], "3"),
                AuthErrorKind::Misconfigured => assert!(!h.contains_key(WWW_AUTHENTICATE)),
                _ => assert!(
                    h[WWW_AUTHENTICATE]
                        .to_str()
                        .unwrap()
                        .contains("resource_metadata="),
                    "{kind:?}"
                ),
            }
        }
        let response: Response<ResponseBody<String>> = reject(
            AuthError::invalid_token(Rule::Jwt2, "100% wrong, ünïcode"),
            &resource(),
            &grpc,
        );
        assert_eq!(
            response.headers()["grpc-message"],
            "100%25 wrong, %C3%BCn%C3%AFcode"
        );
    }

    fn resource() -> ProtectedResource {
        ProtectedResource::new("https://mcp.example.com/mcp").challenge_scope(["mcp:read"])
    }

    fn parts() -> Parts {
        http::Request::new(()).into_parts().0
    }

    fn header(error: AuthError) -> (StatusCode, Option<String>, String) {
        let response: Response<ResponseBody<String>> = reject(error, &resource(), &parts());
        let header = response
            .headers()
            .get(WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap_or_default().to_owned());
        let body = match response.extensions().get::<AuthError>() {
            Some(e) => String::from_utf8_lossy(&super::body(e)).into_owned(),
            None => String::new(),
        };
        (response.status(), header, body)
    }

    #[test]
    fn missing_token_challenge_has_no_error_but_metadata_and_scope() {
        // R-BEAR-3
        let (status, header, _) = header(AuthError::missing_token());
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            header.as_deref(),
            Some(
                "Bearer resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\", scope=\"mcp:read\""
            )
        );
    }

    #[test]
    fn invalid_token_challenge_carries_code_description_and_metadata() {
        // R-ERR-1, R-ERR-2
        let (status, header, body) = header(AuthError::invalid_token(
            Rule::Jwt2,
            "the token has expired",
        ));
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let header = header.unwrap_or_default();
        assert!(header.starts_with("Bearer error=\"invalid_token\", error_description=\"the token has expired\", resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\""), "{header}");
        assert!(body.contains("\"error\":\"invalid_token\""), "{body}");
    }

    #[test]
    fn insufficient_scope_names_exactly_the_needed_scopes() {
        // R-ERR-1, R-AZ-1
        let (status, header, _) = header(AuthError::insufficient_scope(
            ["mcp:write", "mcp:admin"],
            "needs write",
        ));
        assert_eq!(status, StatusCode::FORBIDDEN);
        let header = header.unwrap_or_default();
        assert!(header.contains("error=\"insufficient_scope\""), "{header}");
        assert!(
            header.ends_with("scope=\"mcp:write mcp:admin\""),
            "{header}"
        );
    }

    #[test]
    fn challenge_values_cannot_break_the_header() {
        // R-ERR-2: quotes, backslashes, control and non-ASCII characters are neutralised
        let (_, header, _) = header(AuthError::invalid_token(
            Rule::Jwt2,
            "bad \"iss\" \\ \r\n x=\"y\" é",
        ));
        let header = header.unwrap_or_default();
        assert!(
            header.contains("error_description=\"bad 'iss' ? ?? x='y' ?\""),
            "{header}"
        );
    }

    /// An RFC 7235 `Bearer` challenge read back: its auth-params, in order, each a
    /// token name and a quoted-string value (with quoted-pair escapes undone).
    fn parse_challenge(header: &str) -> Option<Vec<(String, String)>> {
        let mut rest = header.strip_prefix("Bearer")?;
        let mut params = Vec::new();
        if rest.is_empty() {
            return Some(params);
        }
        rest = rest.strip_prefix(' ')?;
        loop {
            let name_len = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)))
                .unwrap_or(rest.len());
            let (name, after) = rest.split_at(name_len);
            let mut chars = after.strip_prefix("=\"")?.chars();
            let mut value = String::new();
            loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => value.push(chars.next()?),
                    c => value.push(c),
                }
            }
            params.push((name.to_owned(), value));
            rest = chars.as_str();
            if rest.is_empty() {
                return (!name.is_empty()).then_some(params);
            }
            rest = rest.strip_prefix(", ")?;
        }
    }

    /// What `Quote::Text` makes of `value`: RFC 6750's characters kept, `"` as `'`,
    /// anything else as `?`.
    fn text(value: &str) -> String {
        value
            .chars()
            .map(|c| match c {
                '"' => '\'',
                ' '..='~' if c != '\\' => c,
                _ => '?',
            })
            .collect()
    }

    /// What `Quote::Url` makes of `value`: visible ASCII and space kept, but `"` and
    /// `\\`, and every other character percent-encoded byte by byte.
    fn url_quoted(value: &str) -> String {
        let mut out = String::new();
        for c in value.chars() {
            if (' '..='~').contains(&c) && c != '"' && c != '\\' {
                out.push(c);
            } else {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
        }
        out
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// R-ERR-2: whatever the description, scopes and metadata URL, the challenge
        /// is a valid header value that parses back, and each value is what it was
        /// (neutralised for text, percent-encoded for the URL, and nothing else).
        #[test]
        fn challenges_always_parse_and_keep_their_values(
            description in ".{0,80}",
            scopes in proptest::collection::vec(".{1,12}", 1..4),
            url in ".{0,60}",
            refused_for_scope in proptest::bool::ANY,
        ) {
            let error = if refused_for_scope {
                AuthError::insufficient_scope(scopes.clone(), description.clone())
            } else {
                AuthError::invalid_token(Rule::Jwt2, description.clone())
            };
            let header = www_authenticate(&error, Some(&url), &resource());
            proptest::prop_assert!(http::HeaderValue::from_str(&header).is_ok(), "{header}");
            let params = parse_challenge(&header);
            proptest::prop_assert!(params.is_some(), "unparseable: {header}");
            let params = params.unwrap_or_default();
            let value = |name: &str| {
                params.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
            };
            let code = if refused_for_scope { "insufficient_scope" } else { "invalid_token" };
            proptest::prop_assert_eq!(value("error"), Some(code.to_owned()));
            proptest::prop_assert_eq!(value("error_description"), Some(text(&description)));
            proptest::prop_assert_eq!(value("resource_metadata"), Some(url_quoted(&url)));
            let expected_scope = if refused_for_scope {
                text(&scopes.join(" "))
            } else {
                "mcp:read".to_owned()
            };
            proptest::prop_assert_eq!(value("scope"), Some(expected_scope));
        }
    }

    #[test]
    fn unavailable_is_503_with_retry_after_and_no_challenge() {
        // R-KEY-5, R-ERR-1
        let response: Response<ResponseBody<String>> = reject(
            AuthError::unavailable(
                Duration::from_millis(2500),
                "the identity provider is unreachable",
            ),
            &resource(),
            &parts(),
        );
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
            Some("3")
        );
    }

    #[test]
    fn misconfiguration_does_not_leak_the_internal_description() {
        // R-OPS-1
        let body = body(&AuthError::misconfigured(
            "VerifyLayer needs BearerLayer (internal detail)",
        ));
        let body = String::from_utf8_lossy(&body);
        assert!(!body.contains("internal detail"), "{body}");
    }
}

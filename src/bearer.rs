//! [`BearerLayer`]: takes the access token out of the `Authorization` header
//! (R-BEAR-1..4) and puts a [`BearerToken`] into the request's extensions.
//!
//! Used without an [`OriginLayer`](crate::OriginLayer) in front of it, it owns the
//! request's tracing span (R-OPS-3) and audit record ([`crate::audit`]): every later
//! layer records its part of the decision on them. It does not look inside the token; that is the verify
//! layer's job.

use std::task::{Context, Poll};

use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use http::request::Parts;
use http::{Request, Response};
use tower::Service;

use crate::body::ResponseBody;
use crate::challenge;
use crate::error::AuthError;
pub use crate::future::ResponseFuture;
use crate::future::{Rejection, WatchedFuture};
use crate::resource::ProtectedResource;
use crate::rule::Rule;

/// The default cap on the length of the `Authorization` header's token (R-BEAR-4).
pub const DEFAULT_MAX_TOKEN_LEN: usize = 8 * 1024;

/// The access token of a request, as sent (not yet verified). Put into the request's
/// extensions by [`BearerLayer`]; cheap to clone (it shares the header's bytes).
#[derive(Clone)]
pub struct BearerToken {
    header: HeaderValue,
    start: usize,
    /// Set by the audience layer once the token's audience fits the request, so that
    /// the authorization layer can refuse to run without that check (R-AUD-1). Kept
    /// here rather than as an extension of its own: one insert less per request.
    audience_checked: bool,
    /// The `DPoP` header, when the token came with the `DPoP` scheme (RFC 9449 §7.1).
    proof: Option<HeaderValue>,
}

impl BearerToken {
    /// Notes that the audience of the principal verified from this token was checked.
    pub(crate) fn mark_audience_checked(&mut self) {
        self.audience_checked = true;
    }

    /// Whether [`BearerToken::mark_audience_checked`] was called.
    pub(crate) fn audience_checked(&self) -> bool {
        self.audience_checked
    }

    /// Whether the token came with the `DPoP` authorization scheme (RFC 9449 §7.1)
    /// rather than `Bearer`; its proof is then [`BearerToken::dpop_proof`].
    pub fn is_dpop(&self) -> bool {
        self.proof.is_some()
    }

    /// The DPoP proof (the one `DPoP` header) sent with a token of the `DPoP`
    /// scheme; `None` for a `Bearer` token (a `DPoP` header beside one is ignored).
    pub fn dpop_proof(&self) -> Option<&str> {
        self.proof.as_ref().and_then(|p| p.to_str().ok())
    }

    /// The token text. Treat it as a secret: never log it.
    pub fn as_str(&self) -> &str {
        // The token was checked to be b64token characters (ASCII) when it was
        // extracted; from_utf8 confirms it at memory speed on every call.
        self.header
            .as_bytes()
            .get(self.start..)
            .and_then(|token| std::str::from_utf8(token).ok())
            .unwrap_or_default()
    }
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "BearerToken(<{} bytes, redacted>)",
            self.header.len() - self.start
        )
    }
}

/// A layer that extracts the Bearer token (R-BEAR-1..4). See the crate docs for the
/// whole stack.
#[derive(Clone, Debug)]
pub struct BearerLayer {
    resource: ProtectedResource,
    max_token_len: usize,
    allow_form_bodies: bool,
    anonymous: bool,
}

/// Put into a request's extensions by a [`BearerLayer`] that lets requests without
/// credentials on ([`BearerLayer::allow_anonymous`]): the verify layer makes it an
/// anonymous [`Principal`](crate::Principal).
#[derive(Clone, Copy, Debug)]
pub(crate) struct NoToken;

impl BearerLayer {
    /// A bearer layer whose challenges describe `resource`.
    pub fn new(resource: ProtectedResource) -> Self {
        Self {
            resource,
            max_token_len: DEFAULT_MAX_TOKEN_LEN,
            allow_form_bodies: false,
            anonymous: false,
        }
    }

    /// Whether a request without an `Authorization` header goes on (default
    /// `false`: it gets the `401` challenge here). On, it reaches the verify layer
    /// without a token and goes on as an anonymous [`Principal`](crate::Principal);
    /// the authorize layer lets it through for public operations
    /// ([`Authorize::allows_anonymous`](crate::Authorize::allows_anonymous)) and
    /// answers the others with the same `401` challenge. A malformed or repeated
    /// header, or a token in the query or a form body, is still refused here. In a
    /// stack composed by hand, an [`AuthorizeLayer`](crate::AuthorizeLayer) must come
    /// after it: without one, a request without a token reaches the service.
    pub fn allow_anonymous(mut self, on: bool) -> Self {
        self.anonymous = on;
        self
    }

    /// Caps the token's length in bytes; longer tokens are refused before any
    /// decoding (R-BEAR-4). Default [`DEFAULT_MAX_TOKEN_LEN`].
    pub fn max_token_len(mut self, len: usize) -> Self {
        self.max_token_len = len;
        self
    }

    /// Lets `application/x-www-form-urlencoded` requests through. By default they are
    /// refused, because RFC 6750 §2.2 lets such a body carry the token and MCP clients
    /// must not send it there (R-BEAR-2). Only for routes whose form bodies are known
    /// not to carry tokens.
    pub fn allow_form_bodies(mut self) -> Self {
        self.allow_form_bodies = true;
        self
    }
}

crate::pipeline::layer_service!(BearerLayer => BearerService);

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for BearerService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ReqBody: http_body::Body,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = WatchedFuture<ResponseFuture<S::Future, ResBody, ReqBody>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let (mut parts, body) = req.into_parts();
        // The request's span and audit record, unless an outer layer owns them.
        let mut watch = crate::audit::start(&parts);
        let entered = watch.as_mut().map(crate::audit::enter);
        let future = match extract(&parts, &self.layer) {
            Ok(token) => {
                parts.extensions.insert(token);
                ResponseFuture::inner(self.inner.call(Request::from_parts(parts, body)))
            }
            Err(error)
                if self.layer.anonymous
                    && error.kind() == crate::error::AuthErrorKind::MissingToken =>
            {
                parts.extensions.insert(NoToken);
                ResponseFuture::inner(self.inner.call(Request::from_parts(parts, body)))
            }
            Err(error) => {
                let response = challenge::reject(error, &self.layer.resource, &parts);
                ResponseFuture::rejected(Rejection::new(response, body))
            }
        };
        if entered.is_some() {
            crate::audit::decided_by_now();
        }
        drop(entered);
        WatchedFuture::new(future, watch)
    }
}

/// Takes the token out of the request, or says why there is none that can be used.
fn extract(parts: &Parts, layer: &BearerLayer) -> Result<BearerToken, AuthError> {
    if parts.uri.query().is_some_and(|q| {
        q.split('&')
            .any(|pair| pair.split('=').next() == Some("access_token"))
    }) {
        return Err(AuthError::invalid_request(
            Rule::Bear2,
            "access tokens in the URL query are not accepted; send them in the Authorization header",
        ));
    }
    if !layer.allow_form_bodies
        && parts.headers.get(CONTENT_TYPE).is_some_and(|ct| {
            ct.as_bytes()
                .get(..33)
                .is_some_and(|p| p.eq_ignore_ascii_case(b"application/x-www-form-urlencoded"))
        })
    {
        return Err(AuthError::invalid_request(
            Rule::Bear2,
            "form-encoded request bodies are not accepted; send the access token in the Authorization header",
        ));
    }
    let mut values = parts.headers.get_all(AUTHORIZATION).iter();
    let Some(header) = values.next() else {
        return Err(AuthError::missing_token());
    };
    if values.next().is_some() {
        return Err(AuthError::invalid_request(
            Rule::Bear2,
            "more than one Authorization header; send exactly one",
        ));
    }
    let bytes = header.as_bytes();
    // R-BEAR-4: the cap is checked before anything else looks at the token.
    if bytes.len() > layer.max_token_len.saturating_add("Bearer ".len() + 16) {
        return Err(too_long(layer.max_token_len));
    }
    let (start, dpop) = token_start(bytes, layer)?;
    let token = &bytes[start..];
    if token.len() > layer.max_token_len {
        return Err(too_long(layer.max_token_len));
    }
    if !is_b64token(token) {
        return Err(AuthError::invalid_request(
            Rule::Bear1,
            "the Bearer token is empty or has characters outside the RFC 6750 b64token syntax",
        ));
    }
    let proof = match dpop {
        true => Some(one_proof(parts)?),
        false => None,
    };
    Ok(BearerToken {
        header: header.clone(),
        start,
        audience_checked: false,
        proof,
    })
}

/// Where the token starts in the `Authorization` header `bytes`, after the `Bearer`
/// scheme, or the `DPoP` scheme when the resource accepts DPoP (then `true`).
fn token_start(bytes: &[u8], layer: &BearerLayer) -> Result<(usize, bool), AuthError> {
    let accepts_dpop = !layer.resource.dpop_algorithms().is_empty();
    let dpop = accepts_dpop && bytes.len() > 5 && bytes[..5].eq_ignore_ascii_case(b"dpop ");
    let bearer = bytes.len() > 6 && bytes[..6].eq_ignore_ascii_case(b"bearer") && bytes[6] == b' ';
    if !bearer && !dpop {
        return Err(AuthError::invalid_request(
            Rule::Bear1,
            match accepts_dpop {
                false => {
                    "the Authorization header must use the Bearer scheme: 'Authorization: Bearer <token>'"
                }
                true => {
                    "the Authorization header must use the Bearer or the DPoP scheme: 'Authorization: DPoP <token>' with a DPoP proof header"
                }
            },
        ));
    }
    let scheme_len = if dpop { 4 } else { 6 };
    let spaces = bytes[scheme_len..]
        .iter()
        .take_while(|&&b| b == b' ')
        .count();
    Ok((scheme_len + spaces, dpop))
}

/// The one `DPoP` header of a request whose token uses the `DPoP` scheme (RFC 9449
/// §4.3: exactly one proof).
fn one_proof(parts: &Parts) -> Result<HeaderValue, AuthError> {
    let mut proofs = parts.headers.get_all("dpop").iter();
    match (proofs.next(), proofs.next()) {
        (Some(proof), None) if proof.to_str().is_ok() => Ok(proof.clone()),
        (Some(_), None) => Err(AuthError::invalid_dpop_proof(
            "the DPoP header has characters outside visible ASCII; a proof is a compact JWS",
        )),
        (None, _) => Err(AuthError::invalid_dpop_proof(
            "the token uses the DPoP scheme but the request has no DPoP proof header",
        )),
        (Some(_), Some(_)) => Err(AuthError::invalid_dpop_proof(
            "the request has more than one DPoP header; send exactly one proof",
        )),
    }
}

fn too_long(max: usize) -> AuthError {
    AuthError::invalid_request(
        Rule::Bear4,
        format!("the Bearer token is longer than this server's limit of {max} bytes"),
    )
}

/// RFC 6750 §2.1: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
///
/// Every request pays for this over the whole token, so the body is checked without
/// branches (the compiler turns the fold into vector compares).
fn is_b64token(token: &[u8]) -> bool {
    let padding = token.iter().rev().take_while(|&&b| b == b'=').count();
    let body = &token[..token.len() - padding];
    // Every character is checked, in fixed-size chunks with no early exit and no
    // branch: a loop the compiler turns into vector compares.
    let mut chunks = body.chunks_exact(64);
    let mut good = true;
    for chunk in &mut chunks {
        let mut in_chunk = true;
        for &b in chunk {
            in_chunk &= is_b64token_char(b);
        }
        good &= in_chunk;
    }
    for &b in chunks.remainder() {
        good &= is_b64token_char(b);
    }
    !body.is_empty() && good
}

/// A character of a b64token's body (not `=`): `A-Z a-z 0-9 - . _ ~ + /`.
#[inline(always)]
fn is_b64token_char(b: u8) -> bool {
    // `b | 0x20` folds ASCII upper case onto lower case; nothing else lands in a..z.
    let letter = (b | 0x20).wrapping_sub(b'a') < 26;
    // `+` is 0x2B; `,` 0x2C is not allowed; `-` `.` `/` and the digits are 0x2D to 0x39.
    let sign_or_digit = (b.wrapping_sub(b'+') <= b'9' - b'+') & (b != b',');
    letter | sign_or_digit | (b == b'_') | (b == b'~')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer() -> BearerLayer {
        BearerLayer::new(ProtectedResource::new("https://mcp.example.com/mcp"))
    }

    fn parts(headers: &[(&str, &str)], uri: &str) -> Parts {
        let mut builder = Request::builder().uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder
            .body(())
            .map(|r| r.into_parts().0)
            .unwrap_or_else(|_| Request::new(()).into_parts().0)
    }

    fn rule_of(result: Result<BearerToken, AuthError>) -> &'static str {
        match result {
            Ok(_) => "ok",
            Err(e) => e.rule().id(),
        }
    }

    #[test]
    fn b64token_characters_are_exactly_those_of_rfc_6750() {
        // R-BEAR-1, checked against the grammar for every byte value.
        for b in 0..=255u8 {
            let expected = b.is_ascii_alphanumeric() || b"-._~+/".contains(&b);
            assert_eq!(is_b64token_char(b), expected, "byte {b:#04x}");
            assert_eq!(is_b64token(&[b'a', b, b'z']), expected, "byte {b:#04x}");
        }
        assert!(is_b64token(b"abc=="));
        assert!(!is_b64token(b"=="));
        assert!(!is_b64token(b"ab=c"));
        assert!(!is_b64token(b""));
    }

    /// The grammar of R-BEAR-1, written out plainly: the reference for the property
    /// below. `Some(token)` when `value` is `Bearer`, one or more spaces, a b64token.
    fn reference(value: &[u8]) -> Option<&[u8]> {
        let scheme = value.get(..6)?;
        if !scheme.eq_ignore_ascii_case(b"bearer") || value.get(6) != Some(&b' ') {
            return None;
        }
        let token = value[6..].trim_ascii_start();
        let body_len = token.iter().take_while(|b| **b != b'=').count();
        let (body, padding) = token.split_at(body_len);
        let body_ok = !body.is_empty()
            && body
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(b));
        (body_ok && padding.iter().all(|b| *b == b'=')).then_some(token)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1024))]

        /// R-BEAR-1: the parser accepts exactly the grammar, never panics, and hands
        /// on the token unchanged.
        #[test]
        fn the_parser_accepts_exactly_the_rfc_6750_grammar(
            scheme in proptest::sample::select(vec!["Bearer", "bearer", "BEARER", "Basic", "Bearer2", "Bear", ""]),
            spaces in 0usize..3,
            token in "[A-Za-z0-9._~+/=\\-]{0,40}|[ -~]{0,20}",
        ) {
            let value = format!("{scheme}{}{token}", " ".repeat(spaces));
            let Ok(header) = http::HeaderValue::from_str(&value) else {
                return Ok(());
            };
            let mut request = Request::builder().uri("/mcp");
            request = request.header(AUTHORIZATION, header);
            let parts = request.body(()).map(|r| r.into_parts().0);
            let parts = parts.unwrap_or_else(|_| Request::new(()).into_parts().0);
            let parsed = extract(&parts, &layer());
            match reference(value.as_bytes()) {
                Some(expected) => {
                    let token = parsed.map(|t| t.as_str().as_bytes().to_vec());
                    proptest::prop_assert_eq!(token.ok(), Some(expected.to_vec()));
                }
                None => {
                    let rule = parsed.err().map(|e| (e.rule(), e.status()));
                    proptest::prop_assert_eq!(
                        rule.map(|(_, status)| status),
                        Some(http::StatusCode::BAD_REQUEST),
                        "{:?}", value
                    );
                }
            }
        }

        /// Arbitrary bytes in the header never panic the parser.
        #[test]
        fn arbitrary_header_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            if let Ok(header) = http::HeaderValue::from_bytes(&bytes) {
                let mut parts = Request::new(()).into_parts().0;
                parts.headers.insert(AUTHORIZATION, header);
                let _ = extract(&parts, &layer());
            }
        }
    }

    #[test]
    fn scheme_is_case_insensitive_and_spaces_are_allowed() {
        // R-BEAR-1
        for value in ["Bearer abc.DEF-_~+/==", "bearer abc", "BEARER   abc"] {
            let token = extract(&parts(&[("authorization", value)], "/mcp"), &layer());
            assert!(token.is_ok(), "{value}");
        }
        let token = extract(
            &parts(&[("authorization", "bEaReR   a.b.c")], "/mcp"),
            &layer(),
        );
        assert_eq!(
            token.map(|t| t.as_str().to_owned()).ok().as_deref(),
            Some("a.b.c")
        );
    }

    #[test]
    fn malformed_authorization_headers_are_invalid_requests() {
        // R-BEAR-1
        for value in [
            "Basic dXNlcjpwYXNz",
            "Bearer",
            "Bearer ",
            "Bearerabc",
            "Bearer a b",
            "Bearer a=b",
            "Bearer ab\"c",
        ] {
            let result = extract(&parts(&[("authorization", value)], "/mcp"), &layer());
            assert_eq!(
                result.as_ref().err().map(AuthError::kind),
                Some(crate::AuthErrorKind::InvalidRequest),
                "{value}"
            );
        }
    }

    #[test]
    fn query_and_form_tokens_and_duplicate_headers_are_refused() {
        // R-BEAR-2
        let p = parts(
            &[("authorization", "Bearer abc")],
            "/mcp?x=1&access_token=abc",
        );
        assert_eq!(rule_of(extract(&p, &layer())), Rule::Bear2.id());
        let p = parts(&[], "/mcp?access_token=abc");
        assert_eq!(rule_of(extract(&p, &layer())), Rule::Bear2.id());
        let p = parts(
            &[(
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            )],
            "/mcp",
        );
        assert_eq!(rule_of(extract(&p, &layer())), Rule::Bear2.id());
        let p = parts(
            &[("authorization", "Bearer a"), ("authorization", "Bearer b")],
            "/mcp",
        );
        assert_eq!(rule_of(extract(&p, &layer())), Rule::Bear2.id());
        let p = parts(
            &[("authorization", "Bearer abc")],
            "/mcp?not_access_token=1",
        );
        assert_eq!(rule_of(extract(&p, &layer())), "ok");
    }

    #[test]
    fn no_credentials_is_missing_token() {
        // R-BEAR-3
        let result = extract(&parts(&[], "/mcp"), &layer());
        assert_eq!(
            result.err().map(|e| e.kind()),
            Some(crate::AuthErrorKind::MissingToken)
        );
    }

    #[test]
    fn token_over_the_cap_is_refused() {
        // R-BEAR-4
        let layer = layer().max_token_len(10);
        let ok = format!("Bearer {}", "a".repeat(10));
        assert_eq!(
            rule_of(extract(&parts(&[("authorization", &ok)], "/"), &layer)),
            "ok"
        );
        let long = format!("Bearer {}", "a".repeat(11));
        assert_eq!(
            rule_of(extract(&parts(&[("authorization", &long)], "/"), &layer)),
            Rule::Bear4.id()
        );
        let huge = format!("Bearer {}", "a".repeat(100_000));
        assert_eq!(
            rule_of(extract(&parts(&[("authorization", &huge)], "/"), &layer)),
            Rule::Bear4.id()
        );
    }

    #[test]
    fn debug_output_redacts_the_token() {
        // R-OPS-1
        let token = extract(
            &parts(&[("authorization", "Bearer secret-token")], "/"),
            &layer(),
        );
        let shown = format!("{:?}", token.ok());
        assert!(!shown.contains("secret-token"), "{shown}");
    }
}

//! [`BindSessionsLayer`]: an MCP session belongs to the principal it was issued to
//! (R-GW-5, MCP 2025-11-25 Streamable HTTP `Mcp-Session-Id`).
//!
//! A server behind a gateway often trusts a session id alone: whoever sends it
//! continues the session, its subscriptions and its resumable streams. This layer
//! remembers, for each session id a server issued (or, for one it did not see
//! issued, the first principal that used it), which principal (issuer, subject,
//! client id) it belongs to, and answers any other principal's request carrying it
//! (`POST`, `GET` or `DELETE`) with `404`, as for an unknown session. Ids and
//! principals are kept as SHA-256 digests, bounded in number, forgotten after a
//! time unused.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body::Body;
use sha2::{Digest, Sha256};
use tower::Service;

use crate::body::ResponseBody;
use crate::challenge;
use crate::error::AuthError;
use crate::future::{Rejection, ResponseFuture};
use crate::principal::Principal;
use crate::resource::ProtectedResource;
use crate::rule::Rule;

/// The `Mcp-Session-Id` header, request and response.
pub const MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");

/// How long a session binding is kept after its last use, by default (1 h).
pub const DEFAULT_SESSION_IDLE: Duration = Duration::from_secs(3600);

/// How many session bindings are kept at most, by default.
pub const DEFAULT_SESSION_CAPACITY: u64 = 100_000;

/// The rule id of this layer's refusals.
const RULE: Rule = Rule::Gw5;

type Digest32 = [u8; 32];

/// The answer to a session that is not the caller's: what an MCP server answers for
/// an unknown session (the TypeScript SDK's code and words), so that it tells
/// nothing of whose it is.
const NOT_FOUND: &str =
    r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"Session not found"}}"#;

/// A layer that binds MCP sessions to principals; see the module docs. Put it behind
/// the verification layers (it reads the [`Principal`]).
#[derive(Clone)]
pub struct BindSessionsLayer {
    resource: ProtectedResource,
    sessions: Option<Arc<moka::sync::Cache<Digest32, Digest32>>>,
    refuse_unknown: bool,
}

impl std::fmt::Debug for BindSessionsLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BindSessionsLayer")
            .field("resource", &self.resource)
            .field("on", &self.sessions.is_some())
            .field("refuse_unknown", &self.refuse_unknown)
            .finish()
    }
}

impl BindSessionsLayer {
    /// Binds sessions, keeping at most [`DEFAULT_SESSION_CAPACITY`] bindings, each
    /// for [`DEFAULT_SESSION_IDLE`] after its last use.
    pub fn new(resource: ProtectedResource) -> Self {
        Self::with_bounds(resource, DEFAULT_SESSION_CAPACITY, DEFAULT_SESSION_IDLE)
    }

    /// Binds sessions, keeping at most `capacity` bindings, each for `idle` after its
    /// last use. A binding forgotten (evicted or idle too long) is bound again to
    /// the next principal that uses the session id.
    pub fn with_bounds(resource: ProtectedResource, capacity: u64, idle: Duration) -> Self {
        let sessions = moka::sync::Cache::builder()
            .max_capacity(capacity)
            .time_to_idle(idle)
            .build();
        Self {
            resource,
            sessions: Some(Arc::new(sessions)),
            refuse_unknown: false,
        }
    }

    /// With `true`, answers `404` to a session id this layer did not see issued (or has
    /// forgotten), instead of binding it to the first principal that uses it. Safer,
    /// and right for one replica: a leaked id can never be claimed first. Behind a
    /// load balancer without session affinity, each replica sees only the sessions
    /// it issued, and clients would be sent to start new ones. Default `false`.
    pub fn refuse_unknown(mut self, on: bool) -> Self {
        self.refuse_unknown = on;
        self
    }

    /// Binds nothing: every request goes through. For servers without sessions, or
    /// whose sessions check their principal themselves.
    pub fn off(resource: ProtectedResource) -> Self {
        Self {
            resource,
            sessions: None,
            refuse_unknown: false,
        }
    }

    /// How many bindings are kept now (after pending evictions).
    pub fn bindings(&self) -> u64 {
        self.sessions.as_ref().map_or(0, |s| {
            s.run_pending_tasks();
            s.entry_count()
        })
    }
}

crate::pipeline::layer_service!(BindSessionsLayer => BindSessionsService);

fn digest(parts: &[&[u8]]) -> Digest32 {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    hash.finalize().into()
}

/// Who a principal is, for sessions: its issuer, subject and client id.
fn whom(principal: &Principal) -> Digest32 {
    fn field(v: Option<&str>) -> &[u8] {
        v.map_or(b"\xff", str::as_bytes)
    }
    // The anonymous caller is nobody a verifier can name (issuer "" and no subject
    // included).
    let kind: &[u8] = if principal.is_anonymous() {
        b"anonymous"
    } else {
        b"token"
    };
    digest(&[
        kind,
        principal.issuer().as_bytes(),
        field(principal.subject()),
        field(principal.client_id()),
    ])
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for BindSessionsService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ReqBody: Body,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let Some(sessions) = &self.layer.sessions else {
            return ResponseFuture::inner(self.inner.call(req));
        };
        let (parts, body) = req.into_parts();
        let Some(principal) = parts.extensions.get::<Principal>() else {
            let error = AuthError::misconfigured(
                "BindSessionsLayer found no Principal: put it behind the verification layers",
            );
            let response = challenge::reject(error, &self.layer.resource, &parts);
            return ResponseFuture::rejected(Rejection::new(response, body));
        };
        let mut ids = parts.headers.get_all(MCP_SESSION_ID).iter();
        match (ids.next(), ids.next()) {
            (None, _) => {
                // Perhaps an initialize: the id the server issues is bound to this
                // principal (digested only if one is issued: most answers have none).
                let binding = SessionBinding {
                    sessions: sessions.clone(),
                    principal: principal.clone(),
                };
                ResponseFuture::inner(self.inner.call(Request::from_parts(parts, body)))
                    .binding(Some(binding))
            }
            (Some(id), None) => match self.layer.check(sessions, principal, id) {
                Ok(()) => ResponseFuture::inner(self.inner.call(Request::from_parts(parts, body))),
                Err(Refused::NotFound) => {
                    ResponseFuture::rejected(Rejection::new(not_found(), body))
                }
                Err(Refused::Error(error)) => {
                    let response = challenge::reject(error, &self.layer.resource, &parts);
                    ResponseFuture::rejected(Rejection::new(response, body))
                }
            },
            (Some(_), Some(_)) => {
                let error = AuthError::invalid_request(
                    RULE,
                    "the Mcp-Session-Id header is sent more than once",
                );
                let response = challenge::reject(error, &self.layer.resource, &parts);
                ResponseFuture::rejected(Rejection::new(response, body))
            }
        }
    }
}

/// Why a request's session id is refused.
enum Refused {
    /// Not the caller's session: `404`, as for a session that does not exist.
    NotFound,
    /// A malformed id, or a token holder's session used without a token.
    Error(AuthError),
}

impl BindSessionsLayer {
    /// Whether `principal` may use the session `id`, binding it to them on first use.
    fn check(
        &self,
        sessions: &moka::sync::Cache<Digest32, Digest32>,
        principal: &Principal,
        id: &HeaderValue,
    ) -> Result<(), Refused> {
        // MCP: a session id is visible ASCII. Anything else may be read differently
        // here and there (HTTP/2 keeps surrounding whitespace that HTTP/1 servers
        // trim), so it is refused.
        let visible = !id.is_empty() && id.as_bytes().iter().all(|b| (0x21..=0x7E).contains(b));
        if !visible {
            return Err(Refused::Error(AuthError::invalid_request(
                RULE,
                "the Mcp-Session-Id header must be visible ASCII (0x21 to 0x7E)",
            )));
        }
        let key = digest(&[id.as_bytes()]);
        let who = whom(principal);
        if principal.is_anonymous() {
            // A caller without a token claims nothing: a session it did not open goes
            // on unbound (the server knows its own), and one of a token's holder asks
            // for that token (401).
            return match sessions.get(&key) {
                Some(owner) if owner != who => Err(Refused::Error(AuthError::missing_token())),
                None if self.refuse_unknown => {
                    tracing::info!(
                        rule = RULE.id(),
                        "a session id this server was not seen issuing was refused"
                    );
                    Err(Refused::NotFound)
                }
                _ => Ok(()),
            };
        }
        let owner = match self.refuse_unknown {
            true => sessions.get(&key),
            false => Some(sessions.get_with(key, || who)),
        };
        if owner != Some(who) {
            let whose = match owner {
                Some(_) => "a session id of another principal was refused",
                None => "a session id this server was not seen issuing was refused",
            };
            tracing::info!(rule = RULE.id(), "{whose}");
            return Err(Refused::NotFound);
        }
        Ok(())
    }
}

/// The `404` of a refused session id: a refusal like any other on the request's span
/// (`decision = "reject"`, `rule = "R-GW-5"`), not an allowed request.
fn not_found<B>() -> Response<ResponseBody<B>> {
    let span = tracing::Span::current();
    span.record("decision", "reject");
    span.record("rule", RULE.id());
    let mut response = Response::new(ResponseBody::full(Bytes::from_static(NOT_FOUND.as_bytes())));
    crate::audit::decided();
    response.extensions_mut().insert(challenge::Refused {
        rule: RULE,
        kind: "not_found",
    });
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Where a session id an answer issues is bound, and to whom: carried by the
/// response future of a request that may be an `initialize`.
pub(crate) struct SessionBinding {
    sessions: Arc<moka::sync::Cache<Digest32, Digest32>>,
    principal: Principal,
}

impl SessionBinding {
    /// Binds the session id in `headers`, if the answer issued one.
    pub(crate) fn record(self, headers: &http::HeaderMap) {
        let Some(id) = headers.get(MCP_SESSION_ID) else {
            return;
        };
        // The server's word on whose session it is wins over a first use.
        let (key, who) = (digest(&[id.as_bytes()]), whom(&self.principal));
        if self.sessions.get(&key).is_some_and(|owner| owner != who) {
            tracing::warn!(
                rule = RULE.id(),
                "a session id the server issued was bound to another principal; \
                 bound to the one it was issued to"
            );
        }
        self.sessions.insert(key, who);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::principal::TokenKind;

    fn principal(sub: &str, client: &str) -> Principal {
        let claims = serde_json::json!({"sub": sub, "client_id": client});
        let claims = claims.as_object().cloned().unwrap_or_default();
        Principal::from_claims(TokenKind::Jwt, "https://idp", claims)
    }

    #[test]
    fn a_principal_is_its_issuer_subject_and_client() {
        assert_eq!(whom(&principal("a", "c")), whom(&principal("a", "c")));
        assert_ne!(whom(&principal("a", "c")), whom(&principal("b", "c")));
        assert_ne!(whom(&principal("a", "c")), whom(&principal("a", "d")));
        // Fields cannot run into each other.
        assert_ne!(whom(&principal("ab", "c")), whom(&principal("a", "bc")));
    }
}

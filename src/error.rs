//! [`AuthError`]: why a request was refused, as data.
//!
//! Every layer reports a refusal as an `AuthError`; none of them formats a header or a
//! body. Rendering is done in one place, [`crate::challenge`]. Descriptions are fixed
//! strings or built from values that are safe to show (never the token, a key, or the
//! text of an internal error), because they are sent to the client.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use http::StatusCode;

use crate::rule::Rule;

/// What kind of refusal an [`AuthError`] is. Decides the status code and the RFC 6750
/// error code of the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthErrorKind {
    /// No credentials at all: `401` with a challenge that has **no** `error` parameter
    /// (RFC 6750 §3.1, R-BEAR-3).
    MissingToken,
    /// A malformed request: `400 invalid_request` (R-BEAR-1, R-BEAR-2).
    InvalidRequest,
    /// A bad, expired or foreign token: `401 invalid_token` (R-ERR-1).
    InvalidToken,
    /// The token is good but lacks scopes this operation needs:
    /// `403 insufficient_scope` with a `scope` parameter (R-AZ-1).
    InsufficientScope,
    /// An authorization policy denied the request: `403` whose challenge has no
    /// `error` code (so clients do not start a step-up that cannot help) and whose
    /// body says `access_denied`.
    Forbidden,
    /// Verification cannot be done right now (identity provider unreachable):
    /// `503` with `Retry-After` (R-KEY-5).
    Unavailable,
    /// The stack is composed wrongly (a layer is missing): `500`, logged loudly.
    Misconfigured,
    /// An MCP request header (`Mcp-Method`, `Mcp-Name`, `Mcp-Param-*`,
    /// `MCP-Protocol-Version`) is missing or disagrees with the body (MCP 2026-07-28,
    /// SEP-2243; R-MCP-6): `400` with the JSON-RPC `HeaderMismatch` error (`-32020`),
    /// no challenge.
    HeaderMismatch,
    /// The DPoP proof sent with a DPoP-bound token is invalid for this request
    /// (RFC 9449 §7.1, R-DPOP-1): `401` with a `DPoP` challenge whose `error` is
    /// `invalid_dpop_proof`.
    InvalidDpopProof,
    /// The DPoP proof lacks the server's current nonce (RFC 9449 §9): `401` with a
    /// `DPoP` challenge whose `error` is `use_dpop_nonce` and a `DPoP-Nonce` header
    /// to retry with.
    UseDpopNonce,
}

/// A refused request: what failed, which rule refused it, and a description that is
/// safe to send to the client.
#[derive(Debug, Clone)]
pub struct AuthError {
    kind: AuthErrorKind,
    rule: Rule,
    description: Cow<'static, str>,
    scopes: Vec<String>,
    retry_after: Option<Duration>,
    /// The JSON-RPC `id` of the refused request, for a refusal sent as a JSON-RPC
    /// error.
    id: Option<Box<serde_json::Value>>,
    /// Whether the error goes on the `DPoP` challenge rather than the `Bearer` one
    /// (RFC 9449 §7.2: the mechanism the refusal is about).
    dpop: bool,
    /// A `DPoP-Nonce` for the client to put in its next proof (RFC 9449 §9).
    dpop_nonce: Option<Box<str>>,
}

impl AuthError {
    fn new(kind: AuthErrorKind, rule: Rule, description: Cow<'static, str>) -> Self {
        Self {
            kind,
            rule,
            description,
            scopes: Vec::new(),
            retry_after: None,
            id: None,
            dpop: false,
            dpop_nonce: None,
        }
    }

    /// No credentials were sent (R-BEAR-3).
    pub fn missing_token() -> Self {
        Self::new(
            AuthErrorKind::MissingToken,
            Rule::Bear3,
            Cow::Borrowed("this resource requires a Bearer access token"),
        )
    }

    /// A malformed request (`400 invalid_request`). `rule` is the rule that refused
    /// it, e.g. [`Rule::Bear1`].
    pub fn invalid_request(rule: Rule, description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(AuthErrorKind::InvalidRequest, rule, description.into())
    }

    /// A token that is not acceptable (`401 invalid_token`).
    pub fn invalid_token(rule: Rule, description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(AuthErrorKind::InvalidToken, rule, description.into())
    }

    /// The token lacks `scopes` (`403 insufficient_scope`, `scope="…"`).
    pub fn insufficient_scope<I, T>(scopes: I, description: impl Into<Cow<'static, str>>) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        let mut error = Self::new(
            AuthErrorKind::InsufficientScope,
            Rule::Az1,
            description.into(),
        );
        error.scopes = scopes.into_iter().map(Into::into).collect();
        error
    }

    /// A policy denied the request (`403`).
    pub fn forbidden(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(AuthErrorKind::Forbidden, Rule::Az1, description.into())
    }

    /// Verification cannot be done now; the client should retry after `retry_after`
    /// (`503`, R-KEY-5).
    pub fn unavailable(retry_after: Duration, description: impl Into<Cow<'static, str>>) -> Self {
        let mut error = Self::new(AuthErrorKind::Unavailable, Rule::Key5, description.into());
        error.retry_after = Some(retry_after);
        error
    }

    /// The stack is composed wrongly (`500`). The description is logged, not sent.
    pub fn misconfigured(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(AuthErrorKind::Misconfigured, Rule::Ops2, description.into())
    }

    /// A request whose MCP headers are missing or disagree with its body (`400`,
    /// JSON-RPC error `-32020` `HeaderMismatch`, R-MCP-6); `id` is the request's
    /// JSON-RPC id, echoed in the error.
    pub fn header_mismatch(
        id: Option<serde_json::Value>,
        description: impl Into<Cow<'static, str>>,
    ) -> Self {
        let mut error = Self::new(
            AuthErrorKind::HeaderMismatch,
            Rule::Mcp6,
            description.into(),
        );
        error.id = id.map(Box::new);
        error
    }

    /// The DPoP proof is invalid for this request (`401`, `DPoP
    /// error="invalid_dpop_proof"`, R-DPOP-1); the description says which check.
    pub fn invalid_dpop_proof(description: impl Into<Cow<'static, str>>) -> Self {
        let mut error = Self::new(
            AuthErrorKind::InvalidDpopProof,
            Rule::Dpop1,
            description.into(),
        );
        error.dpop = true;
        error
    }

    /// The DPoP proof must carry the server's nonce (`401`, `DPoP
    /// error="use_dpop_nonce"`), `nonce` sent as `DPoP-Nonce` (RFC 9449 §9).
    pub fn use_dpop_nonce(
        nonce: impl Into<String>,
        description: impl Into<Cow<'static, str>>,
    ) -> Self {
        let mut error = Self::new(AuthErrorKind::UseDpopNonce, Rule::Dpop1, description.into());
        error.dpop = true;
        error.dpop_nonce = Some(nonce.into().into_boxed_str());
        error
    }

    /// This error, sent on the `DPoP` challenge: the refusal is about a DPoP-bound
    /// token or its proof (RFC 9449 §7.2), e.g. an `invalid_token` for a DPoP-bound
    /// token sent as a bearer token.
    pub fn on_dpop_challenge(mut self) -> Self {
        self.dpop = true;
        self
    }

    /// Whether the error goes on the `DPoP` challenge.
    pub fn is_about_dpop(&self) -> bool {
        self.dpop
    }

    /// This error with a `DPoP-Nonce` for the client's next proof.
    pub fn with_dpop_nonce(mut self, nonce: impl Into<String>) -> Self {
        self.dpop_nonce = Some(nonce.into().into_boxed_str());
        self
    }

    /// The `DPoP-Nonce` sent with this error, if any.
    pub fn dpop_nonce(&self) -> Option<&str> {
        self.dpop_nonce.as_deref()
    }

    /// The JSON-RPC `id` of the refused request, for a `HeaderMismatch`.
    pub fn jsonrpc_id(&self) -> Option<&serde_json::Value> {
        self.id.as_deref()
    }

    /// What kind of refusal this is.
    pub fn kind(&self) -> AuthErrorKind {
        self.kind
    }

    /// The rule that refused the request (for logs and spans: [`Rule::id`]).
    pub fn rule(&self) -> Rule {
        self.rule
    }

    /// The description sent as `error_description` (safe to show).
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The scopes an `insufficient_scope` error asks for.
    pub fn required_scopes(&self) -> &[String] {
        &self.scopes
    }

    /// How long the client should wait before retrying, for `Unavailable`.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The HTTP status this error is rendered with.
    pub fn status(&self) -> StatusCode {
        match self.kind {
            AuthErrorKind::MissingToken
            | AuthErrorKind::InvalidToken
            | AuthErrorKind::InvalidDpopProof
            | AuthErrorKind::UseDpopNonce => StatusCode::UNAUTHORIZED,
            AuthErrorKind::InvalidRequest | AuthErrorKind::HeaderMismatch => {
                StatusCode::BAD_REQUEST
            }
            AuthErrorKind::InsufficientScope | AuthErrorKind::Forbidden => StatusCode::FORBIDDEN,
            AuthErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            AuthErrorKind::Misconfigured => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The RFC 6750 `error` code, or `None` where the RFC says to send none.
    pub fn error_code(&self) -> Option<&'static str> {
        match self.kind {
            AuthErrorKind::MissingToken => None,
            AuthErrorKind::InvalidRequest => Some("invalid_request"),
            // A JSON-RPC error, not an OAuth one.
            AuthErrorKind::HeaderMismatch => None,
            AuthErrorKind::InvalidToken => Some("invalid_token"),
            AuthErrorKind::InvalidDpopProof => Some("invalid_dpop_proof"),
            AuthErrorKind::UseDpopNonce => Some("use_dpop_nonce"),
            AuthErrorKind::InsufficientScope => Some("insufficient_scope"),
            AuthErrorKind::Forbidden => Some("access_denied"),
            AuthErrorKind::Unavailable => Some("temporarily_unavailable"),
            AuthErrorKind::Misconfigured => Some("server_error"),
        }
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.error_code() {
            Some(code) => write!(f, "{code}: {} ({})", self.description, self.rule),
            None => write!(f, "{} ({})", self.description, self.rule),
        }
    }
}

impl std::error::Error for AuthError {}

/// Configuration that is insecure or contradictory, found when the stack is built
/// (R-OPS-2). The message says what is wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    message: String,
}

impl ConfigError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// The message: what is wrong and how to fix it.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mcp-gatekeeper configuration: {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

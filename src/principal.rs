//! [`Principal`]: who is calling, as the inner service sees it (R-ID-1).
//!
//! One shape whatever verified the token: subject, issuer, audiences, client id,
//! scopes, expiry, token kind and every raw claim. It is put into the request's
//! extensions by the verify layer and is cheap to clone (an `Arc`).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use crate::sender::Binding;

/// How the token behind a [`Principal`] was verified.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenKind {
    /// A JWT whose signature was checked with a key of a trusted issuer.
    Jwt,
    /// An opaque token checked by RFC 7662 introspection.
    Introspected,
    /// A token checked by the Kubernetes TokenReview API.
    TokenReview,
    /// A token checked by a user-supplied verifier, named by it.
    Other(Arc<str>),
    /// No token at all: the caller of a public operation
    /// ([`McpScopes::public`](crate::McpScopes::public)). It has no issuer, subject,
    /// audience or scope.
    Anonymous,
}

/// Adds to `into` each of `more` it does not hold yet, in order: the one way this
/// crate merges lists of scopes (challenges, `scopes_supported`).
pub(crate) fn add_scopes<'a>(into: &mut Vec<String>, more: impl IntoIterator<Item = &'a String>) {
    for scope in more {
        if !into.contains(scope) {
            into.push(scope.clone());
        }
    }
}

/// The scopes granted to a token, from `scope` (space-separated string) or `scp`
/// (array or string).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes(Vec<String>);

impl Scopes {
    /// Scopes from a claims object: `scope` first, else `scp`.
    pub fn from_claims(claims: &Map<String, Value>) -> Self {
        let value = claims.get("scope").or_else(|| claims.get("scp"));
        let scopes = match value {
            Some(Value::String(s)) => s.split_ascii_whitespace().map(str::to_owned).collect(),
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .flat_map(str::split_ascii_whitespace)
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        };
        Self(scopes)
    }

    /// Whether `scope` was granted.
    pub fn contains(&self, scope: &str) -> bool {
        self.0.iter().any(|s| s == scope)
    }

    /// The granted scopes, in the token's order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// Whether no scope was granted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

struct Inner {
    subject: Option<String>,
    issuer: String,
    audiences: Vec<String>,
    client_id: Option<String>,
    scopes: Scopes,
    expires_at: Option<u64>,
    kind: TokenKind,
    claims: Map<String, Value>,
    enrichment: Option<Map<String, Value>>,
    /// Set only for the caller of a request that sent no token: a verifier cannot
    /// make one (a `TokenKind::Anonymous` of its own is a label, nothing more).
    anonymous: bool,
    /// Which key bindings (`cnf`) the token's issuer may use, as the verifier that made
    /// this principal was told ([`Issuer::dpop`](crate::Issuer::dpop)); none for a
    /// verifier of this crate's users, whose bound tokens are refused.
    binding: Binding,
    /// This principal as Cedar policies see it, made on first use and shared by the
    /// requests of a cached token.
    #[cfg(feature = "cedar")]
    cedar: crate::cedar::PrincipalCache,
}

/// The verified caller. Read it in a handler with
/// `req.extensions().get::<Principal>()`, or as an axum extractor (feature `axum`).
#[derive(Clone)]
pub struct Principal(Arc<Inner>);

impl Principal {
    /// Builds a principal from verified claims. `issuer` is the trusted issuer the
    /// token was verified against (not read from the claims, which a verifier of an
    /// opaque token may not have).
    pub fn from_claims(
        kind: TokenKind,
        issuer: impl Into<String>,
        claims: Map<String, Value>,
    ) -> Self {
        let string = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
        let audiences = match claims.get("aud") {
            Some(Value::String(a)) => vec![a.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        };
        let client_id = string("client_id")
            .or_else(|| string("azp"))
            .or_else(|| string("cid"));
        Self(Arc::new(Inner {
            subject: string("sub"),
            issuer: issuer.into(),
            audiences,
            client_id,
            scopes: Scopes::from_claims(&claims),
            expires_at: claims.get("exp").and_then(Value::as_u64),
            kind,
            claims,
            enrichment: None,
            anonymous: false,
            binding: Binding::default(),
            #[cfg(feature = "cedar")]
            cedar: crate::cedar::PrincipalCache::default(),
        }))
    }

    /// This principal, made just now, with the key bindings its issuer may use.
    pub(crate) fn with_binding(mut self, binding: Binding) -> Self {
        match Arc::get_mut(&mut self.0) {
            Some(inner) => inner.binding = binding,
            None => {
                let mut inner = self.copy();
                inner.binding = binding;
                self = Self(Arc::new(inner));
            }
        }
        self
    }

    /// The key bindings the token's issuer may use.
    pub(crate) fn binding(&self) -> Binding {
        self.0.binding
    }

    /// The caller of a request that sent no token, let on for public operations.
    pub(crate) fn anonymous() -> Self {
        let mut principal = Self::from_claims(TokenKind::Anonymous, "", Map::new());
        if let Some(inner) = Arc::get_mut(&mut principal.0) {
            inner.anonymous = true;
        }
        principal
    }

    /// Whether the request sent no token (the verify layer made this principal, of
    /// kind [`TokenKind::Anonymous`], for a request without credentials): such a caller
    /// reaches only public operations.
    pub fn is_anonymous(&self) -> bool {
        self.0.anonymous
    }

    /// A copy of this principal with `extra` claims from an enrichment step. They
    /// are kept apart from the verified claims, which they can never override.
    pub fn with_enrichment(&self, extra: Map<String, Value>) -> Self {
        let mut inner = self.copy();
        inner.enrichment = Some(extra);
        Self(Arc::new(inner))
    }

    /// A copy of what this principal holds.
    fn copy(&self) -> Inner {
        Inner {
            subject: self.0.subject.clone(),
            issuer: self.0.issuer.clone(),
            audiences: self.0.audiences.clone(),
            client_id: self.0.client_id.clone(),
            scopes: self.0.scopes.clone(),
            expires_at: self.0.expires_at,
            kind: self.0.kind.clone(),
            claims: self.0.claims.clone(),
            enrichment: self.0.enrichment.clone(),
            anonymous: self.0.anonymous,
            binding: self.0.binding,
            #[cfg(feature = "cedar")]
            cedar: crate::cedar::PrincipalCache::default(),
        }
    }

    /// Where the Cedar policies keep this principal as they see it.
    #[cfg(feature = "cedar")]
    pub(crate) fn cedar_cache(&self) -> &crate::cedar::PrincipalCache {
        &self.0.cedar
    }

    /// Claims added by an enrichment step, when one ran and succeeded (R-AZ-2).
    pub fn enrichment(&self) -> Option<&Map<String, Value>> {
        self.0.enrichment.as_ref()
    }

    /// The `sub` claim.
    pub fn subject(&self) -> Option<&str> {
        self.0.subject.as_deref()
    }

    /// The trusted issuer that vouched for the token.
    pub fn issuer(&self) -> &str {
        &self.0.issuer
    }

    /// The `aud` values (empty when the token has none).
    pub fn audiences(&self) -> &[String] {
        &self.0.audiences
    }

    /// The OAuth client: `client_id`, else `azp`, else `cid`.
    pub fn client_id(&self) -> Option<&str> {
        self.0.client_id.as_deref()
    }

    /// The granted scopes.
    pub fn scopes(&self) -> &Scopes {
        &self.0.scopes
    }

    /// When the token expires (`exp`).
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.0
            .expires_at
            .and_then(|secs| UNIX_EPOCH.checked_add(Duration::from_secs(secs)))
    }

    /// How the token was verified.
    pub fn kind(&self) -> &TokenKind {
        &self.0.kind
    }

    /// Every claim of the token, as verified.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.0.claims
    }

    /// One claim by name.
    pub fn claim(&self, name: &str) -> Option<&Value> {
        self.0.claims.get(name)
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Principal")
            .field("subject", &self.0.subject)
            .field("issuer", &self.0.issuer)
            .field("audiences", &self.0.audiences)
            .field("client_id", &self.0.client_id)
            .field("scopes", &self.0.scopes)
            .field("expires_at", &self.0.expires_at)
            .field("kind", &self.0.kind)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "axum")]
mod extract {
    use axum_core::extract::FromRequestParts;
    use axum_core::response::{IntoResponse, Response};
    use http::request::Parts;

    use super::Principal;
    use crate::error::AuthError;

    /// Rejection of the [`Principal`] extractor: the verify layer did not run for this
    /// route (a composition mistake), answered with a plain `500`.
    #[derive(Debug)]
    pub struct MissingPrincipal;

    impl IntoResponse for MissingPrincipal {
        fn into_response(self) -> Response {
            let error = AuthError::misconfigured(
                "the Principal extractor is used on a route without VerifyLayer in front of it",
            );
            tracing::error!(rule = error.rule().id(), "{}", error.description());
            (
                error.status(),
                "authentication is misconfigured on this server",
            )
                .into_response()
        }
    }

    impl<S: Send + Sync> FromRequestParts<S> for Principal {
        type Rejection = MissingPrincipal;

        async fn from_request_parts(
            parts: &mut Parts,
            _state: &S,
        ) -> Result<Self, Self::Rejection> {
            parts
                .extensions
                .get::<Principal>()
                .cloned()
                .ok_or(MissingPrincipal)
        }
    }
}

#[cfg(feature = "axum")]
pub use extract::MissingPrincipal;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_verify_layer_makes_an_anonymous_principal() {
        // A verifier may label a principal TokenKind::Anonymous; it is still a
        // principal with a token (audience checked, no public-only limits apply).
        let labelled = Principal::from_claims(TokenKind::Anonymous, "", Map::new());
        assert!(!labelled.is_anonymous());
        assert!(Principal::anonymous().is_anonymous());
        let enriched = Principal::anonymous().with_enrichment(Map::new());
        assert!(enriched.is_anonymous());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1024))]

        /// R-ID-1: `scope` split on any run of ASCII whitespace, `scp` as an array or
        /// a string, give the same scopes, in order; any other JSON gives none and
        /// never panics.
        #[test]
        fn scopes_parse_the_same_from_every_form(
            scopes in proptest::collection::vec("[!#-\\[\\]-~]{1,12}", 0..6),
            gaps in proptest::collection::vec("[ \t\n\r\x0c]{1,3}", 6),
            lead in "[ \t]{0,2}",
        ) {
            let mut joined = lead;
            for (scope, gap) in scopes.iter().zip(&gaps) {
                joined.push_str(scope);
                joined.push_str(gap);
            }
            let from = |claims: serde_json::Value| match claims {
                Value::Object(map) => Scopes::from_claims(&map),
                _ => Scopes::default(),
            };
            let by_scope = from(serde_json::json!({"scope": joined}));
            let by_scp_array = from(serde_json::json!({"scp": scopes}));
            let by_scp_string = from(serde_json::json!({"scp": scopes.join(" ")}));
            proptest::prop_assert_eq!(by_scope.iter().collect::<Vec<_>>(), scopes.iter().map(String::as_str).collect::<Vec<_>>());
            proptest::prop_assert_eq!(&by_scope, &by_scp_array);
            proptest::prop_assert_eq!(&by_scope, &by_scp_string);
            for scope in &scopes {
                proptest::prop_assert!(by_scope.contains(scope));
            }
        }

        #[test]
        fn scope_claims_of_other_types_give_no_scopes(value in proptest::prelude::any::<i64>(), text in ".{0,20}") {
            for odd in [serde_json::json!(value), serde_json::json!({"a": text}), serde_json::json!(null), serde_json::json!(true)] {
                let mut claims = Map::new();
                claims.insert("scope".into(), odd);
                proptest::prop_assert!(Scopes::from_claims(&claims).is_empty());
            }
        }
    }
    use serde_json::json;

    fn claims(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    #[test]
    fn principal_reads_scope_string_and_client_id_precedence() {
        // R-ID-1
        let p = Principal::from_claims(
            TokenKind::Jwt,
            "https://idp",
            claims(
                json!({"sub": "u", "scope": "a b", "azp": "az", "cid": "c", "aud": "x", "exp": 10, "custom": 1}),
            ),
        );
        assert_eq!(p.subject(), Some("u"));
        assert_eq!(p.client_id(), Some("az"));
        assert!(p.scopes().contains("a") && p.scopes().contains("b"));
        assert_eq!(p.audiences(), ["x".to_owned()]);
        assert_eq!(p.expires_at(), Some(UNIX_EPOCH + Duration::from_secs(10)));
        assert_eq!(p.claim("custom"), Some(&json!(1)));
    }

    #[test]
    fn principal_reads_scp_array_and_aud_array() {
        // R-ID-1
        let p = Principal::from_claims(
            TokenKind::Jwt,
            "https://idp",
            claims(json!({"scp": ["r", "w"], "client_id": "ci", "azp": "az", "aud": ["a", "b"]})),
        );
        assert_eq!(p.scopes().iter().collect::<Vec<_>>(), ["r", "w"]);
        assert_eq!(p.client_id(), Some("ci"));
        assert_eq!(p.audiences().len(), 2);
        let p = Principal::from_claims(
            TokenKind::Jwt,
            "i",
            claims(json!({"scp": "r w", "cid": "okta"})),
        );
        assert_eq!(p.scopes().iter().collect::<Vec<_>>(), ["r", "w"]);
        assert_eq!(p.client_id(), Some("okta"));
    }
}

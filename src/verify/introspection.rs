//! [`IntrospectionVerifier`]: opaque access tokens checked at the issuer's RFC 7662
//! introspection endpoint (R-OPQ-1).
//!
//! The endpoint comes from configuration or, lazily, from the issuer's discovery
//! document. The call is authenticated (`client_secret_basic` or
//! `client_secret_post`). Active results are cached by the SHA-256 of the token, never
//! beyond the token's `exp` nor a configured maximum; concurrent requests with the
//! same token share one call. Every field of the answer is kept in the principal.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

use super::cache::{ResultCache, Verified, ttl_until};
use super::{CacheFuture, TokenCacheOptions, TokenCacheUsage, TokenVerifier, VerifyFuture};
use crate::bearer::BearerToken;
use crate::error::{AuthError, ConfigError};
use crate::fetch::{FetchError, FetchOptions, Fetcher};
use crate::keys::Discovery;
use crate::principal::{Principal, TokenKind};
use crate::uri;

/// How the resource server authenticates to the introspection endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// HTTP Basic with the form-encoded client id and secret (RFC 6749 §2.3.1).
    #[default]
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
}

/// Settings of RFC 7662 introspection for one issuer.
///
/// ```
/// use mcp_gatekeeper::{ClientAuth, Introspection, Issuer};
///
/// let issuer = Issuer::new("https://accounts.example.com")
///     .introspection(Introspection::new("resource-server", "secret").auth(ClientAuth::ClientSecretPost));
/// ```
#[derive(Clone)]
pub struct Introspection {
    endpoint: Option<String>,
    client_id: String,
    client_secret: String,
    auth: ClientAuth,
    cache: TokenCacheOptions,
    retry_after: Duration,
    fetch: FetchOptions,
}

impl Introspection {
    /// Introspection with these client credentials; the endpoint comes from the
    /// issuer's discovery document unless [`Introspection::endpoint`] sets it.
    pub fn new(client_id: impl Into<String>, client_secret: impl Into<String>) -> Self {
        Self {
            endpoint: None,
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            auth: ClientAuth::default(),
            cache: TokenCacheOptions::default(),
            retry_after: Duration::from_secs(2),
            fetch: FetchOptions::default(),
        }
    }

    /// The introspection endpoint URL.
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// The client authentication method. Default `client_secret_basic`.
    pub fn auth(mut self, auth: ClientAuth) -> Self {
        self.auth = auth;
        self
    }

    /// The longest an active result is reused (never beyond the token's `exp`).
    /// A revoked token is accepted for at most this long. Default 5 min; zero
    /// turns the cache off. Same as setting [`TokenCacheOptions::max_ttl`].
    pub fn max_cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache.max_ttl = ttl;
        self
    }

    /// The most cached results. Default 10,000. Same as setting
    /// [`TokenCacheOptions::max_entries`].
    pub fn cache_capacity(mut self, entries: u64) -> Self {
        self.cache.max_entries = entries;
        self
    }

    /// The bounds of the result cache (entries, bytes, time-to-live);
    /// [`TokenCacheOptions::disabled`] introspects every request.
    pub fn cache(mut self, options: TokenCacheOptions) -> Self {
        self.cache = options;
        self
    }

    /// Timeouts and size cap of the introspection call.
    pub fn fetch_options(mut self, options: FetchOptions) -> Self {
        self.fetch = options;
        self
    }

    pub(crate) fn has_endpoint(&self) -> bool {
        self.endpoint.is_some()
    }

    fn validate(&self, issuer: &str, insecure_http: bool) -> Result<(), ConfigError> {
        if let Some(endpoint) = &self.endpoint {
            uri::check_url_with(endpoint, "introspection endpoint", insecure_http)?;
        }
        if self.client_id.is_empty() || self.client_secret.is_empty() {
            return Err(ConfigError::new(format!(
                "issuer {issuer:?}: introspection needs a client id and secret; the endpoint \
                 must not be called unauthenticated"
            )));
        }
        Ok(())
    }
}

impl std::fmt::Debug for Introspection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Introspection")
            .field("endpoint", &self.endpoint)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

struct Inner {
    issuer: String,
    config: Introspection,
    fetcher: Fetcher,
    discovery: Option<Discovery>,
    cache: ResultCache,
}

/// Reads an RFC 7662 answer from `issuer`'s endpoint: the claims of an active access
/// token of that issuer, and how long they may be reused (at most `max_ttl`). An
/// answer that is not a JSON object is an `Unavailable` error (the caller says which
/// endpoint); an inactive token, another issuer's, a refresh, ID or key-bound token,
/// or an expired one, is `InvalidToken`.
pub(crate) fn parse_answer(
    body: &[u8],
    issuer: &str,
    max_ttl: Duration,
) -> Result<Verified, AuthError> {
    let claims: Map<String, Value> = serde_json::from_slice(body).map_err(|_| {
        AuthError::unavailable(
            Duration::ZERO,
            "the identity provider's introspection endpoint answered nonsense",
        )
    })?;
    if claims.get("active") != Some(&Value::Bool(true)) {
        return Err(AuthError::invalid_token(
            "R-OPQ-1",
            "the token is not active (expired, revoked, or unknown to its issuer)",
        ));
    }
    super::refuse_non_bearer_access_tokens(&claims)?;
    if claims
        .get("iss")
        .is_some_and(|iss| iss.as_str() != Some(issuer))
    {
        return Err(AuthError::invalid_token(
            "R-OPQ-1",
            "the introspection answer names another issuer",
        ));
    }
    let ttl = ttl_until(claims.get("exp"), max_ttl)?;
    Ok(Verified { claims, ttl })
}

/// Verifies opaque tokens by RFC 7662 introspection at one issuer. Cheap to clone.
#[derive(Clone)]
pub struct IntrospectionVerifier(Arc<Inner>);

impl std::fmt::Debug for IntrospectionVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntrospectionVerifier")
            .field("issuer", &self.0.issuer)
            .field("config", &self.0.config)
            .finish()
    }
}

impl IntrospectionVerifier {
    /// A verifier for `issuer` with an explicit endpoint (no discovery).
    pub fn new(issuer: impl Into<String>, config: Introspection) -> Result<Self, ConfigError> {
        let issuer = issuer.into();
        if config.endpoint.is_none() {
            return Err(ConfigError::new(format!(
                "issuer {issuer:?}: a standalone introspection verifier needs \
                 Introspection::endpoint (discovery is available through Issuer::introspection)"
            )));
        }
        Self::build(issuer, config, None, false)
    }

    pub(crate) fn build(
        issuer: String,
        config: Introspection,
        discovery: Option<Discovery>,
        insecure_http: bool,
    ) -> Result<Self, ConfigError> {
        uri::check_url_with(&issuer, "issuer", insecure_http)?;
        config.validate(&issuer, insecure_http)?;
        let fetcher = Fetcher::new(&config.fetch)?;
        let cache = ResultCache::new(config.cache);
        Ok(Self(Arc::new(Inner {
            issuer,
            config,
            fetcher,
            discovery,
            cache,
        })))
    }

    /// The issuer whose tokens this verifier introspects.
    pub fn issuer(&self) -> &str {
        &self.0.issuer
    }

    fn unavailable(&self, reason: &str) -> AuthError {
        AuthError::unavailable(self.0.config.retry_after, reason.to_owned())
    }

    async fn endpoint(&self) -> Result<String, AuthError> {
        if let Some(endpoint) = &self.0.config.endpoint {
            return Ok(endpoint.clone());
        }
        let Some(discovery) = &self.0.discovery else {
            return Err(AuthError::misconfigured(
                "introspection has no endpoint and no discovery",
            ));
        };
        let discovered = discovery
            .discovered()
            .await
            .map_err(|e| AuthError::unavailable(e.retry_after, e.reason))?;
        // A configuration mistake, not an outage: 500 (logged), never a 503 that
        // would make clients keep retrying.
        discovered.introspection_endpoint.clone().ok_or_else(|| {
            AuthError::misconfigured(format!(
                "issuer {} has introspection configured but its metadata names no introspection_endpoint",
                self.0.issuer
            ))
        })
    }

    /// One introspection call. `Ok` only for an active token of this issuer.
    async fn introspect(&self, token: &str) -> Result<Arc<Verified>, AuthError> {
        let endpoint = self.endpoint().await?;
        let config = &self.0.config;
        // The serializer is not Send: finish the form before the first await.
        let (form, authorization) = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair("token", token)
                .append_pair("token_type_hint", "access_token");
            let authorization = match config.auth {
                ClientAuth::ClientSecretBasic => {
                    let encode =
                        |v: &str| form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
                    let pair = format!(
                        "{}:{}",
                        encode(&config.client_id),
                        encode(&config.client_secret)
                    );
                    Some(format!("Basic {}", STANDARD.encode(pair)))
                }
                ClientAuth::ClientSecretPost => {
                    form.append_pair("client_id", &config.client_id)
                        .append_pair("client_secret", &config.client_secret);
                    None
                }
            };
            (form.finish(), authorization)
        };
        let fetched = self
            .0
            .fetcher
            .post_form(&endpoint, form, authorization.as_deref())
            .await
            .map_err(|error| match &error {
                FetchError::Status(401 | 403) => AuthError::misconfigured(format!(
                    "the introspection endpoint of {} refused this server's client credentials",
                    self.0.issuer
                )),
                _ => {
                    tracing::warn!(issuer = %self.0.issuer, "introspection failed: {error}");
                    self.unavailable(
                        "the identity provider's introspection endpoint could not be reached",
                    )
                }
            })?;
        parse_answer(&fetched.body, &self.0.issuer, config.cache.max_ttl)
            .map(Arc::new)
            .map_err(|error| {
                if error.kind() == crate::AuthErrorKind::Unavailable {
                    tracing::warn!(issuer = %self.0.issuer, "the introspection answer is not a JSON object");
                    self.unavailable(
                        "the identity provider's introspection endpoint answered nonsense",
                    )
                } else {
                    error
                }
            })
    }

    async fn verify_owned(self, token: BearerToken) -> Result<Principal, AuthError> {
        let this = self.clone();
        let call = async { this.introspect(token.as_str()).await };
        let verified = self.0.cache.get_or_verify(token.as_str(), call).await?;
        let span = tracing::Span::current();
        span.record("issuer", self.0.issuer.as_str());
        span.record("key_tier", "introspection");
        Ok(Principal::from_claims(
            TokenKind::Introspected,
            self.0.issuer.clone(),
            verified.claims.clone(),
        ))
    }
}

impl TokenVerifier for IntrospectionVerifier {
    fn verify(&self, token: &BearerToken) -> VerifyFuture {
        VerifyFuture::pending(self.clone().verify_owned(token.clone()))
    }

    fn forget(&self, token: &str) -> CacheFuture<()> {
        self.0.cache.forget(token)
    }

    fn cache_usage(&self) -> CacheFuture<TokenCacheUsage> {
        self.0.cache.usage()
    }
}

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

use serde_json::{Map, Value};

use super::ClientAuth;
use super::cache::{ResultCache, TokenDigest, Verified, digest, ttl_until};
use super::{CacheFuture, TokenCacheOptions, TokenCacheUsage, TokenVerifier, VerifyFuture};
use crate::bearer::BearerToken;
use crate::error::{AuthError, ConfigError};
use crate::fetch::{FetchError, FetchOptions, Fetcher};
use crate::keys::Discovery;
use crate::principal::{Principal, TokenKind};
use crate::rule::Rule;
use crate::sender::Binding;
use crate::uri::{self, Transport};

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
    patterns: Vec<TokenPattern>,
    shares_unmatched: bool,
    inactive_ttl: Duration,
    allowed_hosts: Vec<String>,
}

/// Which opaque tokens are an issuer's (R-GW-3).
#[derive(Clone)]
enum TokenPattern {
    Prefix(String),
    Matches(Arc<dyn Fn(&str) -> bool + Send + Sync>),
}

impl TokenPattern {
    fn matches(&self, token: &str) -> bool {
        match self {
            Self::Prefix(prefix) => token.starts_with(prefix.as_str()),
            Self::Matches(predicate) => predicate(token),
        }
    }
}

/// How long an `active: false` answer is remembered, by default.
pub const DEFAULT_INACTIVE_TTL: Duration = Duration::from_secs(30);

/// The most `active: false` answers remembered per issuer.
const INACTIVE_CAPACITY: u64 = 10_000;

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
            patterns: Vec::new(),
            shares_unmatched: false,
            inactive_ttl: DEFAULT_INACTIVE_TTL,
            allowed_hosts: Vec::new(),
        }
    }

    /// Lets a discovered `introspection_endpoint` on `host` (another host than the
    /// issuer's) receive this server's client secret. Without it, the secret goes
    /// only to an endpoint on the issuer's own origin or to
    /// [`Introspection::endpoint`]: a discovery document cannot send it elsewhere
    /// (R-GW-3). May be given more than once.
    pub fn allow_discovered_endpoint_host(mut self, host: impl Into<String>) -> Self {
        self.allowed_hosts.push(host.into());
        self
    }

    /// Opaque tokens that start with `prefix` (Google's access tokens start with
    /// `ya29.`) are this issuer's: they are introspected here and at no other issuer,
    /// and this issuer sees no other opaque token. May be given more than once.
    ///
    /// Without a pattern the issuer receives the opaque tokens that match no
    /// issuer's pattern; at most one issuer may, unless each opts in with
    /// [`Introspection::also_receives_other_issuers_tokens`].
    pub fn token_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.patterns.push(TokenPattern::Prefix(prefix.into()));
        self
    }

    /// Opaque tokens for which `predicate` is true are this issuer's (as
    /// [`Introspection::token_prefix`], for formats a prefix cannot tell).
    pub fn token_matches(
        mut self,
        predicate: impl Fn(&str) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.patterns
            .push(TokenPattern::Matches(Arc::new(predicate)));
        self
    }

    /// Lets this issuer receive, with this server's client secret, the opaque tokens
    /// that match no issuer's pattern *together with other issuers that do the
    /// same*: each of them is then shown every such token, including the other
    /// issuers' tokens. Without this, two issuers without a pattern are a build
    /// error, because each would be shown the other's tokens. They are asked at
    /// once, so a slow or dead one does not delay the others' tokens.
    pub fn also_receives_other_issuers_tokens(mut self) -> Self {
        self.shares_unmatched = true;
        self
    }

    /// How long an answer that a token is not active (or is not an access token of
    /// this issuer) is remembered, keyed by the token's SHA-256, so that a client
    /// repeating a junk token costs the provider one call. Default
    /// [`DEFAULT_INACTIVE_TTL`] (30 s); zero asks every time.
    pub fn inactive_cache_ttl(mut self, ttl: Duration) -> Self {
        self.inactive_ttl = ttl;
        self
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

    fn validate(&self, issuer: &str, transport: Transport) -> Result<(), ConfigError> {
        if let Some(endpoint) = &self.endpoint {
            uri::check_url_with(endpoint, "introspection endpoint", transport)?;
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
            .field("patterns", &self.patterns.len())
            .field("shares_unmatched", &self.shares_unmatched)
            .finish_non_exhaustive()
    }
}

struct Inner {
    issuer: String,
    /// The issuer as a `'static` label for the audit record and metrics.
    label: &'static str,
    config: Introspection,
    fetcher: Fetcher,
    discovery: Option<Discovery>,
    cache: ResultCache,
    /// Answers about tokens that are not (or no longer) active, by their SHA-256.
    inactive: Option<moka::sync::Cache<TokenDigest, AuthError>>,
    /// The key bindings the issuer's tokens may carry.
    binding: Binding,
}

/// Whether an opaque token is an issuer's to introspect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claim {
    /// One of the issuer's patterns matches it.
    Pattern,
    /// The issuer has no pattern: it receives the tokens no pattern matches.
    Unmatched,
    /// The issuer has patterns and none matches.
    No,
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
    binding: Binding,
) -> Result<Verified, AuthError> {
    let claims: Map<String, Value> = serde_json::from_slice(body).map_err(|_| {
        AuthError::unavailable(
            Duration::ZERO,
            "the identity provider's introspection endpoint answered nonsense",
        )
    })?;
    if claims.get("active") != Some(&Value::Bool(true)) {
        return Err(AuthError::invalid_token(
            Rule::Opq1,
            "the token is not active (expired, revoked, or unknown to its issuer)",
        ));
    }
    super::refuse_non_bearer_access_tokens(&claims, binding)?;
    if claims
        .get("iss")
        .is_some_and(|iss| iss.as_str() != Some(issuer))
    {
        return Err(AuthError::invalid_token(
            Rule::Opq1,
            "the introspection answer names another issuer",
        ));
    }
    let ttl = ttl_until(claims.get("exp"), max_ttl)?;
    Ok(Verified { claims, ttl })
}

/// What a failed introspection call means for the request (R-ERR-1, R-KEY-5): an
/// answer about the token is `401 invalid_token`, one about this server's client, the
/// provider or the way there is `503` with `Retry-After`, so a forged token never
/// makes a healthy server report an outage, and a real outage never throws a good
/// token away.
///
/// An RFC 7662 endpoint answers `200` for every well-formed request, even of a token
/// it has never seen; the request this crate sends is always well-formed but for the
/// token itself, so a `400` that does not blame our client (some providers refuse
/// malformed or oversized tokens so, Google's `tokeninfo` answers `invalid_token`)
/// is about the token. `invalid_client` or `unauthorized_client` in any `4xx`, `401`
/// and `403` (our credentials), other `4xx` (a wrong endpoint), `5xx`, timeouts and
/// refused connections are about us or the provider.
///
/// With the refusal comes the `outcome` label of its metrics.
fn refusal(error: &FetchError, issuer: &str, retry_after: Duration) -> (AuthError, &'static str) {
    let about_our_client = |code: &Option<String>| {
        matches!(
            code.as_deref(),
            Some("invalid_client" | "unauthorized_client")
        )
    };
    match error {
        FetchError::Status(400 | 413 | 414, code) if !about_our_client(code) => {
            tracing::info!(issuer, "introspection refused the token: {error}");
            let refused = AuthError::invalid_token(
                Rule::Opq1,
                "the identity provider refused to introspect the token: it is malformed",
            );
            (refused, "refused_token")
        }
        FetchError::Status(status, code)
            if about_our_client(code) || matches!(status, 401 | 403) =>
        {
            tracing::error!(
                issuer,
                "the introspection endpoint refused this server's client credentials: {error}; \
                 check the Introspection client id and secret"
            );
            let refused = AuthError::unavailable(
                retry_after,
                "the identity provider's introspection endpoint refused this server's \
                 credentials",
            );
            (refused, "client_rejected")
        }
        _ => {
            tracing::warn!(issuer, "introspection failed: {error}");
            let refused = AuthError::unavailable(
                retry_after,
                "the identity provider's introspection endpoint could not be reached",
            );
            (refused, "unavailable")
        }
    }
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
        Self::build(
            issuer,
            config,
            None,
            Transport::HttpsOrLoopback,
            Binding::default(),
        )
    }

    pub(crate) fn build(
        issuer: String,
        config: Introspection,
        discovery: Option<Discovery>,
        transport: Transport,
        binding: Binding,
    ) -> Result<Self, ConfigError> {
        uri::check_url_with(&issuer, "issuer", transport)?;
        config.validate(&issuer, transport)?;
        let fetcher = Fetcher::new(&config.fetch)?;
        let cache = ResultCache::new(config.cache, "introspection");
        let inactive = (!config.inactive_ttl.is_zero()).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(INACTIVE_CAPACITY)
                .time_to_live(config.inactive_ttl)
                .build()
        });
        Ok(Self(Arc::new(Inner {
            label: crate::metrics::intern(&issuer),
            issuer,
            config,
            fetcher,
            discovery,
            cache,
            inactive,
            binding,
        })))
    }

    /// Whether `token` (not a JWT) is this issuer's to introspect.
    pub(crate) fn claim(&self, token: &str) -> Claim {
        let patterns = &self.0.config.patterns;
        if !self.has_patterns() {
            Claim::Unmatched
        } else if patterns.iter().any(|p| p.matches(token)) {
            Claim::Pattern
        } else {
            Claim::No
        }
    }

    /// Whether this issuer's opaque tokens are told by a pattern.
    pub(crate) fn has_patterns(&self) -> bool {
        !self.0.config.patterns.is_empty()
    }

    /// A prefix of this issuer and one of `other` that one token can both start
    /// with (one is a prefix of the other), if any.
    pub(crate) fn overlapping_prefix(&self, other: &Self) -> Option<(String, String)> {
        let prefixes = |v: &Self| -> Vec<String> {
            v.0.config
                .patterns
                .iter()
                .filter_map(|p| match p {
                    TokenPattern::Prefix(prefix) => Some(prefix.clone()),
                    TokenPattern::Matches(_) => None,
                })
                .collect()
        };
        let theirs = prefixes(other);
        prefixes(self).into_iter().find_map(|a| {
            theirs
                .iter()
                .find(|b| a.starts_with(b.as_str()) || b.starts_with(a.as_str()))
                .map(|b| (a.clone(), b.clone()))
        })
    }

    /// Whether this issuer opted in to share the unmatched tokens with others.
    pub(crate) fn shares_unmatched(&self) -> bool {
        self.0.config.shares_unmatched
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
        let endpoint = discovered.introspection_endpoint.clone().ok_or_else(|| {
            AuthError::misconfigured(format!(
                "issuer {} has introspection configured but its metadata names no introspection_endpoint",
                self.0.issuer
            ))
        })?;
        self.may_receive_secret(&endpoint)?;
        Ok(endpoint)
    }

    /// Whether a discovered endpoint may receive this server's client secret: on the
    /// issuer's own origin, or on a host allowed by name (R-GW-3). A refusal is a 503
    /// with the cause in the log; nothing is sent.
    fn may_receive_secret(&self, endpoint: &str) -> Result<(), AuthError> {
        let host = crate::fetch::host_of(endpoint);
        let allowed = uri::same_origin(&self.0.issuer, endpoint)
            || self
                .0
                .config
                .allowed_hosts
                .iter()
                .any(|h| h.eq_ignore_ascii_case(&host));
        if allowed {
            return Ok(());
        }
        tracing::error!(
            issuer = %self.0.issuer,
            endpoint,
            "the issuer's discovery document names an introspection_endpoint on another \
             origin; this server's client secret is not sent there. If it is right, set \
             Introspection::endpoint or allow the host with \
             Introspection::allow_discovered_endpoint_host"
        );
        Err(self.unavailable(
            "the identity provider's introspection endpoint is not one this server may use",
        ))
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
            let authorization =
                config
                    .auth
                    .authenticate(&mut form, &config.client_id, &config.client_secret);
            (form.finish(), authorization)
        };
        let started = std::time::Instant::now();
        let done =
            |outcome| crate::metrics::introspection(&self.0.issuer, outcome, started.elapsed());
        let fetched = self
            .0
            .fetcher
            .post_form(&endpoint, form, authorization.as_deref())
            .await
            .map_err(|error| {
                let (refused, outcome) = refusal(&error, &self.0.issuer, config.retry_after);
                done(outcome);
                refused
            })?;
        parse_answer(&fetched.body, &self.0.issuer, config.cache.max_ttl, self.0.binding)
            .map(|verified| {
                done("active");
                Arc::new(verified)
            })
            .map_err(|error| {
                if error.kind() == crate::AuthErrorKind::Unavailable {
                    done("invalid_answer");
                    tracing::warn!(issuer = %self.0.issuer, "the introspection answer is not a JSON object");
                    return self.unavailable(
                        "the identity provider's introspection endpoint answered nonsense",
                    );
                }
                done("inactive");
                // The provider's own answer on this token (inactive, not an access
                // token, another issuer's, expired) is remembered; a refusal to
                // answer (a 400, which some providers also give for their own
                // failures) is not.
                if let Some(inactive) = &self.0.inactive {
                    inactive.insert(digest(token), error.clone());
                }
                error
            })
    }

    async fn verify_owned(self, token: BearerToken) -> Result<Principal, AuthError> {
        if let Some(inactive) = &self.0.inactive
            && let Some(known) = inactive.get(&digest(token.as_str()))
        {
            return Err(known);
        }
        let this = self.clone();
        let call = async { this.introspect(token.as_str()).await };
        let verified = self.0.cache.get_or_verify(token.as_str(), call).await?;
        crate::audit::verified(&self.0.issuer, self.0.label, "introspection", None);
        Ok(Principal::from_claims(
            TokenKind::Introspected,
            self.0.issuer.clone(),
            verified.claims.clone(),
        )
        .with_binding(self.0.binding))
    }
}

impl TokenVerifier for IntrospectionVerifier {
    fn verify(&self, token: &BearerToken) -> VerifyFuture {
        VerifyFuture::pending(self.clone().verify_owned(token.clone()))
    }

    fn forget(&self, token: &str) -> CacheFuture<()> {
        if let Some(inactive) = &self.0.inactive {
            inactive.invalidate(&digest(token));
        }
        self.0.cache.forget(token)
    }

    fn cache_usage(&self) -> CacheFuture<TokenCacheUsage> {
        self.0.cache.usage()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AuthErrorKind;

    #[test]
    fn an_answer_about_the_token_is_401_and_one_about_us_or_the_provider_is_503() {
        let kind = |error: FetchError| {
            refusal(&error, "https://idp", Duration::from_secs(2))
                .0
                .kind()
        };
        let code = |c: &str| Some(c.to_owned());
        for about_the_token in [
            FetchError::Status(400, code("invalid_request")),
            FetchError::Status(400, code("invalid_token")),
            FetchError::Status(400, None),
            FetchError::Status(413, None),
        ] {
            assert_eq!(
                kind(about_the_token.clone()),
                AuthErrorKind::InvalidToken,
                "{about_the_token}"
            );
        }
        for about_us_or_them in [
            FetchError::Status(400, code("invalid_client")),
            FetchError::Status(400, code("unauthorized_client")),
            FetchError::Status(401, code("invalid_client")),
            FetchError::Status(401, None),
            FetchError::Status(403, None),
            FetchError::Status(404, None),
            FetchError::Status(429, None),
            FetchError::Status(500, None),
            FetchError::Status(502, code("invalid_request")),
            FetchError::Unreachable("timed out".into()),
            FetchError::TooLarge(10),
            FetchError::Invalid("x".into()),
        ] {
            assert_eq!(
                kind(about_us_or_them.clone()),
                AuthErrorKind::Unavailable,
                "{about_us_or_them}"
            );
        }
        let (error, outcome) = refusal(
            &FetchError::Status(401, None),
            "https://idp",
            Duration::from_secs(2),
        );
        assert_eq!(outcome, "client_rejected");
        assert_eq!(error.retry_after(), Some(Duration::from_secs(2)));
        assert!(
            error.description().contains("credentials"),
            "{}",
            error.description()
        );
    }
}

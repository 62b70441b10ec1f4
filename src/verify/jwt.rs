//! [`JwtVerifier`]: JWT access tokens, checked against per-issuer rules
//! (R-JWT-1..5): an algorithm allowlist, exact `iss`, required `exp`, `nbf` and
//! `iat` within one leeway, no unknown `crit`, no key chosen by the token's header,
//! no ID tokens, no key-bound tokens, and optionally strict RFC 9068.
//!
//! The token is taken apart once: its header and claims are decoded a single time,
//! the signature is checked with jsonwebtoken's crypto over the bytes as sent, and
//! the claims are checked here. Keys come from the issuer's [`KeyChain`]; when a tier
//! already holds the key (the steady state) verification is synchronous and
//! allocates no future. Verified tokens are cached by their SHA-256 (see
//! [`TokenCacheOptions`]).

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, AlgorithmFamily};
use serde_json::{Map, Value};

use super::cache::{self, TokenCache, TokenCacheOptions, TokenCacheUsage, TokenDigest};
use super::{Introspection, IntrospectionVerifier, TokenVerifier, VerifyFuture};
use crate::audience::AudiencePolicy;
use crate::bearer::BearerToken;
use crate::error::{AuthError, ConfigError};
use crate::fetch::Fetcher;
use crate::keys::{
    Discovery, Found, JwksCache, JwksOptions, KeyChain, KeySet, KeySource, LocalKeys,
    VerificationKey,
};
use crate::principal::{Principal, TokenKind};
use crate::rule::Rule;
use crate::uri;

/// The most keys one token's signature is checked against.
const MAX_KEYS_TRIED: usize = 4;

/// The largest leeway accepted at build time.
const MAX_LEEWAY: Duration = Duration::from_secs(300);

/// A trusted issuer and how its tokens are checked. Secure by default: asymmetric
/// algorithms only, 60 s leeway, keys by lazy discovery unless given.
///
/// ```
/// use mcp_gatekeeper::Issuer;
/// use mcp_gatekeeper::keys::LocalKeys;
/// use jsonwebtoken::Algorithm;
///
/// let issuer = Issuer::new("https://idp.example.com/realms/mcp")
///     .algorithms([Algorithm::RS256])
///     .jwks_uri("https://idp.example.com/realms/mcp/protocol/openid-connect/certs");
/// ```
#[derive(Clone)]
pub struct Issuer {
    issuer: String,
    algorithms: Vec<Algorithm>,
    local: Option<LocalKeys>,
    sources: Vec<Arc<dyn KeySource>>,
    jwks_uri: Option<String>,
    discovery: Option<bool>,
    hmac_secret: Option<Arc<[u8]>>,
    leeway: Duration,
    strict_rfc9068: bool,
    jwks: JwksOptions,
    introspection: Option<Introspection>,
    introspect_jwts: bool,
    audience: Option<AudiencePolicy>,
    insecure_http: bool,
}

/// What building an [`Issuer`] gives: the JWT rules, and the introspection verifier
/// when the issuer has one (sharing the issuer's discovery).
pub(crate) struct BuiltIssuer {
    pub(crate) runtime: IssuerRuntime,
    pub(crate) introspection: Option<IntrospectionVerifier>,
    pub(crate) introspect_jwts: bool,
}

impl Issuer {
    /// An issuer, named exactly as its tokens' `iss` claim names it (R-JWT-2).
    pub fn new(issuer: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            algorithms: crate::keys::ASYMMETRIC.to_vec(),
            local: None,
            sources: Vec::new(),
            jwks_uri: None,
            discovery: None,
            hmac_secret: None,
            leeway: Duration::from_secs(60),
            strict_rfc9068: false,
            jwks: JwksOptions::default(),
            introspection: None,
            introspect_jwts: false,
            audience: None,
            insecure_http: false,
        }
    }

    /// Audience rules for this issuer's tokens, instead of the server's (R-ISS-1):
    /// e.g. accept the client id as `aud` only from the IdP that lacks RFC 8707.
    pub fn audience(mut self, policy: AudiencePolicy) -> Self {
        self.audience = Some(policy);
        self
    }

    /// This issuer's own audience rules, if it has any.
    pub fn audience_policy(&self) -> Option<&AudiencePolicy> {
        self.audience.as_ref()
    }

    /// Accept this issuer's opaque (non-JWT) tokens by RFC 7662 introspection
    /// (R-OPQ-1). The endpoint comes from the issuer's discovery document unless the
    /// [`Introspection`] names it.
    pub fn introspection(mut self, introspection: Introspection) -> Self {
        self.introspection = Some(introspection);
        self
    }

    /// Send this issuer's JWT-shaped tokens to introspection too, instead of
    /// checking them locally (for issuers whose JWTs are not meant to be verified by
    /// resource servers, or to see revocations at once). Needs
    /// [`Issuer::introspection`].
    pub fn introspect_jwts(mut self) -> Self {
        self.introspect_jwts = true;
        self
    }

    /// The issuer identifier.
    pub fn id(&self) -> &str {
        &self.issuer
    }

    /// The algorithms this issuer's tokens may use (R-JWT-1). `none` does not exist
    /// here; HMAC algorithms need [`Issuer::hmac_secret`].
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self
    }

    /// In-process keys, asked first (R-KEY-1). Keep a clone of `keys` to update them
    /// at run time.
    pub fn local_keys(mut self, keys: LocalKeys) -> Self {
        self.local = Some(keys);
        self
    }

    /// A custom key tier, asked after the in-process keys and before `jwks_uri`.
    pub fn key_source(mut self, source: impl KeySource) -> Self {
        self.sources.push(Arc::new(source));
        self
    }

    /// The issuer's JWK set URL (R-KEY-1). Turns discovery off unless
    /// [`Issuer::discovery`] turns it back on; the `iss` check stays (R-KEY-2).
    pub fn jwks_uri(mut self, uri: impl Into<String>) -> Self {
        self.jwks_uri = Some(uri.into());
        self
    }

    /// Whether to discover the JWK set from the issuer's metadata when no other tier
    /// has the key. Default: on when no `jwks_uri` is set.
    pub fn discovery(mut self, enabled: bool) -> Self {
        self.discovery = Some(enabled);
        self
    }

    /// A shared secret for HMAC-signed tokens (HS256/384/512, which must also be in
    /// [`Issuer::algorithms`]). Only ever from this explicit setting, never from a
    /// key set (R-JWT-1).
    pub fn hmac_secret(mut self, secret: impl Into<Vec<u8>>) -> Self {
        self.hmac_secret = Some(secret.into().into());
        self
    }

    /// Clock leeway for `exp`, `nbf` and `iat` (R-JWT-2). Default 60 s; at most 5 min.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Strict RFC 9068: `typ` must be `at+jwt`, and `iss`, `exp`, `aud`, `sub`,
    /// `client_id`, `iat` and `jti` must be present (R-JWT-4).
    pub fn strict_rfc9068(mut self) -> Self {
        self.strict_rfc9068 = true;
        self
    }

    /// Accepts plain `http` URLs to a host other than localhost for this issuer, its
    /// `jwks_uri`, the endpoints its discovery names and its introspection endpoint.
    /// Anyone on the network path can then read the introspection credentials and
    /// replace the keys with their own, so only for a network that is trusted by
    /// other means (a service mesh that encrypts and authenticates every hop).
    pub fn allow_insecure_http(mut self) -> Self {
        self.insecure_http = true;
        self
    }

    /// Cache and fetch limits for this issuer's key sets and discovery.
    pub fn jwks_options(mut self, options: JwksOptions) -> Self {
        self.jwks = options;
        self
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let name = &self.issuer;
        self.check_url(name, "issuer")?;
        if name.contains('?') {
            return Err(ConfigError::new(format!(
                "issuer {name:?} has a query; an issuer identifier has none (RFC 8414 §2)"
            )));
        }
        if self.algorithms.is_empty() {
            return Err(ConfigError::new(format!(
                "issuer {name:?} allows no algorithm; list the ones its tokens use, e.g. RS256"
            )));
        }
        let hmac = self
            .algorithms
            .iter()
            .any(|a| a.family() == AlgorithmFamily::Hmac);
        match (hmac, &self.hmac_secret) {
            (true, None) => {
                return Err(ConfigError::new(format!(
                    "issuer {name:?} allows an HMAC algorithm but has no shared secret; HMAC keys \
                     are never taken from a key set, so set Issuer::hmac_secret or remove HS*"
                )));
            }
            (false, Some(_)) => {
                return Err(ConfigError::new(format!(
                    "issuer {name:?} has an HMAC secret but allows no HMAC algorithm; add HS256 \
                     (or HS384/HS512) to Issuer::algorithms or remove the secret"
                )));
            }
            (true, Some(secret)) if secret.len() < 32 => {
                return Err(ConfigError::new(format!(
                    "issuer {name:?} has an HMAC secret of {} bytes; use at least 32 random bytes",
                    secret.len()
                )));
            }
            _ => {}
        }
        if let Some(jwks_uri) = &self.jwks_uri {
            self.check_url(jwks_uri, "jwks_uri")?;
        }
        let asymmetric = self
            .algorithms
            .iter()
            .any(|a| a.family() != AlgorithmFamily::Hmac);
        let discovery = self.key_discovery();
        let public_keys = self.local.is_some()
            || !self.sources.is_empty()
            || self.jwks_uri.is_some()
            || discovery;
        if hmac && public_keys {
            return Err(ConfigError::new(format!(
                "issuer {name:?} allows an HMAC algorithm and also takes public keys (local \
                 keys, a key source, a jwks_uri or discovery); a token could then pick which \
                 kind of key checks it. Give HMAC tokens an issuer of their own with only \
                 Issuer::hmac_secret, or remove HS* from Issuer::algorithms"
            )));
        }
        if self.introspect_jwts && self.introspection.is_none() {
            return Err(ConfigError::new(format!(
                "issuer {name:?} sends JWTs to introspection but has none; add Issuer::introspection"
            )));
        }
        if asymmetric
            && !self.introspect_jwts
            && self.local.is_none()
            && self.sources.is_empty()
            && self.jwks_uri.is_none()
            && !discovery
        {
            return Err(ConfigError::new(format!(
                "issuer {name:?} has no way to get keys: give it local keys, a jwks_uri, or \
                 leave discovery on"
            )));
        }
        if self.leeway > MAX_LEEWAY {
            return Err(ConfigError::new(format!(
                "issuer {name:?} has a leeway of {} s, which would accept long-expired tokens; \
                 use at most {} s",
                self.leeway.as_secs(),
                MAX_LEEWAY.as_secs()
            )));
        }
        let jwks = &self.jwks;
        if jwks.min_ttl > jwks.max_ttl || jwks.min_backoff > jwks.max_backoff {
            return Err(ConfigError::new(format!(
                "issuer {name:?}: JwksOptions has a minimum above its maximum (ttl or backoff)"
            )));
        }
        if jwks.fetch.timeout.is_zero() || jwks.max_keys == 0 || jwks.fetch.max_body_bytes == 0 {
            return Err(ConfigError::new(format!(
                "issuer {name:?}: JwksOptions needs a non-zero timeout, key cap and body cap"
            )));
        }
        Ok(())
    }

    /// Whether keys are discovered: as configured, else when the issuer takes public
    /// keys and names no `jwks_uri`.
    fn key_discovery(&self) -> bool {
        let asymmetric = self
            .algorithms
            .iter()
            .any(|a| a.family() != AlgorithmFamily::Hmac);
        self.discovery
            .unwrap_or(asymmetric && self.jwks_uri.is_none())
    }

    /// Checks a URL of this issuer's: https, or http to localhost, or any http with
    /// [`Issuer::allow_insecure_http`]; the error says so.
    fn check_url(&self, url: &str, what: &str) -> Result<(), ConfigError> {
        uri::check_url_with(url, what, self.insecure_http).map_err(|error| {
            if url.starts_with("http://") {
                ConfigError::new(format!(
                    "{}; or, only for a network trusted by other means, \
                     Issuer::allow_insecure_http()",
                    error.message()
                ))
            } else {
                error
            }
        })
    }

    pub(crate) fn build(self) -> Result<BuiltIssuer, ConfigError> {
        self.validate()?;
        let fetcher = Fetcher::new(&self.jwks.fetch)?;
        let key_discovery = self.key_discovery();
        let needs_discovery = key_discovery
            || self
                .introspection
                .as_ref()
                .is_some_and(|i| !i.has_endpoint());
        let discovery = match needs_discovery {
            true => Some(Discovery::new(
                self.issuer.clone(),
                fetcher.clone(),
                fetcher.for_discovered(&self.issuer)?,
                self.jwks.clone(),
                self.insecure_http,
            )),
            false => None,
        };
        let introspection = match self.introspection {
            Some(config) => Some(IntrospectionVerifier::build(
                self.issuer.clone(),
                config,
                discovery.clone(),
                self.insecure_http,
            )?),
            None => None,
        };
        let mut sources: Vec<Arc<dyn KeySource>> = Vec::new();
        if let Some(local) = self.local {
            sources.push(Arc::new(local));
        }
        sources.extend(self.sources);
        if let Some(jwks_uri) = &self.jwks_uri {
            sources.push(Arc::new(JwksCache::new(
                jwks_uri.clone(),
                "jwks",
                fetcher.clone(),
                self.jwks.clone(),
            )));
        }
        if let Some(discovery) = discovery.filter(|_| key_discovery) {
            sources.push(Arc::new(discovery));
        }
        let hmac = self.hmac_secret.map(|secret| {
            let keys = self
                .algorithms
                .iter()
                .filter(|a| a.family() == AlgorithmFamily::Hmac)
                .map(|alg| VerificationKey::hmac(&secret, *alg));
            Arc::new(KeySet::new(keys))
        });
        let runtime = IssuerRuntime {
            issuer: self.issuer,
            keys: KeyChain::new(sources),
            hmac,
            algorithms: self.algorithms,
            leeway: self.leeway.as_secs(),
            strict_rfc9068: self.strict_rfc9068,
        };
        Ok(BuiltIssuer {
            runtime,
            introspection,
            introspect_jwts: self.introspect_jwts,
        })
    }
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("issuer", &self.issuer)
            .field("algorithms", &self.algorithms)
            .field("jwks_uri", &self.jwks_uri)
            .field("local_keys", &self.local.is_some())
            .field(
                "hmac_secret",
                &self.hmac_secret.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

pub(crate) struct IssuerRuntime {
    pub(crate) issuer: String,
    keys: KeyChain,
    hmac: Option<Arc<KeySet>>,
    algorithms: Vec<Algorithm>,
    leeway: u64,
    strict_rfc9068: bool,
}

impl IssuerRuntime {
    /// The keys that would verify a token with `kid` and `alg` now, without I/O.
    fn keys_now(&self, kid: Option<&str>, alg: Algorithm) -> Option<Found> {
        if alg.family() == AlgorithmFamily::Hmac {
            return self.hmac.clone().map(|keys| Found {
                keys,
                tier: "hmac-secret",
            });
        }
        self.keys.cached(kid, alg)
    }
}

/// A JWT verified earlier, reused while it has not expired and the key set that
/// verified it is still the one its issuer's tiers hold: a key removed, rotated or
/// refreshed makes the next request verify the token again.
struct CachedJwt {
    principal: Principal,
    exp: u64,
    issuer: Arc<IssuerRuntime>,
    kid: Option<Box<str>>,
    alg: Algorithm,
    keys: Weak<KeySet>,
}

impl CachedJwt {
    fn is_current(&self, now: u64) -> bool {
        now < self.exp
            && self
                .issuer
                .keys_now(self.kid.as_deref(), self.alg)
                // The Weak keeps the old set's allocation, so its address is not reused.
                .is_some_and(|found| std::ptr::eq(Arc::as_ptr(&found.keys), self.keys.as_ptr()))
    }
}

/// A token that passed every check, with what the cache needs to keep it.
struct Checked {
    principal: Principal,
    exp: u64,
    issuer: Arc<IssuerRuntime>,
    kid: Option<String>,
    alg: Algorithm,
    keys: Arc<KeySet>,
}

struct Inner {
    issuers: HashMap<String, Arc<IssuerRuntime>>,
    cache: TokenCache<CachedJwt>,
}

/// Verifies JWT access tokens from a set of trusted issuers, and keeps the tokens it
/// verified in a cache (see [`TokenCacheOptions`]) so that a repeated token costs a
/// hash and a lookup instead of a signature check. Cheap to clone.
#[derive(Clone)]
pub struct JwtVerifier(Arc<Inner>);

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("issuers", &self.0.issuers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// A JWT taken apart, before its signature is checked. Each part is decoded once, and
/// nothing borrows the token, so a verification that must fetch keys keeps this
/// instead of decoding the token again.
struct Parsed {
    header: JoseHeader,
    claims: Map<String, Value>,
    /// The length of `header.payload`, what the signature covers; the signature
    /// follows it and a dot.
    message_len: usize,
}

impl Parsed {
    /// The signed message and the signature, from the token this was parsed from.
    fn split<'t>(&self, token: &'t str) -> (&'t str, &'t str) {
        match token.split_at_checked(self.message_len) {
            Some((message, rest)) => (message, rest.get(1..).unwrap_or_default()),
            None => (token, ""),
        }
    }
}

/// What the keys at hand allow: a decision, or the parsed token and its issuer for a
/// key fetch.
enum Now {
    Decided(Result<Checked, AuthError>),
    Fetch(Box<(Parsed, Arc<IssuerRuntime>)>),
}

impl JwtVerifier {
    /// A verifier for `issuers`, with the default verified-token cache. Checks the
    /// configuration (R-OPS-2) and does no I/O. For issuers with introspection use
    /// [`VerifierChain`](crate::VerifierChain), which also takes opaque tokens; here
    /// such a configuration is an error.
    pub fn new(issuers: impl IntoIterator<Item = Issuer>) -> Result<Self, ConfigError> {
        let mut runtimes = Vec::new();
        for issuer in issuers {
            let built = issuer.build()?;
            if built.introspection.is_some() {
                return Err(ConfigError::new(format!(
                    "issuer {:?} has introspection, which JwtVerifier does not do; use VerifierChain",
                    built.runtime.issuer
                )));
            }
            runtimes.push(built.runtime);
        }
        Self::from_runtimes(runtimes)
    }

    pub(crate) fn from_runtimes(runtimes: Vec<IssuerRuntime>) -> Result<Self, ConfigError> {
        select_crypto_backend();
        let mut map = HashMap::new();
        for runtime in runtimes {
            if map.contains_key(&runtime.issuer) {
                return Err(ConfigError::new(format!(
                    "issuer {:?} is configured twice; merge the two",
                    runtime.issuer
                )));
            }
            map.insert(runtime.issuer.clone(), Arc::new(runtime));
        }
        if map.is_empty() {
            return Err(ConfigError::new(
                "no trusted issuer; add at least one Issuer",
            ));
        }
        Ok(Self(Arc::new(Inner {
            issuers: map,
            cache: TokenCache::new(TokenCacheOptions::default()),
        })))
    }

    /// The same verifier with a verified-token cache of these bounds (a new, empty
    /// one); [`TokenCacheOptions::disabled`] verifies every request from scratch.
    pub fn token_cache(self, options: TokenCacheOptions) -> Self {
        Self(Arc::new(Inner {
            issuers: self.0.issuers.clone(),
            cache: TokenCache::new(options),
        }))
    }

    /// How full the verified-token cache is.
    pub fn token_cache_usage(&self) -> TokenCacheUsage {
        self.0.cache.usage()
    }

    /// Drops `token` from the verified-token cache, if it is there: the next request
    /// with it is verified from scratch.
    pub fn forget_token(&self, token: &str) {
        self.0.cache.forget(token);
    }

    /// The trusted issuer identifiers.
    pub fn issuers(&self) -> impl Iterator<Item = &str> {
        self.0.issuers.keys().map(String::as_str)
    }

    /// The cache key of `token`; `None` when the cache is off.
    pub(crate) fn cache_key(&self, token: &str) -> Option<TokenDigest> {
        self.0.cache.key(token)
    }

    /// The principal of a token verified earlier, if it may be reused now.
    pub(crate) fn cached(&self, key: &TokenDigest) -> Option<Principal> {
        let cached = self.0.cache.get(key)?;
        if !cached.is_current(jsonwebtoken::get_current_timestamp()) {
            self.0.cache.remove(key);
            return None;
        }
        let span = tracing::Span::current();
        span.record("issuer", cached.issuer.issuer.as_str());
        span.record("key_tier", "cache");
        if let Some(subject) = cached.principal.subject() {
            span.record("subject", subject);
        }
        Some(cached.principal.clone())
    }

    /// Verifies `token`, whose cache key is `key`, and caches it when it passes.
    pub(crate) fn verify_uncached(
        &self,
        token: &BearerToken,
        key: Option<TokenDigest>,
    ) -> VerifyFuture {
        match self.verify_now(token.as_str()) {
            Now::Decided(result) => VerifyFuture::ready(self.remember(key, result)),
            Now::Fetch(pending) => {
                let this = self.clone();
                let token = token.clone();
                VerifyFuture::pending(async move {
                    let (parsed, issuer) = *pending;
                    let result = verify_later(token.as_str(), parsed, issuer).await;
                    this.remember(key, result)
                })
            }
        }
    }

    fn remember(
        &self,
        key: Option<TokenDigest>,
        result: Result<Checked, AuthError>,
    ) -> Result<Principal, AuthError> {
        let checked = result?;
        if let Some(key) = key {
            let now = jsonwebtoken::get_current_timestamp();
            let ttl = Duration::from_secs(checked.exp.saturating_sub(now));
            let entry = CachedJwt {
                principal: checked.principal.clone(),
                exp: checked.exp,
                issuer: checked.issuer,
                kid: checked.kid.map(String::into_boxed_str),
                alg: checked.alg,
                keys: Arc::downgrade(&checked.keys),
            };
            self.0.cache.insert(
                key,
                Arc::new(entry),
                ttl,
                cache::estimate(checked.principal.claims()),
            );
        }
        Ok(checked.principal)
    }

    fn issuer(&self, parsed: &Parsed) -> Result<&Arc<IssuerRuntime>, AuthError> {
        let name = match parsed.claims.get("iss") {
            Some(Value::String(name)) => name,
            Some(_) => {
                return Err(AuthError::invalid_token(
                    Rule::Jwt2,
                    "the token's claims are not a JSON object with a string iss",
                ));
            }
            None => {
                return Err(AuthError::invalid_token(
                    Rule::Jwt2,
                    "the token has no iss claim",
                ));
            }
        };
        // Routed by the unverified iss even with one issuer: a foreign token costs
        // no key lookup and no network call (R-ISS-1).
        let issuer = self.0.issuers.get(name).ok_or_else(|| {
            AuthError::invalid_token(
                Rule::Jwt2,
                "the token's issuer is not trusted by this server",
            )
        })?;
        if !issuer.algorithms.contains(&parsed.header.alg) {
            return Err(AuthError::invalid_token(
                Rule::Jwt1,
                format!(
                    "the token's algorithm {:?} is not allowed for its issuer",
                    parsed.header.alg
                ),
            ));
        }
        Ok(issuer)
    }

    /// Verifies with the keys at hand, or says that keys must be fetched first.
    fn verify_now(&self, token: &str) -> Now {
        let parsed = match parse(token) {
            Ok(parsed) => parsed,
            Err(e) => return Now::Decided(Err(e)),
        };
        let issuer = match self.issuer(&parsed) {
            Ok(issuer) => issuer.clone(),
            Err(e) => return Now::Decided(Err(e)),
        };
        let alg = parsed.header.alg;
        let kid = parsed.header.kid.as_deref();
        if alg.family() == AlgorithmFamily::Hmac && issuer.hmac.is_none() {
            return Now::Decided(Err(no_key(kid)));
        }
        match issuer.keys_now(kid, alg) {
            Some(found) => Now::Decided(check(issuer, token, parsed, found)),
            None => Now::Fetch(Box::new((parsed, issuer))),
        }
    }
}

/// Verifies `token`, already parsed, once its issuer's tiers had a chance to fetch
/// the key.
async fn verify_later(
    token: &str,
    parsed: Parsed,
    issuer: Arc<IssuerRuntime>,
) -> Result<Checked, AuthError> {
    let kid = parsed.header.kid.clone();
    match issuer.keys.resolve(kid.as_deref(), parsed.header.alg).await {
        Ok(Some(found)) => check(issuer, token, parsed, found),
        Ok(None) => Err(no_key(kid.as_deref())),
        Err(error) => Err(AuthError::unavailable(error.retry_after, error.reason)),
    }
}

impl TokenVerifier for JwtVerifier {
    fn verify(&self, token: &BearerToken) -> VerifyFuture {
        let key = self.cache_key(token.as_str());
        if let Some(principal) = key.as_ref().and_then(|key| self.cached(key)) {
            return VerifyFuture::ready(Ok(principal));
        }
        self.verify_uncached(token, key)
    }

    fn forget(&self, token: &str) -> super::CacheFuture<()> {
        self.forget_token(token);
        Box::pin(std::future::ready(()))
    }

    fn cache_usage(&self) -> super::CacheFuture<TokenCacheUsage> {
        Box::pin(std::future::ready(self.token_cache_usage()))
    }
}

/// The JOSE header members this server reads. Any other member is ignored; a member
/// of these given twice makes the header malformed (serde refuses duplicate fields).
/// Keys named or embedded by the header (`jku`, `jwk`, `x5u`, `x5c`) are not even
/// parsed (R-JWT-3).
#[derive(serde::Deserialize)]
pub(crate) struct JoseHeader {
    alg: Algorithm,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    cty: Option<String>,
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    b64: Option<serde::de::IgnoredAny>,
}

/// The start of the error a duplicate key gives [`Strict`].
const DUPLICATE: &str = "duplicate key";

/// A JSON value in which an object that names a member twice, at any depth, is an
/// error: a parser that keeps the first and one that keeps the last would read two
/// different tokens, and whatever checks the claims after this server may be the
/// other kind.
struct Strict(Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number that is not finite"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(value) = map.next_value()?;
            if object.insert(key, value).is_some() {
                return Err(serde::de::Error::custom(DUPLICATE));
            }
        }
        Ok(Value::Object(object))
    }
}

/// Takes a compact JWS apart: the header and the claims decoded (once each), and the
/// signed message and signature as sent. Nothing here is trusted yet.
fn parse(token: &str) -> Result<Parsed, AuthError> {
    let malformed =
        || AuthError::invalid_token(Rule::Jwt1, "the access token is not a well-formed JWT");
    let Some([header, payload, _]) = segments(token) else {
        return Err(malformed());
    };
    let raw_header = URL_SAFE_NO_PAD.decode(header).map_err(|_| malformed())?;
    let header_len = header.len();
    let header: JoseHeader = serde_json::from_slice(&raw_header).map_err(|_| {
        // Decode the raw header only to name an unsupported `alg` (like `none`).
        let alg = serde_json::from_slice::<Value>(&raw_header)
            .ok()
            .and_then(|h| h.get("alg").and_then(Value::as_str).map(str::to_owned));
        match alg {
            Some(alg) if alg.parse::<Algorithm>().is_ok() => AuthError::invalid_token(
                Rule::Jwt1,
                "the token's header is not well-formed (a member given twice, or of the wrong type)",
            ),
            Some(alg) if alg.len() <= 16 && alg.bytes().all(|b| b.is_ascii_alphanumeric()) => {
                AuthError::invalid_token(
                    Rule::Jwt1,
                    format!("the token's algorithm {alg:?} is not accepted"),
                )
            }
            _ => malformed(),
        }
    })?;
    // RFC 7515 §4.1.11: no extension is understood here, and an empty list is
    // itself invalid, so any crit is refused.
    if header.crit.is_some() {
        return Err(AuthError::invalid_token(
            Rule::Jwt3,
            "the token's header marks extensions as critical (crit) that this server does not understand",
        ));
    }
    // RFC 7797: the payload is always read as base64url here, never as sent.
    if header.b64.is_some() {
        return Err(AuthError::invalid_token(
            Rule::Jwt3,
            "the token's header has b64 (RFC 7797 unencoded payload), which this server does not accept",
        ));
    }
    if header.cty.as_deref().is_some_and(|cty| {
        cty.eq_ignore_ascii_case("JWT") || cty.eq_ignore_ascii_case("application/jwt")
    }) {
        return Err(AuthError::invalid_token(
            Rule::Jwt3,
            "the token is a nested JWT (cty JWT), which this server does not accept",
        ));
    }
    let raw = URL_SAFE_NO_PAD.decode(payload).map_err(|_| malformed())?;
    let claims = match serde_json::from_slice::<Strict>(&raw) {
        Ok(Strict(Value::Object(claims))) => claims,
        Ok(_) => {
            return Err(AuthError::invalid_token(
                Rule::Jwt2,
                "the token's claims are not a JSON object with a string iss",
            ));
        }
        Err(error) if error.to_string().starts_with(DUPLICATE) => {
            return Err(AuthError::invalid_token(
                Rule::Jwt2,
                "the token's claims name a member twice (duplicate JSON keys), which parsers \
                 read differently",
            ));
        }
        Err(_) => {
            return Err(AuthError::invalid_token(
                Rule::Jwt2,
                "the token's claims are not a JSON object with a string iss",
            ));
        }
    };
    // segments() split on the only two dots: header '.' payload '.' signature.
    Ok(Parsed {
        header,
        claims,
        message_len: header_len + 1 + payload.len(),
    })
}

/// The `iss` a JWT-shaped token claims, unverified: only for routing.
pub(crate) fn unverified_issuer(token: &str) -> Option<String> {
    let [_, payload, _] = segments(token)?;
    let raw = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice::<UnverifiedIssuer<'_>>(&raw)
        .ok()?
        .iss
        .map(std::borrow::Cow::into_owned)
}

/// The one claim read before verification, to pick the issuer.
#[derive(serde::Deserialize)]
struct UnverifiedIssuer<'a> {
    #[serde(borrow, default)]
    iss: Option<std::borrow::Cow<'a, str>>,
}

/// The three segments of a compact JWS, or `None` for any other shape.
pub(crate) fn segments(token: &str) -> Option<[&str; 3]> {
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(header), Some(payload), Some(signature), None) => Some([header, payload, signature]),
        _ => None,
    }
}

/// jsonwebtoken panics at run time when both of its backends are compiled in and
/// none was chosen; with both features on, this crate chooses AWS-LC.
fn select_crypto_backend() {
    #[cfg(all(feature = "aws-lc-rs", feature = "rust-crypto"))]
    {
        // Fails only when a provider was installed already, which is what we want.
        let _ = jsonwebtoken::crypto::CryptoProvider::install_default(
            &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER,
        );
    }
}

fn no_key(kid: Option<&str>) -> AuthError {
    let description = match kid {
        Some(_) => "no key of the token's issuer has the token's kid",
        None => "the token has no kid and no key of its issuer fits its algorithm",
    };
    AuthError::invalid_token(Rule::Key3, description)
}

/// Checks the signature with each candidate key of `found`, then the claims.
fn check(
    issuer: Arc<IssuerRuntime>,
    token: &str,
    parsed: Parsed,
    found: Found,
) -> Result<Checked, AuthError> {
    let (message, signature) = parsed.split(token);
    let alg = parsed.header.alg;
    let kid = parsed.header.kid.as_deref();
    let mut verified = false;
    let mut refusal = None;
    // A token without kid may try several keys; bound the signature checks it costs.
    for key in found.keys.candidates(kid, alg).take(MAX_KEYS_TRIED) {
        match key.verify(alg, message.as_bytes(), signature) {
            Ok(true) => {
                verified = true;
                break;
            }
            // Another key of the set may have made this signature.
            Ok(false) => refusal = Some(ErrorKind::InvalidSignature),
            Err(error) => {
                let kind = error.into_kind();
                let final_error = !matches!(kind, ErrorKind::Base64(_));
                refusal = Some(kind);
                if final_error {
                    break;
                }
            }
        }
    }
    if !verified {
        return Err(match refusal {
            Some(kind) => describe(&kind),
            None => no_key(kid),
        });
    }
    let span = tracing::Span::current();
    span.record("issuer", issuer.issuer.as_str());
    span.record("key_tier", found.tier);
    let exp = check_claims(&issuer, &parsed.header, &parsed.claims)?;
    let principal = Principal::from_claims(TokenKind::Jwt, issuer.issuer.clone(), parsed.claims);
    if let Some(subject) = principal.subject() {
        span.record("subject", subject);
    }
    Ok(Checked {
        principal,
        exp,
        issuer,
        kid: parsed.header.kid,
        alg,
        keys: found.keys,
    })
}

fn describe(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::InvalidSignature | ErrorKind::Base64(_) => {
            AuthError::invalid_token(Rule::Jwt1, "the token's signature does not verify")
        }
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidKeyFormat => {
            AuthError::invalid_token(Rule::Jwt1, "the token's algorithm does not fit its key")
        }
        _ => AuthError::invalid_token(Rule::Jwt1, "the token could not be verified"),
    }
}

/// The latest NumericDate accepted: 9999-12-31T23:59:59Z. Later ones are not dates a
/// token is given but numbers meant to overflow someone's arithmetic.
const LAST_DATE: f64 = 253_402_300_799.0;

/// A NumericDate claim (RFC 7519 §2: seconds since 1970, possibly with a fraction),
/// when present. `Err` when it is there but not a number, or before 1970, or after
/// the year 9999.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<f64>, ()> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|t| (0.0..=LAST_DATE).contains(t))
            .map(Some)
            .ok_or(()),
        Some(_) => Err(()),
    }
}

/// The claim checks (R-JWT-2, R-JWT-4, R-JWT-5) after the signature: exact `iss`,
/// `exp` required and not past, `nbf` and `iat` not in the future (all within the
/// issuer's leeway), the shape of `aud`, no ID, refresh or key-bound token, and
/// strict RFC 9068 when asked. Returns `exp` in whole seconds.
fn check_claims(
    issuer: &IssuerRuntime,
    header: &JoseHeader,
    claims: &Map<String, Value>,
) -> Result<u64, AuthError> {
    // A single string, exactly the issuer.
    if claims.get("iss").and_then(Value::as_str) != Some(issuer.issuer.as_str()) {
        return Err(AuthError::invalid_token(
            Rule::Jwt2,
            "the token's iss does not match its issuer exactly",
        ));
    }
    let now = jsonwebtoken::get_current_timestamp() as f64;
    let leeway = issuer.leeway as f64;
    let exp = match numeric_date(claims, "exp") {
        Ok(Some(exp)) => exp,
        Ok(None) => {
            return Err(AuthError::invalid_token(
                Rule::Jwt2,
                "the token has no exp claim, or it is not a number",
            ));
        }
        Err(()) => {
            return Err(AuthError::invalid_token(
                Rule::Jwt2,
                "the token's exp is not a date (a number of seconds from 1970 to 9999)",
            ));
        }
    };
    if exp < now - leeway {
        return Err(AuthError::invalid_token(
            Rule::Jwt2,
            "the token has expired",
        ));
    }
    match numeric_date(claims, "nbf") {
        Ok(Some(nbf)) if nbf > now + leeway => {
            return Err(AuthError::invalid_token(
                Rule::Jwt2,
                "the token is not valid yet (nbf)",
            ));
        }
        Ok(_) => {}
        Err(()) => {
            return Err(AuthError::invalid_token(
                Rule::Jwt2,
                "the token's nbf is not a date (a number of seconds from 1970 to 9999)",
            ));
        }
    }
    match numeric_date(claims, "iat") {
        Ok(Some(iat)) if iat > now + leeway => {
            return Err(AuthError::invalid_token(
                Rule::Jwt2,
                "the token was issued in the future (iat)",
            ));
        }
        Ok(_) => {}
        Err(()) => {
            return Err(AuthError::invalid_token(
                Rule::Jwt2,
                "the token's iat is not a date (a number of seconds from 1970 to 9999)",
            ));
        }
    }
    match claims.get("aud") {
        None | Some(Value::String(_)) => {}
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {}
        Some(_) => {
            return Err(AuthError::invalid_token(
                Rule::Aud2,
                "the token's aud is neither a string nor an array of strings",
            ));
        }
    }
    super::refuse_non_bearer_access_tokens(claims)?;
    if issuer.strict_rfc9068 {
        let typ_ok = header.typ.as_deref().is_some_and(|typ| {
            typ.eq_ignore_ascii_case("at+jwt") || typ.eq_ignore_ascii_case("application/at+jwt")
        });
        if !typ_ok {
            return Err(AuthError::invalid_token(
                Rule::Jwt4,
                "the token's typ is not at+jwt (RFC 9068)",
            ));
        }
        for claim in ["aud", "sub", "client_id", "iat", "jti"] {
            if !claims.contains_key(claim) {
                return Err(AuthError::invalid_token(
                    Rule::Jwt4,
                    format!("the token has no {claim} claim, which RFC 9068 requires"),
                ));
            }
        }
    }
    // Whole seconds, for the cache: an entry ends at or before exp. Saturating casts.
    Ok(exp.max(0.0) as u64)
}

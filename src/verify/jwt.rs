//! [`JwtVerifier`]: JWT access tokens, checked against per-issuer rules
//! (R-JWT-1..5): an algorithm allowlist, exact `iss`, required `exp`, `nbf` and
//! `iat` within one leeway, no unknown `crit`, no key chosen by the token's header,
//! no ID tokens, no key-bound tokens, and optionally strict RFC 9068.
//!
//! The token is taken apart once: its header and claims are decoded a single time
//! (see `jose`), the signature is checked with jsonwebtoken's crypto over the bytes as
//! sent, and the claims are checked after it (see `claims`). The issuer is picked by
//! the token's unverified `iss`, then its algorithm must be one the [`Issuer`] allows.
//! Keys come from the issuer's [`KeyChain`]; when a tier already holds the key (the
//! steady state) verification is synchronous and allocates no future. Verified tokens
//! are cached by the SHA-256 of their signature, with their header and payload kept
//! and compared byte for byte on each hit (see [`TokenCacheOptions`]), and reused
//! while the key set that verified them is still the one their issuer's tiers hold.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, AlgorithmFamily};
use serde_json::Value;

use super::cache::{self, TokenCache, TokenCacheOptions, TokenCacheUsage, TokenDigest};

use super::claims::check_claims;
use super::issuer::Issuer;
use super::jose::{Parsed, parse};
use super::{TokenVerifier, VerifyFuture};
use crate::bearer::BearerToken;
use crate::error::{AuthError, ConfigError};
use crate::keys::{Found, KeyChain, KeySet};
use crate::principal::{Principal, TokenKind};
use crate::rule::Rule;

// Other verifiers split and route tokens with these, by this path.
pub(crate) use super::jose::{segments, unverified_issuer};

/// The most keys one token's signature is checked against.
const MAX_KEYS_TRIED: usize = 4;

/// The rules and keys of one trusted issuer, as [`Issuer`] builds them.
pub(crate) struct IssuerRuntime {
    pub(crate) issuer: String,
    /// The issuer as a `'static` label for the audit record and metrics.
    pub(crate) label: &'static str,
    pub(super) keys: KeyChain,
    /// The keys made from the HMAC secret, when the issuer has one.
    pub(super) hmac: Option<Arc<KeySet>>,
    pub(super) algorithms: Vec<Algorithm>,
    /// The clock leeway, in seconds.
    pub(super) leeway: u64,
    pub(super) strict_rfc9068: bool,
    /// The key bindings this issuer's tokens may carry.
    pub(crate) binding: crate::sender::Binding,
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
    /// The token's header and payload as sent (`header.payload`): the key is the
    /// digest of the signature alone, so a hit counts only when the rest is the same
    /// bytes. Not secret: the claims are kept anyway, and without the signature they
    /// are no token.
    signed: Box<str>,
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

/// Where a JWT's entry is in the verified-token cache: the SHA-256 of its signature,
/// and the length of what it signs (`header.payload`), compared on a hit.
pub(crate) struct JwtKey {
    digest: TokenDigest,
    signed_len: usize,
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
            cache: TokenCache::new(TokenCacheOptions::default(), "jwt"),
        })))
    }

    /// The same verifier with a verified-token cache of these bounds (a new, empty
    /// one); [`TokenCacheOptions::disabled`] verifies every request from scratch.
    pub fn token_cache(self, options: TokenCacheOptions) -> Self {
        Self(Arc::new(Inner {
            issuers: self.0.issuers.clone(),
            cache: TokenCache::new(options, "jwt"),
        }))
    }

    /// How full the verified-token cache is.
    pub fn token_cache_usage(&self) -> TokenCacheUsage {
        self.0.cache.usage()
    }

    /// Drops `token` from the verified-token cache, if it is there: the next request
    /// with it is verified from scratch. The entry is found by the token's signature,
    /// so any token with that signature drops it (forgetting more, never less).
    pub fn forget_token(&self, token: &str) {
        if let Some(key) = self.cache_key(token) {
            self.0.cache.remove(&key.digest);
        }
    }

    /// The trusted issuer identifiers.
    pub fn issuers(&self) -> impl Iterator<Item = &str> {
        self.0.issuers.keys().map(String::as_str)
    }

    /// The cache key of `token`: the SHA-256 of its signature, the part that only
    /// the issuer's key can make; `None` when the cache is off or `token` has not the
    /// three parts of a JWT. Hashing the signature alone, not the whole token, is
    /// what makes a repeated token cheap (a 64-byte ES256 signature is two blocks of
    /// SHA-256; the token, ten or more); [`JwtVerifier::cached`] then compares the
    /// header and payload byte for byte.
    pub(crate) fn cache_key(&self, token: &str) -> Option<JwtKey> {
        let (signed, signature) = split_signature(token)?;
        let digest = self.0.cache.key(signature)?;
        Some(JwtKey {
            digest,
            signed_len: signed.len(),
        })
    }

    /// The principal of `token`, verified earlier, if it may be reused now; `key` is
    /// its [`JwtVerifier::cache_key`].
    pub(crate) fn cached(&self, key: &JwtKey, token: &str) -> Option<Principal> {
        let cache = &self.0.cache;
        let Some(cached) = cache.get(&key.digest) else {
            cache.looked_up(crate::metrics::Lookup::Miss);
            return None;
        };
        // The same signature with another header or payload is another token (a
        // forgery): it is verified from scratch, and fails there.
        if token.get(..key.signed_len) != Some(&*cached.signed) {
            cache.looked_up(crate::metrics::Lookup::Miss);
            return None;
        }
        if !cached.is_current(jsonwebtoken::get_current_timestamp()) {
            cache.looked_up(crate::metrics::Lookup::Stale);
            cache.remove(&key.digest);
            return None;
        }
        cache.looked_up(crate::metrics::Lookup::Hit);
        crate::audit::verified(
            &cached.issuer.issuer,
            cached.issuer.label,
            "cache",
            cached.principal.subject(),
        );
        Some(cached.principal.clone())
    }

    /// Verifies `token`, whose cache key is `key`, and caches it when it passes.
    pub(crate) fn verify_uncached(&self, token: &BearerToken, key: Option<JwtKey>) -> VerifyFuture {
        match self.verify_now(token.as_str()) {
            Now::Decided(result) => VerifyFuture::ready(self.remember(key, token.as_str(), result)),
            Now::Fetch(pending) => {
                let this = self.clone();
                let token = token.clone();
                VerifyFuture::pending(async move {
                    let (parsed, issuer) = *pending;
                    let result = verify_later(token.as_str(), parsed, issuer).await;
                    this.remember(key, token.as_str(), result)
                })
            }
        }
    }

    fn remember(
        &self,
        key: Option<JwtKey>,
        token: &str,
        result: Result<Checked, AuthError>,
    ) -> Result<Principal, AuthError> {
        let checked = result?;
        let signed = key.as_ref().and_then(|key| token.get(..key.signed_len));
        if let (Some(key), Some(signed)) = (key, signed) {
            let now = jsonwebtoken::get_current_timestamp();
            let ttl = Duration::from_secs(checked.exp.saturating_sub(now));
            let entry = CachedJwt {
                signed: signed.into(),
                principal: checked.principal.clone(),
                exp: checked.exp,
                issuer: checked.issuer,
                kid: checked.kid.map(String::into_boxed_str),
                alg: checked.alg,
                keys: Arc::downgrade(&checked.keys),
            };
            self.0.cache.insert(
                key.digest,
                Arc::new(entry),
                ttl,
                cache::estimate(checked.principal.claims()) + signed.len(),
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
        if let Some(principal) = key
            .as_ref()
            .and_then(|key| self.cached(key, token.as_str()))
        {
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
    crate::audit::verified(&issuer.issuer, issuer.label, found.tier, None);
    let now = jsonwebtoken::get_current_timestamp();
    let exp = check_claims(&issuer, &parsed.header, &parsed.claims, now)?;
    let principal = Principal::from_claims(TokenKind::Jwt, issuer.issuer.clone(), parsed.claims)
        .with_binding(issuer.binding);
    if let Some(subject) = principal.subject() {
        tracing::Span::current().record("subject", subject);
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

/// A JWT's signed part (`header.payload`) and its signature, split at the last dot;
/// `None` unless the token has exactly three parts.
fn split_signature(token: &str) -> Option<(&str, &str)> {
    let [header, payload, signature] = super::jose::segments(token)?;
    let signed = &token[..header.len() + 1 + payload.len()];
    Some((signed, signature))
}

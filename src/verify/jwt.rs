//! [`JwtVerifier`]: JWT access tokens, checked with jsonwebtoken against per-issuer
//! rules (R-JWT-1..5): an algorithm allowlist, exact `iss`, required `exp`, `nbf` and
//! `iat` within one leeway, no unknown `crit`, no key chosen by the token's header,
//! no ID tokens, no key-bound tokens, and optionally strict RFC 9068.
//!
//! Keys come from the issuer's [`KeyChain`]. When a tier already holds the key (the
//! steady state) verification is synchronous and allocates no future.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, AlgorithmFamily, Header, Validation};
use serde_json::{Map, Value};

use super::{Introspection, IntrospectionVerifier, TokenVerifier, VerifyFuture};
use crate::audience::AudiencePolicy;
use crate::bearer::BearerToken;
use crate::error::{AuthError, ConfigError};
use crate::fetch::Fetcher;
use crate::keys::{
    Discovery, JwksCache, JwksOptions, KeyChain, KeySet, KeySource, LocalKeys, VerificationKey,
};
use crate::principal::{Principal, TokenKind};
use crate::uri;

/// The asymmetric algorithms an issuer accepts unless told otherwise.
const DEFAULT_ALGORITHMS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

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
            algorithms: DEFAULT_ALGORITHMS.to_vec(),
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

    /// Cache and fetch limits for this issuer's key sets and discovery.
    pub fn jwks_options(mut self, options: JwksOptions) -> Self {
        self.jwks = options;
        self
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let name = &self.issuer;
        uri::check_url(name, "issuer")?;
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
            uri::check_url(jwks_uri, "jwks_uri")?;
        }
        let asymmetric = self
            .algorithms
            .iter()
            .any(|a| a.family() != AlgorithmFamily::Hmac);
        let discovery = self.discovery.unwrap_or(self.jwks_uri.is_none());
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

    pub(crate) fn build(self) -> Result<BuiltIssuer, ConfigError> {
        self.validate()?;
        let fetcher = Fetcher::new(&self.jwks.fetch)?;
        let key_discovery = self.discovery.unwrap_or(self.jwks_uri.is_none());
        let needs_discovery = key_discovery
            || self
                .introspection
                .as_ref()
                .is_some_and(|i| !i.has_endpoint());
        let discovery = needs_discovery
            .then(|| Discovery::new(self.issuer.clone(), fetcher.clone(), self.jwks.clone()));
        let introspection = match self.introspection {
            Some(config) => Some(IntrospectionVerifier::build(
                self.issuer.clone(),
                config,
                discovery.clone(),
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
        // jsonwebtoken wants every algorithm of a Validation to fit the key, so there
        // is one Validation per allowed algorithm, built once.
        let validations = self
            .algorithms
            .iter()
            .map(|alg| {
                let mut validation = Validation::new(*alg);
                validation.leeway = self.leeway.as_secs();
                validation.validate_exp = true;
                validation.validate_nbf = true;
                validation.validate_aud = false; // the audience layer's job
                validation.set_issuer(&[&self.issuer]);
                validation.set_required_spec_claims(&["exp", "iss"]);
                (*alg, validation)
            })
            .collect();
        let runtime = IssuerRuntime {
            issuer: self.issuer,
            keys: KeyChain::new(sources),
            hmac,
            validations,
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
    validations: Vec<(Algorithm, Validation)>,
    leeway: u64,
    strict_rfc9068: bool,
}

impl IssuerRuntime {
    fn validation(&self, alg: Algorithm) -> Option<&Validation> {
        self.validations
            .iter()
            .find(|(a, _)| *a == alg)
            .map(|(_, v)| v)
    }
}

struct Inner {
    issuers: HashMap<String, IssuerRuntime>,
}

/// The one claim read before verification, to pick the issuer.
#[derive(serde::Deserialize)]
struct UnverifiedIssuer<'a> {
    #[serde(borrow, default)]
    iss: Option<std::borrow::Cow<'a, str>>,
}

/// Verifies JWT access tokens from a set of trusted issuers. Cheap to clone.
#[derive(Clone)]
pub struct JwtVerifier(Arc<Inner>);

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("issuers", &self.0.issuers.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// What the token says about itself before it is verified.
pub(crate) struct Unverified {
    header: Header,
    pub(crate) issuer: String,
}

impl JwtVerifier {
    /// A verifier for `issuers`. Checks the configuration (R-OPS-2) and does no I/O.
    /// For issuers with introspection use [`VerifierChain`](crate::VerifierChain),
    /// which also takes opaque tokens; here such a configuration is an error.
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
            map.insert(runtime.issuer.clone(), runtime);
        }
        if map.is_empty() {
            return Err(ConfigError::new(
                "no trusted issuer; add at least one Issuer",
            ));
        }
        Ok(Self(Arc::new(Inner { issuers: map })))
    }

    /// The trusted issuer identifiers.
    pub fn issuers(&self) -> impl Iterator<Item = &str> {
        self.0.issuers.keys().map(String::as_str)
    }

    pub(crate) fn inspect(&self, token: &str) -> Result<Unverified, AuthError> {
        let malformed =
            || AuthError::invalid_token("R-JWT-1", "the access token is not a well-formed JWT");
        let Some([header, payload, _]) = segments(token) else {
            return Err(malformed());
        };
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            // Decode the raw header only to name an unsupported `alg` (like `none`).
            let alg = URL_SAFE_NO_PAD
                .decode(header)
                .ok()
                .and_then(|raw| serde_json::from_slice::<Value>(&raw).ok())
                .and_then(|h| h.get("alg").and_then(Value::as_str).map(str::to_owned));
            match alg {
                Some(alg) if alg.len() <= 16 && alg.bytes().all(|b| b.is_ascii_alphanumeric()) => {
                    AuthError::invalid_token(
                        "R-JWT-1",
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
                "R-JWT-3",
                "the token's header marks extensions as critical (crit) that this server does not understand",
            ));
        }
        // Route by the unverified iss even with one issuer: a foreign token must cost
        // no key lookup and no network call (R-ISS-1).
        let raw = URL_SAFE_NO_PAD.decode(payload).map_err(|_| malformed())?;
        let issuer = match serde_json::from_slice::<UnverifiedIssuer<'_>>(&raw) {
            Ok(UnverifiedIssuer { iss: Some(iss) }) => iss.into_owned(),
            Ok(UnverifiedIssuer { iss: None }) => {
                return Err(AuthError::invalid_token(
                    "R-JWT-2",
                    "the token has no iss claim",
                ));
            }
            Err(_) => {
                return Err(AuthError::invalid_token(
                    "R-JWT-2",
                    "the token's claims are not a JSON object with a string iss",
                ));
            }
        };
        Ok(Unverified { header, issuer })
    }

    /// Verifies with the keys at hand; `None` when keys must be fetched first.
    fn verify_now(&self, token: &str) -> Option<Result<Principal, AuthError>> {
        let unverified = match self.inspect(token) {
            Ok(u) => u,
            Err(e) => return Some(Err(e)),
        };
        let issuer = match self.issuer(&unverified) {
            Ok(issuer) => issuer,
            Err(e) => return Some(Err(e)),
        };
        let alg = unverified.header.alg;
        let kid = unverified.header.kid.as_deref();
        if alg.family() == AlgorithmFamily::Hmac {
            let keys = issuer.hmac.clone();
            return Some(match keys {
                Some(keys) => check(issuer, token, &unverified.header, &keys, "hmac-secret"),
                None => Err(no_key(kid)),
            });
        }
        let found = issuer.keys.cached(kid, alg)?;
        Some(check(
            issuer,
            token,
            &unverified.header,
            &found.keys,
            found.tier,
        ))
    }

    fn issuer(&self, unverified: &Unverified) -> Result<&IssuerRuntime, AuthError> {
        let issuer = self.0.issuers.get(&unverified.issuer).ok_or_else(|| {
            AuthError::invalid_token(
                "R-JWT-2",
                "the token's issuer is not trusted by this server",
            )
        })?;
        if issuer.validation(unverified.header.alg).is_none() {
            return Err(AuthError::invalid_token(
                "R-JWT-1",
                format!(
                    "the token's algorithm {:?} is not allowed for its issuer",
                    unverified.header.alg
                ),
            ));
        }
        Ok(issuer)
    }

    async fn verify_later(self, token: BearerToken) -> Result<Principal, AuthError> {
        let token = token.as_str();
        let unverified = self.inspect(token)?;
        let issuer = self.issuer(&unverified)?;
        let kid = unverified.header.kid.as_deref();
        match issuer.keys.resolve(kid, unverified.header.alg).await {
            Ok(Some(found)) => check(issuer, token, &unverified.header, &found.keys, found.tier),
            Ok(None) => Err(no_key(kid)),
            Err(error) => Err(AuthError::unavailable(error.retry_after, error.reason)),
        }
    }
}

impl TokenVerifier for JwtVerifier {
    fn verify(&self, token: &BearerToken) -> VerifyFuture {
        match self.verify_now(token.as_str()) {
            Some(result) => VerifyFuture::ready(result),
            None => VerifyFuture::pending(self.clone().verify_later(token.clone())),
        }
    }
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
    AuthError::invalid_token("R-KEY-3", description)
}

/// Checks the signature with each candidate key, then the claims.
fn check(
    issuer: &IssuerRuntime,
    token: &str,
    header: &Header,
    keys: &KeySet,
    tier: &'static str,
) -> Result<Principal, AuthError> {
    let Some(validation) = issuer.validation(header.alg) else {
        return Err(describe(&ErrorKind::InvalidAlgorithm));
    };
    let mut last = None;
    // A token without kid may try several keys; bound the signature checks it costs.
    for key in keys
        .candidates(header.kid.as_deref(), header.alg)
        .take(MAX_KEYS_TRIED)
    {
        match jsonwebtoken::decode::<Map<String, Value>>(token, key.decoding_key(), validation) {
            Ok(data) => {
                let span = tracing::Span::current();
                span.record("issuer", issuer.issuer.as_str());
                span.record("key_tier", tier);
                return claims_to_principal(issuer, header, data.claims);
            }
            Err(error) => {
                let signature = matches!(error.kind(), ErrorKind::InvalidSignature);
                last = Some(error);
                // Another key of the set may have made this signature; any other
                // error is about the token and final.
                if !signature {
                    break;
                }
            }
        }
    }
    Err(match last {
        Some(error) => describe(error.kind()),
        None => no_key(header.kid.as_deref()),
    })
}

fn describe(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::ExpiredSignature => AuthError::invalid_token("R-JWT-2", "the token has expired"),
        ErrorKind::ImmatureSignature => {
            AuthError::invalid_token("R-JWT-2", "the token is not valid yet (nbf)")
        }
        ErrorKind::InvalidIssuer => AuthError::invalid_token(
            "R-JWT-2",
            "the token's iss does not match its issuer exactly",
        ),
        ErrorKind::MissingRequiredClaim(claim) => {
            let description = match claim.as_str() {
                "exp" => "the token has no exp claim, or it is not a number",
                "iss" => "the token has no iss claim",
                _ => "the token lacks a required claim",
            };
            AuthError::invalid_token("R-JWT-2", description)
        }
        ErrorKind::InvalidClaimFormat(_) => {
            AuthError::invalid_token("R-JWT-2", "a time claim of the token is malformed")
        }
        ErrorKind::InvalidSignature => {
            AuthError::invalid_token("R-JWT-1", "the token's signature does not verify")
        }
        ErrorKind::InvalidAlgorithm => {
            AuthError::invalid_token("R-JWT-1", "the token's algorithm does not fit its key")
        }
        _ => AuthError::invalid_token("R-JWT-1", "the token could not be verified"),
    }
}

/// The claim checks jsonwebtoken does not do.
fn claims_to_principal(
    issuer: &IssuerRuntime,
    header: &Header,
    claims: Map<String, Value>,
) -> Result<Principal, AuthError> {
    // R-JWT-2: a single string, exactly the issuer (jsonwebtoken also accepts arrays).
    if claims.get("iss").and_then(Value::as_str) != Some(issuer.issuer.as_str()) {
        return Err(AuthError::invalid_token(
            "R-JWT-2",
            "the token's iss does not match its issuer exactly",
        ));
    }
    match claims.get("iat") {
        None => {}
        Some(Value::Number(iat)) => {
            let now = jsonwebtoken::get_current_timestamp();
            if iat
                .as_f64()
                .is_some_and(|iat| iat > (now + issuer.leeway) as f64)
            {
                return Err(AuthError::invalid_token(
                    "R-JWT-2",
                    "the token was issued in the future (iat)",
                ));
            }
        }
        Some(_) => {
            return Err(AuthError::invalid_token(
                "R-JWT-2",
                "the token's iat is not a number",
            ));
        }
    }
    if !matches!(claims.get("exp"), Some(Value::Number(_))) {
        return Err(AuthError::invalid_token(
            "R-JWT-2",
            "the token's exp is not a number",
        ));
    }
    match claims.get("aud") {
        None | Some(Value::String(_)) => {}
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {}
        Some(_) => {
            return Err(AuthError::invalid_token(
                "R-AUD-2",
                "the token's aud is neither a string nor an array of strings",
            ));
        }
    }
    super::refuse_non_bearer_access_tokens(&claims)?;
    if issuer.strict_rfc9068 {
        let typ_ok = header.typ.as_deref().is_some_and(|typ| {
            typ.eq_ignore_ascii_case("at+jwt") || typ.eq_ignore_ascii_case("application/at+jwt")
        });
        if !typ_ok {
            return Err(AuthError::invalid_token(
                "R-JWT-4",
                "the token's typ is not at+jwt (RFC 9068)",
            ));
        }
        for claim in ["aud", "sub", "client_id", "iat", "jti"] {
            if !claims.contains_key(claim) {
                return Err(AuthError::invalid_token(
                    "R-JWT-4",
                    format!("the token has no {claim} claim, which RFC 9068 requires"),
                ));
            }
        }
    }
    let principal = Principal::from_claims(TokenKind::Jwt, issuer.issuer.clone(), claims);
    if let Some(subject) = principal.subject() {
        tracing::Span::current().record("subject", subject);
    }
    Ok(principal)
}

//! [`Issuer`]: the configuration of one trusted issuer, checked when it is built
//! (R-OPS-2), and what building it gives.
//!
//! The checks refuse at start-up what would be unsafe at run time: a URL that is not
//! https (or http to loopback, unless [`Issuer::allow_insecure_http`]), an issuer
//! identifier with a query, no algorithm, an HMAC algorithm without a long enough
//! secret, or together with public keys a token could choose between (R-JWT-1); no
//! way to get keys (R-KEY-1, R-KEY-2); a leeway over 5 minutes (R-JWT-2); and
//! key-set limits that contradict themselves. Building wires the key tiers in order
//! (in-process keys, custom sources, `jwks_uri`, discovery) and the introspection
//! verifier, which shares the issuer's discovery (R-OPQ-1).

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, AlgorithmFamily};

use super::jwt::IssuerRuntime;
use super::{Introspection, IntrospectionVerifier};
use crate::audience::AudiencePolicy;
use crate::error::ConfigError;
use crate::fetch::Fetcher;
use crate::keys::{
    Discovery, JwksCache, JwksOptions, KeyChain, KeySet, KeySource, LocalKeys, VerificationKey,
};
use crate::sender::{Binding, Dpop};
use crate::uri::{self, Transport};

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
    transport: Transport,
    binding: Binding,
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
            transport: Transport::HttpsOrLoopback,
            binding: Binding::default(),
        }
    }

    /// Accepts this issuer's DPoP-bound tokens (RFC 9449, `cnf.jkt`), sent as
    /// `Authorization: DPoP <token>` with a proof the verify layer checks on every
    /// request (R-DPOP-1). [`Dpop::allowed`] also takes the issuer's unbound tokens as
    /// `Bearer`; [`Dpop::required`] takes only DPoP-bound ones. Off by default: a
    /// DPoP-bound token is refused (R-JWT-5). [`ResourceServer::builder`] then names
    /// the proof algorithms in the metadata and the challenges and reads the `DPoP`
    /// scheme; a stack given its verifier
    /// ([`ResourceServer::with_verifier`], or composed by hand) needs them named on
    /// its resource ([`ProtectedResource::dpop_signing_algs`]), or the `DPoP` scheme is
    /// refused.
    ///
    /// [`ResourceServer::builder`]: crate::ResourceServer::builder
    /// [`ResourceServer::with_verifier`]: crate::ResourceServer::with_verifier
    /// [`ProtectedResource::dpop_signing_algs`]: crate::ProtectedResource::dpop_signing_algs
    pub fn dpop(mut self, policy: Dpop) -> Self {
        self.binding.dpop = Some(policy);
        self
    }

    /// Accepts this issuer's certificate-bound tokens (RFC 8705, `cnf["x5t#S256"]`),
    /// each only from a request whose client certificate is the bound one
    /// (R-MTLS-1; where certificates come from:
    /// [`ClientCertificates`](crate::ClientCertificates)). Off by default: a
    /// certificate-bound token is refused (R-JWT-5).
    pub fn certificate_bound_tokens(mut self, on: bool) -> Self {
        self.binding.mtls = on;
        self
    }

    /// This issuer's DPoP policy, if it accepts DPoP.
    pub fn dpop_policy(&self) -> Option<Dpop> {
        self.binding.dpop
    }

    /// Whether this issuer's certificate-bound tokens are accepted.
    pub fn accepts_certificate_bound_tokens(&self) -> bool {
        self.binding.mtls
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

    /// Whether this issuer's JWT-shaped tokens go to introspection too, instead of
    /// being checked locally (for issuers whose JWTs are not meant to be verified by
    /// resource servers, or to see revocations at once). Default `false`; `true`
    /// needs [`Issuer::introspection`].
    pub fn introspect_jwts(mut self, on: bool) -> Self {
        self.introspect_jwts = on;
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

    /// Whether tokens must be strict RFC 9068 (default `false`): `typ` must be
    /// `at+jwt`, and `iss`, `exp`, `aud`, `sub`, `client_id`, `iat` and `jti` must be
    /// present (R-JWT-4).
    pub fn strict_rfc9068(mut self, on: bool) -> Self {
        self.strict_rfc9068 = on;
        self
    }

    /// Accepts plain `http` URLs to a host other than localhost for this issuer, its
    /// `jwks_uri`, the endpoints its discovery names and its introspection endpoint.
    /// Anyone on the network path can then read the introspection credentials and
    /// replace the keys with their own, so only for a network that is trusted by
    /// other means (a service mesh that encrypts and authenticates every hop).
    pub fn allow_insecure_http(mut self) -> Self {
        self.transport = Transport::AnyHttp;
        self
    }

    /// Cache and fetch limits for this issuer's key sets and discovery.
    pub fn jwks_options(mut self, options: JwksOptions) -> Self {
        self.jwks = options;
        self
    }

    /// Checks the configuration (R-OPS-2); the first problem found is the error.
    fn validate(&self) -> Result<(), ConfigError> {
        self.validate_identifier()?;
        self.validate_algorithms()?;
        if let Some(jwks_uri) = &self.jwks_uri {
            self.check_url(jwks_uri, "jwks_uri")?;
        }
        self.validate_key_sources()?;
        self.validate_introspection()?;
        self.validate_leeway()?;
        self.validate_jwks_options()
    }

    /// The issuer identifier is an allowed URL without a query.
    fn validate_identifier(&self) -> Result<(), ConfigError> {
        let name = &self.issuer;
        self.check_url(name, "issuer")?;
        if name.contains('?') {
            return Err(ConfigError::new(format!(
                "issuer {name:?} has a query; an issuer identifier has none (RFC 8414 §2)"
            )));
        }
        Ok(())
    }

    /// At least one algorithm, and an HMAC secret (long enough) exactly when an HMAC
    /// algorithm is allowed (R-JWT-1).
    fn validate_algorithms(&self) -> Result<(), ConfigError> {
        let name = &self.issuer;
        if self.algorithms.is_empty() {
            return Err(ConfigError::new(format!(
                "issuer {name:?} allows no algorithm; list the ones its tokens use, e.g. RS256"
            )));
        }
        match (self.allows_hmac(), &self.hmac_secret) {
            (true, None) => Err(ConfigError::new(format!(
                "issuer {name:?} allows an HMAC algorithm but has no shared secret; HMAC keys \
                 are never taken from a key set, so set Issuer::hmac_secret or remove HS*"
            ))),
            (false, Some(_)) => Err(ConfigError::new(format!(
                "issuer {name:?} has an HMAC secret but allows no HMAC algorithm; add HS256 \
                 (or HS384/HS512) to Issuer::algorithms or remove the secret"
            ))),
            (true, Some(secret)) if secret.len() < 32 => Err(ConfigError::new(format!(
                "issuer {name:?} has an HMAC secret of {} bytes; use at least 32 random bytes",
                secret.len()
            ))),
            _ => Ok(()),
        }
    }

    /// HMAC tokens never share an issuer with public keys, and tokens checked here
    /// have somewhere to get their keys from (R-JWT-1, R-KEY-1).
    fn validate_key_sources(&self) -> Result<(), ConfigError> {
        let name = &self.issuer;
        let public_keys = self.local.is_some()
            || !self.sources.is_empty()
            || self.jwks_uri.is_some()
            || self.key_discovery();
        if self.allows_hmac() && public_keys {
            return Err(ConfigError::new(format!(
                "issuer {name:?} allows an HMAC algorithm and also takes public keys (local \
                 keys, a key source, a jwks_uri or discovery); a token could then pick which \
                 kind of key checks it. Give HMAC tokens an issuer of their own with only \
                 Issuer::hmac_secret, or remove HS* from Issuer::algorithms"
            )));
        }
        // Tokens sent to introspection need no keys; validate_introspection checks
        // that there is introspection to send them to.
        if self.allows_asymmetric() && !self.introspect_jwts && !public_keys {
            return Err(ConfigError::new(format!(
                "issuer {name:?} has no way to get keys: give it local keys, a jwks_uri, or \
                 leave discovery on"
            )));
        }
        Ok(())
    }

    /// JWTs go to introspection only when there is introspection.
    fn validate_introspection(&self) -> Result<(), ConfigError> {
        if self.introspect_jwts && self.introspection.is_none() {
            return Err(ConfigError::new(format!(
                "issuer {:?} sends JWTs to introspection but has none; add Issuer::introspection",
                self.issuer
            )));
        }
        Ok(())
    }

    /// The leeway is at most [`MAX_LEEWAY`] (R-JWT-2).
    fn validate_leeway(&self) -> Result<(), ConfigError> {
        if self.leeway > MAX_LEEWAY {
            return Err(ConfigError::new(format!(
                "issuer {:?} has a leeway of {} s, which would accept long-expired tokens; \
                 use at most {} s",
                self.issuer,
                self.leeway.as_secs(),
                MAX_LEEWAY.as_secs()
            )));
        }
        Ok(())
    }

    /// Key-set limits whose minimums are not above their maximums, and no zero cap.
    fn validate_jwks_options(&self) -> Result<(), ConfigError> {
        let name = &self.issuer;
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

    /// Whether an HMAC algorithm is allowed.
    fn allows_hmac(&self) -> bool {
        self.algorithms
            .iter()
            .any(|a| a.family() == AlgorithmFamily::Hmac)
    }

    /// Whether an asymmetric (public-key) algorithm is allowed.
    fn allows_asymmetric(&self) -> bool {
        self.algorithms
            .iter()
            .any(|a| a.family() != AlgorithmFamily::Hmac)
    }

    /// Whether keys are discovered: as configured, else when the issuer takes public
    /// keys and names no `jwks_uri`.
    fn key_discovery(&self) -> bool {
        let public_keys_without_jwks_uri = self.allows_asymmetric() && self.jwks_uri.is_none();
        self.discovery.unwrap_or(public_keys_without_jwks_uri)
    }

    /// Checks a URL of this issuer's: https, or http to localhost, or any http with
    /// [`Issuer::allow_insecure_http`]; the error says so.
    fn check_url(&self, url: &str, what: &str) -> Result<(), ConfigError> {
        uri::check_url_with(url, what, self.transport).map_err(|error| {
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

    /// Checks the configuration and builds the issuer's key tiers and, when it has
    /// one, its introspection verifier. Does no I/O.
    pub(crate) fn build(mut self) -> Result<BuiltIssuer, ConfigError> {
        self.validate()?;
        let fetcher = Fetcher::new(&self.jwks.fetch)?;
        let key_discovery = self.key_discovery();
        let discovery = self.shared_discovery(key_discovery, &fetcher)?;
        let introspection = match self.introspection.take() {
            Some(config) => Some(IntrospectionVerifier::build(
                self.issuer.clone(),
                config,
                discovery.clone(),
                self.transport,
                self.binding,
            )?),
            None => None,
        };
        let keys = self.key_chain(&fetcher, discovery.filter(|_| key_discovery));
        let hmac = self.hmac_keys();
        let runtime = IssuerRuntime {
            label: crate::metrics::intern(&self.issuer),
            issuer: self.issuer,
            keys,
            hmac,
            algorithms: self.algorithms,
            leeway: self.leeway.as_secs(),
            strict_rfc9068: self.strict_rfc9068,
            binding: self.binding,
        };
        Ok(BuiltIssuer {
            runtime,
            introspection,
            introspect_jwts: self.introspect_jwts,
        })
    }

    /// The issuer's discovery, when its keys (`key_discovery`) or its introspection
    /// endpoint come from it; one instance serves both.
    fn shared_discovery(
        &self,
        key_discovery: bool,
        fetcher: &Fetcher,
    ) -> Result<Option<Discovery>, ConfigError> {
        let needs_discovery = key_discovery
            || self
                .introspection
                .as_ref()
                .is_some_and(|i| !i.has_endpoint());
        if !needs_discovery {
            return Ok(None);
        }
        Ok(Some(Discovery::new(
            self.issuer.clone(),
            fetcher.clone(),
            fetcher.for_discovered(&self.issuer)?,
            self.jwks.clone(),
            self.transport,
        )))
    }

    /// The key tiers, in the order they are asked (R-KEY-1): in-process keys, custom
    /// sources, the `jwks_uri`, then `discovery`. Takes the keys and sources out of
    /// `self`.
    fn key_chain(&mut self, fetcher: &Fetcher, discovery: Option<Discovery>) -> KeyChain {
        let mut sources: Vec<Arc<dyn KeySource>> = Vec::new();
        if let Some(local) = self.local.take() {
            sources.push(Arc::new(local));
        }
        sources.append(&mut self.sources);
        if let Some(jwks_uri) = &self.jwks_uri {
            sources.push(Arc::new(JwksCache::new(
                jwks_uri.clone(),
                &self.issuer,
                "jwks",
                fetcher.clone(),
                self.jwks.clone(),
            )));
        }
        if let Some(discovery) = discovery {
            sources.push(Arc::new(discovery));
        }
        KeyChain::new(sources)
    }

    /// The keys made from the HMAC secret, one per allowed HMAC algorithm.
    fn hmac_keys(&self) -> Option<Arc<KeySet>> {
        self.hmac_secret.as_ref().map(|secret| {
            let keys = self
                .algorithms
                .iter()
                .filter(|a| a.family() == AlgorithmFamily::Hmac)
                .map(|alg| VerificationKey::hmac(secret, *alg));
            Arc::new(KeySet::new(keys))
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

//! [`VerifierChain`]: one verifier for every kind of token a server accepts
//! (R-OPQ-2, R-ISS-1). JWT-shaped tokens go to the JWT path (or, for issuers that
//! ask for it, to their introspection), other tokens to the issuers' introspection.
//! A JWT whose issuer is not trusted is refused before any network call.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::introspection::Claim;
use super::{
    CacheFuture, IntrospectionVerifier, Issuer, JwtVerifier, TokenCacheOptions, TokenCacheUsage,
    TokenVerifier, VerifyFuture,
};
use crate::bearer::BearerToken;
use crate::error::{AuthError, ConfigError};
use crate::rule::Rule;

#[derive(Clone)]
struct Inner {
    /// The JWT issuers, when there are any.
    jwt: Option<JwtVerifier>,
    /// Introspection of opaque tokens, in the order the issuers were given.
    opaque: Vec<IntrospectionVerifier>,
    /// Issuers whose JWT-shaped tokens another verifier checks (introspection,
    /// TokenReview, your own).
    remote: HashMap<String, Arc<dyn TokenVerifier>>,
    /// The verifiers added by `route_issuer`, each once.
    routed: Vec<Arc<dyn TokenVerifier>>,
}

/// The verifier of a [`ResourceServer`](crate::ResourceServer): JWTs and opaque
/// tokens of several issuers, one [`Principal`](crate::Principal) shape. Cheap to clone.
#[derive(Clone)]
pub struct VerifierChain(Arc<Inner>);

impl std::fmt::Debug for VerifierChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifierChain")
            .field("jwt", &self.0.jwt)
            .field("opaque", &self.0.opaque)
            .finish_non_exhaustive()
    }
}

/// Whether a token has the shape of a JWS: three segments, the first a JSON object.
fn is_jwt_shaped(token: &str) -> bool {
    let Some([header, _, _]) = super::jwt::segments(token) else {
        return false;
    };
    URL_SAFE_NO_PAD
        .decode(header)
        .is_ok_and(|raw| raw.first() == Some(&b'{'))
}

/// Whether a token that is not a well-formed JWS presents itself as one: three
/// parts, the first starting `eyJ` (how the base64url of every JSON header, `{"`,
/// begins). Such a token is a malformed JWT, not an opaque token to show an issuer;
/// other three-part tokens (Google's `ya29.c.…`) are opaque.
fn looks_like_a_jwt(token: &str) -> bool {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE};
    let Some([header, _, _]) = super::jwt::segments(token) else {
        return false;
    };
    // A header with a space before its first member (`{ "alg"`) encodes as `eyA`,
    // and some libraries write standard or padded base64: decode leniently.
    header.starts_with("eyJ")
        || [URL_SAFE_NO_PAD, URL_SAFE, STANDARD, STANDARD_NO_PAD]
            .iter()
            .filter_map(|engine| engine.decode(header).ok())
            .any(|raw| raw.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{'))
}

/// Refuses a configuration that would show one issuer's opaque tokens to another
/// (R-GW-3): two or more issuers without a token pattern would each receive every
/// unmatched token, with this server's client secret, unless each opted in.
fn check_opaque_routing(opaque: &[IntrospectionVerifier]) -> Result<(), ConfigError> {
    // Prefixes of two issuers that overlap send the tokens both match to both.
    for (at, one) in opaque.iter().enumerate() {
        for other in &opaque[at + 1..] {
            if let Some((a, b)) = one.overlapping_prefix(other) {
                return Err(ConfigError::new(format!(
                    "issuers {:?} and {:?} have overlapping opaque-token prefixes ({a:?} and \
                     {b:?}), so a token matching both would be shown to both; make the \
                     prefixes tell their tokens apart",
                    one.issuer(),
                    other.issuer()
                )));
            }
        }
    }
    let unmatched: Vec<&IntrospectionVerifier> =
        opaque.iter().filter(|v| !v.has_patterns()).collect();
    if unmatched.len() < 2 || unmatched.iter().all(|v| v.shares_unmatched()) {
        return Ok(());
    }
    let names: Vec<&str> = unmatched.iter().map(|v| v.issuer()).collect();
    Err(ConfigError::new(format!(
        "issuers {names:?} all introspect opaque tokens without a token pattern, so every \
         opaque token would be shown to each of them, with this server's client secret: \
         one issuer's tokens to the others. Give each issuer's Introspection a \
         token_prefix (Google's tokens start with \"ya29.\") or token_matches, or, if \
         that disclosure is acceptable, call also_receives_other_issuers_tokens() on each"
    )))
}

impl VerifierChain {
    /// A chain for `issuers`. Checks the configuration; does no I/O.
    pub fn new(issuers: impl IntoIterator<Item = Issuer>) -> Result<Self, ConfigError> {
        let mut runtimes = Vec::new();
        let mut opaque = Vec::new();
        let mut remote: HashMap<String, Arc<dyn TokenVerifier>> = HashMap::new();
        for issuer in issuers {
            let built = issuer.build()?;
            if let Some(introspection) = built.introspection {
                if built.introspect_jwts {
                    remote.insert(
                        built.runtime.issuer.clone(),
                        Arc::new(introspection.clone()),
                    );
                }
                opaque.push(introspection);
            }
            runtimes.push(built.runtime);
        }
        check_opaque_routing(&opaque)?;
        let jwt = if runtimes.is_empty() {
            None
        } else {
            Some(JwtVerifier::from_runtimes(runtimes)?)
        };
        Ok(Self(Arc::new(Inner {
            jwt,
            opaque,
            remote,
            routed: Vec::new(),
        })))
    }

    /// Sends JWT-shaped tokens whose (unverified) `iss` is `issuer` to `verifier`,
    /// e.g. a [`TokenReviewVerifier`](crate::TokenReviewVerifier) for a cluster's
    /// service-account tokens (R-ISS-2).
    pub fn route_issuer(
        mut self,
        issuer: impl Into<String>,
        verifier: impl TokenVerifier,
    ) -> Result<Self, ConfigError> {
        let issuer = issuer.into();
        let jwt_issuer = self
            .0
            .jwt
            .as_ref()
            .is_some_and(|jwt| jwt.issuers().any(|i| i == issuer));
        if jwt_issuer || self.0.remote.contains_key(&issuer) {
            return Err(ConfigError::new(format!(
                "issuer {issuer:?} is configured twice (as a JWT issuer or a routed verifier); keep one"
            )));
        }
        let verifier: Arc<dyn TokenVerifier> = Arc::new(verifier);
        let inner = Arc::make_mut(&mut self.0);
        inner.remote.insert(issuer, verifier.clone());
        inner.routed.push(verifier);
        Ok(self)
    }

    /// The same chain with a verified-token cache of these bounds for its JWTs (a new,
    /// empty one); [`TokenCacheOptions::disabled`] verifies every JWT from scratch.
    /// Introspection results have their own cache ([`Introspection::cache`](crate::Introspection::cache)).
    pub fn token_cache(mut self, options: TokenCacheOptions) -> Self {
        let inner = Arc::make_mut(&mut self.0);
        inner.jwt = inner.jwt.take().map(|jwt| jwt.token_cache(options));
        self
    }

    /// Whether the chain trusts no issuer at all.
    pub fn is_empty(&self) -> bool {
        self.0.jwt.is_none() && self.0.opaque.is_empty() && self.0.remote.is_empty()
    }

    /// Where an opaque token goes (R-GW-3): to the issuers whose pattern it matches,
    /// else to those without a pattern; a token shaped like a JWT whose header is
    /// not JSON goes nowhere (a malformed JWT, not an opaque token).
    fn verify_opaque(&self, token: &BearerToken) -> VerifyFuture {
        let claims: Vec<Claim> = self
            .0
            .opaque
            .iter()
            .map(|v| v.claim(token.as_str()))
            .collect();
        let wanted = if claims.contains(&Claim::Pattern) {
            Claim::Pattern
        } else if looks_like_a_jwt(token.as_str()) {
            return VerifyFuture::ready(Err(AuthError::invalid_token(
                Rule::Jwt2,
                "the token has the three parts of a JWT, but its header is not a JSON object: \
                 it is a malformed JWT",
            )));
        } else {
            Claim::Unmatched
        };
        let mut asked: Vec<IntrospectionVerifier> = self
            .0
            .opaque
            .iter()
            .zip(&claims)
            .filter(|(_, claim)| **claim == wanted)
            .map(|(verifier, _)| verifier.clone())
            .collect();
        match asked.len() {
            0 => VerifyFuture::ready(Err(AuthError::invalid_token(
                Rule::Opq2,
                "the token is not a JWT and matches no trusted issuer's opaque tokens",
            ))),
            1 => asked.remove(0).verify(token),
            _ => VerifyFuture::pending(first_active(
                asked.iter().map(|v| v.verify(token)).collect(),
            )),
        }
    }
}

/// The first of `pending` that verifies the token, without waiting for the others:
/// a slow or dead issuer never delays another's tokens. When none does, an issuer
/// that could not be asked may have known the token: 503 before 401, and a
/// misconfigured issuer never hides the others' answers.
async fn first_active(mut pending: Vec<VerifyFuture>) -> Result<Principal, AuthError> {
    use std::task::Poll;
    let mut errors = Vec::new();
    let found = std::future::poll_fn(|cx| {
        let mut at = 0;
        while at < pending.len() {
            match std::pin::Pin::new(&mut pending[at]).poll(cx) {
                Poll::Ready(Ok(principal)) => return Poll::Ready(Some(principal)),
                Poll::Ready(Err(error)) => {
                    errors.push(error);
                    pending.swap_remove(at);
                }
                Poll::Pending => at += 1,
            }
        }
        match pending.is_empty() {
            true => Poll::Ready(None),
            false => Poll::Pending,
        }
    })
    .await;
    if let Some(principal) = found {
        return Ok(principal);
    }
    let rank = |e: &AuthError| match e.kind() {
        crate::AuthErrorKind::Unavailable => 0,
        crate::AuthErrorKind::InvalidToken => 1,
        _ => 2,
    };
    errors.sort_by_key(rank);
    Err(errors.into_iter().next().unwrap_or_else(|| {
        AuthError::invalid_token(Rule::Opq2, "the token is not active at any trusted issuer")
    }))
}

use crate::principal::Principal;

impl TokenVerifier for VerifierChain {
    fn verify(&self, token: &BearerToken) -> VerifyFuture {
        // The hot path: a JWT verified before. Only the JWT path fills this cache, and
        // routing depends on the token alone, so a hit is a token that path verified.
        let text = token.as_str();
        let key = self.0.jwt.as_ref().and_then(|jwt| jwt.cache_key(text));
        if let (Some(jwt), Some(key)) = (&self.0.jwt, &key)
            && let Some(principal) = jwt.cached(key, text)
        {
            return VerifyFuture::ready(Ok(principal));
        }
        if is_jwt_shaped(text) {
            if !self.0.remote.is_empty()
                && let Some(issuer) = super::jwt::unverified_issuer(text)
                && let Some(verifier) = self.0.remote.get(&issuer)
            {
                return verifier.verify(token);
            }
            return match &self.0.jwt {
                Some(jwt) => jwt.verify_uncached(token, key),
                None => VerifyFuture::ready(Err(AuthError::invalid_token(
                    Rule::Jwt2,
                    "the token's issuer is not trusted by this server",
                ))),
            };
        }
        if self.0.opaque.is_empty() {
            return VerifyFuture::ready(Err(AuthError::invalid_token(
                Rule::Opq2,
                "the access token is not a well-formed JWT, and no trusted issuer is configured for opaque tokens",
            )));
        }
        self.verify_opaque(token)
    }

    fn forget(&self, token: &str) -> CacheFuture<()> {
        if let Some(jwt) = &self.0.jwt {
            jwt.forget_token(token);
        }
        let remote: Vec<CacheFuture<()>> = self
            .0
            .opaque
            .iter()
            .map(|verifier| verifier.forget(token))
            .chain(self.0.routed.iter().map(|verifier| verifier.forget(token)))
            .collect();
        Box::pin(async move {
            for forgotten in remote {
                forgotten.await;
            }
        })
    }

    fn cache_usage(&self) -> CacheFuture<TokenCacheUsage> {
        let jwt = self
            .0
            .jwt
            .as_ref()
            .map(JwtVerifier::token_cache_usage)
            .unwrap_or_default();
        // An issuer that introspects its JWTs is in `remote` too: count each once.
        let remote: Vec<CacheFuture<TokenCacheUsage>> = self
            .0
            .opaque
            .iter()
            .map(TokenVerifier::cache_usage)
            .chain(self.0.routed.iter().map(|v| v.cache_usage()))
            .collect();
        Box::pin(async move {
            let mut sum = jwt;
            for usage in remote {
                sum = sum + usage.await;
            }
            sum
        })
    }
}

//! [`VerifierChain`]: one verifier for every kind of token a server accepts
//! (R-OPQ-2, R-ISS-1). JWT-shaped tokens go to the JWT path (or, for issuers that
//! ask for it, to their introspection), other tokens to the issuers' introspection.
//! A JWT whose issuer is not trusted is refused before any network call.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::{IntrospectionVerifier, Issuer, JwtVerifier, TokenVerifier, VerifyFuture};
use crate::bearer::BearerToken;
use crate::error::{AuthError, ConfigError};

struct Inner {
    jwt: JwtVerifier,
    /// Introspection of opaque tokens, in the order the issuers were given.
    opaque: Vec<IntrospectionVerifier>,
    /// Issuers whose JWT-shaped tokens are introspected too.
    jwt_introspection: HashMap<String, IntrospectionVerifier>,
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

impl VerifierChain {
    /// A chain for `issuers`. Checks the configuration; does no I/O.
    pub fn new(issuers: impl IntoIterator<Item = Issuer>) -> Result<Self, ConfigError> {
        let mut runtimes = Vec::new();
        let mut opaque = Vec::new();
        let mut jwt_introspection = HashMap::new();
        for issuer in issuers {
            let built = issuer.build()?;
            if let Some(introspection) = built.introspection {
                if built.introspect_jwts {
                    jwt_introspection.insert(built.runtime.issuer.clone(), introspection.clone());
                }
                opaque.push(introspection);
            }
            runtimes.push(built.runtime);
        }
        Ok(Self(Arc::new(Inner {
            jwt: JwtVerifier::from_runtimes(runtimes)?,
            opaque,
            jwt_introspection,
        })))
    }

    /// The trusted issuer identifiers.
    pub fn issuers(&self) -> impl Iterator<Item = &str> {
        self.0.jwt.issuers()
    }

    async fn verify_opaque(self, token: BearerToken) -> Result<Principal, AuthError> {
        let mut refusal = None;
        let mut unavailable = None;
        for verifier in &self.0.opaque {
            match verifier.verify(&token).await {
                Ok(principal) => return Ok(principal),
                Err(error) if error.kind() == crate::AuthErrorKind::Unavailable => {
                    unavailable.get_or_insert(error);
                }
                Err(error) => {
                    refusal.get_or_insert(error);
                }
            }
        }
        // One issuer that could not be asked may have known the token: 503, not 401.
        Err(unavailable.or(refusal).unwrap_or_else(|| {
            AuthError::invalid_token("R-OPQ-2", "the token is not active at any trusted issuer")
        }))
    }
}

use crate::principal::Principal;

impl TokenVerifier for VerifierChain {
    fn verify(&self, token: &BearerToken) -> VerifyFuture {
        if is_jwt_shaped(token.as_str()) {
            if !self.0.jwt_introspection.is_empty()
                && let Ok(unverified) = self.0.jwt.inspect(token.as_str())
                && let Some(verifier) = self.0.jwt_introspection.get(&unverified.issuer)
            {
                return verifier.verify(token);
            }
            return self.0.jwt.verify(token);
        }
        if self.0.opaque.is_empty() {
            return VerifyFuture::ready(Err(AuthError::invalid_token(
                "R-OPQ-2",
                "the access token is not a well-formed JWT, and no trusted issuer is configured for opaque tokens",
            )));
        }
        if let [only] = self.0.opaque.as_slice() {
            return only.verify(token);
        }
        VerifyFuture::pending(self.clone().verify_opaque(token.clone()))
    }
}

//! Key resolution for JWT verification (R-KEY-1..5): the [`KeySource`] trait, the key
//! types, and the chain that asks an issuer's tiers in order.
//!
//! Tiers, in order: in-process keys ([`LocalKeys`]), an explicit `jwks_uri`, then lazy
//! discovery. Each tier owns its cache. The chain first asks every tier for keys it
//! already holds (no I/O, no waiting), and only then lets tiers fetch, in order, so
//! no request waits on a fetch when another tier already has its key.

mod discovery;
mod flight;
mod jwks;
mod local;
#[cfg(feature = "aws-lc-rs")]
mod native;
mod set;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Algorithm;

pub(crate) use discovery::Discovery;
#[cfg(feature = "fuzzing")]
pub(crate) use discovery::parse_document;
pub(crate) use jwks::JwksCache;
pub use jwks::JwksOptions;
pub use local::LocalKeys;
pub use set::{KeySet, VerificationKey};

/// Whether `signature` over `message` was made for `alg` with the public key of
/// `jwk`, checked once (a key met once, as a DPoP proof's): with AWS-LC straight from
/// the JWK's material; `None` when this backend cannot, or the material does not fit
/// `alg` (the caller then takes the [`VerificationKey`] path).
#[cfg(feature = "aws-lc-rs")]
pub(crate) fn verify_jwk_once(
    jwk: &serde_json::Value,
    alg: Algorithm,
    message: &[u8],
    signature: &str,
) -> Option<bool> {
    native::NativeKey::from_jwk(jwk).verify_once(alg, message, signature)
}

/// The asymmetric algorithms: what an issuer accepts unless told otherwise, and what
/// a public key may serve.
pub(crate) const ASYMMETRIC: [Algorithm; 9] = [
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

/// Keys could not be had right now (the identity provider is unreachable, slow, or
/// answering nonsense). Rendered as `503` with `Retry-After` (R-KEY-5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    /// When asking again may help.
    pub retry_after: Duration,
    /// A description safe to send to the client (no URLs, no internals).
    pub reason: String,
}

/// The future returned by [`KeySource::resolve`].
pub type KeyFuture = Pin<Box<dyn Future<Output = Result<Option<Arc<KeySet>>, KeyError>> + Send>>;

/// One tier of key resolution for an issuer.
///
/// Both methods answer with a key set that has a candidate for `kid` and `alg`
/// (see [`KeySet::candidates`]), or `None`.
pub trait KeySource: Send + Sync + 'static {
    /// The tier's name for logs and spans, e.g. `"local"`, `"jwks"`, `"discovery"`.
    fn tier(&self) -> &'static str;

    /// Keys already held, without I/O and without waiting. May start a background
    /// refresh when the held set is stale.
    fn cached(&self, kid: Option<&str>, alg: Algorithm) -> Option<Arc<KeySet>>;

    /// Keys for `kid`, fetching them if this tier fetches. Must honour its own
    /// time limits; must not hold up other requests beyond a shared fetch.
    fn resolve(&self, kid: Option<String>, alg: Algorithm) -> KeyFuture;
}

/// The tiers of one issuer, asked in order.
#[derive(Clone)]
pub(crate) struct KeyChain {
    sources: Arc<[Arc<dyn KeySource>]>,
}

/// A key set found by the chain, with the tier that gave it.
pub(crate) struct Found {
    pub(crate) keys: Arc<KeySet>,
    pub(crate) tier: &'static str,
}

impl KeyChain {
    pub(crate) fn new(sources: Vec<Arc<dyn KeySource>>) -> Self {
        Self {
            sources: sources.into(),
        }
    }

    /// Keys already held by any tier: the hot path.
    pub(crate) fn cached(&self, kid: Option<&str>, alg: Algorithm) -> Option<Found> {
        self.sources.iter().find_map(|source| {
            source.cached(kid, alg).map(|keys| Found {
                keys,
                tier: source.tier(),
            })
        })
    }

    /// Asks the tiers in order, letting them fetch. `Ok(None)`: no tier has the key.
    /// `Err`: no tier has it and at least one could not be asked (R-KEY-5).
    pub(crate) async fn resolve(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Option<Found>, KeyError> {
        let mut unavailable = None;
        for source in self.sources.iter() {
            match source.resolve(kid.map(str::to_owned), alg).await {
                Ok(Some(keys)) => {
                    return Ok(Some(Found {
                        keys,
                        tier: source.tier(),
                    }));
                }
                Ok(None) => {}
                Err(error) => {
                    unavailable.get_or_insert(error);
                }
            }
        }
        match unavailable {
            Some(error) => Err(error),
            None => Ok(None),
        }
    }
}

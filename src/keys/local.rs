//! [`LocalKeys`]: the in-process tier (R-KEY-1) — a static key set or PEM, or a handle
//! the embedding program updates at run time (an embedded authorization server that
//! rotates its signing keys, whose keys must answer even when discovery cannot). Reads are an atomic load, never a lock.

use std::future::ready;
use std::sync::Arc;

use arc_swap::ArcSwap;
use jsonwebtoken::Algorithm;

use super::{KeyFuture, KeySet, KeySource, VerificationKey};
use crate::error::ConfigError;

/// In-process keys. Clone it to keep a handle: [`LocalKeys::replace`] on any clone is
/// seen by the verifier at once.
///
/// ```
/// use mcp_gatekeeper::keys::{KeySet, LocalKeys};
///
/// let keys = LocalKeys::new(KeySet::default());
/// let handle = keys.clone(); // give `keys` to the issuer, keep `handle`
/// handle.replace(KeySet::from_jwks(br#"{"keys": []}"#)?);
/// # Ok::<(), mcp_gatekeeper::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct LocalKeys(Arc<ArcSwap<KeySet>>);

impl LocalKeys {
    /// In-process keys, starting with `keys`.
    pub fn new(keys: KeySet) -> Self {
        Self(Arc::new(ArcSwap::from_pointee(keys)))
    }

    /// In-process keys from a JWK set document.
    pub fn from_jwks(json: &[u8]) -> Result<Self, ConfigError> {
        KeySet::from_jwks(json).map(Self::new)
    }

    /// In-process keys from one PEM public key for `alg`, with an optional `kid`.
    pub fn from_pem(pem: &[u8], alg: Algorithm, kid: Option<&str>) -> Result<Self, ConfigError> {
        let mut key = VerificationKey::from_pem(pem, alg)?;
        if let Some(kid) = kid {
            key = key.with_kid(kid);
        }
        Ok(Self::new(KeySet::new([key])))
    }

    /// Replaces the keys, atomically, for every clone of this handle.
    pub fn replace(&self, keys: KeySet) {
        self.0.store(Arc::new(keys));
    }

    /// The current keys.
    pub fn current(&self) -> Arc<KeySet> {
        self.0.load_full()
    }
}

impl KeySource for LocalKeys {
    fn tier(&self) -> &'static str {
        "local"
    }

    fn cached(&self, kid: Option<&str>, alg: Algorithm) -> Option<Arc<KeySet>> {
        let keys = self.0.load();
        keys.has(kid, alg)
            .then(|| arc_swap::Guard::into_inner(keys))
    }

    fn resolve(&self, kid: Option<String>, alg: Algorithm) -> KeyFuture {
        Box::pin(ready(Ok(self.cached(kid.as_deref(), alg))))
    }
}

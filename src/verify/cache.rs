//! [`ResultCache`]: verified results of remote verifiers (introspection, TokenReview),
//! keyed by the SHA-256 of the token — never by a weaker hash, since a collision
//! would skip verification — each kept no longer than its own time-to-live, with
//! concurrent requests for one token sharing one remote call.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::error::AuthError;

/// A verified result and how long it may be reused.
pub(crate) struct Verified {
    pub(crate) claims: Map<String, Value>,
    pub(crate) ttl: Duration,
}

struct PerEntryTtl;

impl moka::Expiry<[u8; 32], Arc<Verified>> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        value: &Arc<Verified>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// Only successes are cached; a refusal or an outage is shared with the requests
/// waiting on the same call, then forgotten.
pub(crate) struct ResultCache(moka::future::Cache<[u8; 32], Arc<Verified>>);

impl ResultCache {
    pub(crate) fn new(capacity: u64) -> Self {
        Self(
            moka::future::Cache::builder()
                .max_capacity(capacity)
                .expire_after(PerEntryTtl)
                .build(),
        )
    }

    /// The cached result for `token`, or the result of `verify`, shared with every
    /// concurrent request for the same token.
    pub(crate) async fn get_or_verify<F>(
        &self,
        token: &str,
        verify: F,
    ) -> Result<Arc<Verified>, AuthError>
    where
        F: Future<Output = Result<Arc<Verified>, AuthError>>,
    {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let verified = self
            .0
            .try_get_with(key, verify)
            .await
            .map_err(|error| (*error).clone())?;
        // An entry may outlive the token's exp by less than a second; check.
        let expired = verified
            .claims
            .get("exp")
            .and_then(Value::as_u64)
            .is_some_and(|exp| exp <= jsonwebtoken::get_current_timestamp());
        if expired {
            self.0.invalidate(&key).await;
            return Err(AuthError::invalid_token("R-OPQ-1", "the token has expired"));
        }
        Ok(verified)
    }
}

/// How long a result with this `exp` may be reused: never past `exp`, never past
/// `max`. `Err` when the token has expired already.
pub(crate) fn ttl_until(exp: Option<&Value>, max: Duration) -> Result<Duration, AuthError> {
    let now = jsonwebtoken::get_current_timestamp();
    let Some(exp) = exp else {
        return Ok(max);
    };
    // RFC 7519 NumericDate may have a fraction.
    let Some(exp) = exp.as_f64().filter(|e| e.is_finite() && *e >= 0.0) else {
        return Err(AuthError::invalid_token(
            "R-OPQ-1",
            "the token's exp is not a number",
        ));
    };
    let exp = exp as u64;
    if exp > now {
        Ok(max.min(Duration::from_secs(exp - now)))
    } else {
        Err(AuthError::invalid_token("R-OPQ-1", "the token has expired"))
    }
}

//! [`JwksCache`]: the tier for a `jwks_uri` (R-KEY-3). The key set is an atomically
//! swapped snapshot, so reads take no lock and never wait on a refresh:
//!
//! - time-to-live from `Cache-Control: max-age`, clamped to a floor and a ceiling;
//! - a stale set keeps answering while one background refresh runs;
//! - an unknown `kid` refreshes at once, at most once per cool-down; inside the
//!   cool-down the request fails fast;
//! - concurrent misses share one fetch; a failed refresh keeps the last good set
//!   (stale-if-error) and backs off;
//! - bad keys are skipped one by one, the number of keys and the body size are capped.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use jsonwebtoken::Algorithm;

use super::flight::{Flight, Gate};
use super::{KeyError, KeyFuture, KeySet, KeySource};
use crate::fetch::{FetchError, FetchOptions, Fetcher};

/// Cache and fetch limits for JWK sets (and discovery documents).
#[derive(Debug, Clone)]
pub struct JwksOptions {
    /// Time-to-live when the response has no `Cache-Control: max-age`. Default 5 min.
    pub default_ttl: Duration,
    /// Shortest time-to-live, whatever `Cache-Control` says. Default 1 min.
    pub min_ttl: Duration,
    /// Longest time-to-live, whatever `Cache-Control` says. Default 24 h.
    pub max_ttl: Duration,
    /// Least time between two fetches caused by unknown `kid`s. Default 30 s.
    pub kid_miss_cooldown: Duration,
    /// Most keys kept from one set. Default 64.
    pub max_keys: usize,
    /// First back-off after a failed fetch; doubles up to `max_backoff`. Default 1 s.
    pub min_backoff: Duration,
    /// Longest back-off after failed fetches. Default 60 s.
    pub max_backoff: Duration,
    /// Timeouts and size cap of every fetch.
    pub fetch: FetchOptions,
}

impl Default for JwksOptions {
    fn default() -> Self {
        Self {
            default_ttl: Duration::from_secs(300),
            min_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(24 * 3600),
            kid_miss_cooldown: Duration::from_secs(30),
            max_keys: 64,
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            fetch: FetchOptions::default(),
        }
    }
}

struct Snapshot {
    keys: Arc<KeySet>,
    expires_at: Instant,
}

struct Inner {
    uri: String,
    /// The issuer whose keys these are (a label of the metrics).
    issuer: String,
    tier: &'static str,
    fetcher: Fetcher,
    options: JwksOptions,
    snapshot: ArcSwapOption<Snapshot>,
    flight: Flight,
    background: AtomicBool,
}

/// What a lookup does when the set it finds has outlived its time-to-live: the set
/// answers either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnStale {
    /// Start one background refresh (the steady-state read).
    RefreshInBackground,
    /// Nothing: the caller has just fetched, or decided not to.
    Ignore,
}

/// A cached JWK set fetched from one URI. Cheap to clone.
#[derive(Clone)]
pub(crate) struct JwksCache(Arc<Inner>);

impl JwksCache {
    pub(crate) fn new(
        uri: String,
        issuer: &str,
        tier: &'static str,
        fetcher: Fetcher,
        options: JwksOptions,
    ) -> Self {
        let flight = Flight::new(options.min_backoff, options.max_backoff);
        Self(Arc::new(Inner {
            uri,
            issuer: issuer.to_owned(),
            tier,
            fetcher,
            options,
            snapshot: ArcSwapOption::empty(),
            flight,
            background: AtomicBool::new(false),
        }))
    }

    /// The held set, when it has a candidate for `kid` and `alg`.
    fn lookup(&self, kid: Option<&str>, alg: Algorithm, on_stale: OnStale) -> Option<Arc<KeySet>> {
        let guard = self.0.snapshot.load();
        let snapshot = guard.as_ref()?;
        if !snapshot.keys.has(kid, alg) {
            return None;
        }
        if on_stale == OnStale::RefreshInBackground && Instant::now() >= snapshot.expires_at {
            self.refresh_in_background();
        }
        Some(snapshot.keys.clone())
    }

    /// Starts one background refresh of a stale set, unless one runs or the last
    /// fetch failed recently.
    fn refresh_in_background(&self) {
        if matches!(self.0.flight.gate(), Gate::BackingOff(_)) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.0.background.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        let seen = self.0.flight.seen();
        runtime.spawn(async move {
            let _ = this.refresh(seen).await;
            this.0.background.store(false, Ordering::Release);
        });
    }

    async fn refresh(&self, seen: u64) -> Result<(), KeyError> {
        let this = self.clone();
        self.0
            .flight
            .run(seen, move || async move { this.fetch().await })
            .await
    }

    async fn fetch(&self) -> Result<(), KeyError> {
        let inner = &self.0;
        let started = std::time::Instant::now();
        let fetched = inner.fetcher.get_json(&inner.uri).await;
        let outcome = fetched.and_then(|fetched| {
            let parsed = super::KeySet::parse(&fetched.body, inner.options.max_keys)
                .map_err(FetchError::Invalid)?;
            if parsed.keys.is_empty() {
                // Keep the last good set rather than replace it with nothing.
                return Err(FetchError::Invalid(format!(
                    "no usable key ({} skipped)",
                    parsed.skipped.len()
                )));
            }
            Ok((parsed, fetched.max_age))
        });
        let label = match &outcome {
            Ok(_) => "ok",
            Err(error) => crate::metrics::fetch_outcome(error),
        };
        crate::metrics::key_fetch(&inner.issuer, inner.tier, label, started.elapsed());
        match outcome {
            Ok((parsed, max_age)) => {
                for skipped in &parsed.skipped {
                    tracing::warn!(jwks_uri = %inner.uri, "skipped a key of the JWK set: {skipped}");
                }
                let ttl = max_age.unwrap_or(inner.options.default_ttl).clamp(
                    inner.options.min_ttl,
                    inner.options.max_ttl.max(inner.options.min_ttl),
                );
                tracing::debug!(jwks_uri = %inner.uri, keys = parsed.keys.len(), ttl_secs = ttl.as_secs(), "fetched JWK set");
                let now = Instant::now();
                inner.snapshot.store(Some(Arc::new(Snapshot {
                    keys: Arc::new(parsed.keys),
                    expires_at: now.checked_add(ttl).unwrap_or(now),
                })));
                Ok(())
            }
            Err(error) => {
                let stale = inner.snapshot.load().is_some();
                tracing::warn!(
                    jwks_uri = %inner.uri,
                    keeping_last_good_set = stale,
                    "fetching the JWK set failed: {error}"
                );
                // The detail is in the log; the client gets the cause, not internals.
                Err(KeyError {
                    retry_after: inner.options.min_backoff,
                    reason: "the identity provider's key set could not be fetched".into(),
                })
            }
        }
    }

    /// Fetches now, when keys for `kid` are missing; see the module docs for when
    /// this waits, fails fast or fetches.
    async fn resolve_missing(
        &self,
        kid: Option<String>,
        alg: Algorithm,
    ) -> Result<Option<Arc<KeySet>>, KeyError> {
        let seen = self.0.flight.seen();
        if let Some(keys) = self.lookup(kid.as_deref(), alg, OnStale::RefreshInBackground) {
            return Ok(Some(keys));
        }
        let have_set = self.0.snapshot.load().is_some();
        if let Gate::BackingOff(error) = self.0.flight.gate() {
            return Err(error);
        }
        if have_set
            && self
                .0
                .flight
                .since_last_success()
                .is_some_and(|since| since < self.0.options.kid_miss_cooldown)
        {
            // R-KEY-3: inside the cool-down an unknown kid fails fast. A fetch that
            // finished since the first look may have brought the key: look again.
            return Ok(self.lookup(kid.as_deref(), alg, OnStale::Ignore));
        }
        self.refresh(seen).await?;
        Ok(self.lookup(kid.as_deref(), alg, OnStale::Ignore))
    }
}

impl KeySource for JwksCache {
    fn tier(&self) -> &'static str {
        self.0.tier
    }

    fn cached(&self, kid: Option<&str>, alg: Algorithm) -> Option<Arc<KeySet>> {
        self.lookup(kid, alg, OnStale::RefreshInBackground)
    }

    fn resolve(&self, kid: Option<String>, alg: Algorithm) -> KeyFuture {
        let this = self.clone();
        Box::pin(async move { this.resolve_missing(kid, alg).await })
    }
}

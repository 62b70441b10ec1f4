//! Per-token caches: verified JWTs ([`TokenCache`]) and the results of remote
//! verifiers, introspection and TokenReview ([`ResultCache`]).
//!
//! Both follow one set of rules ([`TokenCacheOptions`]):
//!
//! - keyed by a SHA-256, never by a weaker hash, since a collision would skip
//!   verification: of the whole token for introspection and TokenReview; of a JWT's
//!   signature for the JWT cache, whose entries keep the header and payload and
//!   count a hit only when they are the same bytes (a reused signature on other
//!   claims is verified from scratch, and fails);
//! - bounded by an entry count and by bytes: each entry weighs the estimated size of
//!   what it holds, but never less than `max_bytes / max_entries`, so neither bound
//!   can be passed;
//! - an entry lives no longer than the token's `exp` nor `max_ttl`, and `exp` is
//!   checked again on every hit;
//! - only successes are cached.
//!
//! Reads of the JWT cache are synchronous and take no lock (moka's concurrent hash
//! table); the remote-result cache also makes concurrent requests for one token share
//! one remote call.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::error::AuthError;
use crate::metrics::{CacheMeter, Lookup};
use crate::rule::Rule;

/// The cache key of a token: a SHA-256 (of an opaque token, or of a JWT's
/// signature).
pub(crate) type TokenDigest = [u8; 32];

/// The SHA-256 of `token`.
pub(crate) fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

/// Bounds of a per-token cache: the verified-token cache of JWTs
/// ([`ResourceServerBuilder::token_cache`](crate::ResourceServerBuilder::token_cache)),
/// and the result caches of introspection and TokenReview.
///
/// A cached JWT is reused only while the key that verified it is still the one its
/// issuer's key tiers hold (a removed or rotated key drops it at once), never past
/// its `exp`; the audience and authorization layers still run on every request. A
/// cached introspection or TokenReview result is the one trade-off: a token revoked
/// at the issuer stays accepted until its entry ends, at most `max_ttl`.
///
/// ```
/// use std::time::Duration;
/// use mcp_gatekeeper::TokenCacheOptions;
///
/// let small = TokenCacheOptions {
///     max_entries: 1_000,
///     max_bytes: 2 * 1024 * 1024,
///     max_ttl: Duration::from_secs(60),
/// };
/// assert!(small.is_enabled());
/// assert!(!TokenCacheOptions::disabled().is_enabled());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenCacheOptions {
    /// The most entries kept. Default 10,000. Zero turns the cache off.
    pub max_entries: u64,
    /// The most memory the entries take, by an estimate of their size (the parsed
    /// claims walked value by value, a JWT's header and payload as sent, plus a fixed
    /// share per entry). Default 16 MiB.
    /// Zero turns the cache off.
    pub max_bytes: u64,
    /// The longest an entry is reused; never beyond the token's `exp` either.
    /// Default 5 min. Zero turns the cache off; more than a year counts as a year.
    pub max_ttl: Duration,
}

/// The longest `max_ttl` taken as it is.
const LONGEST_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

impl Default for TokenCacheOptions {
    fn default() -> Self {
        Self {
            max_entries: 10_000,
            max_bytes: 16 * 1024 * 1024,
            max_ttl: Duration::from_secs(300),
        }
    }
}

impl TokenCacheOptions {
    /// No cache: every request is verified from scratch.
    pub const fn disabled() -> Self {
        Self {
            max_entries: 0,
            max_bytes: 0,
            max_ttl: Duration::ZERO,
        }
    }

    /// Whether these options keep anything at all.
    pub fn is_enabled(&self) -> bool {
        self.max_entries > 0 && self.max_bytes > 0 && !self.max_ttl.is_zero()
    }

    /// The byte bound the cache works with: `max_bytes`, but no more than
    /// `max_entries` entries of the largest weight an entry can have (`u32::MAX`), so
    /// that the share of one entry always fits a weight and the count bound holds
    /// (`max_bytes: u64::MAX` means "by count only").
    fn byte_bound(&self) -> u64 {
        self.max_bytes
            .min(self.max_entries.saturating_mul(u64::from(u32::MAX)))
    }

    /// The weight of an entry of about `bytes`: never below the share of one entry,
    /// so that the byte bound of weight also bounds the count by `max_entries`.
    fn weight(&self, bytes: usize) -> u32 {
        let share = self.byte_bound().div_ceil(self.max_entries.max(1)).max(1);
        u32::try_from((bytes as u64).max(share)).unwrap_or(u32::MAX)
    }

    /// `max_ttl` within what the cache can keep.
    fn ttl(&self) -> Duration {
        self.max_ttl.min(LONGEST_TTL)
    }
}

/// How full a token cache is, for monitoring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenCacheUsage {
    /// Entries held.
    pub entries: u64,
    /// Their estimated size in bytes (at least `max_bytes / max_entries` each).
    pub bytes: u64,
}

impl std::ops::Add for TokenCacheUsage {
    type Output = Self;

    fn add(self, other: Self) -> Self {
        Self {
            entries: self.entries + other.entries,
            bytes: self.bytes + other.bytes,
        }
    }
}

/// What the allocator takes for `bytes`: rounded up to 16, plus a 16-byte header.
fn allocation(bytes: usize) -> usize {
    match bytes {
        0 => 0,
        n => n.div_ceil(16) * 16 + 16,
    }
}

/// The heap a parsed JSON value holds (its own slot is its container's).
fn heap(value: &Value) -> usize {
    match value {
        Value::String(text) => allocation(text.capacity()),
        Value::Array(items) => {
            allocation(items.capacity() * std::mem::size_of::<Value>())
                + items.iter().map(heap).sum::<usize>()
        }
        Value::Object(map) => object(map),
        _ => 0,
    }
}

/// The heap of a JSON object: B-tree nodes of 11 key and value slots, taken as no
/// more than half full (an insertion-order map takes less), and each key and value.
fn object(map: &Map<String, Value>) -> usize {
    let slots = 11 * (std::mem::size_of::<String>() + std::mem::size_of::<Value>()) + 16;
    map.len().div_ceil(6) * allocation(slots)
        + map
            .iter()
            .map(|(key, value)| allocation(key.capacity()) + heap(value))
            .sum::<usize>()
}

/// The memory a cached principal with these claims holds: the claims as parsed
/// (walked, not guessed from their JSON length: `[[],[],…]` takes ten times its
/// text), the copies the principal keeps of `aud` and the scopes, and a fixed share
/// for the principal, the entry and the cache's own bookkeeping.
pub(crate) fn estimate(claims: &Map<String, Value>) -> usize {
    const FIXED: usize = 512;
    let copied: usize = ["aud", "scope", "scp"]
        .iter()
        .filter_map(|name| claims.get(*name))
        .map(heap)
        .sum();
    FIXED + object(claims) + 2 * copied
}

/// A cached value with what the cache needs to know of it.
struct Entry<V> {
    value: Arc<V>,
    /// How long the entry may live: until the token's `exp`, at most `max_ttl`.
    ttl: Duration,
    weight: u32,
    /// Whether the metrics' gauges count it.
    counted: bool,
}

/// Per-entry expiry, for the result cache (inserts there follow a network call).
struct Rules;

impl<V> moka::Expiry<TokenDigest, Arc<Entry<V>>> for Rules {
    fn expire_after_create(
        &self,
        _key: &TokenDigest,
        entry: &Arc<Entry<V>>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(entry.ttl)
    }
}

fn weigh<V>(_key: &TokenDigest, entry: &Arc<Entry<V>>) -> u32 {
    entry.weight
}

/// An entry of the JWT cache. Its value is let go as soon as the cache evicts the
/// entry: the cache's concurrent table frees what it removes only when its epoch
/// collector next runs, up to some dozens of entries later per thread, and with fat
/// claims those would hold many times the byte bound.
struct Held<V> {
    value: arc_swap::ArcSwapOption<V>,
    weight: u32,
    /// Whether the metrics' gauges count it.
    counted: bool,
}

/// The synchronous cache of verified JWTs: read on the hot path, without a lock and
/// without waiting.
pub(crate) struct TokenCache<V> {
    cache: Option<moka::sync::Cache<TokenDigest, Arc<Held<V>>>>,
    options: TokenCacheOptions,
    meter: Arc<CacheMeter>,
}

impl<V: Send + Sync + 'static> TokenCache<V> {
    pub(crate) fn new(options: TokenCacheOptions, name: &'static str) -> Self {
        let meter = Arc::new(CacheMeter::new(name));
        let listener = meter.clone();
        let cache = options.is_enabled().then(|| {
            moka::sync::Cache::builder()
                .max_capacity(options.byte_bound())
                .weigher(|_key, held: &Arc<Held<V>>| held.weight)
                .time_to_live(options.ttl())
                .eviction_listener(move |_key, held: Arc<Held<V>>, cause| {
                    held.value.store(None);
                    listener.left(cause, held.weight, held.counted);
                })
                .build()
        });
        Self {
            cache,
            options,
            meter,
        }
    }

    /// Counts a lookup for the metrics.
    pub(crate) fn looked_up(&self, result: Lookup) {
        self.meter.looked_up(result);
    }

    /// The key of `text` (what identifies a token), or `None` when the cache is off
    /// (nothing to hash for).
    pub(crate) fn key(&self, text: &str) -> Option<TokenDigest> {
        self.cache.as_ref().map(|_| digest(text))
    }

    /// The value stored for `key`. Its own deadline (the token's `exp`) is the
    /// caller's to check, with the clock it reads anyway; moka ends it at `max_ttl`.
    pub(crate) fn get(&self, key: &TokenDigest) -> Option<Arc<V>> {
        self.cache.as_ref()?.get(key)?.value.load_full()
    }

    /// Keeps `value` for at most `ttl` (and `max_ttl`); `bytes` is its estimated size.
    pub(crate) fn insert(&self, key: TokenDigest, value: Arc<V>, ttl: Duration, bytes: usize) {
        let Some(cache) = &self.cache else {
            return;
        };
        let ttl = ttl.min(self.options.ttl());
        if ttl.is_zero() {
            return;
        }
        let weight = self.options.weight(bytes);
        let value = arc_swap::ArcSwapOption::new(Some(value));
        let counted = self.meter.stored(weight);
        cache.insert(
            key,
            Arc::new(Held {
                value,
                weight,
                counted,
            }),
        );
    }

    pub(crate) fn remove(&self, key: &TokenDigest) {
        if let Some(cache) = &self.cache {
            cache.invalidate(key);
        }
    }

    pub(crate) fn usage(&self) -> TokenCacheUsage {
        match &self.cache {
            Some(cache) => {
                cache.run_pending_tasks();
                TokenCacheUsage {
                    entries: cache.entry_count(),
                    bytes: cache.weighted_size(),
                }
            }
            None => TokenCacheUsage::default(),
        }
    }
}

/// A verified result of a remote verifier and how long it may be reused.
pub(crate) struct Verified {
    pub(crate) claims: Map<String, Value>,
    pub(crate) ttl: Duration,
}

/// The cache of remote results (introspection, TokenReview). Only successes are
/// cached; a refusal or an outage is shared with the requests waiting on the same
/// call, then forgotten. Off, every request makes its own call.
pub(crate) struct ResultCache {
    cache: Option<moka::future::Cache<TokenDigest, Arc<Entry<Verified>>>>,
    options: TokenCacheOptions,
    meter: Arc<CacheMeter>,
}

impl ResultCache {
    pub(crate) fn new(options: TokenCacheOptions, name: &'static str) -> Self {
        let meter = Arc::new(CacheMeter::new(name));
        let listener = meter.clone();
        let cache = options.is_enabled().then(|| {
            moka::future::Cache::builder()
                .max_capacity(options.byte_bound())
                .weigher(weigh)
                .expire_after(Rules)
                .eviction_listener(move |_key, entry: Arc<Entry<Verified>>, cause| {
                    listener.left(cause, entry.weight, entry.counted);
                })
                .build()
        });
        Self {
            cache,
            options,
            meter,
        }
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
        let Some(cache) = &self.cache else {
            return verify.await;
        };
        let key = digest(token);
        let options = self.options;
        let meter = &self.meter;
        let verified_now = std::sync::atomic::AtomicBool::new(false);
        let entry = cache
            .try_get_with(key, async {
                verified_now.store(true, std::sync::atomic::Ordering::Relaxed);
                let value = verify.await?;
                let ttl = value.ttl.min(options.ttl());
                let weight = options.weight(estimate(&value.claims));
                let counted = meter.stored(weight);
                Ok::<_, AuthError>(Arc::new(Entry {
                    ttl,
                    weight,
                    counted,
                    value,
                }))
            })
            .await;
        let looked_up = match verified_now.load(std::sync::atomic::Ordering::Relaxed) {
            true => Lookup::Miss,
            false => Lookup::Hit,
        };
        let entry = match entry {
            Ok(entry) => entry,
            Err(error) => {
                self.meter.looked_up(looked_up);
                return Err((*error).clone());
            }
        };
        // An entry may outlive the token's exp by less than a second; check.
        let expired = entry
            .value
            .claims
            .get("exp")
            .and_then(Value::as_f64)
            .is_some_and(|exp| exp <= jsonwebtoken::get_current_timestamp() as f64);
        if expired {
            self.meter.looked_up(Lookup::Stale);
            cache.invalidate(&key).await;
            return Err(AuthError::invalid_token(
                Rule::Opq1,
                "the token has expired",
            ));
        }
        self.meter.looked_up(looked_up);
        Ok(entry.value.clone())
    }

    /// Drops `token`'s result, if any; the future owns what it needs.
    pub(crate) fn forget(&self, token: &str) -> super::CacheFuture<()> {
        let cache = self.cache.clone();
        let key = digest(token);
        Box::pin(async move {
            if let Some(cache) = cache {
                cache.invalidate(&key).await;
            }
        })
    }

    /// The usage once the cache has caught up with its pending work.
    pub(crate) fn usage(&self) -> super::CacheFuture<TokenCacheUsage> {
        let cache = self.cache.clone();
        Box::pin(async move {
            match cache {
                Some(cache) => {
                    cache.run_pending_tasks().await;
                    TokenCacheUsage {
                        entries: cache.entry_count(),
                        bytes: cache.weighted_size(),
                    }
                }
                None => TokenCacheUsage::default(),
            }
        })
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
            Rule::Opq1,
            "the token's exp is not a number",
        ));
    };
    let exp = exp as u64;
    if exp > now {
        Ok(max.min(Duration::from_secs(exp - now)))
    } else {
        Err(AuthError::invalid_token(
            Rule::Opq1,
            "the token has expired",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(max_entries: u64, max_bytes: u64) -> TokenCacheOptions {
        TokenCacheOptions {
            max_entries,
            max_bytes,
            max_ttl: Duration::from_secs(60),
        }
    }

    #[test]
    fn an_entry_never_weighs_less_than_its_share_of_the_byte_bound() {
        let o = options(100, 10_000);
        assert_eq!(o.weight(10), 100);
        assert_eq!(o.weight(5_000), 5_000);
        // Rounding up keeps the count bound: 10 / 3 -> 4 each, at most 2 entries.
        assert_eq!(options(3, 10).weight(1), 4);
        assert_eq!(options(1, u64::MAX).weight(1), u32::MAX);
    }

    #[test]
    fn a_count_only_bound_still_bounds_the_count() {
        // max_bytes: u64::MAX means "by count": the count bound must still hold.
        let cache = TokenCache::new(options(10, u64::MAX), "jwt");
        for n in 0..200u32 {
            let key = cache.key(&format!("token-{n}")).expect("on");
            cache.insert(key, Arc::new(n), Duration::from_secs(60), 100);
        }
        let usage = cache.usage();
        assert!(usage.entries <= 10, "{usage:?}");
    }

    #[test]
    fn a_huge_max_ttl_counts_as_a_year() {
        let huge = TokenCacheOptions {
            max_ttl: Duration::MAX,
            ..TokenCacheOptions::default()
        };
        assert_eq!(huge.ttl(), LONGEST_TTL);
        // Building the caches with it does not panic.
        let cache = TokenCache::<u8>::new(huge, "jwt");
        let key = cache.key("t").expect("on");
        cache.insert(key, Arc::new(1), Duration::from_secs(60), 10);
        assert_eq!(cache.get(&key).as_deref(), Some(&1));
        let _ = ResultCache::new(huge, "introspection");
    }

    #[test]
    fn zero_in_any_bound_turns_the_cache_off() {
        assert!(TokenCacheOptions::default().is_enabled());
        assert!(!options(0, 10).is_enabled());
        assert!(!options(10, 0).is_enabled());
        let no_ttl = TokenCacheOptions {
            max_ttl: Duration::ZERO,
            ..TokenCacheOptions::default()
        };
        assert!(!no_ttl.is_enabled());
        let cache = TokenCache::<u8>::new(TokenCacheOptions::disabled(), "jwt");
        assert_eq!(cache.key("token"), None);
    }

    #[test]
    fn the_cache_holds_no_more_than_its_entry_bound() {
        let cache = TokenCache::new(options(50, 1024 * 1024), "jwt");
        for n in 0..2_000u32 {
            let token = format!("token-{n}");
            let key = cache.key(&token).expect("on");
            cache.insert(key, Arc::new(n), Duration::from_secs(60), 100);
        }
        let usage = cache.usage();
        assert!(usage.entries <= 50, "{usage:?}");
        assert!(usage.bytes <= 1024 * 1024, "{usage:?}");
    }

    #[test]
    fn the_cache_holds_no_more_than_its_byte_bound() {
        let cache = TokenCache::new(options(10_000, 64 * 1024), "jwt");
        for n in 0..2_000u32 {
            let key = cache.key(&format!("token-{n}")).expect("on");
            cache.insert(key, Arc::new(n), Duration::from_secs(60), 4096);
        }
        let usage = cache.usage();
        assert!(usage.bytes <= 64 * 1024, "{usage:?}");
        assert!(usage.entries <= 16, "{usage:?}");
    }

    #[test]
    fn entries_end_at_max_ttl_and_expired_ones_are_never_kept() {
        // The token's own exp is checked by the reader on every hit (see jwt.rs).
        let cache = TokenCache::new(
            TokenCacheOptions {
                max_ttl: Duration::from_millis(50),
                ..TokenCacheOptions::default()
            },
            "jwt",
        );
        let long = cache.key("long").expect("on");
        cache.insert(long, Arc::new(1), Duration::from_secs(3600), 10);
        let gone = cache.key("gone").expect("on");
        cache.insert(gone, Arc::new(3), Duration::ZERO, 10);
        assert!(cache.get(&gone).is_none());
        assert_eq!(cache.get(&long).as_deref(), Some(&1));
        std::thread::sleep(Duration::from_millis(60));
        assert!(cache.get(&long).is_none());
    }

    #[test]
    fn the_key_is_the_sha256_of_the_whole_token() {
        let cache = TokenCache::<u8>::new(TokenCacheOptions::default(), "jwt");
        let key = cache.key("abc").expect("on");
        assert_eq!(
            key[..4],
            [0xba, 0x78, 0x16, 0xbf],
            "SHA-256(\"abc\") starts ba7816bf"
        );
        assert_ne!(cache.key("abd"), Some(key));
    }

    #[test]
    fn the_estimate_walks_the_claims_instead_of_guessing_from_their_length() {
        let fat: Vec<Value> = (0..10_000).map(|_| Value::Array(Vec::new())).collect();
        let text = serde_json::json!({"sub": "u", "fat": fat}).to_string();
        let claims: Map<String, Value> = serde_json::from_str(&text).unwrap();
        // 10,000 empty arrays parse into at least 10,000 slots of a Value each.
        let parsed = 10_000 * std::mem::size_of::<Value>();
        assert!(
            estimate(&claims) >= parsed,
            "{} < {parsed}",
            estimate(&claims)
        );
        assert!(
            3 * text.len() < parsed,
            "the old guess was {}x too low",
            parsed / (3 * text.len())
        );
        // Ordinary claims weigh a few kilobytes at most.
        let plain: Map<String, Value> = serde_json::from_str(
            r#"{"iss":"https://idp","sub":"user-1","aud":"https://mcp","scope":"mcp:read","exp":1}"#,
        )
        .unwrap();
        assert!(
            (512..4096).contains(&estimate(&plain)),
            "{}",
            estimate(&plain)
        );
    }
}

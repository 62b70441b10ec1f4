//! The metrics of the verified-token caches: lookups, evictions, entries and bytes.

#[cfg(feature = "metrics")]
use std::sync::atomic::{AtomicI64, Ordering};

#[cfg(feature = "metrics")]
use super::{handles, on};

/// The result of a lookup in a verified-token cache.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Lookup {
    /// Found, and still good.
    Hit = 0,
    /// Not found (or another token's entry).
    Miss = 1,
    /// Found past its `exp`, or its key is gone.
    Stale = 2,
}

/// The metrics of one verified-token cache. Its lookup counters are made on first use
/// after [`enable`](super::enable) and kept (a lookup costs an increment). The entries
/// and bytes gauges are shared by the caches of one kind: each cache adds the entries
/// it stores while metrics are on, takes them back as they leave, and takes back what
/// is left when it is dropped, so the gauges never drift.
pub(crate) struct CacheMeter {
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    name: &'static str,
    #[cfg(feature = "metrics")]
    lookups: arc_swap::ArcSwapOption<(u64, [::metrics::Counter; 3])>,
    /// This cache's share of the gauges.
    #[cfg(feature = "metrics")]
    entries: AtomicI64,
    #[cfg(feature = "metrics")]
    bytes: AtomicI64,
}

impl CacheMeter {
    /// The metrics of a cache labelled `name` (`jwt`, `introspection`, `token_review`).
    pub(crate) fn new(name: &'static str) -> Self {
        Self {
            name,
            #[cfg(feature = "metrics")]
            lookups: arc_swap::ArcSwapOption::empty(),
            #[cfg(feature = "metrics")]
            entries: AtomicI64::new(0),
            #[cfg(feature = "metrics")]
            bytes: AtomicI64::new(0),
        }
    }

    /// Counts a lookup.
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    #[inline]
    pub(crate) fn looked_up(&self, result: Lookup) {
        #[cfg(feature = "metrics")]
        if on() {
            let epoch = handles::EPOCH.load(Ordering::Relaxed);
            let kept = self.lookups.load();
            match kept.as_deref() {
                Some((at, counters)) if *at == epoch => counters[result as usize].increment(1),
                _ => {
                    drop(kept);
                    let counter = |result: &'static str| {
                        let labels = [("cache", self.name), ("result", result)];
                        ::metrics::counter!(
                            "mcp_gatekeeper_token_cache_lookups_total",
                            handles::labels(&labels, None)
                        )
                    };
                    let counters = [counter("hit"), counter("miss"), counter("stale")];
                    counters[result as usize].increment(1);
                    self.lookups
                        .store(Some(std::sync::Arc::new((epoch, counters))));
                }
            }
        }
    }

    /// An entry of `weight` bytes was stored: whether it is counted in the gauges
    /// (metrics are on), to be told again when it leaves.
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn stored(&self, weight: u32) -> bool {
        #[cfg(feature = "metrics")]
        if on() {
            self.share(1, i64::from(weight));
            return true;
        }
        false
    }

    /// An entry of `weight` bytes left for `cause`; `counted` is what [`stored`]
    /// said of it.
    ///
    /// [`stored`]: CacheMeter::stored
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn left(&self, cause: moka::notification::RemovalCause, weight: u32, counted: bool) {
        #[cfg(feature = "metrics")]
        {
            if counted {
                self.share(-1, -i64::from(weight));
            }
            if on() {
                use moka::notification::RemovalCause;
                let cause = match cause {
                    RemovalCause::Expired => "expired",
                    RemovalCause::Size => "size",
                    RemovalCause::Explicit => "explicit",
                    RemovalCause::Replaced => "replaced",
                };
                let labels = [("cache", self.name), ("cause", cause)];
                ::metrics::counter!(
                    "mcp_gatekeeper_token_cache_evictions_total",
                    handles::labels(&labels, None)
                )
                .increment(1);
            }
        }
    }

    /// Adds `entries` and `bytes` (negative: takes them back) to the gauges and to
    /// this cache's share.
    #[cfg(feature = "metrics")]
    fn share(&self, entries: i64, bytes: i64) {
        self.entries.fetch_add(entries, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        let labels = [("cache", self.name)];
        #[allow(clippy::cast_precision_loss)] // counts far below 2^52
        {
            ::metrics::gauge!(
                "mcp_gatekeeper_token_cache_entries",
                handles::labels(&labels, None)
            )
            .increment(entries as f64);
            ::metrics::gauge!(
                "mcp_gatekeeper_token_cache_bytes",
                handles::labels(&labels, None)
            )
            .increment(bytes as f64);
        }
    }
}

#[cfg(feature = "metrics")]
impl Drop for CacheMeter {
    fn drop(&mut self) {
        let entries = self.entries.load(Ordering::Relaxed);
        let bytes = self.bytes.load(Ordering::Relaxed);
        if entries != 0 || bytes != 0 {
            self.share(-entries, -bytes);
        }
    }
}

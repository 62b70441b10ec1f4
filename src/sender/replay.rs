//! [`InMemoryReplayStore`]: the DPoP replay store of one process, bounded, and never
//! forgetting a proof within its window.
//!
//! Every proof is kept for the same window (the proof lifetime and skew), so time
//! is cut into slices of that length: a shard keeps the proofs of the current slice
//! and of the one before, and when a slice ends the older set is dropped whole. A
//! proof is thus remembered for at least one window and at most two, at the cost of
//! a hash lookup, with no per-entry timers. When the sets hold `capacity` proofs a
//! new one is refused (the request gets `503`) rather than admitted by forgetting
//! another, which could then be replayed: a cache that evicts (LRU, TinyLFU) would
//! let exactly that through under load.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::dpop::ReplayStore;

/// Shards, so that concurrent requests seldom wait for one another.
const SHARDS: usize = 16;

/// A [`ReplayStore`] in this process; see the module docs. Cheap to share (`Arc` it
/// or let [`DpopVerifier`](crate::DpopVerifier) hold it).
pub struct InMemoryReplayStore {
    shards: Box<[Mutex<Shard>]>,
    capacity: usize,
    /// The proofs held in all shards.
    held: AtomicUsize,
    window: Duration,
    started: Instant,
}

/// The proofs of one shard: those recorded in the current slice and in the one
/// before, by the first 16 bytes of their (SHA-256) key.
#[derive(Default)]
struct Shard {
    current: HashSet<u128>,
    previous: HashSet<u128>,
    /// The number of the current slice.
    slice: u64,
}

impl InMemoryReplayStore {
    /// At most `capacity` proofs remembered (about 20 bytes each: 100,000 take
    /// 2 MiB), each for at least `window` and at most twice that. `window` must be
    /// at least the lifetime and skew of the proofs recorded: a longer `ttl` given
    /// to [`ReplayStore::first_use`] is an error (`503`), not a shorter memory.
    pub fn new(capacity: u64, window: Duration) -> Self {
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX);
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            capacity,
            held: AtomicUsize::new(0),
            window: window.max(Duration::from_secs(1)),
            started: Instant::now(),
        }
    }

    /// How many proofs are remembered now.
    pub fn len(&self) -> u64 {
        self.held.load(Ordering::Relaxed) as u64
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records `key` now: whether it is new, or an error when the store is full.
    fn record(&self, key: [u8; 32]) -> Result<bool, String> {
        let index = (key[16] as usize) % SHARDS;
        let mut shard = self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // The time is read under the lock: a thread that read it before waiting would
        // take the shard back to an older slice and drop the proofs of the newer one.
        let slice = (self.started.elapsed().as_nanos() / self.window.as_nanos().max(1)) as u64;
        self.record_in(&mut shard, key, slice)
    }

    /// Records `key` in `shard` at `slice`. A slice older than the shard's (a clock
    /// that is not monotonic) is taken as the shard's own: nothing is ever dropped
    /// early.
    fn record_in(&self, shard: &mut Shard, key: [u8; 32], slice: u64) -> Result<bool, String> {
        let mut id = [0u8; 16];
        id.copy_from_slice(&key[..16]);
        let id = u128::from_le_bytes(id);
        if slice > shard.slice {
            let Shard {
                current, previous, ..
            } = &mut *shard;
            let mut dropped = previous.len();
            std::mem::swap(current, previous);
            current.clear();
            if slice > shard.slice + 1 {
                dropped += shard.previous.len();
                shard.previous.clear();
            }
            shard.slice = slice;
            self.held.fetch_sub(dropped, Ordering::Relaxed);
        }
        if shard.current.contains(&id) || shard.previous.contains(&id) {
            return Ok(false);
        }
        if self.held.fetch_add(1, Ordering::Relaxed) >= self.capacity {
            self.held.fetch_sub(1, Ordering::Relaxed);
            return Err(format!(
                "the in-process DPoP replay store is full ({} proofs within the proof \
                 window); raise its capacity or share a store",
                self.capacity
            ));
        }
        shard.current.insert(id);
        Ok(true)
    }
}

impl std::fmt::Debug for InMemoryReplayStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryReplayStore")
            .field("capacity", &self.capacity)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl ReplayStore for InMemoryReplayStore {
    fn first_use(
        &self,
        key: [u8; 32],
        ttl: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<bool, String>> + Send + '_>> {
        let answer = if ttl > self.window {
            Err(format!(
                "the in-process DPoP replay store keeps proofs for {:?}, less than their \
                 lifetime {ttl:?}",
                self.window
            ))
        } else {
            self.record(key)
        };
        Box::pin(std::future::ready(answer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u64) -> [u8; 32] {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&n.to_le_bytes());
        key[16] = n as u8;
        key
    }

    #[test]
    fn a_proof_is_remembered_for_one_window_at_least_and_two_at_most() {
        let store = InMemoryReplayStore::new(1_000, Duration::from_secs(10));
        assert_eq!(store.record(key(1)), Ok(true));
        assert_eq!(store.record(key(1)), Ok(false));
        // Pretend time passed by moving the start back.
        let mut moved = store;
        let earlier = |at: Instant| at.checked_sub(Duration::from_secs(10)).unwrap_or(at);
        moved.started = earlier(moved.started);
        assert_eq!(moved.record(key(1)), Ok(false), "one slice later");
        moved.started = earlier(moved.started);
        assert_eq!(moved.record(key(1)), Ok(true), "two slices later");
        assert_eq!(moved.len(), 1);
    }

    #[test]
    fn a_request_that_read_the_time_before_a_rotation_does_not_undo_it() {
        let store = InMemoryReplayStore::new(1_000, Duration::from_secs(10));
        let mut shard = Shard::default();
        assert_eq!(store.record_in(&mut shard, key(1), 5), Ok(true));
        assert_eq!(store.record_in(&mut shard, key(2), 6), Ok(true));
        // A late request of slice 5: both proofs are still known.
        assert_eq!(store.record_in(&mut shard, key(3), 5), Ok(true));
        assert_eq!(store.record_in(&mut shard, key(1), 6), Ok(false));
        assert_eq!(store.record_in(&mut shard, key(2), 6), Ok(false));
        assert_eq!(store.record_in(&mut shard, key(3), 6), Ok(false));
    }

    #[test]
    fn a_window_shorter_than_the_proofs_lifetime_is_an_error_not_a_short_memory() {
        let store = InMemoryReplayStore::new(10, Duration::from_secs(60));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let mut answer = store.first_use(key(1), Duration::from_secs(305));
        let answer = std::future::Future::poll(answer.as_mut(), &mut cx);
        assert!(
            matches!(&answer, std::task::Poll::Ready(Err(e)) if e.contains("less than")),
            "{answer:?}"
        );
    }
}

//! [`Flight`]: one fetch at a time per resource, shared by every request that needs it
//! (single flight, R-KEY-3), with back-off after failures so a dead identity provider
//! is asked at most once per back-off period and requests fail fast meanwhile
//! (R-KEY-2, R-KEY-5).
//!
//! The fetch runs in its own task: a caller that gives up (client gone, a timeout
//! layer) does not cancel it, so its outcome is still recorded and shared, and the
//! back-off still engages.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::KeyError;

#[derive(Default)]
struct Status {
    last_success: Option<Instant>,
    failures: u32,
    retry_at: Option<Instant>,
    last_error: Option<KeyError>,
}

struct Shared {
    attempts: AtomicU64,
    status: Mutex<Status>,
    min_backoff: Duration,
    max_backoff: Duration,
}

impl Shared {
    fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        // Status is only ever written field by field; a poisoned lock is still usable.
        self.status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn record(&self, result: Result<(), KeyError>) -> Result<(), KeyError> {
        let result = {
            let mut status = self.status();
            let now = Instant::now();
            match result {
                Ok(()) => {
                    status.last_success = Some(now);
                    status.failures = 0;
                    status.retry_at = None;
                    status.last_error = None;
                    Ok(())
                }
                Err(error) => {
                    status.failures = status.failures.saturating_add(1);
                    let shift = (status.failures - 1).min(16);
                    let backoff = self
                        .min_backoff
                        .saturating_mul(1 << shift)
                        .min(self.max_backoff);
                    status.retry_at = now.checked_add(backoff);
                    let error = KeyError {
                        retry_after: backoff,
                        reason: error.reason,
                    };
                    status.last_error = Some(error.clone());
                    Err(error)
                }
            }
        };
        self.attempts.fetch_add(1, Ordering::AcqRel);
        result
    }
}

/// Single flight and back-off for one fetched resource (a JWKS, a discovery doc).
pub(crate) struct Flight {
    lock: Arc<tokio::sync::Mutex<()>>,
    shared: Arc<Shared>,
}

/// What a caller may do now.
pub(crate) enum Gate {
    /// A fetch may start (or join the one under way).
    Open,
    /// The last fetch failed; the next may start after this long.
    BackingOff(KeyError),
}

impl Flight {
    pub(crate) fn new(min_backoff: Duration, max_backoff: Duration) -> Self {
        Self {
            lock: Arc::new(tokio::sync::Mutex::new(())),
            shared: Arc::new(Shared {
                attempts: AtomicU64::new(0),
                status: Mutex::new(Status::default()),
                min_backoff,
                max_backoff,
            }),
        }
    }

    /// The attempt counter, to pass to [`Flight::run`].
    pub(crate) fn seen(&self) -> u64 {
        self.shared.attempts.load(Ordering::Acquire)
    }

    /// Whether a fetch may start now.
    pub(crate) fn gate(&self) -> Gate {
        let status = self.shared.status();
        let now = Instant::now();
        match (status.retry_at, &status.last_error) {
            (Some(at), Some(error)) if at > now => Gate::BackingOff(KeyError {
                retry_after: at - now,
                reason: error.reason.clone(),
            }),
            _ => Gate::Open,
        }
    }

    /// Time since the last successful fetch.
    pub(crate) fn since_last_success(&self) -> Option<Duration> {
        self.shared.status().last_success.map(|at| at.elapsed())
    }

    /// Runs `fetch` unless another caller ran it since `seen` was read, in which case
    /// the outcome of that run is returned: concurrent callers share one fetch.
    pub(crate) async fn run<F, Fut>(&self, seen: u64, fetch: F) -> Result<(), KeyError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(), KeyError>> + Send + 'static,
    {
        let guard = self.lock.clone().lock_owned().await;
        if self.seen() != seen {
            return match self.gate() {
                Gate::BackingOff(error) => Err(error),
                Gate::Open => Ok(()),
            };
        }
        let shared = self.shared.clone();
        let future = fetch();
        let task = async move {
            let result = shared.record(future.await);
            drop(guard);
            result
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => match runtime.spawn(task).await {
                Ok(result) => result,
                Err(_) => Err(KeyError {
                    retry_after: self.shared.min_backoff,
                    reason: "fetching the identity provider's keys was interrupted".into(),
                }),
            },
            Err(_) => task.await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    fn failure() -> KeyError {
        KeyError {
            retry_after: Duration::ZERO,
            reason: "down".into(),
        }
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_fetch() {
        // R-KEY-3 single flight
        let flight = Arc::new(Flight::new(Duration::from_secs(1), Duration::from_secs(8)));
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = flight.seen();
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (flight, calls) = (flight.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                flight
                    .run(seen, move || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Ok(())
                    })
                    .await
            }));
        }
        for task in tasks {
            assert_eq!(task.await.ok(), Some(Ok(())));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn failures_back_off_exponentially_and_share_the_error() {
        // R-KEY-2, R-KEY-5
        let flight = Flight::new(Duration::from_secs(2), Duration::from_secs(5));
        assert!(matches!(flight.gate(), Gate::Open));
        let seen = flight.seen();
        let err = flight.run(seen, || async { Err(failure()) }).await.err();
        assert!(err.is_some_and(|e| e.retry_after == Duration::from_secs(2) && e.reason == "down"));
        match flight.gate() {
            Gate::BackingOff(e) => assert!(e.retry_after <= Duration::from_secs(2)),
            Gate::Open => panic!("expected back-off"),
        }
        // A caller that read `seen` before the failed run gets that failure, not a new fetch.
        let again = flight.run(seen, || async { Ok(()) }).await;
        assert!(again.is_err());
        let second = flight
            .run(flight.seen(), || async { Err(failure()) })
            .await
            .err();
        assert!(second.is_some_and(|e| e.retry_after == Duration::from_secs(4)));
        let third = flight
            .run(flight.seen(), || async { Err(failure()) })
            .await
            .err();
        assert!(
            third.is_some_and(|e| e.retry_after == Duration::from_secs(5)),
            "capped at max"
        );
        assert!(flight.run(flight.seen(), || async { Ok(()) }).await.is_ok());
        assert!(matches!(flight.gate(), Gate::Open));
    }

    #[tokio::test]
    async fn a_cancelled_caller_does_not_cancel_the_fetch() {
        // R-KEY-3, R-KEY-5: the outcome is recorded even when the caller gives up.
        let flight = Arc::new(Flight::new(Duration::from_secs(5), Duration::from_secs(5)));
        let seen = flight.seen();
        let caller = {
            let flight = flight.clone();
            tokio::spawn(async move {
                flight
                    .run(seen, || async {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Err(failure())
                    })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        caller.abort();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(flight.seen(), seen + 1, "the attempt was recorded");
        assert!(
            matches!(flight.gate(), Gate::BackingOff(_)),
            "and the back-off engaged"
        );
    }
}

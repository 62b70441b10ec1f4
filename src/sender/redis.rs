//! [`RedisReplayStore`]: the DPoP replay store shared by every replica, in Redis
//! (feature `redis`).
//!
//! Each proof is one key, set only if absent with the proof's lifetime as its expiry
//! (`SET key 1 NX PX ms`): the first replica to see a proof sets it, every other one
//! (and the same one again) finds it. A store that does not answer within its
//! timeout makes the request `503`, never an accepted replay.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

use crate::dpop::ReplayStore;
use crate::error::ConfigError;

/// How long a Redis command may take, connecting included, by default.
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(500);

/// A [`ReplayStore`] in Redis, shared by every replica that uses the same server and
/// key prefix. Connects on first use, and again after a failure.
///
/// ```no_run
/// use mcp_gatekeeper::{DpopVerifier, RedisReplayStore};
///
/// # fn main() -> Result<(), mcp_gatekeeper::ConfigError> {
/// let proofs = DpopVerifier::new()
///     .replay_store(RedisReplayStore::new("redis://127.0.0.1:6379/")?.prefix("mcp:dpop:"));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisReplayStore {
    client: redis::Client,
    connection: Arc<OnceCell<ConnectionManager>>,
    prefix: String,
    timeout: Duration,
}

impl std::fmt::Debug for RedisReplayStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisReplayStore")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisReplayStore {
    /// A store at `url` (`redis://host:port/db`, `redis+unix:///path`), keys prefixed
    /// `mcp-gatekeeper:dpop:`, commands bounded by [`DEFAULT_REDIS_TIMEOUT`]. Does no
    /// I/O.
    pub fn new(url: &str) -> Result<Self, ConfigError> {
        let client = redis::Client::open(url)
            .map_err(|e| ConfigError::new(format!("the Redis URL is not usable: {e}")))?;
        Ok(Self {
            client,
            connection: Arc::new(OnceCell::new()),
            prefix: "mcp-gatekeeper:dpop:".into(),
            timeout: DEFAULT_REDIS_TIMEOUT,
        })
    }

    /// The prefix of the store's keys (replicas that share proofs share it).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long a command may take, connecting included.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    async fn set_if_absent(&self, key: [u8; 32], ttl: Duration) -> Result<bool, String> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1);
        let connection = self
            .connection
            .get_or_try_init(|| ConnectionManager::new_with_config(self.client.clone(), config))
            .await
            .map_err(|e| format!("cannot connect to Redis: {e}"))?;
        let mut connection = connection.clone();
        let name = format!("{}{}", self.prefix, URL_SAFE_NO_PAD.encode(key));
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let reply: Option<String> = redis::cmd("SET")
            .arg(name)
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(millis)
            .query_async(&mut connection)
            .await
            .map_err(|e| format!("Redis SET failed: {e}"))?;
        Ok(reply.is_some())
    }
}

impl ReplayStore for RedisReplayStore {
    fn first_use(
        &self,
        key: [u8; 32],
        ttl: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<bool, String>> + Send + '_>> {
        Box::pin(async move {
            match tokio::time::timeout(self.timeout, self.set_if_absent(key, ttl)).await {
                Ok(answer) => answer,
                Err(_) => Err(format!("Redis did not answer within {:?}", self.timeout)),
            }
        })
    }
}

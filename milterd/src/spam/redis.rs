//! STORAGE: the one Redis connection of Bayes and greylisting
//! (`[milterd.spam].redis_url`), opened lazily. A failed connect is not
//! retried for [`RETRY_AFTER`], so a Redis outage costs each message one
//! quick failure, never a wait; every command runs under [`TIMEOUT`].

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Longest a connect or a command may take.
pub const TIMEOUT: Duration = Duration::from_millis(1500);
/// After a failed connect, fail fast this long before trying again.
pub const RETRY_AFTER: Duration = Duration::from_secs(5);

/// Why Redis could not be used. Always temporary (STYLE.md §3).
#[derive(Debug, Clone, thiserror::Error)]
pub enum RedisError {
    /// Connecting failed or timed out (recently).
    #[error("Redis is unreachable: {0}")]
    Unreachable(String),
    /// A command failed.
    #[error("Redis command failed: {0}")]
    Command(String),
    /// A command took longer than [`TIMEOUT`].
    #[error("Redis did not answer within {TIMEOUT:?}")]
    Timeout,
}

/// A lazily connected Redis.
pub struct Redis {
    url: String,
    conn: tokio::sync::Mutex<Option<ConnectionManager>>,
    failed_at: Mutex<Option<(Instant, String)>>,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Redis {
    /// A Redis at `url`; nothing is connected yet.
    pub fn new(url: &str) -> Redis {
        Redis {
            url: url.to_owned(),
            conn: tokio::sync::Mutex::new(None),
            failed_at: Mutex::new(None),
        }
    }

    /// The connection, connecting if needed.
    pub async fn conn(&self) -> Result<ConnectionManager, RedisError> {
        let mut guard = self.conn.lock().await;
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        if let Ok(f) = self.failed_at.lock()
            && let Some((at, why)) = f.as_ref()
            && at.elapsed() < RETRY_AFTER
        {
            return Err(RedisError::Unreachable(why.clone()));
        }
        let result = async {
            let client = redis::Client::open(self.url.as_str()).map_err(|e| e.to_string())?;
            let cfg = ConnectionManagerConfig::new()
                .set_connection_timeout(TIMEOUT)
                .set_response_timeout(TIMEOUT)
                .set_number_of_retries(1);
            match tokio::time::timeout(TIMEOUT * 2, ConnectionManager::new_with_config(client, cfg))
                .await
            {
                Ok(Ok(m)) => Ok(m),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("connect timed out".to_owned()),
            }
        }
        .await;
        match result {
            Ok(m) => {
                *guard = Some(m.clone());
                Ok(m)
            }
            Err(why) => {
                if let Ok(mut f) = self.failed_at.lock() {
                    *f = Some((Instant::now(), why.clone()));
                }
                Err(RedisError::Unreachable(why))
            }
        }
    }

    /// Runs `pipe` under [`TIMEOUT`].
    pub async fn query<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T, RedisError> {
        let mut c = self.conn().await?;
        match tokio::time::timeout(TIMEOUT, pipe.query_async::<T>(&mut c)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(RedisError::Command(e.to_string())),
            Err(_) => Err(RedisError::Timeout),
        }
    }
}

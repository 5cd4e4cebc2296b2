//! LOGIC: sending rate limits (messages and recipients per hour) per SASL
//! user or, without login, per envelope sender. Counters live in Redis when
//! `redis_url` is set, so several policyd nodes share them, else in this
//! process. If Redis fails, the in-process counters take over (logged): a
//! Redis outage never stops mail.
//!
//! Counting uses a sliding window approximated from two fixed one-hour
//! windows: `estimate = current + previous × (1 − elapsed/1h)`.

use postwerk_core::config::ratelimit::{Limits, RateLimitConfig};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::OnceCell;
use tracing::warn;

/// The window length.
pub const WINDOW: Duration = Duration::from_secs(3600);
/// How long one Redis round trip may take before we fall back.
pub const REDIS_TIMEOUT: Duration = Duration::from_millis(500);
/// In-process counters kept at most (oldest windows pruned first).
pub const LOCAL_MAX_KEYS: usize = 200_000;

/// The outcome of one recipient's check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Under the limits; counted.
    Allow,
    /// Over a limit; not counted.
    Exceeded {
        /// `messages` or `recipients`.
        what: &'static str,
        /// The hourly limit.
        limit: u32,
    },
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    msgs_prev: u64,
    msgs_cur: u64,
    rcpts_prev: u64,
    rcpts_cur: u64,
    seen_instance: bool,
}

struct Keys {
    msgs_prev: String,
    msgs_cur: String,
    rcpts_prev: String,
    rcpts_cur: String,
    instance: String,
}

/// Rate limiter state.
pub struct RateLimiter {
    cfg: RateLimitConfig,
    redis: OnceCell<redis::aio::ConnectionManager>,
    local: Mutex<HashMap<String, (u64, u64)>>,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// A limiter for `cfg`.
    pub fn new(cfg: RateLimitConfig) -> Self {
        Self {
            cfg,
            redis: OnceCell::new(),
            local: Mutex::new(HashMap::new()),
        }
    }

    /// Whether any limit is configured.
    pub fn is_enabled(&self) -> bool {
        self.cfg.is_enabled()
    }

    /// Checks one recipient of message `instance` (Postfix's `instance`
    /// attribute, constant within one transaction) sent by `who`, and
    /// counts it when allowed.
    pub async fn check(&self, who: &str, instance: &str, now: SystemTime) -> Verdict {
        let limits = self.cfg.limits_for(who);
        if limits.messages_per_hour == 0 && limits.recipients_per_hour == 0 {
            return Verdict::Allow;
        }
        let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let window = secs / WINDOW.as_secs();
        let elapsed = (secs % WINDOW.as_secs()) as f64 / WINDOW.as_secs() as f64;
        let p = &self.cfg.redis_prefix;
        let keys = Keys {
            msgs_prev: format!("{p}m:{who}:{}", window.saturating_sub(1)),
            msgs_cur: format!("{p}m:{who}:{window}"),
            rcpts_prev: format!("{p}r:{who}:{}", window.saturating_sub(1)),
            rcpts_cur: format!("{p}r:{who}:{window}"),
            instance: format!("{p}i:{who}:{instance}"),
        };
        let counts = match self.redis_counts(&keys).await {
            Some(c) => c,
            None => self.local_counts(&keys, window),
        };
        let verdict = decide(limits, counts, elapsed);
        if verdict == Verdict::Allow {
            let new_message = !counts.seen_instance;
            if self.cfg.redis_url.is_none() || !self.redis_count(&keys, new_message).await {
                self.local_count(&keys, window, new_message);
            }
        }
        verdict
    }

    async fn conn(&self) -> Option<redis::aio::ConnectionManager> {
        let url = self.cfg.redis_url.as_deref()?;
        let res = self
            .redis
            .get_or_try_init(|| async {
                let client = redis::Client::open(url)?;
                let cfg = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(REDIS_TIMEOUT)
                    .set_response_timeout(REDIS_TIMEOUT)
                    .set_number_of_retries(1);
                redis::aio::ConnectionManager::new_with_config(client, cfg).await
            })
            .await;
        match res {
            Ok(c) => Some(c.clone()),
            Err(e) => {
                warn!(error = %e, "rate limit: Redis unreachable; counting in this process");
                None
            }
        }
    }

    async fn redis_counts(&self, k: &Keys) -> Option<Counts> {
        let mut conn = self.conn().await?;
        let mut pipe = redis::pipe();
        pipe.cmd("MGET")
            .arg(&k.msgs_prev)
            .arg(&k.msgs_cur)
            .arg(&k.rcpts_prev)
            .arg(&k.rcpts_cur)
            .cmd("EXISTS")
            .arg(&k.instance);
        let res: Result<(Vec<Option<u64>>, u64), _> =
            match tokio::time::timeout(REDIS_TIMEOUT, pipe.query_async(&mut conn)).await {
                Ok(r) => r,
                Err(_) => {
                    warn!("rate limit: Redis timed out; counting in this process");
                    return None;
                }
            };
        match res {
            Ok((v, exists)) if v.len() == 4 => Some(Counts {
                msgs_prev: v[0].unwrap_or(0),
                msgs_cur: v[1].unwrap_or(0),
                rcpts_prev: v[2].unwrap_or(0),
                rcpts_cur: v[3].unwrap_or(0),
                seen_instance: exists > 0,
            }),
            Ok(_) => None,
            Err(e) => {
                warn!(error = %e, "rate limit: Redis failed; counting in this process");
                None
            }
        }
    }

    /// Counts in Redis; false if that failed.
    async fn redis_count(&self, k: &Keys, new_message: bool) -> bool {
        let Some(mut conn) = self.conn().await else {
            return false;
        };
        let ttl = 2 * WINDOW.as_secs();
        let mut pipe = redis::pipe();
        pipe.cmd("INCR")
            .arg(&k.rcpts_cur)
            .ignore()
            .cmd("EXPIRE")
            .arg(&k.rcpts_cur)
            .arg(ttl)
            .ignore();
        if new_message {
            pipe.cmd("INCR")
                .arg(&k.msgs_cur)
                .ignore()
                .cmd("EXPIRE")
                .arg(&k.msgs_cur)
                .arg(ttl)
                .ignore();
            pipe.cmd("SET")
                .arg(&k.instance)
                .arg(1)
                .arg("EX")
                .arg(WINDOW.as_secs())
                .ignore();
        }
        match tokio::time::timeout(REDIS_TIMEOUT, pipe.query_async::<()>(&mut conn)).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                warn!(error = %e, "rate limit: Redis failed while counting");
                false
            }
            Err(_) => {
                warn!("rate limit: Redis timed out while counting");
                false
            }
        }
    }

    fn local_counts(&self, k: &Keys, _window: u64) -> Counts {
        let Ok(map) = self.local.lock() else {
            return Counts::default();
        };
        let get = |key: &str| map.get(key).map(|(n, _)| *n).unwrap_or(0);
        Counts {
            msgs_prev: get(&k.msgs_prev),
            msgs_cur: get(&k.msgs_cur),
            rcpts_prev: get(&k.rcpts_prev),
            rcpts_cur: get(&k.rcpts_cur),
            seen_instance: map.contains_key(&k.instance),
        }
    }

    fn local_count(&self, k: &Keys, window: u64, new_message: bool) {
        let Ok(mut map) = self.local.lock() else {
            return;
        };
        if map.len() >= LOCAL_MAX_KEYS {
            // Drop everything older than the previous window.
            map.retain(|_, (_, w)| *w + 1 >= window);
        }
        map.entry(k.rcpts_cur.clone()).or_insert((0, window)).0 += 1;
        if new_message {
            map.entry(k.msgs_cur.clone()).or_insert((0, window)).0 += 1;
            map.insert(k.instance.clone(), (1, window));
        }
    }
}

fn decide(limits: Limits, c: Counts, elapsed: f64) -> Verdict {
    let estimate = |prev: u64, cur: u64| cur as f64 + prev as f64 * (1.0 - elapsed);
    if limits.recipients_per_hour > 0
        && estimate(c.rcpts_prev, c.rcpts_cur) + 1.0 > f64::from(limits.recipients_per_hour)
    {
        return Verdict::Exceeded {
            what: "recipients",
            limit: limits.recipients_per_hour,
        };
    }
    if !c.seen_instance
        && limits.messages_per_hour > 0
        && estimate(c.msgs_prev, c.msgs_cur) + 1.0 > f64::from(limits.messages_per_hour)
    {
        return Verdict::Exceeded {
            what: "messages",
            limit: limits.messages_per_hour,
        };
    }
    Verdict::Allow
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(m: u32, r: u32) -> RateLimitConfig {
        RateLimitConfig {
            default: Limits {
                messages_per_hour: m,
                recipients_per_hour: r,
            },
            overrides: vec![(
                "vip@example.org".into(),
                Limits {
                    messages_per_hour: 100,
                    recipients_per_hour: 0,
                },
            )],
            redis_url: None,
            redis_prefix: "t:".into(),
        }
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[tokio::test]
    async fn messages_per_hour_counts_transactions_not_recipients() {
        let rl = RateLimiter::new(cfg(2, 0));
        let t = at(3600 * 1000);
        // message 1 with three recipients, message 2 with one
        for _ in 0..3 {
            assert_eq!(rl.check("a@example.org", "i1", t).await, Verdict::Allow);
        }
        assert_eq!(rl.check("a@example.org", "i2", t).await, Verdict::Allow);
        // message 3 is over the limit, and stays refused for every recipient
        for _ in 0..2 {
            assert_eq!(
                rl.check("a@example.org", "i3", t).await,
                Verdict::Exceeded {
                    what: "messages",
                    limit: 2
                }
            );
        }
        // another sender is not affected; the override raises the limit
        assert_eq!(rl.check("b@example.org", "i3", t).await, Verdict::Allow);
        for i in 0..10 {
            assert_eq!(
                rl.check("vip@example.org", &format!("v{i}"), t).await,
                Verdict::Allow
            );
        }
    }

    #[tokio::test]
    async fn recipients_per_hour_and_window_slides() {
        let rl = RateLimiter::new(cfg(0, 3));
        let t = at(3600 * 1000 + 10);
        for i in 0..3 {
            assert_eq!(
                rl.check("a@x.org", &format!("m{i}"), t).await,
                Verdict::Allow
            );
        }
        assert_eq!(
            rl.check("a@x.org", "m9", t).await,
            Verdict::Exceeded {
                what: "recipients",
                limit: 3
            }
        );
        // half-way through the next hour the old window weighs 50%: 1.5 + 1 <= 3
        let later = at(3600 * 1001 + 1800);
        assert_eq!(rl.check("a@x.org", "n1", later).await, Verdict::Allow);
        // two hours later everything has expired
        let much_later = at(3600 * 1003);
        for i in 0..3 {
            assert_eq!(
                rl.check("a@x.org", &format!("z{i}"), much_later).await,
                Verdict::Allow
            );
        }
    }

    #[tokio::test]
    async fn unreachable_redis_falls_back_to_local_counters() {
        let mut c = cfg(1, 0);
        c.redis_url = Some("redis://127.0.0.1:9/".into());
        let rl = RateLimiter::new(c);
        let t = at(3600 * 5000);
        assert_eq!(rl.check("a@x.org", "m1", t).await, Verdict::Allow);
        assert_eq!(
            rl.check("a@x.org", "m2", t).await,
            Verdict::Exceeded {
                what: "messages",
                limit: 1
            }
        );
    }

    #[tokio::test]
    async fn redis_counters_are_shared_between_limiters() {
        // Two limiters stand for two policyd nodes on one Redis.
        let mut c = cfg(2, 0);
        c.redis_url = Some("redis://127.0.0.1:6379/".into());
        c.redis_prefix = format!("postwerk-test:{}:{}:", std::process::id(), rand_suffix());
        let a = RateLimiter::new(c.clone());
        let b = RateLimiter::new(c);
        let t = SystemTime::now();
        assert_eq!(a.check("s@x.org", "m1", t).await, Verdict::Allow);
        assert_eq!(b.check("s@x.org", "m2", t).await, Verdict::Allow);
        assert_eq!(
            a.check("s@x.org", "m3", t).await,
            Verdict::Exceeded {
                what: "messages",
                limit: 2
            }
        );
        assert!(
            a.local.lock().unwrap().is_empty(),
            "Redis was used, not local counters"
        );
    }

    fn rand_suffix() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    }
}

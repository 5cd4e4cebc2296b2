//! LOGIC: brute-force protection. Each remote IP and each account has a
//! failure budget (`bruteforce_ip_failures`, `bruteforce_account_failures`);
//! once spent, every further failure blocks the IP or account for
//! `bruteforce_backoff` × 2^(failures − budget), at most
//! `bruteforce_backoff_max`. A blocked attempt is refused without a
//! database lookup or password check. Failures older than
//! `bruteforce_window` are forgotten; a successful login clears its IP and
//! account. State lives in Redis when `redis_url` is set, so several nodes
//! share it, else in this process; if Redis fails, the in-process state
//! takes over (logged), so a Redis outage never locks everybody out.
//!
//! Only definite failures count: a database outage is never a wrong
//! password (the caller does not report it here).

use postwerk_core::config::authd::BruteForceConfig;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::OnceCell;
use tokio::time::Instant;
use tracing::warn;

/// In-process entries kept at most (expired ones are pruned first).
pub const LOCAL_MAX_KEYS: usize = 200_000;
/// Longest a Redis round trip may take before we fall back.
pub const REDIS_TIMEOUT: Duration = Duration::from_millis(500);

/// Whether an attempt may proceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Go ahead.
    Allowed,
    /// Refuse without checking the password.
    Blocked {
        /// `ip` or `account`.
        scope: &'static str,
        /// Time left.
        retry_after: Duration,
    },
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last: Instant,
    blocked_until: Option<Instant>,
}

/// The brute-force guard.
pub struct BruteForce {
    cfg: BruteForceConfig,
    local: Mutex<HashMap<String, Entry>>,
    redis: OnceCell<Option<redis::aio::ConnectionManager>>,
}

impl std::fmt::Debug for BruteForce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BruteForce")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl BruteForce {
    /// A guard for `cfg`.
    pub fn new(cfg: BruteForceConfig) -> Self {
        Self {
            cfg,
            local: Mutex::new(HashMap::new()),
            redis: OnceCell::new(),
        }
    }

    fn keys(&self, ip: Option<IpAddr>, account: &str) -> Vec<(&'static str, String, u32)> {
        let mut k = Vec::with_capacity(2);
        if let (Some(ip), true) = (ip, self.cfg.ip_failures > 0) {
            k.push(("ip", format!("ip:{ip}"), self.cfg.ip_failures));
        }
        if self.cfg.account_failures > 0 && !account.is_empty() {
            k.push((
                "account",
                format!("account:{account}"),
                self.cfg.account_failures,
            ));
        }
        k
    }

    /// The block time after `failures` failures against `budget`.
    pub fn backoff(&self, failures: u32, budget: u32) -> Option<Duration> {
        if failures < budget {
            return None;
        }
        let doublings = (failures - budget).min(30);
        Some(
            self.cfg
                .backoff
                .saturating_mul(1u32 << doublings)
                .min(self.cfg.backoff_max),
        )
    }

    async fn redis(&self) -> Option<redis::aio::ConnectionManager> {
        let url = self.cfg.redis_url.as_deref()?;
        self.redis
            .get_or_init(|| async {
                let client = match redis::Client::open(url) {
                    Ok(c) => c,
                    Err(e) => {
                        warn!(error = %e, "bad redis_url; brute-force state stays in this process");
                        return None;
                    }
                };
                let cfg = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(REDIS_TIMEOUT)
                    .set_response_timeout(REDIS_TIMEOUT)
                    .set_number_of_retries(1);
                match tokio::time::timeout(REDIS_TIMEOUT * 4, redis::aio::ConnectionManager::new_with_config(client, cfg)).await {
                    Ok(Ok(m)) => Some(m),
                    Ok(Err(e)) => {
                        warn!(error = %e, "cannot reach Redis; brute-force state stays in this process");
                        None
                    }
                    Err(_) => {
                        warn!("Redis did not answer; brute-force state stays in this process");
                        None
                    }
                }
            })
            .await
            .clone()
    }

    /// Whether an attempt from `ip` for `account` may proceed.
    pub async fn check(&self, ip: Option<IpAddr>, account: &str) -> Check {
        let keys = self.keys(ip, account);
        if keys.is_empty() {
            return Check::Allowed;
        }
        if let Some(mut r) = self.redis().await {
            let mut pipe = redis::pipe();
            for (_, k, _) in &keys {
                pipe.cmd("PTTL")
                    .arg(format!("{}blocked:{k}", self.cfg.redis_prefix));
            }
            match tokio::time::timeout(REDIS_TIMEOUT, pipe.query_async::<Vec<i64>>(&mut r)).await {
                Ok(Ok(ttls)) => {
                    for ((scope, _, _), ttl) in keys.iter().zip(ttls) {
                        if ttl > 0 {
                            return Check::Blocked {
                                scope,
                                retry_after: Duration::from_millis(ttl.unsigned_abs()),
                            };
                        }
                    }
                    return Check::Allowed;
                }
                Ok(Err(e)) => warn!(error = %e, "Redis failed; using in-process brute-force state"),
                Err(_) => warn!("Redis timed out; using in-process brute-force state"),
            }
        }
        let now = Instant::now();
        let Ok(local) = self.local.lock() else {
            return Check::Allowed;
        };
        for (scope, k, _) in &keys {
            if let Some(until) = local.get(k).and_then(|e| e.blocked_until)
                && until > now
            {
                return Check::Blocked {
                    scope,
                    retry_after: until - now,
                };
            }
        }
        Check::Allowed
    }

    /// Records a definite failure (unknown user or wrong password).
    pub async fn failure(&self, ip: Option<IpAddr>, account: &str) {
        let keys = self.keys(ip, account);
        if keys.is_empty() {
            return;
        }
        if let Some(mut r) = self.redis().await {
            let p = &self.cfg.redis_prefix;
            let window_ms = u64::try_from(self.cfg.window.as_millis()).unwrap_or(u64::MAX);
            let mut pipe = redis::pipe();
            for (_, k, _) in &keys {
                pipe.cmd("INCR").arg(format!("{p}failures:{k}"));
                pipe.cmd("PEXPIRE")
                    .arg(format!("{p}failures:{k}"))
                    .arg(window_ms)
                    .ignore();
            }
            match tokio::time::timeout(REDIS_TIMEOUT, pipe.query_async::<Vec<u32>>(&mut r)).await {
                Ok(Ok(counts)) => {
                    let mut pipe = redis::pipe();
                    let mut any = false;
                    for ((_, k, budget), n) in keys.iter().zip(counts) {
                        if let Some(b) = self.backoff(n, *budget) {
                            let ms = u64::try_from(b.as_millis()).unwrap_or(u64::MAX).max(1);
                            pipe.cmd("SET")
                                .arg(format!("{p}blocked:{k}"))
                                .arg(n)
                                .arg("PX")
                                .arg(ms)
                                .ignore();
                            any = true;
                        }
                    }
                    if !any {
                        return;
                    }
                    match tokio::time::timeout(REDIS_TIMEOUT, pipe.query_async::<()>(&mut r)).await
                    {
                        Ok(Ok(())) => return,
                        Ok(Err(e)) => {
                            warn!(error = %e, "Redis failed; recording the failure in-process")
                        }
                        Err(_) => warn!("Redis timed out; recording the failure in-process"),
                    }
                }
                Ok(Err(e)) => warn!(error = %e, "Redis failed; recording the failure in-process"),
                Err(_) => warn!("Redis timed out; recording the failure in-process"),
            }
        }
        let now = Instant::now();
        let Ok(mut local) = self.local.lock() else {
            return;
        };
        if local.len() >= LOCAL_MAX_KEYS {
            let window = self.cfg.window;
            local.retain(|_, e| e.last + window > now || e.blocked_until.is_some_and(|u| u > now));
            if local.len() >= LOCAL_MAX_KEYS {
                local.clear();
            }
        }
        for (_, k, budget) in keys {
            let e = local.entry(k).or_insert(Entry {
                failures: 0,
                last: now,
                blocked_until: None,
            });
            if e.last + self.cfg.window <= now {
                e.failures = 0;
            }
            e.failures = e.failures.saturating_add(1);
            e.last = now;
            if let Some(b) = self.backoff(e.failures, budget) {
                e.blocked_until = Some(now + b);
            }
        }
    }

    /// Records a successful login: its IP and account start afresh.
    pub async fn success(&self, ip: Option<IpAddr>, account: &str) {
        let keys = self.keys(ip, account);
        if keys.is_empty() {
            return;
        }
        if let Some(mut r) = self.redis().await {
            let p = &self.cfg.redis_prefix;
            let mut cmd = redis::cmd("DEL");
            for (_, k, _) in &keys {
                cmd.arg(format!("{p}failures:{k}"))
                    .arg(format!("{p}blocked:{k}"));
            }
            if let Ok(Err(e)) =
                tokio::time::timeout(REDIS_TIMEOUT, cmd.query_async::<()>(&mut r)).await
            {
                warn!(error = %e, "Redis failed while clearing brute-force state");
            }
        }
        if let Ok(mut local) = self.local.lock() {
            for (_, k, _) in keys {
                local.remove(&k);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(ip: u32, account: u32) -> BruteForceConfig {
        BruteForceConfig {
            ip_failures: ip,
            account_failures: account,
            backoff: Duration::from_secs(10),
            backoff_max: Duration::from_secs(60),
            window: Duration::from_secs(3600),
            redis_url: None,
            redis_prefix: "t:".into(),
        }
    }

    #[test]
    fn backoff_doubles_up_to_max() {
        let b = BruteForce::new(cfg(3, 0));
        assert_eq!(b.backoff(2, 3), None);
        assert_eq!(b.backoff(3, 3), Some(Duration::from_secs(10)));
        assert_eq!(b.backoff(4, 3), Some(Duration::from_secs(20)));
        assert_eq!(b.backoff(5, 3), Some(Duration::from_secs(40)));
        assert_eq!(b.backoff(6, 3), Some(Duration::from_secs(60)));
        assert_eq!(b.backoff(u32::MAX, 3), Some(Duration::from_secs(60)));
    }

    #[tokio::test(start_paused = true)]
    async fn ip_budget_blocks_that_ip_only_until_backoff_ends() {
        let b = BruteForce::new(cfg(3, 0));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..2 {
            b.failure(Some(ip), "u@x").await;
        }
        assert_eq!(b.check(Some(ip), "u@x").await, Check::Allowed);
        b.failure(Some(ip), "u@x").await;
        assert!(matches!(
            b.check(Some(ip), "u@x").await,
            Check::Blocked { scope: "ip", .. }
        ));
        assert_eq!(b.check(Some(other), "u@x").await, Check::Allowed);
        assert_eq!(b.check(None, "u@x").await, Check::Allowed);
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(b.check(Some(ip), "u@x").await, Check::Allowed);
        b.success(Some(ip), "u@x").await;
        b.failure(Some(ip), "u@x").await;
        assert_eq!(
            b.check(Some(ip), "u@x").await,
            Check::Allowed,
            "success resets the budget"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn account_budget_spans_ips_and_window_forgets() {
        let b = BruteForce::new(cfg(0, 2));
        b.failure(Some("192.0.2.1".parse().unwrap()), "u@x").await;
        tokio::time::advance(Duration::from_secs(3601)).await;
        b.failure(Some("192.0.2.2".parse().unwrap()), "u@x").await;
        assert_eq!(
            b.check(None, "u@x").await,
            Check::Allowed,
            "the first failure was forgotten"
        );
        b.failure(Some("192.0.2.3".parse().unwrap()), "u@x").await;
        assert!(matches!(
            b.check(None, "u@x").await,
            Check::Blocked {
                scope: "account",
                ..
            }
        ));
        assert_eq!(b.check(None, "v@x").await, Check::Allowed);
    }
}

//! LOGIC + STORAGE: greylisting (Rspamd's greylist module). A message
//! whose score reaches the greylist threshold is tempfailed until its
//! triplet — the client's network (/24 or /64), the envelope sender and
//! the recipients — was first seen at least `delay` ago; triplets are
//! remembered for `expire`. State lives in Redis (`grey:<hash>` = first
//! seen, Unix seconds) so that several nodes share it; when Redis fails,
//! the in-process table takes over (the result says so), so an outage
//! never stops mail.

use super::redis::{Redis, RedisError};
use postwerk_core::config::milterd::spam::Greylist as Config;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Most triplets the in-process table keeps (expired ones go first).
pub const MEMORY_MAX: usize = 500_000;

/// The outcome for one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// First time seen: come back after `delay`.
    New,
    /// Seen before, but `delay` has not passed yet.
    TooEarly(Duration),
    /// Retried after `delay`: let it through.
    Passed,
}

/// The in-process table: triplet hash → first seen (Unix seconds).
#[derive(Debug, Default)]
pub struct Memory {
    seen: Mutex<HashMap<String, u64>>,
}

/// The greylist: where the state lives and the timings.
#[derive(Debug, Clone)]
pub struct Greylist {
    /// Timings.
    pub cfg: Config,
    /// Redis and key prefix, when configured.
    pub redis: Option<(Arc<Redis>, String)>,
    /// The fallback (and the only store without Redis).
    pub memory: Arc<Memory>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The triplet key: client network, sender, sorted recipients.
pub fn triplet(ip: Option<IpAddr>, sender: &str, rcpts: &[String]) -> String {
    let net = match ip {
        Some(IpAddr::V4(v4)) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        Some(IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        None => "-".to_owned(),
    };
    let mut r: Vec<String> = rcpts.iter().map(|r| r.to_ascii_lowercase()).collect();
    r.sort();
    r.dedup();
    let text = format!("{net}\0{}\0{}", sender.to_ascii_lowercase(), r.join(","));
    let d = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    d.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn decide(first: u64, now: u64, delay: Duration, is_new: bool) -> Outcome {
    if is_new {
        return Outcome::New;
    }
    let age = now.saturating_sub(first);
    if age >= delay.as_secs() {
        Outcome::Passed
    } else {
        Outcome::TooEarly(Duration::from_secs(delay.as_secs() - age))
    }
}

impl Greylist {
    /// Checks (and records) `key`. The error, when Redis failed, comes
    /// with the in-process answer.
    pub async fn check(&self, key: &str) -> (Outcome, Option<RedisError>) {
        let t = now();
        if let Some((r, p)) = &self.redis {
            let k = format!("{p}grey:{key}");
            let mut pipe = redis::pipe();
            pipe.cmd("SET")
                .arg(&k)
                .arg(t)
                .arg("NX")
                .arg("EX")
                .arg(self.cfg.expire.as_secs().max(1));
            pipe.cmd("GET").arg(&k);
            match r.query::<(Option<String>, Option<u64>)>(&pipe).await {
                Ok((set, first)) => {
                    let first = first.unwrap_or(t);
                    let out = decide(first, t, self.cfg.delay, set.is_some());
                    return (out, None);
                }
                Err(e) => return (self.check_memory(key, t), Some(e)),
            }
        }
        (self.check_memory(key, t), None)
    }

    fn check_memory(&self, key: &str, t: u64) -> Outcome {
        let mut seen = self.memory.seen.lock().unwrap_or_else(|e| e.into_inner());
        let expire = self.cfg.expire.as_secs();
        if seen.len() >= MEMORY_MAX {
            seen.retain(|_, first| t.saturating_sub(*first) < expire);
            if seen.len() >= MEMORY_MAX {
                seen.clear();
            }
        }
        match seen.get(key).copied() {
            Some(first) if t.saturating_sub(first) < expire => {
                decide(first, t, self.cfg.delay, false)
            }
            _ => {
                seen.insert(key.to_owned(), t);
                Outcome::New
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triplets_ignore_order_case_and_host_part() {
        let a = triplet(
            Some("192.0.2.7".parse().unwrap()),
            "A@x.test",
            &["b@y".into(), "c@y".into()],
        );
        let b = triplet(
            Some("192.0.2.200".parse().unwrap()),
            "a@x.test",
            &["C@y".into(), "b@y".into()],
        );
        assert_eq!(a, b);
        let c = triplet(
            Some("192.0.3.7".parse().unwrap()),
            "a@x.test",
            &["b@y".into(), "c@y".into()],
        );
        assert_ne!(a, c);
    }

    #[test]
    fn decisions() {
        let d = Duration::from_secs(300);
        assert_eq!(decide(100, 100, d, true), Outcome::New);
        assert_eq!(
            decide(100, 200, d, false),
            Outcome::TooEarly(Duration::from_secs(200))
        );
        assert_eq!(decide(100, 400, d, false), Outcome::Passed);
    }

    #[tokio::test]
    async fn memory_first_new_then_too_early() {
        let g = Greylist {
            cfg: Config {
                delay: Duration::from_secs(300),
                expire: Duration::from_secs(3600),
            },
            redis: None,
            memory: Arc::new(Memory::default()),
        };
        assert_eq!(g.check("k").await.0, Outcome::New);
        assert!(matches!(g.check("k").await.0, Outcome::TooEarly(_)));
        assert_eq!(g.check("other").await.0, Outcome::New);
    }
}

//! `[policyd.ratelimit]`: sending rate limits per SASL user or sender,
//! raw and validated.

use super::ConfigError;
use serde::Deserialize;

/// Raw `[policyd.ratelimit]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Raw {
    pub messages_per_hour: Option<u32>,
    pub recipients_per_hour: Option<u32>,
    pub redis_url: Option<String>,
    pub redis_prefix: Option<String>,
    #[serde(default, rename = "override")]
    pub overrides: Vec<RawOverride>,
}

/// Raw `[[policyd.ratelimit.override]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOverride {
    #[serde(rename = "match")]
    pub match_: String,
    pub messages_per_hour: Option<u32>,
    pub recipients_per_hour: Option<u32>,
}

/// Default Redis key prefix, so several services can share one Redis.
pub const DEFAULT_REDIS_PREFIX: &str = "postwerk:rl:";

/// Limits for one sender; 0 = unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// Messages per hour.
    pub messages_per_hour: u32,
    /// Recipients per hour.
    pub recipients_per_hour: u32,
}

/// Validated `[policyd.ratelimit]`.
#[derive(Debug, Clone, Default)]
pub struct RateLimitConfig {
    /// Limits for everyone without an override (default: none).
    pub default: Limits,
    /// Per-account (`user@domain`) and per-domain (`domain`) limits; an
    /// account's override wins over its domain's.
    pub overrides: Vec<(String, Limits)>,
    /// Redis URL for counters shared by several policyd nodes; without it
    /// counters live in this process.
    pub redis_url: Option<String>,
    /// Prefix of the Redis keys.
    pub redis_prefix: String,
}

impl RateLimitConfig {
    /// Whether any limit is set at all.
    pub fn is_enabled(&self) -> bool {
        let on = |l: &Limits| l.messages_per_hour > 0 || l.recipients_per_hour > 0;
        on(&self.default) || self.overrides.iter().any(|(_, l)| on(l))
    }

    /// The limits for a normalised address.
    pub fn limits_for(&self, address: &str) -> Limits {
        let domain = address.rsplit_once('@').map(|(_, d)| d).unwrap_or(address);
        self.overrides
            .iter()
            .find(|(m, _)| m == address)
            .or_else(|| self.overrides.iter().find(|(m, _)| m == domain))
            .map(|(_, l)| *l)
            .unwrap_or(self.default)
    }
}

/// Checks `[policyd.ratelimit]`.
pub fn check(raw: &Raw, errors: &mut Vec<ConfigError>) -> RateLimitConfig {
    let default = Limits {
        messages_per_hour: raw.messages_per_hour.unwrap_or(0),
        recipients_per_hour: raw.recipients_per_hour.unwrap_or(0),
    };
    let mut overrides = Vec::new();
    for (i, o) in raw.overrides.iter().enumerate() {
        let key = format!("[policyd.ratelimit].override[{i}].match");
        let m = o.match_.trim();
        let normalised = if m.contains('@') {
            crate::address::Address::parse(m)
                .map(|a| a.to_string())
                .map_err(|e| e.to_string())
        } else {
            crate::address::normalize_domain(m).map_err(|e| e.to_string())
        };
        match normalised {
            Ok(n) => overrides.push((
                n,
                Limits {
                    messages_per_hour: o.messages_per_hour.unwrap_or(default.messages_per_hour),
                    recipients_per_hour: o
                        .recipients_per_hour
                        .unwrap_or(default.recipients_per_hour),
                },
            )),
            Err(e) => errors.push(ConfigError::new(
                key,
                format!("{e}; use user@domain or domain"),
            )),
        }
    }
    const SCHEMES: [&str; 4] = ["redis://", "rediss://", "redis+unix://", "unix://"];
    if let Some(url) = &raw.redis_url
        && !SCHEMES.iter().any(|s| url.starts_with(s))
    {
        errors.push(ConfigError::new(
            "[policyd.ratelimit].redis_url",
            format!("`{url}` is not a Redis URL; use redis://127.0.0.1:6379 or unix:///run/redis/redis.sock"),
        ));
    }
    RateLimitConfig {
        default,
        overrides,
        redis_url: raw.redis_url.clone(),
        redis_prefix: raw
            .redis_prefix
            .clone()
            .unwrap_or_else(|| DEFAULT_REDIS_PREFIX.to_owned()),
    }
}

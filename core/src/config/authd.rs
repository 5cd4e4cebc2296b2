//! `[authd]`: the authentication daemon's settings, raw and validated.
//! No I/O here except resolving user and group names to ids.

use super::ConfigError;
use super::daemon::{
    ServiceConfig, bounded_duration, check_duration, check_listen, check_service, daemon_raw,
};
use super::units::format_duration;
use crate::service::ListenAddr;
use serde::Deserialize;
use std::time::Duration;

/// Where Postfix's `smtpd_sasl_path = private/auth` finds authd by default.
pub const DEFAULT_AUTH_LISTEN: &str = "unix:/var/spool/postfix/private/auth";
/// Idle connections are closed after this long. Postfix keeps its auth
/// connection for the life of an smtpd process (`max_idle`, 100 s by
/// default, times `max_use`); Dovecot's dict client opens one per lookup.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// Dovecot `auth_failure_delay`: a failed login is answered this long after
/// the request arrived.
pub const DEFAULT_FAILURE_DELAY: Duration = Duration::from_secs(2);
/// Longest `auth_failure_delay` allowed (Postfix waits for the reply; a
/// minute is already far beyond any client's patience).
pub const MAX_FAILURE_DELAY: Duration = Duration::from_secs(60);
/// Deadline of one database lookup plus password check; past it the
/// answer is a temporary failure.
pub const DEFAULT_LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Dovecot `mail_home` of the guide.
pub const DEFAULT_HOME: &str = "/var/vmail/mailboxes/%d/%n";
/// The guide's `mail_uid` / `mail_gid`.
pub const DEFAULT_MAIL_USER: &str = "vmail";
/// Remembered successful logins expire after this long (0 = no cache).
pub const DEFAULT_LOGIN_CACHE_TTL: Duration = Duration::from_secs(60);
/// Longest `login_cache_ttl` allowed: a changed password must not keep
/// working through the cache for long (the entry is also bound to the
/// stored hash, so a change in the database takes effect at once).
pub const MAX_LOGIN_CACHE_TTL: Duration = Duration::from_secs(3600);
/// Failed logins per remote IP before back-off starts (0 = no IP budget).
pub const DEFAULT_BRUTEFORCE_IP_FAILURES: u32 = 10;
/// Failed logins per account before back-off starts (0 = no account
/// budget). Higher than the IP budget: an account is attacked from many IPs
/// and its owner must not be locked out by one of them.
pub const DEFAULT_BRUTEFORCE_ACCOUNT_FAILURES: u32 = 30;
/// First back-off once a budget is spent; it doubles with each further
/// failure.
pub const DEFAULT_BRUTEFORCE_BACKOFF: Duration = Duration::from_secs(10);
/// Longest back-off.
pub const DEFAULT_BRUTEFORCE_BACKOFF_MAX: Duration = Duration::from_secs(900);
/// Failures older than this are forgotten.
pub const DEFAULT_BRUTEFORCE_WINDOW: Duration = Duration::from_secs(3600);
/// Default Redis key prefix of the brute-force counters.
pub const DEFAULT_REDIS_PREFIX: &str = "postwerk:authd:";

/// A uid or gid as written: a number or a name.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawId {
    /// A numeric id.
    Number(i64),
    /// A user or group name.
    Name(String),
}

daemon_raw! {
    /// Raw `[authd]`.
    pub struct Raw {
        pub auth_listen: Option<Vec<String>>,
        pub dict_listen: Option<Vec<String>>,
        pub auth_failure_delay: Option<String>,
        pub lookup_timeout: Option<String>,
        pub verify_parallelism: Option<usize>,
        pub plaintext_on_insecure: Option<bool>,
        pub home: Option<String>,
        pub uid: Option<RawId>,
        pub gid: Option<RawId>,
        pub login_cache_ttl: Option<String>,
        pub bruteforce_ip_failures: Option<u32>,
        pub bruteforce_account_failures: Option<u32>,
        pub bruteforce_backoff: Option<String>,
        pub bruteforce_backoff_max: Option<String>,
        pub bruteforce_window: Option<String>,
        pub redis_url: Option<String>,
        pub redis_prefix: Option<String>,
    }
}

/// Brute-force protection, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BruteForceConfig {
    /// `bruteforce_ip_failures`: failures per remote IP before back-off
    /// (0 = off).
    pub ip_failures: u32,
    /// `bruteforce_account_failures`: failures per account before back-off
    /// (0 = off).
    pub account_failures: u32,
    /// `bruteforce_backoff`: first blocked period; doubles per failure.
    pub backoff: Duration,
    /// `bruteforce_backoff_max`: longest blocked period.
    pub backoff_max: Duration,
    /// `bruteforce_window`: failures older than this are forgotten.
    pub window: Duration,
    /// `redis_url`: share counters between nodes; in-process without it.
    pub redis_url: Option<String>,
    /// `redis_prefix`.
    pub redis_prefix: String,
}

impl BruteForceConfig {
    /// Whether any budget is set.
    pub fn is_enabled(&self) -> bool {
        self.ip_failures > 0 || self.account_failures > 0
    }
}

/// Validated `[authd]`.
#[derive(Debug, Clone)]
pub struct AuthdConfig {
    /// Dovecot auth-client protocol listeners (for Postfix SASL).
    pub auth_listen: Vec<ListenAddr>,
    /// Dovecot dict protocol listeners (for Dovecot passdb/userdb).
    pub dict_listen: Vec<ListenAddr>,
    /// Shared listener settings.
    pub service: ServiceConfig,
    /// `auth_failure_delay` (Dovecot's name): answer a failed login this
    /// long after the request arrived. Zero is allowed (tests, trusted
    /// clients) but not advised.
    pub failure_delay: Duration,
    /// `lookup_timeout`: deadline of one lookup (plus password check).
    pub lookup_timeout: Duration,
    /// `verify_parallelism`: password checks running at once (default:
    /// twice the number of CPUs, so that hashing overlaps the database
    /// round trips of the next logins; with one check per CPU the hashing
    /// threads sat idle during them: 0.81–0.87× Dovecot's first logins at
    /// 4/16 connections, 1.00–1.17× with two, bench/run 2026-11-29).
    /// Further checks wait, so a flood of logins cannot starve the host.
    pub verify_parallelism: usize,
    /// `plaintext_on_insecure`: accept PLAIN/LOGIN on a request without
    /// the `secured` flag (Dovecot `disable_plaintext_auth = no`). Off by
    /// default, as in the guide.
    pub plaintext_on_insecure: bool,
    /// `home`: the userdb `home` template (`%u`, `%n`, `%d`, `%%`).
    pub home: String,
    /// `uid`: userdb `uid` (default: the `vmail` user's).
    pub uid: Option<u32>,
    /// `gid`: userdb `gid` (default: the `vmail` group's).
    pub gid: Option<u32>,
    /// `login_cache_ttl`: remember a verified login this long (0 = off).
    pub login_cache_ttl: Duration,
    /// Brute-force protection.
    pub bruteforce: BruteForceConfig,
}

/// Checks `[authd]`.
pub fn check(raw: &Raw, errors: &mut Vec<ConfigError>) -> AuthdConfig {
    let default_auth = vec![DEFAULT_AUTH_LISTEN.to_owned()];
    let auth_listen = check_listen(
        "[authd].auth_listen",
        raw.auth_listen.as_ref().unwrap_or(&default_auth),
        errors,
    );
    let dict_listen = check_listen(
        "[authd].dict_listen",
        raw.dict_listen.as_deref().unwrap_or(&[]),
        errors,
    );
    if auth_listen.is_empty() && dict_listen.is_empty() && raw.auth_listen.is_some() {
        errors.push(ConfigError::new(
            "[authd].auth_listen",
            "no listener at all: set auth_listen, dict_listen or both",
        ));
    }
    let failure_delay = bounded_duration(
        "[authd].auth_failure_delay",
        raw.auth_failure_delay.as_deref(),
        DEFAULT_FAILURE_DELAY,
        MAX_FAILURE_DELAY,
        errors,
    );
    let lookup_timeout = check_duration(
        "[authd].lookup_timeout",
        raw.lookup_timeout.as_deref(),
        DEFAULT_LOOKUP_TIMEOUT,
        errors,
    );
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let default_parallelism = cpus.saturating_mul(2);
    let verify_parallelism = match raw.verify_parallelism {
        None => default_parallelism,
        Some(n) if (1..=1024).contains(&n) => n,
        Some(n) => {
            errors.push(ConfigError::new(
                "[authd].verify_parallelism",
                format!(
                    "{n} is out of range; allowed 1 to 1024 (default: twice the number of CPUs, {default_parallelism})"
                ),
            ));
            default_parallelism
        }
    };
    let home = raw.home.clone().unwrap_or_else(|| DEFAULT_HOME.to_owned());
    if let Err(e) = check_home(&home) {
        errors.push(ConfigError::new("[authd].home", e));
    }
    // The default `vmail` user only has to exist where the dict service runs:
    // every daemon reads this section, most never need it.
    let needs_ids = !dict_listen.is_empty();
    let uid = resolve_id("[authd].uid", raw.uid.as_ref(), needs_ids, true, errors);
    let gid = resolve_id("[authd].gid", raw.gid.as_ref(), needs_ids, false, errors);
    let login_cache_ttl = bounded_duration(
        "[authd].login_cache_ttl",
        raw.login_cache_ttl.as_deref(),
        DEFAULT_LOGIN_CACHE_TTL,
        MAX_LOGIN_CACHE_TTL,
        errors,
    );
    let backoff = check_duration(
        "[authd].bruteforce_backoff",
        raw.bruteforce_backoff.as_deref(),
        DEFAULT_BRUTEFORCE_BACKOFF,
        errors,
    );
    let backoff_max = check_duration(
        "[authd].bruteforce_backoff_max",
        raw.bruteforce_backoff_max.as_deref(),
        DEFAULT_BRUTEFORCE_BACKOFF_MAX,
        errors,
    );
    if backoff_max < backoff {
        errors.push(ConfigError::new(
            "[authd].bruteforce_backoff_max",
            format!(
                "{} is shorter than bruteforce_backoff ({})",
                format_duration(backoff_max),
                format_duration(backoff)
            ),
        ));
    }
    let window = check_duration(
        "[authd].bruteforce_window",
        raw.bruteforce_window.as_deref(),
        DEFAULT_BRUTEFORCE_WINDOW,
        errors,
    );
    const REDIS_SCHEMES: [&str; 4] = ["redis://", "rediss://", "redis+unix://", "unix://"];
    if let Some(url) = &raw.redis_url
        && !REDIS_SCHEMES.iter().any(|s| url.starts_with(s))
    {
        errors.push(ConfigError::new(
            "[authd].redis_url",
            format!("`{url}` is not a Redis URL; use redis://127.0.0.1:6379 or unix:///run/redis/redis.sock"),
        ));
    }
    if let Some(p) = &raw.redis_prefix
        && (p.is_empty() || p.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        errors.push(ConfigError::new(
            "[authd].redis_prefix",
            format!("`{p}` must be non-empty and have no spaces, e.g. \"postwerk:authd:\""),
        ));
    }
    let bruteforce = BruteForceConfig {
        ip_failures: raw
            .bruteforce_ip_failures
            .unwrap_or(DEFAULT_BRUTEFORCE_IP_FAILURES),
        account_failures: raw
            .bruteforce_account_failures
            .unwrap_or(DEFAULT_BRUTEFORCE_ACCOUNT_FAILURES),
        backoff,
        backoff_max,
        window,
        redis_url: raw.redis_url.clone(),
        redis_prefix: raw
            .redis_prefix
            .clone()
            .unwrap_or_else(|| DEFAULT_REDIS_PREFIX.to_owned()),
    };
    AuthdConfig {
        auth_listen,
        dict_listen,
        service: check_service("authd", &raw.service(), DEFAULT_IDLE_TIMEOUT, errors),
        failure_delay,
        lookup_timeout,
        verify_parallelism,
        plaintext_on_insecure: raw.plaintext_on_insecure.unwrap_or(false),
        home,
        uid,
        gid,
        login_cache_ttl,
        bruteforce,
    }
}

/// Checks a `home` template: absolute, only `%u`, `%n`, `%d`, `%%`.
pub fn check_home(t: &str) -> Result<(), String> {
    if !t.starts_with('/') {
        return Err(format!(
            "`{t}` must be an absolute path such as \"{DEFAULT_HOME}\""
        ));
    }
    if t.contains('\n') || t.contains('\t') || t.contains('\0') {
        return Err("must not contain tabs, newlines or NUL".into());
    }
    let mut chars = t.chars();
    while let Some(c) = chars.next() {
        if c == '%' {
            match chars.next() {
                Some('u' | 'n' | 'd' | '%') => {}
                other => {
                    return Err(format!(
                        "`{t}` uses %{}; allowed: %u (user@domain), %n (user), %d (domain), %%",
                        other.map(String::from).unwrap_or_default()
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Expands a checked `home` template for a normalised `local@domain`.
pub fn expand_home(t: &str, local: &str, domain: &str) -> String {
    let mut out = String::with_capacity(t.len() + local.len() + domain.len());
    let mut chars = t.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('u') => {
                out.push_str(local);
                out.push('@');
                out.push_str(domain);
            }
            Some('n') => out.push_str(local),
            Some('d') => out.push_str(domain),
            Some(other) => out.push(other),
            None => out.push('%'),
        }
    }
    out
}

fn resolve_id(
    key: &str,
    raw: Option<&RawId>,
    needed: bool,
    is_user: bool,
    errors: &mut Vec<ConfigError>,
) -> Option<u32> {
    let what = if is_user { "user" } else { "group" };
    let by_name = |name: &str| -> Result<Option<u32>, String> {
        if is_user {
            nix::unistd::User::from_name(name)
                .map(|u| u.map(|u| u.uid.as_raw()))
                .map_err(|e| e.to_string())
        } else {
            nix::unistd::Group::from_name(name)
                .map(|g| g.map(|g| g.gid.as_raw()))
                .map_err(|e| e.to_string())
        }
    };
    match raw {
        Some(RawId::Number(n)) => match u32::try_from(*n) {
            Ok(v) if v < u32::MAX => Some(v),
            _ => {
                errors.push(ConfigError::new(
                    key,
                    format!("{n} is not a valid {what} id"),
                ));
                None
            }
        },
        Some(RawId::Name(name)) => match by_name(name) {
            Ok(Some(id)) => Some(id),
            Ok(None) => {
                errors.push(ConfigError::new(key, format!("no such {what} `{name}`")));
                None
            }
            Err(e) => {
                errors.push(ConfigError::new(
                    key,
                    format!("cannot look up {what} `{name}`: {e}"),
                ));
                None
            }
        },
        None => match by_name(DEFAULT_MAIL_USER) {
            Ok(Some(id)) => Some(id),
            _ if needed => {
                errors.push(ConfigError::new(
                    key,
                    format!("dict_listen is set but there is no {what} `{DEFAULT_MAIL_USER}`; set {key} explicitly"),
                ));
                None
            }
            _ => None,
        },
    }
}

/// `postwerk config check` rows for `[authd]`.
pub fn describe(a: &AuthdConfig) -> Vec<(String, String)> {
    let id = |v: Option<u32>| v.map(|v| v.to_string()).unwrap_or_else(|| "(none)".into());
    let b = &a.bruteforce;
    let mut rows = vec![
        (
            "[authd].auth_listen".to_owned(),
            super::list(&a.auth_listen),
        ),
        (
            "[authd].dict_listen".to_owned(),
            super::list(&a.dict_listen),
        ),
        (
            "[authd].auth_failure_delay".to_owned(),
            format_duration(a.failure_delay),
        ),
        (
            "[authd].lookup_timeout".to_owned(),
            format_duration(a.lookup_timeout),
        ),
        (
            "[authd].verify_parallelism".to_owned(),
            a.verify_parallelism.to_string(),
        ),
        (
            "[authd].plaintext_on_insecure".to_owned(),
            a.plaintext_on_insecure.to_string(),
        ),
        ("[authd].home".to_owned(), a.home.clone()),
        ("[authd].uid".to_owned(), id(a.uid)),
        ("[authd].gid".to_owned(), id(a.gid)),
        (
            "[authd].login_cache_ttl".to_owned(),
            format_duration(a.login_cache_ttl),
        ),
        (
            "[authd].bruteforce_ip_failures".to_owned(),
            b.ip_failures.to_string(),
        ),
        (
            "[authd].bruteforce_account_failures".to_owned(),
            b.account_failures.to_string(),
        ),
        (
            "[authd].bruteforce_backoff".to_owned(),
            format_duration(b.backoff),
        ),
        (
            "[authd].bruteforce_backoff_max".to_owned(),
            format_duration(b.backoff_max),
        ),
        (
            "[authd].bruteforce_window".to_owned(),
            format_duration(b.window),
        ),
        (
            "[authd].redis_url".to_owned(),
            b.redis_url
                .clone()
                .unwrap_or_else(|| "(none: in-process)".into()),
        ),
        ("[authd].redis_prefix".to_owned(), b.redis_prefix.clone()),
    ];
    rows.extend(super::daemon::describe_service("authd", &a.service));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AuthdConfig, Vec<ConfigError>> {
        crate::config::parse_section::<Raw, _>(text, check)
    }

    #[test]
    fn defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.failure_delay, DEFAULT_FAILURE_DELAY);
        assert_eq!(c.home, DEFAULT_HOME);
        assert!(!c.plaintext_on_insecure);
        assert!(c.verify_parallelism >= 1);
        assert!(c.bruteforce.is_enabled());
    }

    #[test]
    fn keys_are_named_in_errors() {
        for (text, key) in [
            (
                "auth_failure_delay = \"2 weeks\"",
                "[authd].auth_failure_delay",
            ),
            ("auth_failure_delay = \"5m\"", "[authd].auth_failure_delay"),
            ("verify_parallelism = 0", "[authd].verify_parallelism"),
            ("home = \"mailboxes/%d\"", "[authd].home"),
            ("home = \"/m/%x\"", "[authd].home"),
            ("uid = -3", "[authd].uid"),
            ("gid = \"no-such-group-here\"", "[authd].gid"),
            ("login_cache_ttl = \"2h\"", "[authd].login_cache_ttl"),
            (
                "bruteforce_backoff = \"1m\"\nbruteforce_backoff_max = \"10s\"",
                "[authd].bruteforce_backoff_max",
            ),
            ("redis_url = \"localhost\"", "[authd].redis_url"),
            ("lookup_timeout = \"0\"", "[authd].lookup_timeout"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(
                e.iter().any(|e| e.to_string().contains(key)),
                "{text}: {e:?}"
            );
        }
    }

    #[test]
    fn home_expands() {
        assert_eq!(
            expand_home(DEFAULT_HOME, "user", "example.org"),
            "/var/vmail/mailboxes/example.org/user"
        );
        assert_eq!(expand_home("/h/%u/%%", "a", "b.c"), "/h/a@b.c/%");
    }

    #[test]
    fn numeric_ids() {
        let c = parse("uid = 5000\ngid = 5001\ndict_listen = [\"unix:/tmp/x.sock\"]").unwrap();
        assert_eq!((c.uid, c.gid), (Some(5000), Some(5001)));
    }
}

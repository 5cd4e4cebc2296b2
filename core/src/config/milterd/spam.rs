//! `[milterd.spam]` and its tables: spam scoring (actions, symbol
//! weights, greylisting, Bayes, the rspamc-compatible controller,
//! multimap lists, DNS block lists), raw and validated. No I/O here except
//! reading a `password_file`; map files are read by milterd, so a missing
//! map is a log line and an empty list, as in Rspamd.

use super::super::daemon::{check_duration, check_listen};
use super::super::{ConfigError, Secret};
use super::Network;
use crate::service::ListenAddr;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Rspamd's shipped `actions.conf`: `reject = 15`.
pub const DEFAULT_REJECT_SCORE: f64 = 15.0;
/// Rspamd's shipped `actions.conf`: `add_header = 6`.
pub const DEFAULT_ADD_HEADER_SCORE: f64 = 6.0;
/// Rspamd's shipped `actions.conf`: `greylist = 4`.
pub const DEFAULT_GREYLIST_SCORE: f64 = 4.0;
/// Rspamd's greylist module: `timeout = 5min`, the least time before a
/// greylisted triplet may deliver.
pub const DEFAULT_GREYLIST_DELAY: Duration = Duration::from_secs(300);
/// Rspamd's greylist module: `expire = 1d`, how long a triplet is
/// remembered.
pub const DEFAULT_GREYLIST_EXPIRE: Duration = Duration::from_secs(86_400);
/// Default Redis key prefix of Bayes and greylisting.
pub const DEFAULT_REDIS_PREFIX: &str = "postwerk:milterd:";
/// The most time all spam checks of one message (Redis, DNS lists) may
/// take together; what is not done by then is skipped with a symbol.
pub const DEFAULT_SPAM_TIMEOUT: Duration = Duration::from_secs(10);
/// Rspamd's classifier: `min_learns = 200` for each class before Bayes
/// says anything.
pub const DEFAULT_MIN_LEARNS: u64 = 200;
/// Autolearn ham below this score (Rspamd with `autolearn = true` learns
/// ham from clearly good mail only).
pub const DEFAULT_AUTOLEARN_HAM_SCORE: f64 = -2.0;
/// How long one DNS block list query may take.
pub const DEFAULT_DNSBL_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a DNS block list answer is cached.
pub const DEFAULT_DNSBL_CACHE_TTL: Duration = Duration::from_secs(600);
/// Rspamd's `worker-controller.inc`: `secure_ip = ["127.0.0.1", "::1"]`
/// — clients there need no password (the guide's `rspamc learn_spam`
/// pipes rely on it).
pub const DEFAULT_SECURE_IP: &[&str] = &["127.0.0.1", "::1"];
/// How long a controller client may take to send its request.
pub const DEFAULT_CONTROLLER_TIMEOUT: Duration = Duration::from_secs(30);

/// A threshold as written: a score, or `false` for "never".
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(untagged)]
pub enum RawThreshold {
    /// `reject = 15`.
    Score(f64),
    /// `greylist = false`.
    Off(bool),
}

/// Raw `[milterd.spam.actions]` (Rspamd's `actions.conf`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawActions {
    pub reject: Option<RawThreshold>,
    pub add_header: Option<RawThreshold>,
    pub greylist: Option<RawThreshold>,
}

/// Raw `[milterd.spam.greylist]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGreylist {
    pub delay: Option<String>,
    pub expire: Option<String>,
}

/// Raw `[milterd.spam.bayes]` (Rspamd's `classifier-bayes.conf`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBayes {
    pub enabled: Option<bool>,
    pub autolearn: Option<bool>,
    pub autolearn_spam_score: Option<f64>,
    pub autolearn_ham_score: Option<f64>,
    pub min_learns: Option<u64>,
    pub file: Option<String>,
    pub per_user: Option<bool>,
}

/// Raw `[milterd.spam.controller]` (Rspamd's `worker-controller.inc`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawController {
    pub listen: Option<Vec<String>>,
    pub password: Option<String>,
    pub password_file: Option<String>,
    pub enable_password: Option<String>,
    pub enable_password_file: Option<String>,
    pub secure_ip: Option<Vec<String>>,
    pub timeout: Option<String>,
}

/// Raw `[[milterd.spam.multimap]]` (one rule of Rspamd's `multimap.conf`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMultimap {
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub map: Option<String>,
    pub score: Option<f64>,
    pub description: Option<String>,
    pub action: Option<String>,
    pub filter: Option<String>,
}

/// Raw `[[milterd.spam.dnsbl]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDnsbl {
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub zone: Option<String>,
    pub score: Option<f64>,
    pub description: Option<String>,
}

/// Raw `[milterd.spam]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpam {
    pub enabled: Option<bool>,
    pub shadow: Option<bool>,
    pub redis_url: Option<String>,
    pub redis_prefix: Option<String>,
    pub timeout: Option<String>,
    pub dnsbl_timeout: Option<String>,
    pub dnsbl_cache_ttl: Option<String>,
    pub local_networks: Option<Vec<String>>,
    pub actions: Option<RawActions>,
    pub symbols: Option<BTreeMap<String, f64>>,
    pub greylist: Option<RawGreylist>,
    pub bayes: Option<RawBayes>,
    pub controller: Option<RawController>,
    pub multimap: Option<Vec<RawMultimap>>,
    pub dnsbl: Option<Vec<RawDnsbl>>,
}

/// Validated `[milterd.spam.actions]`: the score from which each action
/// applies; `None` switches an action off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Actions {
    /// `reject` (default 15): refuse at end of data with `554 5.7.1`.
    pub reject: Option<f64>,
    /// `add_header` (default 6): accept with `X-Spam: Yes`, which the
    /// guide's `spam-global.sieve` files into Spam.
    pub add_header: Option<f64>,
    /// `greylist` (default 4): `451 4.7.1` until the client retries after
    /// `[milterd.spam.greylist].delay`.
    pub greylist: Option<f64>,
}

/// Validated `[milterd.spam.greylist]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Greylist {
    /// `delay` (default 5m): how long a new sender/recipient/client triplet
    /// is told to come back later.
    pub delay: Duration,
    /// `expire` (default 1d): how long a triplet is remembered.
    pub expire: Duration,
}

/// Validated `[milterd.spam.bayes]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Bayes {
    /// `enabled` (default true).
    pub enabled: bool,
    /// `autolearn` (default true, as the guide's `override.d`): learn spam
    /// from mail at or over `autolearn_spam_score`, ham from mail at or
    /// under `autolearn_ham_score`.
    pub autolearn: bool,
    /// `autolearn_spam_score` (default: the reject score).
    pub autolearn_spam_score: f64,
    /// `autolearn_ham_score` (default -2).
    pub autolearn_ham_score: f64,
    /// `min_learns` (default 200): learns of each class before Bayes
    /// classifies.
    pub min_learns: u64,
    /// `file`: where the embedded store (no `redis_url`) is kept across
    /// restarts; without it, learning lasts until the process ends.
    pub file: Option<PathBuf>,
    /// `per_user` (default false): statistics per recipient (the milter's
    /// first envelope recipient, rspamc's `-d`/`Deliver-To:`) instead of
    /// one global set; needs `redis_url`.
    pub per_user: bool,
}

/// Validated `[milterd.spam.controller]`.
#[derive(Debug, Clone)]
pub struct Controller {
    /// `listen`: HTTP listeners (default none; the guide's rspamc pipes
    /// expect `inet:127.0.0.1:11334`).
    pub listen: Vec<ListenAddr>,
    /// `password` / `password_file`: for read-only commands (`stat`,
    /// `checkv2`). Plain text, or a Dovecot-style `{SCHEME}hash`.
    pub password: Option<Secret>,
    /// `enable_password` / `enable_password_file`: for learning; without
    /// it `password` is used.
    pub enable_password: Option<Secret>,
    /// `secure_ip`: clients that need no password (default loopback, as
    /// Rspamd).
    pub secure_ip: Vec<Network>,
    /// `timeout`: a request must arrive within this time.
    pub timeout: Duration,
}

/// What a multimap rule matches (Rspamd's `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MultimapKind {
    /// `ip`: the client address.
    Ip,
    /// `from`: the envelope sender (or `From:` without one).
    From,
    /// `header_from`: the address of the `From:` header.
    HeaderFrom,
}

/// What a multimap rule does on a match (Rspamd's `action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MultimapAction {
    /// No `action`: only add the symbol's score.
    Score,
    /// `accept`: no action, whatever the score.
    Accept,
    /// `reject`: reject, whatever the score.
    Reject,
    /// `add_header`: at least add header.
    AddHeader,
}

/// One validated `[[milterd.spam.multimap]]` rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Multimap {
    /// `name`: the symbol.
    pub name: String,
    /// `type`.
    pub kind: MultimapKind,
    /// `map`: the map file (`file://` prefix allowed).
    pub map: PathBuf,
    /// `score` (default 0, or 0 with an action).
    pub score: f64,
    /// `description`.
    pub description: String,
    /// `action`.
    pub action: MultimapAction,
    /// `filter = "email:domain"`: match the domain only.
    pub is_domain_filter: bool,
}

/// What a DNS list is asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsblKind {
    /// `ip`: the client address, reversed (Spamhaus ZEN style).
    Ip,
    /// `url`: the host names of links in the body (SURBL/DBL style).
    Url,
}

/// One validated `[[milterd.spam.dnsbl]]` list.
#[derive(Debug, Clone, PartialEq)]
pub struct Dnsbl {
    /// `name`: the symbol.
    pub name: String,
    /// `type`.
    pub kind: DnsblKind,
    /// `zone`: `zen.spamhaus.org`.
    pub zone: String,
    /// `score`.
    pub score: f64,
    /// `description`.
    pub description: String,
}

/// Validated `[milterd.spam]`.
#[derive(Debug, Clone)]
pub struct SpamConfig {
    /// `enabled` (default true): score incoming mail.
    pub enabled: bool,
    /// `shadow` (default false): score and log, but never reject,
    /// greylist or add headers (for running beside Rspamd).
    pub shadow: bool,
    /// `redis_url`: Bayes and greylisting in Redis; in this process
    /// without it.
    pub redis_url: Option<String>,
    /// `redis_prefix`.
    pub redis_prefix: String,
    /// `timeout`: the budget of one message's checks.
    pub timeout: Duration,
    /// `dnsbl_timeout`: one DNS list query.
    pub dnsbl_timeout: Duration,
    /// `dnsbl_cache_ttl`: how long DNS list answers are kept.
    pub dnsbl_cache_ttl: Duration,
    /// `local_networks`: clients never scored (Rspamd's
    /// `local_addrs`; default none besides `trusted_networks`).
    pub local_networks: Vec<Network>,
    /// `[milterd.spam.actions]`.
    pub actions: Actions,
    /// `[milterd.spam.symbols]`: weight overrides, by symbol name. The
    /// names are checked by milterd, which knows its symbols.
    pub symbols: BTreeMap<String, f64>,
    /// `[milterd.spam.greylist]`.
    pub greylist: Greylist,
    /// `[milterd.spam.bayes]`.
    pub bayes: Bayes,
    /// `[milterd.spam.controller]`.
    pub controller: Controller,
    /// `[[milterd.spam.multimap]]`.
    pub multimap: Vec<Multimap>,
    /// `[[milterd.spam.dnsbl]]`.
    pub dnsbl: Vec<Dnsbl>,
}

fn threshold(
    key: &str,
    raw: Option<RawThreshold>,
    default: f64,
    errors: &mut Vec<ConfigError>,
) -> Option<f64> {
    match raw {
        None => Some(default),
        Some(RawThreshold::Off(false)) => None,
        Some(RawThreshold::Off(true)) => {
            errors.push(ConfigError::new(
                key,
                "write a score such as 15, or false to switch the action off",
            ));
            Some(default)
        }
        Some(RawThreshold::Score(s)) if s.is_finite() => Some(s),
        Some(RawThreshold::Score(s)) => {
            errors.push(ConfigError::new(key, format!("{s} is not a score")));
            Some(default)
        }
    }
}

/// A symbol name: Rspamd's style, upper-case letters, digits and `_`.
pub fn is_symbol_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

fn secret(
    key: &str,
    inline: Option<&String>,
    file: Option<&String>,
    errors: &mut Vec<ConfigError>,
) -> Option<Secret> {
    match (inline, file) {
        (Some(_), Some(_)) => {
            errors.push(ConfigError::new(
                key,
                "set the password or its file, not both",
            ));
            None
        }
        (Some(p), None) if p.is_empty() => {
            errors.push(ConfigError::new(key, "must not be empty"));
            None
        }
        (Some(p), None) => Some(Secret::new(p.clone())),
        (None, Some(f)) => match Secret::from_file(std::path::Path::new(f)) {
            Ok(s) if !s.expose().is_empty() => Some(s),
            Ok(_) => {
                errors.push(ConfigError::new(
                    format!("{key}_file"),
                    format!("{f} is empty"),
                ));
                None
            }
            Err(e) => {
                errors.push(ConfigError::new(
                    format!("{key}_file"),
                    format!("cannot read {f}: {e}"),
                ));
                None
            }
        },
        (None, None) => None,
    }
}

fn networks(key: &str, raw: &[String], errors: &mut Vec<ConfigError>) -> Vec<Network> {
    raw.iter()
        .filter_map(|s| match s.parse::<Network>() {
            Ok(n) => Some(n),
            Err(e) => {
                errors.push(ConfigError::new(key, e));
                None
            }
        })
        .collect()
}

fn check_controller(raw: &RawController, errors: &mut Vec<ConfigError>) -> Controller {
    let key = "[milterd.spam.controller]";
    let secure: Vec<String> = match &raw.secure_ip {
        Some(v) => v.clone(),
        None => DEFAULT_SECURE_IP.iter().map(|s| (*s).to_owned()).collect(),
    };
    Controller {
        listen: check_listen(
            &format!("{key}.listen"),
            raw.listen.as_deref().unwrap_or(&[]),
            errors,
        ),
        password: secret(
            &format!("{key}.password"),
            raw.password.as_ref(),
            raw.password_file.as_ref(),
            errors,
        ),
        enable_password: secret(
            &format!("{key}.enable_password"),
            raw.enable_password.as_ref(),
            raw.enable_password_file.as_ref(),
            errors,
        ),
        secure_ip: networks(&format!("{key}.secure_ip"), &secure, errors),
        timeout: check_duration(
            &format!("{key}.timeout"),
            raw.timeout.as_deref(),
            DEFAULT_CONTROLLER_TIMEOUT,
            errors,
        ),
    }
}

fn check_multimap(i: usize, raw: &RawMultimap, errors: &mut Vec<ConfigError>) -> Option<Multimap> {
    let key = format!("[[milterd.spam.multimap]] #{}", i + 1);
    let Some(name) = raw.name.clone() else {
        errors.push(ConfigError::new(
            format!("{key}.name"),
            "missing; the symbol name, e.g. \"BLACKLIST_IP\"",
        ));
        return None;
    };
    let key = format!("[[milterd.spam.multimap]] {name}");
    if !is_symbol_name(&name) {
        errors.push(ConfigError::new(
            format!("{key}.name"),
            format!("`{name}` is not a symbol name; use A-Z, 0-9 and _"),
        ));
    }
    let kind = match raw.kind.as_deref() {
        Some("ip") => MultimapKind::Ip,
        Some("from") => MultimapKind::From,
        Some("header_from") => MultimapKind::HeaderFrom,
        other => {
            errors.push(ConfigError::new(
                format!("{key}.type"),
                format!("{other:?} is not allowed; use \"ip\", \"from\" or \"header_from\""),
            ));
            MultimapKind::Ip
        }
    };
    let map = match raw.map.as_deref() {
        Some(m) => {
            let path = m.strip_prefix("file://").unwrap_or(m);
            if !path.starts_with('/') {
                errors.push(ConfigError::new(
                    format!("{key}.map"),
                    format!("`{m}` must be an absolute path (HTTP maps are not supported)"),
                ));
            }
            PathBuf::from(path)
        }
        None => {
            errors.push(ConfigError::new(format!("{key}.map"), "missing"));
            PathBuf::new()
        }
    };
    let action = match raw.action.as_deref() {
        None => MultimapAction::Score,
        Some("accept") => MultimapAction::Accept,
        Some("reject") => MultimapAction::Reject,
        Some("add_header" | "add header") => MultimapAction::AddHeader,
        Some(other) => {
            errors.push(ConfigError::new(
                format!("{key}.action"),
                format!("`{other}` is not allowed; use accept, reject or add_header"),
            ));
            MultimapAction::Score
        }
    };
    let is_domain_filter = match raw.filter.as_deref() {
        None | Some("email") | Some("email:addr") => false,
        Some("email:domain") => true,
        Some(other) => {
            errors.push(ConfigError::new(
                format!("{key}.filter"),
                format!("`{other}` is not supported; use \"email:domain\" or leave it out"),
            ));
            false
        }
    };
    if is_domain_filter && kind == MultimapKind::Ip {
        errors.push(ConfigError::new(
            format!("{key}.filter"),
            "an ip map has no email filter",
        ));
    }
    let score = raw.score.unwrap_or(0.0);
    if !score.is_finite() {
        errors.push(ConfigError::new(format!("{key}.score"), "not a number"));
    }
    Some(Multimap {
        description: raw.description.clone().unwrap_or_else(|| {
            format!(
                "multimap, type {}: {name}",
                raw.kind.as_deref().unwrap_or("ip")
            )
        }),
        name,
        kind,
        map,
        score,
        action,
        is_domain_filter,
    })
}

fn check_dnsbl(i: usize, raw: &RawDnsbl, errors: &mut Vec<ConfigError>) -> Option<Dnsbl> {
    let key = format!("[[milterd.spam.dnsbl]] #{}", i + 1);
    let Some(name) = raw.name.clone() else {
        errors.push(ConfigError::new(
            format!("{key}.name"),
            "missing; the symbol name, e.g. \"RBL_ZEN\"",
        ));
        return None;
    };
    let key = format!("[[milterd.spam.dnsbl]] {name}");
    if !is_symbol_name(&name) {
        errors.push(ConfigError::new(
            format!("{key}.name"),
            format!("`{name}` is not a symbol name; use A-Z, 0-9 and _"),
        ));
    }
    let kind = match raw.kind.as_deref() {
        Some("ip") | None => DnsblKind::Ip,
        Some("url") => DnsblKind::Url,
        Some(other) => {
            errors.push(ConfigError::new(
                format!("{key}.type"),
                format!("`{other}` is not allowed; use \"ip\" or \"url\""),
            ));
            DnsblKind::Ip
        }
    };
    let zone = raw
        .zone
        .clone()
        .unwrap_or_default()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let is_zone = !zone.is_empty()
        && zone.contains('.')
        && zone.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if !is_zone {
        errors.push(ConfigError::new(
            format!("{key}.zone"),
            format!("`{zone}` is not a DNS zone such as \"zen.spamhaus.org\""),
        ));
    }
    Some(Dnsbl {
        description: raw
            .description
            .clone()
            .unwrap_or_else(|| format!("Listed in {zone}")),
        name,
        kind,
        zone,
        score: raw.score.unwrap_or(1.0),
    })
}

/// Checks `[milterd.spam]`.
pub fn check(raw: &RawSpam, errors: &mut Vec<ConfigError>) -> SpamConfig {
    let a = raw.actions.as_ref();
    let actions = Actions {
        reject: threshold(
            "[milterd.spam.actions].reject",
            a.and_then(|a| a.reject),
            DEFAULT_REJECT_SCORE,
            errors,
        ),
        add_header: threshold(
            "[milterd.spam.actions].add_header",
            a.and_then(|a| a.add_header),
            DEFAULT_ADD_HEADER_SCORE,
            errors,
        ),
        greylist: threshold(
            "[milterd.spam.actions].greylist",
            a.and_then(|a| a.greylist),
            DEFAULT_GREYLIST_SCORE,
            errors,
        ),
    };
    if let (Some(g), Some(h)) = (actions.greylist, actions.add_header)
        && g > h
    {
        errors.push(ConfigError::new(
            "[milterd.spam.actions].greylist",
            format!("{g} is above add_header ({h}); the thresholds must rise greylist ≤ add_header ≤ reject"),
        ));
    }
    if let (Some(h), Some(r)) = (actions.add_header, actions.reject)
        && h > r
    {
        errors.push(ConfigError::new(
            "[milterd.spam.actions].add_header",
            format!(
                "{h} is above reject ({r}); the thresholds must rise greylist ≤ add_header ≤ reject"
            ),
        ));
    }
    let symbols = raw.symbols.clone().unwrap_or_default();
    for (name, w) in &symbols {
        if !is_symbol_name(name) {
            errors.push(ConfigError::new(
                "[milterd.spam.symbols]",
                format!("`{name}` is not a symbol name; use A-Z, 0-9 and _"),
            ));
        }
        if !w.is_finite() {
            errors.push(ConfigError::new(
                format!("[milterd.spam.symbols].{name}"),
                "not a number",
            ));
        }
    }
    if let Some(url) = &raw.redis_url {
        const SCHEMES: [&str; 4] = ["redis://", "rediss://", "redis+unix://", "unix://"];
        if !SCHEMES.iter().any(|s| url.starts_with(s)) {
            errors.push(ConfigError::new(
                "[milterd.spam].redis_url",
                format!("`{url}` is not a Redis URL; use redis://127.0.0.1:6379 or unix:///run/redis/redis.sock"),
            ));
        }
    }
    let redis_prefix = raw
        .redis_prefix
        .clone()
        .unwrap_or_else(|| DEFAULT_REDIS_PREFIX.to_owned());
    if redis_prefix
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        errors.push(ConfigError::new(
            "[milterd.spam].redis_prefix",
            format!("`{redis_prefix}` must not contain spaces"),
        ));
    }
    let g = raw.greylist.as_ref();
    let greylist = Greylist {
        delay: check_duration(
            "[milterd.spam.greylist].delay",
            g.and_then(|g| g.delay.as_deref()),
            DEFAULT_GREYLIST_DELAY,
            errors,
        ),
        expire: check_duration(
            "[milterd.spam.greylist].expire",
            g.and_then(|g| g.expire.as_deref()),
            DEFAULT_GREYLIST_EXPIRE,
            errors,
        ),
    };
    if greylist.expire <= greylist.delay {
        errors.push(ConfigError::new(
            "[milterd.spam.greylist].expire",
            "must be longer than delay, or no retry could ever pass",
        ));
    }
    let b = raw.bayes.as_ref();
    let bayes = Bayes {
        enabled: b.and_then(|b| b.enabled).unwrap_or(true),
        autolearn: b.and_then(|b| b.autolearn).unwrap_or(true),
        autolearn_spam_score: b
            .and_then(|b| b.autolearn_spam_score)
            .or(actions.reject)
            .unwrap_or(DEFAULT_REJECT_SCORE),
        autolearn_ham_score: b
            .and_then(|b| b.autolearn_ham_score)
            .unwrap_or(DEFAULT_AUTOLEARN_HAM_SCORE),
        min_learns: b.and_then(|b| b.min_learns).unwrap_or(DEFAULT_MIN_LEARNS),
        file: b.and_then(|b| b.file.as_ref()).map(PathBuf::from),
        per_user: b.and_then(|b| b.per_user).unwrap_or(false),
    };
    if bayes.per_user && raw.redis_url.is_none() {
        errors.push(ConfigError::new(
            "[milterd.spam.bayes].per_user",
            "needs [milterd.spam].redis_url (the in-process store is global)",
        ));
    }
    if let Some(f) = &bayes.file
        && !f.is_absolute()
    {
        errors.push(ConfigError::new(
            "[milterd.spam.bayes].file",
            format!(
                "`{}` must be an absolute path such as \"/var/lib/postwerk/bayes.db\"",
                f.display()
            ),
        ));
    }
    if bayes.autolearn_ham_score >= bayes.autolearn_spam_score {
        errors.push(ConfigError::new(
            "[milterd.spam.bayes].autolearn_ham_score",
            format!(
                "{} must be below autolearn_spam_score ({})",
                bayes.autolearn_ham_score, bayes.autolearn_spam_score
            ),
        ));
    }
    let multimap: Vec<Multimap> = raw
        .multimap
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .enumerate()
        .filter_map(|(i, m)| check_multimap(i, m, errors))
        .collect();
    let dnsbl: Vec<Dnsbl> = raw
        .dnsbl
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .enumerate()
        .filter_map(|(i, d)| check_dnsbl(i, d, errors))
        .collect();
    let mut names: Vec<&str> = multimap
        .iter()
        .map(|m| m.name.as_str())
        .chain(dnsbl.iter().map(|d| d.name.as_str()))
        .collect();
    names.sort_unstable();
    for w in names.windows(2) {
        if w[0] == w[1] {
            errors.push(ConfigError::new(
                "[milterd.spam]",
                format!("the symbol {} is defined twice (multimap/dnsbl)", w[0]),
            ));
        }
    }
    SpamConfig {
        enabled: raw.enabled.unwrap_or(true),
        shadow: raw.shadow.unwrap_or(false),
        redis_url: raw.redis_url.clone(),
        redis_prefix,
        timeout: check_duration(
            "[milterd.spam].timeout",
            raw.timeout.as_deref(),
            DEFAULT_SPAM_TIMEOUT,
            errors,
        ),
        dnsbl_timeout: check_duration(
            "[milterd.spam].dnsbl_timeout",
            raw.dnsbl_timeout.as_deref(),
            DEFAULT_DNSBL_TIMEOUT,
            errors,
        ),
        dnsbl_cache_ttl: check_duration(
            "[milterd.spam].dnsbl_cache_ttl",
            raw.dnsbl_cache_ttl.as_deref(),
            DEFAULT_DNSBL_CACHE_TTL,
            errors,
        ),
        local_networks: networks(
            "[milterd.spam].local_networks",
            raw.local_networks.as_deref().unwrap_or(&[]),
            errors,
        ),
        actions,
        symbols,
        greylist,
        bayes,
        controller: check_controller(
            raw.controller.as_ref().unwrap_or(&RawController::default()),
            errors,
        ),
        multimap,
        dnsbl,
    }
}

fn score(s: Option<f64>) -> String {
    s.map_or_else(|| "off".to_owned(), |s| format!("{s}"))
}

/// `postwerk config check` rows for `[milterd.spam]`.
pub fn describe(s: &SpamConfig) -> Vec<(String, String)> {
    let c = &s.controller;
    let nets = |v: &[Network]| {
        if v.is_empty() {
            "(none)".to_owned()
        } else {
            v.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let mut rows = vec![
        ("[milterd.spam].enabled".to_owned(), s.enabled.to_string()),
        ("[milterd.spam].shadow".to_owned(), s.shadow.to_string()),
        (
            "[milterd.spam].redis_url".to_owned(),
            s.redis_url
                .clone()
                .unwrap_or_else(|| "(none: in this process)".to_owned()),
        ),
        (
            "[milterd.spam].redis_prefix".to_owned(),
            s.redis_prefix.clone(),
        ),
        (
            "[milterd.spam].timeout".to_owned(),
            super::super::units::format_duration(s.timeout),
        ),
        (
            "[milterd.spam].local_networks".to_owned(),
            nets(&s.local_networks),
        ),
        (
            "[milterd.spam.actions].reject".to_owned(),
            score(s.actions.reject),
        ),
        (
            "[milterd.spam.actions].add_header".to_owned(),
            score(s.actions.add_header),
        ),
        (
            "[milterd.spam.actions].greylist".to_owned(),
            score(s.actions.greylist),
        ),
        (
            "[milterd.spam.greylist].delay".to_owned(),
            super::super::units::format_duration(s.greylist.delay),
        ),
        (
            "[milterd.spam.greylist].expire".to_owned(),
            super::super::units::format_duration(s.greylist.expire),
        ),
        (
            "[milterd.spam.bayes].enabled".to_owned(),
            s.bayes.enabled.to_string(),
        ),
        (
            "[milterd.spam.bayes].autolearn".to_owned(),
            s.bayes.autolearn.to_string(),
        ),
        (
            "[milterd.spam.bayes].min_learns".to_owned(),
            s.bayes.min_learns.to_string(),
        ),
        (
            "[milterd.spam.bayes].file".to_owned(),
            s.bayes
                .file
                .as_ref()
                .map_or_else(|| "(none)".to_owned(), |f| f.display().to_string()),
        ),
        (
            "[milterd.spam.controller].listen".to_owned(),
            super::super::list(&c.listen),
        ),
        (
            "[milterd.spam.controller].password".to_owned(),
            if c.password.is_some() {
                "***"
            } else {
                "(none)"
            }
            .to_owned(),
        ),
        (
            "[milterd.spam.controller].enable_password".to_owned(),
            if c.enable_password.is_some() {
                "***"
            } else {
                "(none)"
            }
            .to_owned(),
        ),
        (
            "[milterd.spam.controller].secure_ip".to_owned(),
            nets(&c.secure_ip),
        ),
    ];
    for (name, w) in &s.symbols {
        rows.push((format!("[milterd.spam.symbols].{name}"), w.to_string()));
    }
    for m in &s.multimap {
        rows.push((
            format!("[[milterd.spam.multimap]] {}", m.name),
            format!(
                "{:?} {} score {} action {:?}",
                m.kind,
                m.map.display(),
                m.score,
                m.action
            ),
        ));
    }
    for d in &s.dnsbl {
        rows.push((
            format!("[[milterd.spam.dnsbl]] {}", d.name),
            format!("{:?} {} score {}", d.kind, d.zone, d.score),
        ));
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SpamConfig, Vec<ConfigError>> {
        crate::config::parse_section::<RawSpam, _>(text, check)
    }

    #[test]
    fn defaults_are_rspamds() {
        let c = parse("").unwrap();
        assert!(c.enabled && !c.shadow);
        assert_eq!(c.actions.reject, Some(15.0));
        assert_eq!(c.actions.add_header, Some(6.0));
        assert_eq!(c.actions.greylist, Some(4.0));
        assert_eq!(c.greylist.delay, Duration::from_secs(300));
        assert!(c.bayes.enabled && c.bayes.autolearn);
        assert_eq!(c.bayes.autolearn_spam_score, 15.0);
        assert_eq!(c.bayes.min_learns, 200);
        assert!(c.controller.listen.is_empty());
        assert_eq!(c.controller.secure_ip.len(), 2);
        assert!(c.redis_url.is_none());
    }

    #[test]
    fn actions_can_be_switched_off() {
        let c = parse("[actions]\ngreylist = false\nreject = 20").unwrap();
        assert_eq!(c.actions.greylist, None);
        assert_eq!(c.actions.reject, Some(20.0));
        assert_eq!(c.bayes.autolearn_spam_score, 20.0);
    }

    #[test]
    fn multimap_rules() {
        let c = parse(
            "[[multimap]]\nname = \"BLACKLIST_IP\"\ntype = \"ip\"\nmap = \"file:///etc/m/bl.map\"\naction = \"reject\"\n\
             [[multimap]]\nname = \"BAD_FROM\"\ntype = \"from\"\nmap = \"/etc/m/f.map\"\nfilter = \"email:domain\"\nscore = 3.0\n",
        )
        .unwrap();
        assert_eq!(c.multimap.len(), 2);
        assert_eq!(c.multimap[0].map, PathBuf::from("/etc/m/bl.map"));
        assert_eq!(c.multimap[0].action, MultimapAction::Reject);
        assert!(c.multimap[1].is_domain_filter);
        assert_eq!(c.multimap[1].description, "multimap, type from: BAD_FROM");
    }

    #[test]
    fn keys_are_named_in_errors() {
        for (text, key) in [
            ("[actions]\nreject = true", "[milterd.spam.actions].reject"),
            (
                "[actions]\ngreylist = 7\nadd_header = 6",
                "[milterd.spam.actions].greylist",
            ),
            ("[symbols]\nlower_case = 1.0", "[milterd.spam.symbols]"),
            ("redis_url = \"localhost\"", "[milterd.spam].redis_url"),
            (
                "[greylist]\ndelay = \"2d\"",
                "[milterd.spam.greylist].expire",
            ),
            (
                "[controller]\nlisten = [\"nowhere\"]",
                "[milterd.spam.controller].listen",
            ),
            (
                "[controller]\npassword = \"a\"\npassword_file = \"/x\"",
                "[milterd.spam.controller].password",
            ),
            (
                "[controller]\nsecure_ip = [\"300.1.1.1\"]",
                "[milterd.spam.controller].secure_ip",
            ),
            (
                "[[multimap]]\nname = \"X\"\ntype = \"asn\"\nmap = \"/m\"",
                "[[milterd.spam.multimap]] X.type",
            ),
            (
                "[[multimap]]\nname = \"X\"\ntype = \"ip\"\nmap = \"m.map\"",
                "[[milterd.spam.multimap]] X.map",
            ),
            (
                "[[dnsbl]]\nname = \"ZEN\"\nzone = \"not a zone\"",
                "[[milterd.spam.dnsbl]] ZEN.zone",
            ),
            (
                "[bayes]\nautolearn_ham_score = 20",
                "[milterd.spam.bayes].autolearn_ham_score",
            ),
            ("[bayes]\nfile = \"bayes.db\"", "[milterd.spam.bayes].file"),
            ("[bayes]\nper_user = true", "[milterd.spam.bayes].per_user"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(
                e.iter().any(|e| e.to_string().contains(key)),
                "{text}: {e:?}"
            );
        }
    }
}

//! `[policyd]`: the Postfix lookup daemon's settings, raw and validated.

use super::ConfigError;
use super::daemon::{ServiceConfig, check_duration, check_listen, check_service, daemon_raw};
use crate::service::ListenAddr;
use std::time::Duration;

/// Where policyd's socketmap listens by default: inside Postfix's queue
/// directory so `socketmap:unix:/var/spool/postfix/private/policyd:NAME`
/// works from chrooted Postfix processes too (the path is the same inside).
pub const DEFAULT_SOCKETMAP_LISTEN: &str = "unix:/var/spool/postfix/private/policyd";
/// Postfix's socketmap client closes idle connections after 10 s and
/// policy clients after 300 s (`smtpd_policy_service_max_idle`); we wait a
/// little longer so Postfix is always the one that closes.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(330);
/// Our own deadline for one lookup; Postfix gives up after 100 s, we answer
/// `TIMEOUT` long before that.
pub const DEFAULT_LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a cached answer may live at most. Answers are also dropped as
/// soon as the tables change (see [`DEFAULT_CACHE_CHECK_INTERVAL`]), so
/// this only bounds memory and the effect of a missed change.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(60);
/// How often policyd asks the database whether the vmail tables changed;
/// a change empties the cache, so an admin's change is seen within this.
pub const DEFAULT_CACHE_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Largest request accepted (a key is at most an address of 320 bytes;
/// policy requests are about 1 KiB).
pub const DEFAULT_MAX_REQUEST: usize = 16 * 1024;

/// The map names policyd serves (canonical names and the stems of the
/// guide's `/etc/postfix/sql/*.cf` files).
pub const MAP_NAMES: &[&str] = &[
    "domains",
    "mailboxes",
    "accounts",
    "aliases",
    "recipient_access",
    "recipient-access",
    "sender_login",
    "sender-login-maps",
    "tls_policy",
    "tls-policy",
    "srs_forward",
    "forward",
    "srs_reverse",
    "reverse",
    "srs_transport",
];

daemon_raw! {
    /// Raw `[policyd]`.
    pub struct Raw {
        pub socketmap_listen: Option<Vec<String>>,
        pub tcp_table_listen: Option<Vec<String>>,
        pub policy_listen: Option<Vec<String>>,
        pub lookup_timeout: Option<String>,
        pub cache_ttl: Option<String>,
        pub cache_check_interval: Option<String>,
        pub max_request: Option<usize>,
        pub sender_login_check: Option<String>,
        pub quota_check: Option<bool>,
        pub quota_reply: Option<String>,
        pub ratelimit: Option<super::ratelimit::Raw>,
        pub srs: Option<RawSrs>,
        pub mta_sts: Option<RawMtaSts>,
    }
}

/// Raw `[policyd.mta_sts]`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMtaSts {
    pub nameservers: Option<Vec<String>>,
    pub ca_file: Option<std::path::PathBuf>,
    pub timeout: Option<String>,
    pub check_interval: Option<String>,
}

/// Validated `[policyd.mta_sts]`: MTA-STS for `tls_policy` lookups of
/// domains without a `tlspolicies` row.
#[derive(Debug, Clone)]
pub struct MtaStsConfig {
    /// DNS servers (`nameservers`, `IP` or `IP:PORT`); empty:
    /// /etc/resolv.conf.
    pub nameservers: Vec<std::net::SocketAddr>,
    /// Extra trusted CAs (`ca_file`, PEM) besides the system's.
    pub ca_file: Option<std::path::PathBuf>,
    /// Budget for one domain's DNS and HTTPS work (`timeout`, default 4s,
    /// less than `lookup_timeout`).
    pub timeout: Duration,
    /// How often a cached policy's TXT record is checked again
    /// (`check_interval`, default 5m).
    pub check_interval: Duration,
}

/// Raw `[policyd.srs]`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSrs {
    pub domain: Option<String>,
    pub secret_file: Option<std::path::PathBuf>,
    pub max_age: Option<u32>,
    pub reinject: Option<String>,
}

/// Validated `[policyd.srs]`: the Sender Rewriting Scheme maps.
#[derive(Debug, Clone)]
pub struct SrsConfig {
    /// The domain of rewritten addresses (`domain`): one of ours, with an
    /// SPF record that allows this server.
    pub domain: String,
    /// The secrets, one per line of `secret_file` (PostSRSd's format): the
    /// first signs, all verify (rotation).
    pub secrets: Vec<super::Secret>,
    /// Days an SRS address stays valid (`max_age`, default 21 as
    /// PostSRSd).
    pub max_age_days: u32,
    /// The `srs_transport` map's answer for mail of foreign senders to
    /// foreign recipients (`reinject`, e.g. `smtp:[127.0.0.1]:10027`): the
    /// Postfix service that applies `srs_forward` to exactly that mail
    /// (see contrib/postfix/master.cf.srs). `None`: the map is empty.
    pub reinject: Option<String>,
}

/// Validated `[policyd]`.
#[derive(Debug, Clone)]
pub struct PolicydConfig {
    /// socketmap listeners (`socketmap_listen`).
    pub socketmap_listen: Vec<ListenAddr>,
    /// tcp_table listeners, one map each (`tcp_table_listen =
    /// ["aliases=inet:127.0.0.1:10041"]`, default none): the tcp_table
    /// protocol carries no map name.
    pub tcp_table_listen: Vec<(String, ListenAddr)>,
    /// policy delegation listeners (`policy_listen`, default none).
    pub policy_listen: Vec<ListenAddr>,
    /// Deadline of one lookup (`lookup_timeout`).
    pub lookup_timeout: Duration,
    /// Keep answers at most this long (`cache_ttl`); zero turns the cache
    /// off.
    pub cache_ttl: Duration,
    /// Check the tables for changes this often (`cache_check_interval`).
    pub cache_check_interval: Duration,
    /// Largest request in bytes (`max_request`).
    pub max_request: usize,
    /// Shared listener settings.
    pub service: ServiceConfig,
    /// The policy service's sender-login check (`sender_login_check`).
    pub sender_login_check: SenderLoginCheck,
    /// `[policyd.ratelimit]`.
    pub ratelimit: super::ratelimit::RateLimitConfig,
    /// The policy service refuses a recipient whose mailbox cannot take
    /// the announced SIZE (`quota_check`, default true), as Dovecot's
    /// quota-status service does. Maildirs are where `[lmtpd].mail_home`
    /// and `mail_dir` say (the guide's layout by default).
    pub quota_check: bool,
    /// The reply code for an over-quota recipient (`quota_reply`): 552
    /// (permanent, the default, as Dovecot's `quota_status_overquota`) or
    /// 452 (the sender retries until the user makes room).
    pub quota_reply: u16,
    /// `[policyd.srs]`, when set.
    pub srs: Option<SrsConfig>,
    /// `[policyd.mta_sts]`, when set.
    pub mta_sts: Option<MtaStsConfig>,
}

/// What the policy service checks about the envelope sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SenderLoginCheck {
    /// `off`: no check.
    Off,
    /// `authenticated`: an authenticated client may only use senders it
    /// owns (Postfix's `reject_authenticated_sender_login_mismatch`).
    Authenticated,
    /// `all`: also refuse unauthenticated clients using an owned sender
    /// (Postfix's `reject_sender_login_mismatch`, as the guide uses).
    All,
}

/// Checks `[policyd]`.
pub fn check(raw: &Raw, errors: &mut Vec<ConfigError>) -> PolicydConfig {
    let default_sm = vec![DEFAULT_SOCKETMAP_LISTEN.to_owned()];
    let socketmap_listen = check_listen(
        "[policyd].socketmap_listen",
        raw.socketmap_listen.as_ref().unwrap_or(&default_sm),
        errors,
    );
    let mut tcp_table_listen = Vec::new();
    for entry in raw.tcp_table_listen.as_deref().unwrap_or(&[]) {
        let key = "[policyd].tcp_table_listen";
        let Some((map, addr)) = entry.split_once('=') else {
            errors.push(ConfigError::new(
                key,
                format!("`{entry}` must be MAP=ADDRESS, e.g. \"aliases=inet:127.0.0.1:10041\""),
            ));
            continue;
        };
        if !MAP_NAMES.contains(&map.trim()) {
            errors.push(ConfigError::new(
                key,
                format!("unknown map `{map}`; allowed: {}", MAP_NAMES.join(", ")),
            ));
            continue;
        }
        if let Some(a) = check_listen(key, &[addr.trim().to_owned()], errors).pop() {
            tcp_table_listen.push((map.trim().to_owned(), a));
        }
    }
    let policy_listen = check_listen(
        "[policyd].policy_listen",
        raw.policy_listen.as_deref().unwrap_or(&[]),
        errors,
    );
    let lookup_timeout = check_duration(
        "[policyd].lookup_timeout",
        raw.lookup_timeout.as_deref(),
        DEFAULT_LOOKUP_TIMEOUT,
        errors,
    );
    let cache_ttl = match raw.cache_ttl.as_deref() {
        None => DEFAULT_CACHE_TTL,
        Some(s) => match super::units::parse_duration(s) {
            Ok(d) if d <= Duration::from_secs(3600) => d,
            Ok(_) => {
                errors.push(ConfigError::new(
                    "[policyd].cache_ttl",
                    "at most 1h; a few seconds is plenty",
                ));
                Duration::ZERO
            }
            Err(e) => {
                errors.push(ConfigError::new("[policyd].cache_ttl", e));
                Duration::ZERO
            }
        },
    };
    let cache_check_interval = check_duration(
        "[policyd].cache_check_interval",
        raw.cache_check_interval.as_deref(),
        DEFAULT_CACHE_CHECK_INTERVAL,
        errors,
    );
    let max_request = raw.max_request.unwrap_or(DEFAULT_MAX_REQUEST);
    if !(512..=1_048_576).contains(&max_request) {
        errors.push(ConfigError::new(
            "[policyd].max_request",
            format!("{max_request} is out of range; allowed 512 to 1048576"),
        ));
    }
    if socketmap_listen.is_empty()
        && tcp_table_listen.is_empty()
        && policy_listen.is_empty()
        && raw.socketmap_listen.is_some()
    {
        errors.push(ConfigError::new(
            "[policyd].socketmap_listen",
            "no listener at all: set socketmap_listen, tcp_table_listen or policy_listen",
        ));
    }
    let sender_login_check = match raw.sender_login_check.as_deref() {
        None | Some("authenticated") => SenderLoginCheck::Authenticated,
        Some("off") => SenderLoginCheck::Off,
        Some("all") => SenderLoginCheck::All,
        Some(other) => {
            errors.push(ConfigError::new(
                "[policyd].sender_login_check",
                format!("`{other}` is not allowed; use off, authenticated or all"),
            ));
            SenderLoginCheck::Authenticated
        }
    };
    let ratelimit = super::ratelimit::check(
        raw.ratelimit.as_ref().unwrap_or(&Default::default()),
        errors,
    );
    let quota_reply = match raw.quota_reply.as_deref() {
        None | Some("552") => 552,
        Some("452") => 452,
        Some(other) => {
            errors.push(ConfigError::new(
                "[policyd].quota_reply",
                format!(
                    "`{other}` is not allowed; use \"552\" (refuse) or \"452\" (sender retries)"
                ),
            ));
            552
        }
    };
    let srs = raw.srs.as_ref().and_then(|r| check_srs(r, errors));
    let mta_sts = raw
        .mta_sts
        .as_ref()
        .map(|r| check_mta_sts(r, lookup_timeout, errors));
    PolicydConfig {
        srs,
        mta_sts,
        quota_check: raw.quota_check.unwrap_or(true),
        quota_reply,
        sender_login_check,
        ratelimit,
        socketmap_listen,
        tcp_table_listen,
        policy_listen,
        lookup_timeout,
        cache_ttl,
        cache_check_interval,
        max_request,
        service: check_service("policyd", &raw.service(), DEFAULT_IDLE_TIMEOUT, errors),
    }
}

fn check_mta_sts(
    raw: &RawMtaSts,
    lookup_timeout: Duration,
    errors: &mut Vec<ConfigError>,
) -> MtaStsConfig {
    let mut nameservers = Vec::new();
    for s in raw.nameservers.as_deref().unwrap_or(&[]) {
        match s
            .parse::<std::net::SocketAddr>()
            .or_else(|_| s.parse::<std::net::IpAddr>().map(|ip| (ip, 53).into()))
        {
            Ok(a) => nameservers.push(a),
            Err(_) => errors.push(ConfigError::new(
                "[policyd.mta_sts].nameservers",
                format!("`{s}` is not IP or IP:PORT"),
            )),
        }
    }
    if let Some(f) = &raw.ca_file
        && let Err(e) = std::fs::metadata(f)
    {
        errors.push(ConfigError::new(
            "[policyd.mta_sts].ca_file",
            format!("cannot read {}: {e}", f.display()),
        ));
    }
    let timeout = check_duration(
        "[policyd.mta_sts].timeout",
        raw.timeout.as_deref(),
        Duration::from_secs(4),
        errors,
    );
    if timeout >= lookup_timeout {
        errors.push(ConfigError::new(
            "[policyd.mta_sts].timeout",
            "must be less than [policyd].lookup_timeout, so a slow domain gets the default policy instead of a lookup timeout",
        ));
    }
    let check_interval = check_duration(
        "[policyd.mta_sts].check_interval",
        raw.check_interval.as_deref(),
        Duration::from_secs(300),
        errors,
    );
    MtaStsConfig {
        nameservers,
        ca_file: raw.ca_file.clone(),
        timeout,
        check_interval,
    }
}

fn check_srs(raw: &RawSrs, errors: &mut Vec<ConfigError>) -> Option<SrsConfig> {
    let domain = match raw.domain.as_deref() {
        None => {
            errors.push(ConfigError::new(
                "[policyd.srs].domain",
                "missing: the domain of rewritten addresses, e.g. \"example.org\"",
            ));
            None
        }
        Some(d) => match crate::address::normalize_domain(d) {
            Ok(d) => Some(d),
            Err(e) => {
                errors.push(ConfigError::new("[policyd.srs].domain", e.to_string()));
                None
            }
        },
    };
    let secrets = match &raw.secret_file {
        None => {
            errors.push(ConfigError::new(
                "[policyd.srs].secret_file",
                "missing: a file with one secret per line (PostSRSd's format; the first signs), e.g. made with `head -c 18 /dev/urandom | base64 > /etc/postwerk/srs.secret`",
            ));
            None
        }
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => {
                let secrets: Vec<super::Secret> = text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(super::Secret::new)
                    .collect();
                if secrets.is_empty() {
                    errors.push(ConfigError::new(
                        "[policyd.srs].secret_file",
                        format!("{} holds no secret; put one per line", path.display()),
                    ));
                    None
                } else {
                    Some(secrets)
                }
            }
            Err(e) => {
                errors.push(ConfigError::new(
                    "[policyd.srs].secret_file",
                    format!("cannot read {}: {e}", path.display()),
                ));
                None
            }
        },
    };
    let max_age_days = raw.max_age.unwrap_or(21);
    if !(1..=1000).contains(&max_age_days) {
        errors.push(ConfigError::new(
            "[policyd.srs].max_age",
            format!("{max_age_days} days is out of range; allowed 1 to 1000"),
        ));
    }
    let reinject = raw.reinject.clone();
    if let Some(r) = &reinject
        && (r.trim().is_empty() || !r.contains(':') || r.chars().any(char::is_whitespace))
    {
        errors.push(ConfigError::new(
            "[policyd.srs].reinject",
            format!("`{r}` is not a Postfix transport:nexthop such as \"smtp:[127.0.0.1]:10027\""),
        ));
    }
    Some(SrsConfig {
        reinject,
        domain: domain?,
        secrets: secrets?,
        max_age_days,
    })
}

/// `postwerk config check` rows for `[policyd]`.
pub fn describe(p: &PolicydConfig) -> Vec<(String, String)> {
    let tcp = if p.tcp_table_listen.is_empty() {
        "(none)".to_owned()
    } else {
        p.tcp_table_listen
            .iter()
            .map(|(m, a)| format!("{m}={a}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let rl = &p.ratelimit;
    let ratelimit = if rl.is_enabled() {
        format!(
            "{} messages/h, {} recipients/h, {} override(s), counters in {}",
            rl.default.messages_per_hour,
            rl.default.recipients_per_hour,
            rl.overrides.len(),
            if rl.redis_url.is_some() {
                "Redis"
            } else {
                "process"
            }
        )
    } else {
        "off".to_owned()
    };
    let mut rows = vec![
        (
            "[policyd].socketmap_listen".to_owned(),
            super::list(&p.socketmap_listen),
        ),
        ("[policyd].tcp_table_listen".to_owned(), tcp),
        (
            "[policyd].policy_listen".to_owned(),
            super::list(&p.policy_listen),
        ),
        (
            "[policyd].lookup_timeout".to_owned(),
            super::units::format_duration(p.lookup_timeout),
        ),
        (
            "[policyd].cache_ttl".to_owned(),
            super::units::format_duration(p.cache_ttl),
        ),
        (
            "[policyd].cache_check_interval".to_owned(),
            super::units::format_duration(p.cache_check_interval),
        ),
        (
            "[policyd].max_request".to_owned(),
            p.max_request.to_string(),
        ),
        (
            "[policyd].sender_login_check".to_owned(),
            format!("{:?}", p.sender_login_check).to_lowercase(),
        ),
        ("[policyd].ratelimit".to_owned(), ratelimit),
        (
            "[policyd].quota_check".to_owned(),
            p.quota_check.to_string(),
        ),
        (
            "[policyd].quota_reply".to_owned(),
            p.quota_reply.to_string(),
        ),
        (
            "[policyd.mta_sts]".to_owned(),
            match &p.mta_sts {
                Some(m) => format!(
                    "on, timeout {}, TXT checked every {}",
                    super::units::format_duration(m.timeout),
                    super::units::format_duration(m.check_interval)
                ),
                None => "off".to_owned(),
            },
        ),
        (
            "[policyd.srs]".to_owned(),
            match &p.srs {
                Some(s) => format!(
                    "domain {}, {} secret(s), valid {} days",
                    s.domain,
                    s.secrets.len(),
                    s.max_age_days
                ),
                None => "off".to_owned(),
            },
        ),
    ];
    rows.extend(super::daemon::describe_service("policyd", &p.service));
    rows
}

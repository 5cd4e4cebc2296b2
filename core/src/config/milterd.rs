//! `[milterd]` and `[milterd.dkim]`: the milter's settings, raw and
//! validated. No I/O here except resolving socket owner names; key files
//! are read by milterd when it signs, so a missing key is a log line, not
//! a refusal to start.

pub mod spam;

use super::ConfigError;
use super::daemon::{
    ServiceConfig, bounded_duration, check_duration, check_listen, check_service, daemon_raw,
};
use crate::service::ListenAddr;
use serde::Deserialize;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

/// Where the guide's main.cf finds the milter
/// (`smtpd_milters = inet:localhost:11332`, Rspamd's proxy port).
pub const DEFAULT_LISTEN: &str = "inet:127.0.0.1:11332";
/// Postfix keeps a milter connection for the whole SMTP session; smtpd's
/// own idle limit is `smtpd_timeout` (300 s) per command, so a quiet
/// session may go that long between two milter packets.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(330);
/// The `{daemon_name}` macro value that marks mail from the guide's
/// submission and smtps services (`-o milter_macro_daemon_name=ORIGINATING`).
pub const DEFAULT_ORIGINATING_DAEMON_NAME: &str = "ORIGINATING";
/// Largest header section buffered (sum of names and values).
pub const DEFAULT_MAX_HEADER_SIZE: usize = 1024 * 1024;
/// Most header fields buffered for one message.
pub const DEFAULT_MAX_HEADERS: usize = 1000;
/// Largest message buffered for signing (Postfix's default
/// `message_size_limit` is 10240000; this leaves room above it).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;
/// The guide's Rspamd `dkim_signing.conf`: `selector = "2020"`.
pub const DEFAULT_SELECTOR: &str = "2020";
/// The guide's Rspamd `dkim_signing.conf`:
/// `path = "/var/lib/rspamd/dkim/$selector.key"`. `$domain` and
/// `$selector` are replaced, as Rspamd does.
pub const DEFAULT_KEY_PATH: &str = "/var/lib/rspamd/dkim/$selector.key";
/// Header fields signed when present (RFC 6376 §5.4.1 recommendations,
/// plus MIME and list headers), in this order.
pub const DEFAULT_SIGN_HEADERS: &[&str] = &[
    "From",
    "Reply-To",
    "Subject",
    "Date",
    "To",
    "Cc",
    "Resent-Date",
    "Resent-From",
    "Resent-To",
    "Resent-Cc",
    "In-Reply-To",
    "References",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "List-Id",
    "List-Help",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "List-Subscribe",
    "List-Post",
    "List-Owner",
    "List-Archive",
];
/// Header fields signed once more than they occur, so that nobody can add
/// another one after signing without breaking the signature.
pub const DEFAULT_OVERSIGN_HEADERS: &[&str] = &["From", "To", "Subject"];

/// How long one DNS query may take before it counts as a timeout (the
/// verification result becomes `temperror`).
pub const DEFAULT_DNS_TIMEOUT: Duration = Duration::from_secs(5);
/// Default `lookup_cache_ttl`: a domain added to the database is signed
/// for within this time.
pub const DEFAULT_LOOKUP_CACHE_TTL: Duration = Duration::from_secs(10);
/// Longest `lookup_cache_ttl`.
pub const MAX_LOOKUP_CACHE_TTL: Duration = Duration::from_secs(300);
/// How long the whole verification of one message (SPF, DKIM, DMARC) may
/// take; what is not done by then is `temperror`. Well below Postfix's
/// `milter_content_timeout` (300 s).
pub const DEFAULT_VERIFY_TIMEOUT: Duration = Duration::from_secs(30);

/// What happens to incoming mail that fails DMARC for a domain that
/// publishes `p=reject`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmarcRejectAction {
    /// Refuse it at end of data (`550 5.7.1`), as Rspamd's dmarc module
    /// does by default.
    Reject,
    /// Accept it with `X-Spam-Flag: YES`, which the guide's global Sieve
    /// script files into Junk (quarantine).
    Header,
    /// Accept it; the `Authentication-Results:` header says `dmarc=fail`.
    Mark,
}

impl DmarcRejectAction {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DmarcRejectAction::Reject => "reject",
            DmarcRejectAction::Header => "header",
            DmarcRejectAction::Mark => "mark",
        }
    }
}

impl FromStr for DmarcRejectAction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "reject" => Ok(DmarcRejectAction::Reject),
            "header" => Ok(DmarcRejectAction::Header),
            "mark" => Ok(DmarcRejectAction::Mark),
            other => Err(format!(
                "`{other}` is not allowed; use reject, header or mark"
            )),
        }
    }
}

/// What the milter answers when it cannot do its job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureAction {
    /// Let the message through unchanged (Postfix
    /// `milter_default_action = accept`, the guide's choice).
    Accept,
    /// Ask the client to try again later (4xx).
    Tempfail,
    /// Refuse the message (5xx).
    Reject,
}

impl FailureAction {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureAction::Accept => "accept",
            FailureAction::Tempfail => "tempfail",
            FailureAction::Reject => "reject",
        }
    }
}

impl FromStr for FailureAction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "accept" => Ok(FailureAction::Accept),
            "tempfail" => Ok(FailureAction::Tempfail),
            "reject" => Ok(FailureAction::Reject),
            other => Err(format!(
                "`{other}` is not allowed; use accept, tempfail or reject"
            )),
        }
    }
}

/// An IP network written `ADDRESS/PREFIX` (or a bare address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    /// The network address (host bits cleared).
    pub addr: IpAddr,
    /// The prefix length.
    pub prefix: u8,
}

impl Network {
    /// Whether `ip` is inside (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                mask32(u32::from(a), self.prefix) == mask32(u32::from(n), self.prefix)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                mask128(u128::from(a), self.prefix) == mask128(u128::from(n), self.prefix)
            }
            _ => false,
        }
    }
}

fn mask32(v: u32, prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        v & (u32::MAX << (32 - u32::from(prefix.min(32))))
    }
}

fn mask128(v: u128, prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        v & (u128::MAX << (128 - u32::from(prefix.min(128))))
    }
}

impl FromStr for Network {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| {
                format!("`{s}` is not a network; write it as 192.0.2.0/24 or 2001:db8::/32")
            })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return Err(format!("`{s}`: the prefix length must be 0 to {max}")),
            },
        };
        let addr = match addr {
            IpAddr::V4(a) => IpAddr::V4(mask32(u32::from(a), prefix).into()),
            IpAddr::V6(a) => IpAddr::V6(mask128(u128::from(a), prefix).into()),
        };
        Ok(Network { addr, prefix })
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A selector as written: one name, or several for dual signing.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawSelectors {
    /// `selector = "2020"`.
    One(String),
    /// `selector = ["rsa2026", "ed2026"]`.
    Many(Vec<String>),
}

/// Raw `[milterd.dkim]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDkim {
    pub sign: Option<bool>,
    pub selector: Option<RawSelectors>,
    pub path: Option<String>,
    pub allow_username_mismatch: Option<bool>,
    pub sign_headers: Option<Vec<String>>,
    pub oversign_headers: Option<Vec<String>>,
    pub sign_error_action: Option<String>,
}

/// Raw `[milterd.arc]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawArc {
    pub seal_forwarded: Option<bool>,
    pub seal_outgoing: Option<bool>,
    pub selector: Option<String>,
    pub path: Option<String>,
    pub seal_error_action: Option<String>,
}

/// Raw `[milterd.verify]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVerify {
    pub enabled: Option<bool>,
    pub authserv_id: Option<String>,
    pub dmarc_reject_action: Option<String>,
    pub timeout: Option<String>,
}

daemon_raw! {
    /// Raw `[milterd]`.
    pub struct Raw {
        pub listen: Option<Vec<String>>,
        pub trusted_networks: Option<Vec<String>>,
        pub originating_daemon_name: Option<String>,
        pub max_header_size: Option<usize>,
        pub max_headers: Option<usize>,
        pub max_message_size: Option<usize>,
        pub error_action: Option<String>,
        pub sign_parallelism: Option<usize>,
        pub lookup_cache_ttl: Option<String>,
        pub dns_servers: Option<Vec<String>>,
        pub dns_timeout: Option<String>,
        pub dkim: Option<RawDkim>,
        pub verify: Option<RawVerify>,
        pub arc: Option<RawArc>,
        pub spam: Option<spam::RawSpam>,
    }
}

/// Validated `[milterd.dkim]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkimConfig {
    /// `sign`: DKIM-sign outgoing mail (default true).
    pub sign: bool,
    /// `selector`: one selector, or several (one signature each; an RSA
    /// and an Ed25519 key give dual signing). The key type comes from the
    /// key file.
    pub selectors: Vec<String>,
    /// `path`: the key file pattern with `$domain` and `$selector`.
    pub path: String,
    /// `allow_username_mismatch` (Rspamd's name): sign mail whose `From:`
    /// domain is not the authenticated user's domain, as long as it is one
    /// of our domains (alias senders). Default true, as in the guide.
    pub allow_username_mismatch: bool,
    /// `sign_headers`: header fields signed when present.
    pub sign_headers: Vec<String>,
    /// `oversign_headers`: header fields signed once more than present.
    pub oversign_headers: Vec<String>,
    /// `sign_error_action`: the answer when a domain has a key but signing
    /// fails (unreadable or broken key, database down). Default tempfail:
    /// an unsigned message would quietly drop what the admin asked for.
    pub sign_error_action: FailureAction,
}

/// Validated `[milterd.verify]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyConfig {
    /// `enabled`: verify incoming mail (SPF, DKIM, DMARC) and add
    /// `Authentication-Results:` (default true).
    pub enabled: bool,
    /// `authserv_id`: the authserv-id of our `Authentication-Results:`
    /// (RFC 8601 §2.5); `None` means the host name, looked up at start.
    /// Incoming headers that claim it are forgeries and are removed.
    pub authserv_id: Option<String>,
    /// `dmarc_reject_action`: reject (default), header or mark.
    pub dmarc_reject_action: DmarcRejectAction,
    /// `timeout`: the deadline of one message's verification.
    pub timeout: Duration,
}

/// Validated `[milterd.arc]`: ARC sealing (RFC 8617), as the guide's
/// Rspamd `arc.conf` does it (same key path and selector as
/// `dkim_signing.conf`). Verification of incoming chains is part of
/// `[milterd.verify]` and always on with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArcConfig {
    /// `seal_forwarded`: seal incoming mail that an alias of ours forwards
    /// to a domain that is not ours (default true), with `d=` the alias's
    /// domain, so the next hop can trust our `Authentication-Results`.
    pub seal_forwarded: bool,
    /// `seal_outgoing`: seal outgoing (signed) mail too, with `d=` the
    /// `From:` domain (default false, as Rspamd's arc module with the
    /// guide's `arc.conf`: its `sign_authenticated` and `sign_local` default
    /// to false; a seal costs a second RSA signature per message).
    pub seal_outgoing: bool,
    /// `selector`: the selector of the sealing key; `None`: the first
    /// `[milterd.dkim]` selector whose key is RSA (RFC 8617 §7 allows only
    /// rsa-sha256).
    pub selector: Option<String>,
    /// `path`: the key file pattern with `$domain` and `$selector`;
    /// default `[milterd.dkim].path`.
    pub path: Option<String>,
    /// `seal_error_action`: the answer when a domain has a sealing key but
    /// sealing fails (default tempfail, as `sign_error_action`). A missing
    /// key is not an error: the message passes unsealed and the log names
    /// the file.
    pub seal_error_action: FailureAction,
}

/// Validated `[milterd]`.
#[derive(Debug, Clone)]
pub struct MilterdConfig {
    /// `listen`: milter listeners (TCP or UNIX).
    pub listen: Vec<ListenAddr>,
    /// Shared listener settings.
    pub service: ServiceConfig,
    /// `trusted_networks`: clients in these networks send outgoing mail
    /// even without authentication (default: none).
    pub trusted_networks: Vec<Network>,
    /// `originating_daemon_name`: the `{daemon_name}` of submission
    /// services (default ORIGINATING).
    pub originating_daemon_name: String,
    /// `max_header_size`: bytes of header fields buffered per message.
    pub max_header_size: usize,
    /// `max_headers`: header fields buffered per message.
    pub max_headers: usize,
    /// `max_message_size`: bytes buffered per message for signing.
    pub max_message_size: usize,
    /// `error_action`: the answer when something else goes wrong (a
    /// message over the limits, an internal error). Default accept, like
    /// the guide's `milter_default_action = accept`.
    pub error_action: FailureAction,
    /// `sign_parallelism`: signatures computed at once (default: CPUs).
    pub sign_parallelism: usize,
    /// `lookup_cache_ttl`: how long an answer of the database (is this
    /// domain ours? does this recipient forward off-site?) is reused
    /// (default 10s, 0 = ask every time, at most 5m).
    pub lookup_cache_ttl: Duration,
    /// `dns_servers`: the resolvers asked for SPF, DKIM and DMARC
    /// records, `ADDRESS` or `ADDRESS:PORT` (default: /etc/resolv.conf).
    pub dns_servers: Vec<SocketAddr>,
    /// `dns_timeout`: how long one DNS query may take (default 5s).
    pub dns_timeout: Duration,
    /// `[milterd.dkim]`.
    pub dkim: DkimConfig,
    /// `[milterd.verify]`.
    pub verify: VerifyConfig,
    /// `[milterd.arc]`.
    pub arc: ArcConfig,
    /// `[milterd.spam]`.
    pub spam: spam::SpamConfig,
}

fn action(
    key: &str,
    raw: Option<&str>,
    default: FailureAction,
    errors: &mut Vec<ConfigError>,
) -> FailureAction {
    match raw.map(str::parse::<FailureAction>) {
        None => default,
        Some(Ok(a)) => a,
        Some(Err(e)) => {
            errors.push(ConfigError::new(key, e));
            default
        }
    }
}

fn size(
    key: &str,
    raw: Option<usize>,
    default: usize,
    min: usize,
    max: usize,
    errors: &mut Vec<ConfigError>,
) -> usize {
    match raw {
        None => default,
        Some(n) if (min..=max).contains(&n) => n,
        Some(n) => {
            errors.push(ConfigError::new(
                key,
                format!("{n} is out of range; allowed {min} to {max}"),
            ));
            default
        }
    }
}

/// A header field name (RFC 5322 §3.6.8: printable ASCII except `:`).
fn is_field_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (33..=126).contains(&b) && b != b':')
}

/// A selector is a DNS label sequence (RFC 6376 §3.1).
fn is_selector(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fn check_dkim(raw: &RawDkim, errors: &mut Vec<ConfigError>) -> DkimConfig {
    let selectors = match &raw.selector {
        None => vec![DEFAULT_SELECTOR.to_owned()],
        Some(RawSelectors::One(s)) => vec![s.clone()],
        Some(RawSelectors::Many(v)) => v.clone(),
    };
    if selectors.is_empty() {
        errors.push(ConfigError::new(
            "[milterd.dkim].selector",
            "at least one selector is needed",
        ));
    }
    for s in &selectors {
        if !is_selector(s) {
            errors.push(ConfigError::new(
                "[milterd.dkim].selector",
                format!("`{s}` is not a selector; use letters, digits and `-`, e.g. \"2020\""),
            ));
        }
    }
    let path = raw
        .path
        .clone()
        .unwrap_or_else(|| DEFAULT_KEY_PATH.to_owned());
    if !path.starts_with('/') {
        errors.push(ConfigError::new(
            "[milterd.dkim].path",
            format!("`{path}` must be an absolute path such as \"{DEFAULT_KEY_PATH}\""),
        ));
    } else if selectors.len() > 1 && !path.contains("$selector") {
        errors.push(ConfigError::new(
            "[milterd.dkim].path",
            format!("`{path}` has no $selector, so every selector would use the same key file"),
        ));
    }
    let mut names = |key: &str, v: Option<&Vec<String>>, default: &[&str]| -> Vec<String> {
        let list: Vec<String> = match v {
            None => default.iter().map(|s| (*s).to_owned()).collect(),
            Some(v) => v.clone(),
        };
        for n in &list {
            if !is_field_name(n) {
                errors.push(ConfigError::new(
                    key,
                    format!("`{n}` is not a header field name"),
                ));
            }
        }
        list
    };
    let sign_headers = names(
        "[milterd.dkim].sign_headers",
        raw.sign_headers.as_ref(),
        DEFAULT_SIGN_HEADERS,
    );
    let oversign_headers = names(
        "[milterd.dkim].oversign_headers",
        raw.oversign_headers.as_ref(),
        DEFAULT_OVERSIGN_HEADERS,
    );
    if !sign_headers.iter().any(|h| h.eq_ignore_ascii_case("from")) {
        // RFC 6376 §5.4: the From header field MUST be signed.
        errors.push(ConfigError::new(
            "[milterd.dkim].sign_headers",
            "must contain From (RFC 6376 §5.4)",
        ));
    }
    DkimConfig {
        sign: raw.sign.unwrap_or(true),
        selectors,
        path,
        allow_username_mismatch: raw.allow_username_mismatch.unwrap_or(true),
        sign_headers,
        oversign_headers,
        sign_error_action: action(
            "[milterd.dkim].sign_error_action",
            raw.sign_error_action.as_deref(),
            FailureAction::Tempfail,
            errors,
        ),
    }
}

/// An authserv-id is a domain name or a token (RFC 8601 §2.2: `value`);
/// we allow what a host name may contain, so it never needs quoting.
fn is_authserv_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

fn check_verify(raw: &RawVerify, errors: &mut Vec<ConfigError>) -> VerifyConfig {
    let authserv_id = raw.authserv_id.clone();
    if let Some(id) = &authserv_id
        && !is_authserv_id(id)
    {
        errors.push(ConfigError::new(
            "[milterd.verify].authserv_id",
            format!("`{id}` is not a host name such as \"mail.example.org\""),
        ));
    }
    let dmarc_reject_action = match raw.dmarc_reject_action.as_deref().map(str::parse) {
        None => DmarcRejectAction::Reject,
        Some(Ok(a)) => a,
        Some(Err(e)) => {
            errors.push(ConfigError::new("[milterd.verify].dmarc_reject_action", e));
            DmarcRejectAction::Reject
        }
    };
    VerifyConfig {
        enabled: raw.enabled.unwrap_or(true),
        authserv_id,
        dmarc_reject_action,
        timeout: check_duration(
            "[milterd.verify].timeout",
            raw.timeout.as_deref(),
            DEFAULT_VERIFY_TIMEOUT,
            errors,
        ),
    }
}

fn check_arc(raw: &RawArc, errors: &mut Vec<ConfigError>) -> ArcConfig {
    if let Some(s) = &raw.selector
        && !is_selector(s)
    {
        errors.push(ConfigError::new(
            "[milterd.arc].selector",
            format!("`{s}` is not a selector; use letters, digits and `-`, e.g. \"2020\""),
        ));
    }
    if let Some(p) = &raw.path
        && !p.starts_with('/')
    {
        errors.push(ConfigError::new(
            "[milterd.arc].path",
            format!("`{p}` must be an absolute path such as \"{DEFAULT_KEY_PATH}\""),
        ));
    }
    ArcConfig {
        seal_forwarded: raw.seal_forwarded.unwrap_or(true),
        seal_outgoing: raw.seal_outgoing.unwrap_or(false),
        selector: raw.selector.clone(),
        path: raw.path.clone(),
        seal_error_action: action(
            "[milterd.arc].seal_error_action",
            raw.seal_error_action.as_deref(),
            FailureAction::Tempfail,
            errors,
        ),
    }
}

fn check_dns_servers(raw: &[String], errors: &mut Vec<ConfigError>) -> Vec<SocketAddr> {
    raw.iter()
        .filter_map(|s| {
            let parsed = s
                .parse::<SocketAddr>()
                .ok()
                .or_else(|| s.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)));
            if parsed.is_none() {
                errors.push(ConfigError::new(
                    "[milterd].dns_servers",
                    format!(
                        "`{s}` is not ADDRESS or ADDRESS:PORT, e.g. \"127.0.0.1\" or \"[::1]:5353\""
                    ),
                ));
            }
            parsed
        })
        .collect()
}

/// Checks `[milterd]`.
pub fn check(raw: &Raw, errors: &mut Vec<ConfigError>) -> MilterdConfig {
    let default_listen = vec![DEFAULT_LISTEN.to_owned()];
    let listen = check_listen(
        "[milterd].listen",
        raw.listen.as_ref().unwrap_or(&default_listen),
        errors,
    );
    if listen.is_empty() && raw.listen.is_some() {
        errors.push(ConfigError::new(
            "[milterd].listen",
            "no listener; e.g. [\"inet:127.0.0.1:11332\"]",
        ));
    }
    let trusted_networks = raw
        .trusted_networks
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .filter_map(|s| match s.parse::<Network>() {
            Ok(n) => Some(n),
            Err(e) => {
                errors.push(ConfigError::new("[milterd].trusted_networks", e));
                None
            }
        })
        .collect();
    let originating_daemon_name = raw
        .originating_daemon_name
        .clone()
        .unwrap_or_else(|| DEFAULT_ORIGINATING_DAEMON_NAME.to_owned());
    if originating_daemon_name.is_empty() || originating_daemon_name.contains(char::is_whitespace) {
        errors.push(ConfigError::new(
            "[milterd].originating_daemon_name",
            format!("`{originating_daemon_name}` must be one word, e.g. \"ORIGINATING\""),
        ));
    }
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    MilterdConfig {
        listen,
        service: check_service("milterd", &raw.service(), DEFAULT_IDLE_TIMEOUT, errors),
        trusted_networks,
        originating_daemon_name,
        max_header_size: size(
            "[milterd].max_header_size",
            raw.max_header_size,
            DEFAULT_MAX_HEADER_SIZE,
            1024,
            64 * 1024 * 1024,
            errors,
        ),
        max_headers: size(
            "[milterd].max_headers",
            raw.max_headers,
            DEFAULT_MAX_HEADERS,
            10,
            100_000,
            errors,
        ),
        max_message_size: size(
            "[milterd].max_message_size",
            raw.max_message_size,
            DEFAULT_MAX_MESSAGE_SIZE,
            64 * 1024,
            1024 * 1024 * 1024,
            errors,
        ),
        error_action: action(
            "[milterd].error_action",
            raw.error_action.as_deref(),
            FailureAction::Accept,
            errors,
        ),
        sign_parallelism: size(
            "[milterd].sign_parallelism",
            raw.sign_parallelism,
            cpus,
            1,
            1024,
            errors,
        ),
        lookup_cache_ttl: bounded_duration(
            "[milterd].lookup_cache_ttl",
            raw.lookup_cache_ttl.as_deref(),
            DEFAULT_LOOKUP_CACHE_TTL,
            MAX_LOOKUP_CACHE_TTL,
            errors,
        ),
        dns_servers: check_dns_servers(raw.dns_servers.as_deref().unwrap_or(&[]), errors),
        dns_timeout: check_duration(
            "[milterd].dns_timeout",
            raw.dns_timeout.as_deref(),
            DEFAULT_DNS_TIMEOUT,
            errors,
        ),
        dkim: check_dkim(raw.dkim.as_ref().unwrap_or(&RawDkim::default()), errors),
        verify: check_verify(raw.verify.as_ref().unwrap_or(&RawVerify::default()), errors),
        arc: check_arc(raw.arc.as_ref().unwrap_or(&RawArc::default()), errors),
        spam: spam::check(
            raw.spam.as_ref().unwrap_or(&spam::RawSpam::default()),
            errors,
        ),
    }
}

/// `postwerk config check` rows for `[milterd]`.
pub fn describe(m: &MilterdConfig) -> Vec<(String, String)> {
    let d = &m.dkim;
    let v = &m.verify;
    let a = &m.arc;
    let dns = if m.dns_servers.is_empty() {
        "(/etc/resolv.conf)".to_owned()
    } else {
        m.dns_servers
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let nets = if m.trusted_networks.is_empty() {
        "(none)".to_owned()
    } else {
        m.trusted_networks
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut rows = vec![
        ("[milterd].listen".to_owned(), super::list(&m.listen)),
        ("[milterd].trusted_networks".to_owned(), nets),
        (
            "[milterd].originating_daemon_name".to_owned(),
            m.originating_daemon_name.clone(),
        ),
        (
            "[milterd].max_header_size".to_owned(),
            m.max_header_size.to_string(),
        ),
        (
            "[milterd].max_headers".to_owned(),
            m.max_headers.to_string(),
        ),
        (
            "[milterd].max_message_size".to_owned(),
            m.max_message_size.to_string(),
        ),
        (
            "[milterd].error_action".to_owned(),
            m.error_action.as_str().to_owned(),
        ),
        (
            "[milterd].sign_parallelism".to_owned(),
            m.sign_parallelism.to_string(),
        ),
        (
            "[milterd].lookup_cache_ttl".to_owned(),
            super::units::format_duration(m.lookup_cache_ttl),
        ),
        ("[milterd].dkim.sign".to_owned(), d.sign.to_string()),
        ("[milterd].dkim.selector".to_owned(), d.selectors.join(", ")),
        ("[milterd].dkim.path".to_owned(), d.path.clone()),
        (
            "[milterd].dkim.allow_username_mismatch".to_owned(),
            d.allow_username_mismatch.to_string(),
        ),
        (
            "[milterd].dkim.sign_headers".to_owned(),
            d.sign_headers.join(", "),
        ),
        (
            "[milterd].dkim.oversign_headers".to_owned(),
            d.oversign_headers.join(", "),
        ),
        (
            "[milterd].dkim.sign_error_action".to_owned(),
            d.sign_error_action.as_str().to_owned(),
        ),
        ("[milterd].dns_servers".to_owned(), dns),
        (
            "[milterd].dns_timeout".to_owned(),
            super::units::format_duration(m.dns_timeout),
        ),
        ("[milterd].verify.enabled".to_owned(), v.enabled.to_string()),
        (
            "[milterd].verify.authserv_id".to_owned(),
            v.authserv_id
                .clone()
                .unwrap_or_else(|| "(host name)".to_owned()),
        ),
        (
            "[milterd].verify.dmarc_reject_action".to_owned(),
            v.dmarc_reject_action.as_str().to_owned(),
        ),
        (
            "[milterd].verify.timeout".to_owned(),
            super::units::format_duration(v.timeout),
        ),
        (
            "[milterd].arc.seal_forwarded".to_owned(),
            a.seal_forwarded.to_string(),
        ),
        (
            "[milterd].arc.seal_outgoing".to_owned(),
            a.seal_outgoing.to_string(),
        ),
        (
            "[milterd].arc.selector".to_owned(),
            a.selector
                .clone()
                .unwrap_or_else(|| "(the first RSA key of [milterd.dkim].selector)".to_owned()),
        ),
        (
            "[milterd].arc.path".to_owned(),
            a.path
                .clone()
                .unwrap_or_else(|| format!("(as [milterd.dkim].path: {})", d.path)),
        ),
        (
            "[milterd].arc.seal_error_action".to_owned(),
            a.seal_error_action.as_str().to_owned(),
        ),
    ];
    rows.extend(spam::describe(&m.spam));
    rows.extend(super::daemon::describe_service("milterd", &m.service));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<MilterdConfig, Vec<ConfigError>> {
        crate::config::parse_section::<Raw, _>(text, check)
    }

    #[test]
    fn defaults_are_the_guides() {
        let c = parse("").unwrap();
        assert_eq!(
            c.listen,
            vec!["inet:127.0.0.1:11332".parse::<ListenAddr>().unwrap()]
        );
        assert_eq!(c.dkim.selectors, vec!["2020"]);
        assert_eq!(c.dkim.path, "/var/lib/rspamd/dkim/$selector.key");
        assert!(c.dkim.allow_username_mismatch);
        assert_eq!(c.error_action, FailureAction::Accept);
        assert_eq!(c.dkim.sign_error_action, FailureAction::Tempfail);
        assert!(c.verify.enabled);
        assert_eq!(c.verify.authserv_id, None);
        assert_eq!(c.verify.dmarc_reject_action, DmarcRejectAction::Reject);
        assert!(c.dns_servers.is_empty());
        assert_eq!(c.dns_timeout, DEFAULT_DNS_TIMEOUT);
        // The guide's arc.conf: the DKIM key and selector; forwarded mail
        // sealed, outgoing not (Rspamd's sign_authenticated = false).
        assert!(c.arc.seal_forwarded && !c.arc.seal_outgoing);
        assert_eq!(c.arc.selector, None);
        assert_eq!(c.arc.path, None);
        assert_eq!(c.arc.seal_error_action, FailureAction::Tempfail);
    }

    #[test]
    fn dns_servers_with_and_without_port() {
        let c = parse("dns_servers = [\"127.0.0.1:5353\", \"::1\"]").unwrap();
        assert_eq!(
            c.dns_servers,
            vec![
                "127.0.0.1:5353".parse::<SocketAddr>().unwrap(),
                "[::1]:53".parse::<SocketAddr>().unwrap()
            ]
        );
    }

    #[test]
    fn selectors_one_or_many() {
        let c = parse("[dkim]\nselector = [\"rsa\", \"ed\"]\npath = \"/k/$domain.$selector.key\"")
            .unwrap();
        assert_eq!(c.dkim.selectors, vec!["rsa", "ed"]);
    }

    #[test]
    fn networks() {
        let n: Network = "192.0.2.77/24".parse().unwrap();
        assert_eq!(n.to_string(), "192.0.2.0/24");
        assert!(n.contains("192.0.2.1".parse().unwrap()));
        assert!(n.contains("::ffff:192.0.2.1".parse().unwrap()));
        assert!(!n.contains("192.0.3.1".parse().unwrap()));
        let v6: Network = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
        assert!(
            "0.0.0.0/0"
                .parse::<Network>()
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
    }

    #[test]
    fn keys_are_named_in_errors() {
        for (text, key) in [
            ("listen = [\"nowhere\"]", "[milterd].listen"),
            (
                "trusted_networks = [\"10.0.0.0/33\"]",
                "[milterd].trusted_networks",
            ),
            ("error_action = \"maybe\"", "[milterd].error_action"),
            ("max_headers = 1", "[milterd].max_headers"),
            ("lookup_cache_ttl = \"1h\"", "[milterd].lookup_cache_ttl"),
            ("lookup_cache_ttl = \"soon\"", "[milterd].lookup_cache_ttl"),
            ("[dkim]\nselector = \"a b\"", "[milterd.dkim].selector"),
            (
                "[dkim]\npath = \"keys/$selector.key\"",
                "[milterd.dkim].path",
            ),
            (
                "[dkim]\nselector = [\"a\", \"b\"]\npath = \"/k/key\"",
                "[milterd.dkim].path",
            ),
            (
                "[dkim]\nsign_headers = [\"To\"]",
                "[milterd.dkim].sign_headers",
            ),
            (
                "[dkim]\nsign_error_action = \"drop\"",
                "[milterd.dkim].sign_error_action",
            ),
            ("dns_servers = [\"dns.example\"]", "[milterd].dns_servers"),
            ("[arc]\nselector = \"a b\"", "[milterd.arc].selector"),
            ("[arc]\npath = \"arc.key\"", "[milterd.arc].path"),
            (
                "[arc]\nseal_error_action = \"drop\"",
                "[milterd.arc].seal_error_action",
            ),
            ("dns_timeout = \"0s\"", "[milterd].dns_timeout"),
            (
                "[verify]\ndmarc_reject_action = \"drop\"",
                "[milterd.verify].dmarc_reject_action",
            ),
            (
                "[verify]\nauthserv_id = \"mx; dkim=pass\"",
                "[milterd.verify].authserv_id",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(
                e.iter().any(|e| e.to_string().contains(key)),
                "{text}: {e:?}"
            );
        }
    }
}

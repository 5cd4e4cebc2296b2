//! Rows of the guide's four tables, as postwerk uses them. No SQL here.

use crate::config::Secret;
use serde::Serialize;
use std::fmt;

/// A row of `domains`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Domain {
    /// The domain, ASCII (punycode) form.
    pub domain: String,
}

/// A row of `accounts`.
#[derive(Debug, Clone, Serialize)]
pub struct Account {
    /// `username`: local part.
    pub username: String,
    /// `domain`.
    pub domain: String,
    /// `password`: a Dovecot scheme string such as `{SHA512-CRYPT}$6$…`.
    /// Never serialised or printed.
    #[serde(skip)]
    pub password: Secret,
    /// `quota` in MB; 0 is unlimited.
    pub quota_mb: i64,
    /// `enabled`.
    pub enabled: bool,
    /// `sendonly`: may log in and send, has no mailbox.
    pub sendonly: bool,
}

impl Account {
    /// `username@domain`.
    pub fn address(&self) -> String {
        format!("{}@{}", self.username, self.domain)
    }
}

/// A row of `aliases`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alias {
    /// `source_username`; `None` is the domain's catch-all.
    pub source_username: Option<String>,
    /// `source_domain`.
    pub source_domain: String,
    /// `destination_username`.
    pub destination_username: String,
    /// `destination_domain`.
    pub destination_domain: String,
    /// `enabled`.
    pub enabled: bool,
}

impl Alias {
    /// The source as the admin writes it: `user@domain` or `@domain` for a
    /// catch-all.
    pub fn source(&self) -> String {
        format!(
            "{}@{}",
            self.source_username.as_deref().unwrap_or(""),
            self.source_domain
        )
    }

    /// `destination_username@destination_domain`.
    pub fn destination(&self) -> String {
        format!("{}@{}", self.destination_username, self.destination_domain)
    }
}

/// The eight values of the guide's `tlspolicies.policy` enum, which are
/// Postfix's `smtp_tls_policy_maps` security levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// `none`
    None,
    /// `may`
    May,
    /// `encrypt`
    Encrypt,
    /// `dane`
    Dane,
    /// `dane-only`
    DaneOnly,
    /// `fingerprint`
    Fingerprint,
    /// `verify`
    Verify,
    /// `secure`
    Secure,
}

impl Policy {
    /// All policies, in the guide's enum order.
    pub const ALL: [Policy; 8] = [
        Policy::None,
        Policy::May,
        Policy::Encrypt,
        Policy::Dane,
        Policy::DaneOnly,
        Policy::Fingerprint,
        Policy::Verify,
        Policy::Secure,
    ];

    /// The value as stored and as Postfix reads it.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::None => "none",
            Policy::May => "may",
            Policy::Encrypt => "encrypt",
            Policy::Dane => "dane",
            Policy::DaneOnly => "dane-only",
            Policy::Fingerprint => "fingerprint",
            Policy::Verify => "verify",
            Policy::Secure => "secure",
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Policy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Policy::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                let all: Vec<_> = Policy::ALL.iter().map(|p| p.as_str()).collect();
                format!("unknown TLS policy `{s}`; allowed: {}", all.join(", "))
            })
    }
}

/// A row of `tlspolicies`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsPolicy {
    /// `domain` (next-hop domain as Postfix looks it up).
    pub domain: String,
    /// `policy`.
    pub policy: Policy,
    /// `params`, e.g. `match=.gmx.net`.
    pub params: Option<String>,
}

/// What the guide's `recipient-access.cf` answers for an enabled account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RecipientAccess {
    /// A mailbox: `OK`.
    Ok,
    /// A send-only account: `REJECT`.
    Reject,
}

/// Dovecot's passdb answer (the guide's `password_query`).
#[derive(Debug, Clone)]
pub struct PassdbEntry {
    /// `user` field: local part as stored.
    pub user: String,
    /// `domain` field.
    pub domain: String,
    /// The stored password scheme string.
    pub password: Secret,
}

/// Dovecot's userdb answer (the guide's `user_query`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserdbEntry {
    /// Quota in MB, 0 = unlimited.
    pub quota_mb: i64,
}

impl UserdbEntry {
    /// The guide's `quota_rule` value: `*:storage=<quota>M` (`*:storage=0M`
    /// means unlimited to Dovecot, as in the guide).
    pub fn quota_rule(&self) -> String {
        format!("*:storage={}M", self.quota_mb)
    }
}

/// A domain with its counts, for `postwerk domain list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DomainSummary {
    /// The domain.
    pub domain: String,
    /// Accounts in it.
    pub accounts: i64,
    /// Alias rows whose source is in it.
    pub aliases: i64,
}

/// What the tables say about one address (`user@domain`), for deciding
/// where its mail goes: the account of that name, if any, and the
/// enabled alias rows that could apply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressRows {
    /// The account `user@domain` (enabled or not), as `(enabled,
    /// sendonly)`.
    pub account: Option<(bool, bool)>,
    /// Destinations of enabled aliases whose source is exactly
    /// `user@domain`, sorted.
    pub named: Vec<String>,
    /// Destinations of the domain's enabled catch-all, sorted.
    pub catch_all: Vec<String>,
}

/// One step of alias expansion ([`Db::expand_alias`](super::Db::expand_alias)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasExpansion {
    /// The destinations, as stored.
    pub destinations: Vec<String>,
    /// `Some((user@domain, tag))` when they are the named aliases of the
    /// address without its extension (`user+tag@domain` had no rows of
    /// its own); Postfix then carries the extension over.
    pub via_base: Option<(crate::address::Address, String)>,
}

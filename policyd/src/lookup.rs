//! LOGIC: map name + key → answer, with the guide's semantics for the keys
//! Postfix really sends to a pattern table (reference/socketmap.md §0).
//! Knows nothing about bytes on the wire; every SQL statement is in
//! `postwerk_core::db::queries`.
//!
//! With `proxy:mysql`, Postfix itself tried `user+ext@domain`, then
//! `user@domain`, then `@domain` (the last one suppressed by the guide's
//! queries, whose `%u` is empty for it). A socketmap gets only the first
//! key, so the fallback to `user@domain` is done here, including Postfix's
//! `propagate_unmatched_extensions` (default `canonical, virtual`) for
//! aliases found through the stripped key.

use postwerk_core::address::{Address, normalize_domain};
use postwerk_core::db::{ChangeProbe, Db, DbError, RecipientAccess};
use postwerk_core::error::{Transience, Transient};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tracing::{debug, warn};

/// Text Postfix shows for a send-only account at RCPT:
/// `554 5.7.1 <addr>: Recipient address rejected: <text>`.
pub const SENDONLY_REJECT_TEXT: &str = "this account only sends mail and does not receive any";
/// The value of `mailboxes` hits: the guide's `accounts.cf` answers `1`;
/// Postfix with LMTP delivery only tests for presence.
pub const MAILBOX_VALUE: &str = "1";
/// At most this many cached answers per map; a map's table is emptied
/// when full.
pub const CACHE_MAX_ENTRIES: usize = 100_000;

/// The maps, one per file of the guide's `/etc/postfix/sql/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Map {
    /// `domains` (domains.cf): `virtual_mailbox_domains`.
    Domains,
    /// `mailboxes` (accounts.cf): `virtual_mailbox_maps`.
    Mailboxes,
    /// `aliases` (aliases.cf): `virtual_alias_maps` (and, by default,
    /// `virtual_alias_domains`).
    Aliases,
    /// `recipient_access` (recipient-access.cf): `check_recipient_access`.
    RecipientAccess,
    /// `sender_login` (sender-login-maps.cf): `smtpd_sender_login_maps`.
    SenderLogin,
    /// `tls_policy` (tls-policy.cf): `smtp_tls_policy_maps`.
    TlsPolicy,
}

impl Map {
    /// Every map.
    pub const ALL: [Map; 6] = [
        Map::Domains,
        Map::Mailboxes,
        Map::Aliases,
        Map::RecipientAccess,
        Map::SenderLogin,
        Map::TlsPolicy,
    ];

    /// The canonical name.
    pub fn name(self) -> &'static str {
        match self {
            Map::Domains => "domains",
            Map::Mailboxes => "mailboxes",
            Map::Aliases => "aliases",
            Map::RecipientAccess => "recipient_access",
            Map::SenderLogin => "sender_login",
            Map::TlsPolicy => "tls_policy",
        }
    }

    /// Finds a map by its name, or by the stem of the guide's file
    /// (`accounts`, `recipient-access`, `sender-login-maps`, `tls-policy`),
    /// so `proxy:mysql:/etc/postfix/sql/X.cf` becomes `socketmap:…:X`.
    pub fn from_name(name: &str) -> Option<Map> {
        let n = name.to_ascii_lowercase().replace('-', "_");
        Some(match n.as_str() {
            "domains" => Map::Domains,
            "mailboxes" | "accounts" => Map::Mailboxes,
            "aliases" => Map::Aliases,
            "recipient_access" => Map::RecipientAccess,
            "sender_login" | "sender_login_maps" => Map::SenderLogin,
            "tls_policy" | "tlspolicy" => Map::TlsPolicy,
            _ => return None,
        })
    }
}

/// Why a lookup has no answer.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Our own `lookup_timeout` passed.
    #[error("lookup took longer than {0:?}")]
    Timeout(Duration),
}

impl Transient for LookupError {
    fn transience(&self) -> Transience {
        match self {
            LookupError::Db(e) => e.transience(),
            LookupError::Timeout(_) => Transience::Temporary,
        }
    }
}

/// Answers lookups from the vmail database, through a cache that keeps
/// answers until the tables change: a watcher task asks the database every
/// `cache_check_interval` whether anything changed ([`ChangeProbe`]) and
/// empties the cache when it did — or when it cannot tell (database down:
/// lookups then reach the database and answer TEMP, as without a cache).
#[derive(Debug)]
pub struct Lookup {
    db: Db,
    delimiter: String,
    timeout: Duration,
    cache_ttl: Duration,
    generation: AtomicU64,
    /// One table per map (indexed by `Map as usize`), keyed by the key as
    /// Postfix sent it, so a hit needs no allocation.
    cache: Mutex<[HashMap<String, Cached>; Map::ALL.len()]>,
}

/// A cached answer, the cache generation it belongs to and when it was
/// looked up.
#[derive(Debug)]
struct Cached {
    generation: u64,
    at: Instant,
    answer: Option<String>,
}

impl Lookup {
    /// `delimiter` is `recipient_delimiter` (each character a delimiter);
    /// `cache_ttl` zero turns the cache off.
    pub fn new(db: Db, delimiter: &str, timeout: Duration, cache_ttl: Duration) -> Self {
        Self {
            db,
            delimiter: delimiter.to_owned(),
            timeout,
            cache_ttl,
            generation: AtomicU64::new(0),
            cache: Mutex::new(Default::default()),
        }
    }

    /// The database (for the policy service's checks).
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Starts the task that empties the cache when the tables change,
    /// checking every `interval`. It ends when the `Lookup` is dropped.
    pub fn start_change_watch(self: &Arc<Self>, interval: Duration) {
        if self.cache_ttl.is_zero() {
            return;
        }
        let weak: Weak<Lookup> = Arc::downgrade(self);
        let mut probe = ChangeProbe::new(self.db.clone());
        let deadline = self.timeout;
        tokio::spawn(async move {
            let mut last: Option<String> = None;
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(lookup) = weak.upgrade() else { break };
                match tokio::time::timeout(deadline, probe.marker()).await {
                    Ok(Ok(marker)) => {
                        if last.as_ref() != Some(&marker) {
                            if last.is_some() {
                                debug!("vmail tables changed; cache emptied");
                            }
                            lookup.invalidate();
                            last = Some(marker);
                        }
                    }
                    Ok(Err(e)) => {
                        if last.is_some() {
                            warn!(error = %e, "cannot check the database for changes; cache emptied");
                        }
                        lookup.invalidate();
                        last = None;
                    }
                    Err(_) => {
                        if last.is_some() {
                            warn!("checking the database for changes timed out; cache emptied");
                        }
                        lookup.invalidate();
                        last = None;
                    }
                }
            }
        });
    }

    /// Forgets every cached answer.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Ok(mut cache) = self.cache.lock() {
            cache.iter_mut().for_each(HashMap::clear);
        }
    }

    /// Looks `key` up in `map` within the lookup deadline. `Ok(None)` is
    /// "not found".
    pub async fn lookup(&self, map: Map, key: &str) -> Result<Option<String>, LookupError> {
        let caching = !self.cache_ttl.is_zero();
        if caching && let Some(hit) = self.cached(map, key) {
            return Ok(hit);
        }
        // Read before the query: an answer that raced with a change is
        // stored under the old generation and never served.
        let generation = self.generation.load(Ordering::Acquire);
        let answer = tokio::time::timeout(self.timeout, self.lookup_uncached(map, key))
            .await
            .map_err(|_| LookupError::Timeout(self.timeout))??;
        if caching {
            self.remember(map, key, generation, &answer);
        }
        Ok(answer)
    }

    fn cached(&self, map: Map, key: &str) -> Option<Option<String>> {
        let generation = self.generation.load(Ordering::Acquire);
        let cache = self.cache.lock().ok()?;
        match cache[map as usize].get(key) {
            Some(c) if c.generation == generation && c.at.elapsed() < self.cache_ttl => {
                Some(c.answer.clone())
            }
            _ => None,
        }
    }

    fn remember(&self, map: Map, key: &str, generation: u64, answer: &Option<String>) {
        if let Ok(mut cache) = self.cache.lock() {
            if generation != self.generation.load(Ordering::Acquire) {
                return;
            }
            let table = &mut cache[map as usize];
            if table.len() >= CACHE_MAX_ENTRIES {
                table.clear();
            }
            table.insert(
                key.to_owned(),
                Cached {
                    generation,
                    at: Instant::now(),
                    answer: answer.clone(),
                },
            );
        }
    }

    async fn lookup_uncached(&self, map: Map, key: &str) -> Result<Option<String>, DbError> {
        let db = &self.db;
        match map {
            Map::Domains => match normalize_domain(key) {
                Ok(d) if !key.contains('@') => Ok(db.domain_exists(&d).await?.then_some(d)),
                _ => Ok(None),
            },
            Map::TlsPolicy => {
                let Some(k) = tls_policy_key(key) else {
                    return Ok(None);
                };
                Ok(db.tls_policy(&k).await?.map(|p| match p.params {
                    Some(params) if !params.trim().is_empty() => {
                        format!("{} {}", p.policy, params.trim())
                    }
                    _ => p.policy.to_string(),
                }))
            }
            Map::Mailboxes => self
                .with_extension_fallback(key, |a| async move {
                    Ok(db
                        .enabled_account(a.local(), a.domain())
                        .await?
                        .map(|_| vec![MAILBOX_VALUE.to_owned()]))
                })
                .await
                .map(|r| r.map(|(v, _)| v.join(","))),
            Map::RecipientAccess => self
                .with_extension_fallback(key, |a| async move {
                    Ok(db.recipient_access(a.local(), a.domain()).await?.map(|r| {
                        vec![match r {
                            RecipientAccess::Ok => "OK".to_owned(),
                            RecipientAccess::Reject => format!("REJECT {SENDONLY_REJECT_TEXT}"),
                        }]
                    }))
                })
                .await
                .map(|r| r.map(|(v, _)| v.join(","))),
            Map::SenderLogin => self
                .with_extension_fallback(key, |a| async move {
                    let owners = db.sender_login_owners(a.local(), a.domain()).await?;
                    Ok((!owners.is_empty()).then_some(owners))
                })
                .await
                .map(|r| r.map(|(v, _)| v.join(","))),
            Map::Aliases => {
                // A bare domain is Postfix asking whether it is a virtual
                // alias domain (virtual_alias_domains = $virtual_alias_maps);
                // the guide's query is suppressed for it (no %d), so: no.
                if !key.contains('@') {
                    return Ok(None);
                }
                let found = self
                    .with_extension_fallback(key, |a| async move {
                        let d = db.guide_alias_destinations(a.local(), a.domain()).await?;
                        Ok((!d.is_empty()).then_some(d))
                    })
                    .await?;
                Ok(found.map(|(dests, ext)| match ext {
                    None => dests.join(","),
                    Some(ext) => dests
                        .iter()
                        .map(|d| propagate_extension(d, &ext))
                        .collect::<Vec<_>>()
                        .join(","),
                }))
            }
        }
    }

    /// Runs `f` for the full address, then — when the local part has an
    /// extension — for the address without it, as Postfix does for
    /// non-pattern tables. Returns the answer and, for the second try, the
    /// unmatched extension including its delimiter (`+tag`).
    /// Whether `domain` (normalised) is in `domains`, through the cache.
    async fn domain_known(&self, domain: &str) -> Result<bool, DbError> {
        if let Some(hit) = self.cached(Map::Domains, domain) {
            return Ok(hit.is_some());
        }
        let generation = self.generation.load(Ordering::Acquire);
        let known = self.db.domain_exists(domain).await?;
        self.remember(
            Map::Domains,
            domain,
            generation,
            &known.then(|| domain.to_owned()),
        );
        Ok(known)
    }

    async fn with_extension_fallback<'a, F, Fut>(
        &'a self,
        key: &str,
        f: F,
    ) -> Result<Option<(Vec<String>, Option<String>)>, DbError>
    where
        F: Fn(Address) -> Fut,
        Fut: std::future::Future<Output = Result<Option<Vec<String>>, DbError>> + 'a,
    {
        let Ok(addr) = Address::parse(key) else {
            return Ok(None);
        };
        // Accounts and aliases need their domain in `domains` (the guide's
        // foreign keys), so an address of a domain that is not ours has no
        // rows. With the cache on, the domain's answer is cached, which
        // spares a query per address of foreign domains (every outgoing
        // recipient is asked in virtual_alias_maps).
        if !self.cache_ttl.is_zero() && !self.domain_known(addr.domain()).await? {
            return Ok(None);
        }
        let (base, detail) = addr.split_detail(&self.delimiter);
        if let Some(v) = f(addr.clone()).await? {
            return Ok(Some((v, None)));
        }
        let Some(detail) = detail else {
            return Ok(None);
        };
        let delim_len = addr.local().len() - base.local().len() - detail.len();
        let delim = &addr.local()[base.local().len()..base.local().len() + delim_len];
        Ok(f(base)
            .await?
            .map(|v| (v, Some(format!("{delim}{detail}")))))
    }
}

/// Inserts an unmatched address extension into a result address, as
/// Postfix's `propagate_unmatched_extensions` does: `user@d` + `+tag` →
/// `user+tag@d`.
pub fn propagate_extension(addr: &str, ext: &str) -> String {
    match addr.rsplit_once('@') {
        Some((l, d)) => format!("{l}{ext}@{d}"),
        None => format!("{addr}{ext}"),
    }
}

/// The `tlspolicies.domain` value for a TLS policy key: a domain (IDN
/// normalised), `.parent.domain` (Postfix asks for parent domains itself),
/// or a `[host]:port` / `[host]` next hop as written.
fn tls_policy_key(key: &str) -> Option<String> {
    let k = key.trim();
    if k.starts_with('[') {
        return Some(k.to_ascii_lowercase());
    }
    match k.strip_prefix('.') {
        Some(rest) => normalize_domain(rest).ok().map(|d| format!(".{d}")),
        None => normalize_domain(k).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_names() {
        for m in Map::ALL {
            assert_eq!(Map::from_name(m.name()), Some(m));
        }
        assert_eq!(Map::from_name("accounts"), Some(Map::Mailboxes));
        assert_eq!(
            Map::from_name("recipient-access"),
            Some(Map::RecipientAccess)
        );
        assert_eq!(Map::from_name("sender-login-maps"), Some(Map::SenderLogin));
        assert_eq!(Map::from_name("tls-policy"), Some(Map::TlsPolicy));
        assert_eq!(Map::from_name("nope"), None);
    }

    #[test]
    fn extension_propagation() {
        assert_eq!(
            propagate_extension("user1@example.org", "+tag"),
            "user1+tag@example.org"
        );
        assert_eq!(tls_policy_key("GMX.de").as_deref(), Some("gmx.de"));
        assert_eq!(
            tls_policy_key(".Example.org").as_deref(),
            Some(".example.org")
        );
        assert_eq!(
            tls_policy_key("[127.0.0.1]:25").as_deref(),
            Some("[127.0.0.1]:25")
        );
    }
}

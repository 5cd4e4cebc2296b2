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

use postwerk_core::address::{Address, DOVECOT_USERNAME_CHARS, normalize_domain, usable_user_name};
use postwerk_core::db::{AddressRows, ChangeProbe, Db, DbError};
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
    /// `srs_forward` (PostSRSd's `forward`): `sender_canonical_maps`.
    SrsForward,
    /// `srs_reverse` (PostSRSd's `reverse`): `recipient_canonical_maps`.
    SrsReverse,
    /// `srs_transport`: `sender_dependent_default_transport_maps`, sends
    /// mail of foreign senders that leaves for foreign domains through the
    /// SRS reinjection service, so only forwarded mail is rewritten.
    SrsTransport,
}

impl Map {
    /// Every map.
    pub const ALL: [Map; 9] = [
        Map::Domains,
        Map::Mailboxes,
        Map::Aliases,
        Map::RecipientAccess,
        Map::SenderLogin,
        Map::TlsPolicy,
        Map::SrsForward,
        Map::SrsReverse,
        Map::SrsTransport,
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
            Map::SrsForward => "srs_forward",
            Map::SrsReverse => "srs_reverse",
            Map::SrsTransport => "srs_transport",
        }
    }

    /// Finds a map by its name, or by the stem of the guide's file
    /// (`accounts`, `recipient-access`, `sender-login-maps`, `tls-policy`),
    /// so `proxy:mysql:/etc/postfix/sql/X.cf` becomes `socketmap:…:X`.
    pub fn from_name(name: &str) -> Option<Map> {
        // Asked once per request: compared in place, without the two
        // allocations of lowercasing and replacing first.
        const NAMES: [(&str, Map); 14] = [
            ("domains", Map::Domains),
            ("mailboxes", Map::Mailboxes),
            ("accounts", Map::Mailboxes),
            ("aliases", Map::Aliases),
            ("recipient_access", Map::RecipientAccess),
            ("sender_login", Map::SenderLogin),
            ("sender_login_maps", Map::SenderLogin),
            ("tls_policy", Map::TlsPolicy),
            ("tlspolicy", Map::TlsPolicy),
            ("srs_forward", Map::SrsForward),
            ("forward", Map::SrsForward),
            ("srs_reverse", Map::SrsReverse),
            ("reverse", Map::SrsReverse),
            ("srs_transport", Map::SrsTransport),
        ];
        let same = |canonical: &str| {
            canonical.len() == name.len()
                && canonical.bytes().zip(name.bytes()).all(|(c, n)| {
                    let n = if n == b'-' {
                        b'_'
                    } else {
                        n.to_ascii_lowercase()
                    };
                    c == n
                })
        };
        NAMES.iter().find(|(n, _)| same(n)).map(|(_, m)| *m)
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
    username_chars: String,
    srs: Option<crate::srs::Srs>,
    srs_reinject: Option<String>,
    mta_sts: Option<crate::mta_sts::MtaSts>,
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
    /// `cache_ttl` zero turns the cache off. Accounts can receive with
    /// the Dovecot default `auth_username_chars` until
    /// [`Lookup::with_username_chars`] says otherwise.
    pub fn new(db: Db, delimiter: &str, timeout: Duration, cache_ttl: Duration) -> Self {
        Self {
            db,
            delimiter: delimiter.to_owned(),
            username_chars: DOVECOT_USERNAME_CHARS.to_owned(),
            srs: None,
            srs_reinject: None,
            mta_sts: None,
            timeout,
            cache_ttl,
            generation: AtomicU64::new(0),
            cache: Mutex::new(Default::default()),
        }
    }

    /// `[mail].username_chars` (Dovecot's `auth_username_chars`): accounts
    /// with other characters have no usable mailbox.
    pub fn with_username_chars(mut self, chars: &str) -> Self {
        self.username_chars = chars.to_owned();
        self
    }

    /// The SRS maps' signer (`[policyd.srs]`); without it they answer
    /// not found.
    pub fn with_srs(mut self, srs: Option<crate::srs::Srs>, reinject: Option<String>) -> Self {
        self.srs = srs;
        self.srs_reinject = reinject;
        self
    }

    /// Whether `sender` is one SRS rewrites: of a domain that is neither
    /// ours nor the SRS domain (PostSRSd's rule).
    async fn srs_rewrites(&self, srs: &crate::srs::Srs, sender: &str) -> Result<bool, DbError> {
        let Some((_, domain)) = sender.rsplit_once('@') else {
            return Ok(false);
        };
        let Ok(domain) = normalize_domain(domain) else {
            return Ok(false);
        };
        Ok(domain != srs.domain() && !self.domain_known(&domain).await?)
    }

    /// MTA-STS for `tls_policy` keys without a `tlspolicies` row.
    pub fn with_mta_sts(mut self, mta_sts: Option<crate::mta_sts::MtaSts>) -> Self {
        self.mta_sts = mta_sts;
        self
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
                if let Some(p) = db.tls_policy(&k).await? {
                    return Ok(Some(match p.params {
                        Some(params) if !params.trim().is_empty() => {
                            format!("{} {}", p.policy, params.trim())
                        }
                        _ => p.policy.to_string(),
                    }));
                }
                // A row always wins; without one, the domain's own MTA-STS
                // policy (next hops such as [host]:port and .parent keys
                // have none).
                match &self.mta_sts {
                    Some(sts) if !k.starts_with(['[', '.']) => Ok(sts.answer(&k).await),
                    _ => Ok(None),
                }
            }
            Map::SrsForward => {
                // PostSRSd's rule: senders of our own domains (and the SRS
                // domain) are never rewritten.
                let Some(srs) = &self.srs else {
                    return Ok(None);
                };
                if !self.srs_rewrites(srs, key).await? {
                    return Ok(None);
                }
                Ok(srs.forward(key, std::time::SystemTime::now()))
            }
            Map::SrsTransport => {
                let (Some(srs), Some(reinject)) = (&self.srs, &self.srs_reinject) else {
                    return Ok(None);
                };
                Ok(self.srs_rewrites(srs, key).await?.then(|| reinject.clone()))
            }
            Map::SrsReverse => {
                let Some(srs) = &self.srs else {
                    return Ok(None);
                };
                match srs.reverse(key, std::time::SystemTime::now()) {
                    Ok(orig) => Ok(Some(orig)),
                    Err(e) => {
                        if e != crate::srs::SrsError::NotSrs {
                            debug!(key, error = %e, "SRS address not reversed");
                        }
                        Ok(None)
                    }
                }
            }
            Map::Mailboxes => self
                .with_extension_fallback(key, |a| async move {
                    if !usable_user_name(&a, &self.username_chars) {
                        return Ok(None);
                    }
                    Ok(db
                        .enabled_account(a.local(), a.domain())
                        .await?
                        .map(|_| vec![MAILBOX_VALUE.to_owned()]))
                })
                .await
                .map(|r| r.map(|(v, _)| v.join(","))),
            Map::RecipientAccess => self.recipient_access(key).await,
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
                Ok(self.aliases(key).await?.map(|dests| dests.join(",")))
            }
        }
    }

    /// The `aliases` map: where `key` goes by alias, or `None` when it is
    /// not an alias (an account, or unknown without a catch-all). As in the
    /// guide, an account hides the aliases of its name. Unlike the guide's
    /// query: a named alias or an account always wins over the catch-all,
    /// and `user+tag@` reaches the named alias or account `user@`
    /// before the catch-all (Postfix's own order for hash and mysql tables
    /// when no catch-all exists) — the tag moves to the alias destinations
    /// (`propagate_unmatched_extensions`) or stays on the recipient for
    /// lmtpd/Sieve.
    async fn aliases(&self, key: &str) -> Result<Option<Vec<String>>, DbError> {
        let Some((addr, rows)) = self.rows_of_key(key).await? else {
            return Ok(None);
        };
        self.aliases_of(&addr, rows).await
    }

    /// [`Lookup::aliases`] for `addr` whose own rows are already read (one
    /// more query only for `user+tag@` without rows of its own).
    async fn aliases_of(
        &self,
        addr: &Address,
        rows: AddressRows,
    ) -> Result<Option<Vec<String>>, DbError> {
        let Some(e) = self.db.expand_alias(addr, rows, &self.delimiter).await? else {
            return Ok(None);
        };
        Ok(Some(match e.via_base {
            None => e.destinations,
            Some((base, detail)) => {
                let ext = extension_of(addr, &base, &detail);
                e.destinations
                    .iter()
                    .map(|d| propagate_extension(d, &ext))
                    .collect()
            }
        }))
    }

    /// Parses `key` and reads its rows, or `None` when it is no address of
    /// one of our domains.
    async fn rows_of_key(&self, key: &str) -> Result<Option<(Address, AddressRows)>, DbError> {
        let Ok(addr) = Address::parse(key) else {
            return Ok(None);
        };
        if !self.cache_ttl.is_zero() && !self.domain_known(addr.domain()).await? {
            return Ok(None);
        }
        let rows = self.db.address_rows(addr.local(), addr.domain()).await?;
        Ok(Some((addr, rows)))
    }

    /// The `recipient_access` map. The guide answers `OK` for a mailbox
    /// account and `REJECT` for a send-only one. postwerk also refuses, with
    /// a text that says why, what the guide accepts and then bounces: a
    /// disabled account, an account whose name Dovecot cannot use, and an
    /// alias (or catch-all) all of whose final destinations are such local
    /// mailboxes or do not exist. Anything else gets no answer (Postfix
    /// goes on with its checks).
    async fn recipient_access(&self, key: &str) -> Result<Option<String>, DbError> {
        if let Some(srs) = &self.srs
            && let Some((local, domain)) = key.rsplit_once('@')
            && crate::srs::Srs::is_srs(local)
            && normalize_domain(domain).is_ok_and(|d| d == srs.domain())
        {
            // A bounce to one of our SRS addresses: deliverable when it
            // reverses (recipient_canonical_maps does it), else refused
            // with the reason instead of "User unknown".
            return Ok(Some(match srs.reverse(key, std::time::SystemTime::now()) {
                Ok(_) => "OK".to_owned(),
                Err(e) => format!("550 5.1.1 {e}"),
            }));
        }
        Ok(match self.route(key).await? {
            Route::NotOurs | Route::Unknown => None,
            Route::Account(kind, _) => Some(kind.access_answer()),
            Route::Alias(targets) => {
                if targets.is_empty() || targets.iter().any(|(t, _)| t.deliverable()) {
                    None
                } else {
                    let kinds: Vec<Target> = targets.iter().map(|(t, _)| *t).collect();
                    Some(Target::alias_answer(&kinds))
                }
            }
        })
    }

    /// Where mail to `key` ends up: an account of ours (user+tag falls
    /// back to user, as Postfix does for the mailbox map, unless user+tag
    /// is a named alias), the final destinations of an alias or catch-all,
    /// or nowhere. Within the lookup deadline.
    pub async fn destinations(&self, key: &str) -> Result<Route, LookupError> {
        tokio::time::timeout(self.timeout, self.route(key))
            .await
            .map_err(|_| LookupError::Timeout(self.timeout))?
            .map_err(LookupError::from)
    }

    async fn route(&self, key: &str) -> Result<Route, DbError> {
        let Some((addr, rows)) = self.rows_of_key(key).await? else {
            return Ok(Route::NotOurs);
        };
        let account = match rows.account {
            Some(a) => Some((addr.clone(), a)),
            None if rows.named.is_empty() => {
                let (base, detail) = addr.split_detail(&self.delimiter);
                match detail {
                    Some(_) => self
                        .db
                        .address_rows(base.local(), base.domain())
                        .await?
                        .account
                        .map(|a| (base, a)),
                    None => None,
                }
            }
            None => None,
        };
        if let Some((account, state)) = account {
            return Ok(Route::Account(self.classify(&account, state), account));
        }
        let Some(dests) = self.aliases_of(&addr, rows).await? else {
            // Not an alias at all: Postfix's own "User unknown" applies.
            return Ok(Route::Unknown);
        };
        let mut budget = RESOLVE_BUDGET;
        let mut seen = vec![addr];
        Ok(Route::Alias(
            self.resolve(dests, &mut seen, &mut budget, 0).await?,
        ))
    }

    /// What kind of mailbox the account `account` with `(enabled,
    /// sendonly)` is.
    fn classify(&self, account: &Address, (enabled, sendonly): (bool, bool)) -> Target {
        if !usable_user_name(account, &self.username_chars) {
            Target::BadName
        } else if !enabled {
            Target::Disabled
        } else if sendonly {
            Target::SendOnly
        } else {
            Target::Mailbox
        }
    }

    /// The final destinations of alias destinations `dests`, following
    /// aliases of our own domains as Postfix's virtual alias expansion
    /// does, within `budget` lookups and [`RESOLVE_DEPTH`] levels (beyond:
    /// `Unsure`). One query per destination (two for `user+tag@`).
    fn resolve<'a>(
        &'a self,
        dests: Vec<String>,
        seen: &'a mut Vec<Address>,
        budget: &'a mut u32,
        depth: u32,
    ) -> Resolving<'a> {
        Box::pin(async move {
            let mut out = Vec::new();
            for dest in dests {
                let Ok(d) = Address::parse(&dest) else {
                    // Postfix would send it on as it is: not ours to judge.
                    continue;
                };
                if *budget == 0 || depth >= RESOLVE_DEPTH {
                    out.push((Target::Unsure, d));
                    continue;
                }
                *budget -= 1;
                if !self.domain_known(d.domain()).await? {
                    out.push((Target::Foreign, d));
                    continue;
                }
                let rows = self.db.address_rows(d.local(), d.domain()).await?;
                let own_account = rows.account;
                // An address that expands to itself is delivered (Postfix).
                if !seen.contains(&d)
                    && let Some(next) = self.aliases_of(&d, rows).await?
                {
                    seen.push(d);
                    out.extend(self.resolve(next, seen, budget, depth + 1).await?);
                    continue;
                }
                let account = match own_account {
                    Some(state) => Some((d.clone(), state)),
                    None => {
                        let (base, detail) = d.split_detail(&self.delimiter);
                        match detail {
                            Some(_) => self
                                .db
                                .address_rows(base.local(), base.domain())
                                .await?
                                .account
                                .map(|state| (base, state)),
                            None => None,
                        }
                    }
                };
                out.push(match account {
                    Some((a, state)) => (self.classify(&a, state), a),
                    None => (Target::Unknown, d),
                });
            }
            Ok(out)
        })
    }

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

    /// Runs `f` for the full address, then — when the local part has an
    /// extension — for the address without it, as Postfix does for
    /// non-pattern tables. Returns the answer and, for the second try, the
    /// unmatched extension including its delimiter (`+tag`).
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

/// At most this many addresses are looked at to resolve one recipient's
/// aliases for `recipient_access`.
pub const RESOLVE_BUDGET: u32 = 64;
/// Alias chains deeper than this are not followed (Postfix stops at
/// `virtual_alias_recursion_limit`, 1000; real chains are short).
pub const RESOLVE_DEPTH: u32 = 8;

/// The future of [`Lookup::resolve`] (boxed: it recurses).
type Resolving<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Vec<(Target, Address)>, DbError>> + Send + 'a>,
>;

/// Where mail to one address ends up ([`Lookup::destinations`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Not an address of our domains.
    NotOurs,
    /// Our domain, but no account, alias or catch-all.
    Unknown,
    /// An account (the address itself, or its base without `+tag`).
    Account(Target, Address),
    /// An alias or catch-all: its final destinations.
    Alias(Vec<(Target, Address)>),
}

/// Where one destination ends up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// An enabled account with a mailbox.
    Mailbox,
    /// A disabled account.
    Disabled,
    /// A send-only account (no mailbox).
    SendOnly,
    /// An account whose name Dovecot cannot use.
    BadName,
    /// An address of our domains with no account or alias.
    Unknown,
    /// An address of a foreign domain.
    Foreign,
    /// Not followed (too deep, too many, unparsable): assume deliverable.
    Unsure,
}

impl Target {
    /// Whether mail can reach it (or might: foreign, not followed).
    pub fn deliverable(self) -> bool {
        matches!(self, Target::Mailbox | Target::Foreign | Target::Unsure)
    }

    /// The access(5) answer for mail addressed to an account of this kind.
    fn access_answer(self) -> String {
        match self {
            Target::Mailbox => "OK".to_owned(),
            Target::SendOnly => format!("REJECT {SENDONLY_REJECT_TEXT}"),
            Target::Disabled => format!("550 5.2.1 {DISABLED_TEXT}"),
            Target::BadName => format!("550 5.1.1 {BAD_NAME_TEXT}"),
            Target::Unknown | Target::Foreign | Target::Unsure => "DUNNO".to_owned(),
        }
    }

    /// The answer for an alias none of whose destinations can receive.
    fn alias_answer(targets: &[Target]) -> String {
        if targets.iter().all(|t| *t == Target::Disabled) {
            format!("550 5.2.1 {ALIAS_DISABLED_TEXT}")
        } else {
            format!("550 5.1.1 {ALIAS_UNDELIVERABLE_TEXT}")
        }
    }
}

/// Text for mail to a disabled account (Postfix: `550 5.2.1 <addr>:
/// Recipient address rejected: <text>`).
pub const DISABLED_TEXT: &str = "this mailbox is disabled";
/// Text for mail to an account whose name Dovecot cannot use.
pub const BAD_NAME_TEXT: &str =
    "this mailbox cannot be used: its name has characters the mail store does not accept";
/// Text for an alias that leads only to disabled accounts.
pub const ALIAS_DISABLED_TEXT: &str = "this address leads only to disabled mailboxes";
/// Text for an alias that leads only to mailboxes that cannot receive.
pub const ALIAS_UNDELIVERABLE_TEXT: &str =
    "this address leads only to mailboxes that do not exist or cannot receive mail";

/// The unmatched extension of `addr` over `base`, with its delimiter
/// (`+tag`).
fn extension_of(addr: &Address, base: &Address, detail: &str) -> String {
    let start = base.local().len();
    let delim_len = addr.local().len().saturating_sub(start + detail.len());
    let delim = addr.local().get(start..start + delim_len).unwrap_or("+");
    format!("{delim}{detail}")
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

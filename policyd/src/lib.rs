//! postwerk-policyd — Postfix lookup tables and policy checks on the
//! guide's vmail database.
//!
//! # What it does
//! Answers every lookup the guide's Postfix makes through six
//! `proxy:mysql:/etc/postfix/sql/*.cf` maps, with the guide's semantics,
//! from one daemon: `domains`, `mailboxes` (accounts.cf), `aliases`,
//! `recipient_access`, `sender_login`, `tls_policy`. The guide's file stems
//! work as map names too (`accounts`, `recipient-access`,
//! `sender-login-maps`, `tls-policy`). Postfix sends a socketmap only the
//! full key, so policyd itself tries `user@domain` after `user+ext@domain`
//! and propagates the extension to alias results, as Postfix does for
//! MySQL maps. A policy-delegation service adds the sender-login check and
//! sending rate limits (Redis-shared or in-process).
//!
//! # main.cf
//! ```text
//! virtual_mailbox_domains = socketmap:unix:private/policyd:domains
//! virtual_mailbox_maps    = socketmap:unix:private/policyd:mailboxes
//! virtual_alias_maps      = socketmap:unix:private/policyd:aliases
//! smtpd_recipient_restrictions = check_recipient_access socketmap:unix:private/policyd:recipient_access
//! smtp_tls_policy_maps    = socketmap:unix:private/policyd:tls_policy
//! # master.cf, submission/smtps:
//! #   -o smtpd_sender_login_maps=socketmap:unix:private/policyd:sender_login
//! ```
//! (`proxy:` is not needed: policyd already pools connections.) The path
//! is relative to Postfix's queue directory, which is also the root of the
//! chroot the guide's master.cf uses. See `contrib/postfix/`.
//!
//! # Protocols
//! socketmap_table(5), tcp_table(5) and SMTPD_POLICY_README, as captured
//! against Postfix 3.7 in `shared/reference/socketmap.md`. Replies: `OK`,
//! `NOTFOUND`, `TEMP` (database down: Postfix answers 451 and retries, never
//! bounces), `TIMEOUT` (our `lookup_timeout`), `PERM` (unknown map name).
//!
//! # Security
//! Runs as its own unprivileged user; its UNIX socket belongs in Postfix's
//! `private/` directory with mode 0660 and group `postfix`. It only reads
//! the database (a SELECT-only user is enough). tcp_table is unauthenticated:
//! listen on loopback only.
//!
//! # Config (`[policyd]` in postwerk.toml)
//! `socketmap_listen`, `tcp_table_listen` (`MAP=ADDRESS`), `policy_listen`,
//! `socket_mode`, `socket_owner`, `socket_group`, `max_connections`,
//! `idle_timeout`, `shutdown_timeout`, `lookup_timeout`, `cache_ttl`
//! (default 60s, 0 = no cache), `cache_check_interval` (default 1s: the
//! tables are checked for changes this often and any change empties the
//! cache, so admins' changes apply within a second), `max_request`, `sender_login_check` (off / authenticated / all),
//! `[policyd.ratelimit]` (`messages_per_hour`, `recipients_per_hour`,
//! `redis_url`, `redis_prefix`, `[[policyd.ratelimit.override]]` with
//! `match` = account or domain). SIGHUP re-reads the file; listener changes
//! need a restart.
//!
//! # Limitations
//! PostgreSQL compares addresses exactly (store them lowercase, as the CLI
//! does); MariaDB's collation is case-insensitive as in the guide. With the
//! cache on, an address whose domain is not in `domains` is answered "not
//! found" without asking for its rows: the guide's foreign keys guarantee
//! that (an SQLite file written with foreign keys off could break it).
//! Cached answers may be up to `cache_check_interval` old after a change,
//! and during a database outage until the next check empties the cache.
//!
//! # See also
//! postwerk(8), socketmap_table(5), tcp_table(5), access(5).

pub mod lookup;
pub mod mta_sts;
pub mod policy_service;
pub mod proto;
pub mod ratelimit;
pub mod reply;
pub mod session;
pub mod srs;

use lookup::{Lookup, Map};
use policy_service::{PolicyService, QuotaCheck};
use postwerk_core::config::Config;
use postwerk_core::db::Db;
use postwerk_core::service::{self, Limits, Listener};
use ratelimit::RateLimiter;
use session::Shared;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The bound listeners, per protocol.
#[derive(Debug, Default)]
pub struct Listeners {
    /// socketmap listeners.
    pub socketmap: Vec<Listener>,
    /// tcp_table listeners, each serving one map.
    pub tcp_table: Vec<(Map, Listener)>,
    /// policy delegation listeners.
    pub policy: Vec<Listener>,
}

/// Binds every listener of `[policyd]`.
pub async fn bind(cfg: &Config) -> Result<Listeners, service::ListenError> {
    let p = &cfg.policyd;
    let unix = &p.service.unix;
    let mut l = Listeners::default();
    for a in &p.socketmap_listen {
        l.socketmap.push(service::bind(a, unix).await?);
    }
    for (name, a) in &p.tcp_table_listen {
        // Map names were checked against MAP_NAMES with the config.
        if let Some(map) = Map::from_name(name) {
            l.tcp_table.push((map, service::bind(a, unix).await?));
        }
    }
    for a in &p.policy_listen {
        l.policy.push(service::bind(a, unix).await?);
    }
    Ok(l)
}

/// Builds what sessions share from a config. The pool connects lazily, so
/// a database outage at start means TEMP answers, not a crash loop.
pub fn shared(cfg: &Config) -> Result<Arc<Shared>, postwerk_core::db::DbError> {
    let db = Db::connect_lazy(&cfg.database, false)?;
    let p = &cfg.policyd;
    let lookup = Arc::new(
        Lookup::new(
            db,
            &cfg.mail.recipient_delimiter,
            p.lookup_timeout,
            p.cache_ttl,
        )
        .with_username_chars(&cfg.mail.username_chars)
        .with_srs(
            p.srs.as_ref().map(|s| {
                srs::Srs::new(
                    &s.domain,
                    s.secrets
                        .iter()
                        .map(|x| x.expose().as_bytes().to_vec())
                        .collect(),
                    s.max_age_days,
                )
            }),
            p.srs.as_ref().and_then(|s| s.reinject.clone()),
        )
        .with_mta_sts(p.mta_sts.as_ref().and_then(|m| {
            mta_sts::MtaSts::new(mta_sts::Settings {
                nameservers: m.nameservers.clone(),
                ca_file: m.ca_file.clone(),
                timeout: m.timeout,
                check_interval: m.check_interval,
            })
            .map_err(|e| tracing::error!(error = %e, "MTA-STS cannot start; tls_policy answers from the table only"))
            .ok()
        })),
    );
    lookup.start_change_watch(p.cache_check_interval);
    let policy = PolicyService::new(
        lookup.clone(),
        p.sender_login_check,
        RateLimiter::new(p.ratelimit.clone()),
    )
    .with_quota_check(p.quota_check.then(|| QuotaCheck {
        reply: p.quota_reply,
        mail_home: cfg.lmtpd.mail_home.clone(),
        mail_dir: cfg.lmtpd.mail_dir.clone(),
    }));
    Ok(Arc::new(Shared {
        lookup,
        policy,
        idle_timeout: p.service.idle_timeout,
        max_request: p.max_request,
    }))
}

/// Serves every listener until `shutdown` resolves, then drains. Each new
/// connection takes the current [`Shared`] from `current`, so a reload
/// applies to new connections while open ones finish with what they had.
pub async fn run(
    limits: Limits,
    listeners: Listeners,
    current: watch::Receiver<Arc<Shared>>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), service::ServeError> {
    let stop = CancellationToken::new();
    let mut servers: Vec<service::Server> = Vec::new();
    let cur = current.clone();
    servers.extend(service::protocol(
        listeners.socketmap,
        limits,
        &stop,
        move |stream, _peer, token| session::socketmap(stream, cur.borrow().clone(), token),
    ));
    for (map, listener) in listeners.tcp_table {
        let cur = current.clone();
        servers.extend(service::protocol(
            vec![listener],
            limits,
            &stop,
            move |stream, _peer, token| {
                session::tcp_table(stream, map, cur.borrow().clone(), token)
            },
        ));
    }
    let cur = current;
    servers.extend(service::protocol(
        listeners.policy,
        limits,
        &stop,
        move |stream, _peer, token| session::policy(stream, cur.borrow().clone(), token),
    ));
    service::serve_all(servers, stop, shutdown).await
}

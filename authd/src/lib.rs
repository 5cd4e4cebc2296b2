//! postwerk-authd — logins for Postfix (SMTP AUTH) and Dovecot (passdb and
//! userdb) on the guide's vmail database.
//!
//! # What it does
//! Two services in one daemon:
//!
//! * **auth-client**: the Dovecot authentication protocol that Postfix's
//!   `smtpd_sasl_type = dovecot` speaks. Mechanisms PLAIN and LOGIN. A user
//!   name is normalised as Dovecot's `%Lu` (lowercase, punycode domain);
//!   only enabled accounts log in (the guide's `password_query`), send-only
//!   accounts included. Passwords are checked with the Dovecot schemes of
//!   `postwerk_core::password` on a bounded blocking pool. Failures are
//!   answered after `auth_failure_delay`; a brute-force budget per remote
//!   IP and per account blocks further attempts with exponential back-off;
//!   repeat logins are served from a short-lived in-memory cache bound to
//!   the stored hash.
//! * **dict**: the Dovecot 2.3 dict proxy protocol for `passdb { driver =
//!   dict }` and `userdb { driver = dict }`. The passdb answer carries the
//!   stored hash (Dovecot verifies it); the userdb answer carries `home`,
//!   `uid`, `gid` and `quota_rule=*:storage=<quota>M`; send-only accounts
//!   have no userdb entry; iteration serves `doveadm ... -A`. The same
//!   socket serves Dovecot 2.4, which has no dict passdb/userdb, through
//!   `contrib/dovecot/postwerk-authd.lua` (`passdb lua` / `userdb lua`),
//!   which speaks this protocol from Lua.
//!
//! # main.cf / dovecot.conf
//! ```text
//! # main.cf (or master.cf -o on submission/smtps):
//! smtpd_sasl_type = dovecot
//! smtpd_sasl_path = private/auth          # authd's auth_listen
//! smtpd_sasl_auth_enable = yes
//! smtpd_tls_auth_only = yes               # AUTH only after STARTTLS
//!
//! # dovecot.conf (Dovecot 2.3), replacing the guide's driver = sql blocks:
//! passdb { driver = dict
//!          args = /etc/dovecot/dovecot-dict-auth.conf.ext }
//! userdb { driver = dict
//!          args = /etc/dovecot/dovecot-dict-auth.conf.ext }
//! # with uri = proxy:/run/postwerk/authd-dict:authdict in that file
//! ```
//! See `contrib/dovecot/`.
//!
//! # Protocols
//! `shared/reference/dovecot-auth-client.md` and
//! `shared/reference/dovecot-dict.md`. Replies: `OK\t<id>\tuser=<u>\t`;
//! `FAIL\t<id>\tuser=<u>` (wrong password and unknown user look the same,
//! after the delay); `FAIL\t<id>\tuser=<u>\tcode=temp_fail\treason=...`
//! when the database or a stored hash fails (as Dovecot 2.3.19 sends it,
//! plus a neutral reason for Postfix, which ignores `code=` and answers
//! `535 5.7.8` anyway); `FAIL\t<id>\t...reason=Too many failed logins...`
//! when blocked. dict: `O<json>`, `N`, `F<text>` (Dovecot then tempfails).
//! A malformed line is the client's bug: logged, connection closed.
//!
//! # Security
//! Runs as its own unprivileged user with read access to the database.
//! The auth socket goes into Postfix's `private/` directory, mode 0660,
//! group `postfix`; the dict socket must be readable only by Dovecot's
//! auth processes (it hands out password hashes!): mode 0660, group
//! `dovecot`. Never expose either on a network. PLAIN/LOGIN are refused
//! unless the request carries `secured` (Postfix sends it after STARTTLS
//! or on smtps) or `plaintext_on_insecure = true`. Passwords and SASL
//! payloads are never logged.
//!
//! # Config (`[authd]` in postwerk.toml)
//! `auth_listen` (default `unix:/var/spool/postfix/private/auth`),
//! `dict_listen` (default none), `socket_mode`, `socket_owner`,
//! `socket_group`, `max_connections`, `idle_timeout`, `shutdown_timeout`,
//! `auth_failure_delay` (2s), `lookup_timeout` (10s), `verify_parallelism`
//! (2 × CPUs), `plaintext_on_insecure` (false), `home`
//! (`/var/vmail/mailboxes/%d/%n`), `uid`/`gid` (the `vmail` user's),
//! `login_cache_ttl` (60s, 0 = off), `bruteforce_ip_failures` (10),
//! `bruteforce_account_failures` (30), `bruteforce_backoff` (10s),
//! `bruteforce_backoff_max` (15m), `bruteforce_window` (1h), `redis_url`,
//! `redis_prefix`. `[mail].default_pass_scheme` applies to stored hashes
//! without `{SCHEME}`. SIGHUP re-reads the file; listener changes need a
//! restart.
//!
//! # Limitations
//! Mechanisms PLAIN and LOGIN only (no CRAM-MD5/SCRAM: the guide stores
//! SHA512-CRYPT hashes). No master users (a PLAIN authzid other than the
//! login name fails with `code=authz_fail`). Dovecot 2.4 removed the dict
//! passdb/userdb; it reaches the dict service through the Lua script of
//! `contrib/dovecot/` (tested with 2.3.19's `driver = lua` and 2.4.1's
//! `passdb lua`/`userdb lua`). Postfix shows every `FAIL` as 535,
//! temporary or not (tested with 3.7 and 3.10; it keeps 454 for a lost
//! connection to the auth server).
//!
//! # See also
//! postwerk(8), postwerk-policyd(8), dovecot(1), Postfix SASL_README.

pub mod auth_session;
pub mod authenticate;
pub mod bruteforce;
pub mod dict_session;
pub mod login_cache;
pub mod proto;
pub mod reply;
pub mod userdb;

use authenticate::Authenticator;
use bruteforce::BruteForce;
use login_cache::LoginCache;
use postwerk_core::config::Config;
use postwerk_core::db::Db;
use postwerk_core::service::{self, Limits, Listener};
use std::future::Future;
use std::sync::Arc;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use userdb::Userdb;

/// The bound listeners, per protocol.
#[derive(Debug, Default)]
pub struct Listeners {
    /// auth-client listeners.
    pub auth: Vec<Listener>,
    /// dict listeners.
    pub dict: Vec<Listener>,
}

/// Binds every listener of `[authd]`.
pub async fn bind(cfg: &Config) -> Result<Listeners, service::ListenError> {
    let a = &cfg.authd;
    let mut l = Listeners::default();
    for addr in &a.auth_listen {
        l.auth.push(service::bind(addr, &a.service.unix).await?);
    }
    for addr in &a.dict_listen {
        l.dict.push(service::bind(addr, &a.service.unix).await?);
    }
    Ok(l)
}

/// What the sessions of both services share.
#[derive(Debug)]
pub struct Shared {
    /// auth-client sessions.
    pub auth: Arc<auth_session::Shared>,
    /// dict sessions.
    pub dict: Arc<dict_session::Shared>,
}

/// Builds what sessions share from a config. The pool connects lazily, so
/// a database outage at start means temporary failures, not a crash loop.
pub fn shared(cfg: &Config) -> Result<Arc<Shared>, postwerk_core::db::DbError> {
    let db = Db::connect_lazy(&cfg.database, false)?;
    let a = &cfg.authd;
    let authenticator = Authenticator::new(
        db.clone(),
        cfg.mail.default_pass_scheme,
        a.verify_parallelism,
        a.lookup_timeout,
        BruteForce::new(a.bruteforce.clone()),
        LoginCache::new(a.login_cache_ttl),
    )
    .with_username_chars(&cfg.mail.username_chars);
    Ok(Arc::new(Shared {
        auth: Arc::new(auth_session::Shared::new(
            Arc::new(authenticator),
            a.failure_delay,
            a.plaintext_on_insecure,
            a.service.idle_timeout,
        )),
        dict: Arc::new(dict_session::Shared {
            userdb: Userdb::new(db, a.home.clone(), a.uid, a.gid, a.lookup_timeout),
            idle_timeout: a.service.idle_timeout,
        }),
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
        listeners.auth,
        limits,
        &stop,
        move |stream, _peer, token| auth_session::serve(stream, cur.borrow().auth.clone(), token),
    ));
    let cur = current;
    servers.extend(service::protocol(
        listeners.dict,
        limits,
        &stop,
        move |stream, _peer, token| dict_session::serve(stream, cur.borrow().dict.clone(), token),
    ));
    service::serve_all(servers, stop, shutdown).await
}

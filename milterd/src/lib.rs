//! postwerk-milterd — the milter Postfix talks to: DKIM-signs and
//! ARC-seals outgoing mail of the guide's vmail domains, verifies incoming
//! mail (SPF, DKIM, ARC, DMARC), ARC-seals what an alias forwards off-site
//! and scores incoming mail for spam (the guide's Rspamd).
//!
//! # What it does
//! Replaces the signing half of the guide's Rspamd milter. For each
//! message Postfix hands it, it decides **outgoing** (the client
//! authenticated: `{auth_authen}`; or Postfix's `{daemon_name}` is
//! `ORIGINATING`, which the guide's submission and smtps services set; or
//! the client is in `trusted_networks`) versus **incoming**. Outgoing mail
//! whose `From:` domain is in the `domains` table is signed with every
//! configured selector's key (RSA-SHA256 and/or Ed25519-SHA256,
//! relaxed/relaxed, `From`, `To` and `Subject` over-signed), also when the
//! sender is an alias of the login (Rspamd's `allow_username_mismatch`).
//! A domain without a key file passes unsigned and the log names the file
//! it looked for.
//!
//! Incoming mail is verified with mail-auth: SPF for the HELO name and the
//! envelope sender (client address from the connect packet or
//! `{client_addr}`), every DKIM signature, the ARC chain (RFC 8617;
//! `arc=pass`, `fail`, `none` or `temperror`), DMARC policy and alignment.
//! One
//! `Authentication-Results:` with our authserv-id (`[milterd.verify]
//! .authserv_id`, default the host name) is inserted at the top; incoming
//! `Authentication-Results:` fields that claim our authserv-id are forged
//! and removed first (milter `m`, RFC 8601 §5). A message that fails DMARC
//! for a domain with `p=reject` is rejected at end of data with `550 5.7.1`
//! (`dmarc_reject_action = "reject"`, the default), or flagged
//! `X-Spam-Flag: YES` for the guide's Junk Sieve rule (`"header"`), or only
//! marked (`"mark"`). DNS goes to `dns_servers` (default
//! /etc/resolv.conf); a query times out after `dns_timeout`, the whole
//! verification after `[milterd.verify].timeout`; a timeout or SERVFAIL is
//! a `temperror` result, the message is never held up beyond that.
//!
//! # ARC sealing
//! As the guide's Rspamd `arc.conf` (same key path and selector as
//! `dkim_signing.conf`), milterd adds an ARC set (`ARC-Seal`,
//! `ARC-Message-Signature`, `ARC-Authentication-Results`, RFC 8617) at the
//! top of:
//! - incoming mail for one of our aliases that forwards to a domain that
//!   is not ours (`[milterd.arc].seal_forwarded`). milterd sees the
//!   recipients before Postfix's virtual alias expansion, so it resolves
//!   them in the alias table as policyd does (an account hides its
//!   aliases, a named alias beats the catch-all, `user+tag@` falls back to
//!   `user@`, aliases of our domains are followed). `d=` is the alias's
//!   domain; the `ARC-Authentication-Results` are our verification
//!   results; `cv=` follows the chain the message arrived with (`none`
//!   for the first set, `pass` or `fail`); a chain that has already
//!   failed is not extended, and one that could not be checked (DNS
//!   timeout or SERVFAIL: `arc=temperror`) passes unsealed rather than
//!   being ended with `cv=fail` over a passing outage;
//! - outgoing signed mail (`seal_outgoing`), `d=` the `From:` domain.
//!
//! The key is `[milterd.arc].selector` at `[milterd.arc].path`, by default
//! the first RSA key of the DKIM selectors (ARC allows only rsa-sha256). A
//! domain without such a key passes unsealed and the log names the files;
//! a key that exists but cannot be used, or a failed alias lookup, answers
//! `seal_error_action` (default tempfail).
//!
//! # Spam scoring
//! Incoming mail (not from `[milterd.spam].local_networks`) is scored by
//! [`spam::Scanner`]: local rules (GTUBE, header sanity, encoded-subject
//! abuse, forged MUA headers, HTML-only / image-only mail, URL
//! shorteners), the SPF/DKIM/DMARC results as symbols, multimap lists in
//! Rspamd's map format, DNS lists, Bayes (Redis or in-process), then
//! greylisting. Actions as Rspamd's defaults: `reject` at 15 (`554 5.7.1`
//! with the reason), `add header` at 6 (`X-Spam: Yes`, `X-Spam-Flag:
//! YES`), `greylist` at 4 (`451 4.7.1 Try again later`). Every scored
//! message gets `X-Spamd-Bar`, `X-Spam-Level`, `X-Spam-Status` and
//! `X-Spamd-Result`; copies from outside are removed (milter `m`) first.
//! `shadow = true` scores and logs (next to the verdict another filter put
//! in the headers) without acting. Redis down: `BAYES_FAIL`, in-process
//! greylisting; DNS lists time out after `dnsbl_timeout`; all network work
//! of a message shares `[milterd.spam].timeout`.
//!
//! The rspamc-compatible controller (`[milterd.spam.controller].listen`,
//! see [`controller`]) serves `rspamc symbols/learn_spam/learn_ham/stat`,
//! so the guide's imapsieve pipes train milterd unchanged, plus a web view
//! (`/`), `/history` and Prometheus `/metrics`.
//!
//! # main.cf
//! ```text
//! smtpd_milters     = inet:localhost:11332
//! non_smtpd_milters = inet:localhost:11332
//! milter_protocol = 6
//! milter_default_action = accept
//! # master.cf, submission and smtps, as in the guide:
//! #   -o milter_macro_daemon_name=ORIGINATING
//! ```
//! These are the guide's lines for Rspamd, unchanged. A UNIX socket
//! (`listen = ["unix:/var/spool/postfix/milterd/milterd.sock"]`,
//! `smtpd_milters = unix:milterd/milterd.sock`) saves the TCP overhead.
//! See `contrib/postfix/main.cf.milterd`.
//!
//! # Protocol
//! Milter protocol 6 as Postfix 3.7 speaks it (`shared/reference/milter.md`).
//! milterd negotiates only what it needs: the connect, HELO, MAIL, RCPT
//! (recipients for greylisting), header, end of header, body and end of
//! message steps, no replies to connect, HELO, MAIL, RCPT, header and body
//! packets, the add and change header actions, header values with their leading space
//! (HDR_LEADSPC, so the signed bytes are the stored bytes), and the macros
//! `{daemon_name} {client_addr} {client_name}` at connect, `i {auth_authen}
//! {auth_type} {mail_addr}` at MAIL. `DKIM-Signature` is inserted at index
//! 0, the top of the message, and so is `Authentication-Results`.
//!
//! # Milter library: indymilter
//! We compared indymilter 0.3 (GPL-3.0-or-later, tokio) and miltr-server
//! 0.2 (MIT, with miltr-client). We use **indymilter**:
//! - it implements the parts of the protocol we rely on: the no-reply
//!   (`NR_*`) options (miltr-server answers every packet, so negotiating
//!   them would break the protocol, and not negotiating them costs a round
//!   trip per header), HDR_LEADSPC, SKIP, macro requests per stage;
//! - its session is a state machine with explicit transitions
//!   (`State::can_reach`), it bounds packets (1 MiB) and times out every
//!   read and write, and it is tested against libmilter and OpenDKIM's
//!   miltertest;
//! - it is tokio-native (miltr-server is written for `futures` I/O and
//!   needs a compat layer), and STYLE.md's design assumed it.
//!
//! miltr-client would have been handy in tests; our in-process tests use a
//! small milter client of their own instead (`tests/inprocess.rs`). The
//! licence: GPL-3.0-or-later code may be combined with our AGPL-3.0-only
//! code (GPLv3 §13 / AGPLv3 §13); the combined binary is AGPL-3.0-only.
//! indymilter has its own accept loop; we give it one connection at a time
//! from our shared `service::serve` (`session.rs`), so listeners, limits,
//! drain and logging are the same as in every postwerk daemon.
//!
//! # Keys
//! `[milterd.dkim].path` with `$domain` and `$selector`, as Rspamd's
//! `dkim_signing.conf` (the guide's `/var/lib/rspamd/dkim/$selector.key`
//! is the default, selector `2020`), so a migrating admin keeps keys and
//! DNS records. PEM PKCS#1 or PKCS#8 RSA, PKCS#8 Ed25519, or Rspamd's
//! base64 Ed25519 keys. `postwerk dkim keygen` makes them, `postwerk dkim
//! show` prints the DNS records. A changed key file is picked up at the
//! next message; a new selector takes effect on SIGHUP.
//!
//! # Security
//! Runs as its own user, which needs read access to the key files (mode
//! 0440, group of that user) and SELECT on the database. Listen on loopback
//! or a UNIX socket only: anyone who can talk milter to it can get
//! messages signed.
//!
//! # Config (`[milterd]` in postwerk.toml)
//! `listen`, `socket_mode`, `socket_owner`, `socket_group`,
//! `max_connections`, `idle_timeout`, `shutdown_timeout`,
//! `trusted_networks`, `originating_daemon_name`, `max_header_size`,
//! `max_headers`, `max_message_size`, `error_action` (accept / tempfail /
//! reject, default accept), `sign_parallelism`, `lookup_cache_ttl`
//! (default 10s: how long "is this domain ours?" and "does this recipient
//! forward off-site?" answers of the database are reused; 0 = never, at
//! most 5m; a new domain is signed for within this time); `[milterd.dkim]`: `sign`,
//! `selector` (one or a list), `path`, `allow_username_mismatch`,
//! `sign_headers`, `oversign_headers`, `sign_error_action` (default
//! tempfail: a domain with a key never silently leaves unsigned).
//! `dns_servers`, `dns_timeout` (default 5s); `[milterd.verify]`:
//! `enabled`, `authserv_id`, `dmarc_reject_action` (reject / header /
//! mark), `timeout` (default 30s); `[milterd.arc]`: `seal_forwarded`,
//! `seal_outgoing` (default true and false, as Rspamd's arc module), `selector`, `path` (default: the
//! DKIM ones), `seal_error_action` (default tempfail). `[milterd.spam]`: `enabled`, `shadow`,
//! `redis_url`, `redis_prefix`, `timeout`, `dnsbl_timeout`,
//! `dnsbl_cache_ttl`, `local_networks`; `[milterd.spam.actions]`: `reject`,
//! `add_header`, `greylist` (a score or false); `[milterd.spam.symbols]`:
//! weight per symbol; `[milterd.spam.greylist]`: `delay`, `expire`;
//! `[milterd.spam.bayes]`: `enabled`, `autolearn`,
//! `autolearn_spam_score`, `autolearn_ham_score`, `min_learns`, `file`,
//! `per_user`;
//! `[milterd.spam.controller]`: `listen`, `password(_file)`,
//! `enable_password(_file)`, `secure_ip`, `timeout`;
//! `[[milterd.spam.multimap]]`: `name`, `type` (ip / from / header_from),
//! `map`, `score`, `description`, `action`, `filter`;
//! `[[milterd.spam.dnsbl]]`: `name`, `type` (ip / url), `zone`, `score`,
//! `description`. Example with the guide's Rspamd settings:
//! `contrib/milterd/spam.toml`.
//!
//! # Limitations
//! ARC: Rspamd's arc module (`sign_inbound`) seals all incoming mail for
//! our domains; milterd seals only what leaves again through an alias,
//! since a seal on mail that stays is read by nobody. The
//! `ARC-Authentication-Results` of outgoing mail carry only `arc=` (Rspamd
//! writes its `auth=` result; mail-auth has no builder for it). A sealed
//! message is parsed twice (verification, then sealing on the blocking
//! pool). Outgoing (authenticated) mail is
//! not spam-scored. Per-user Bayes statistics (`per_user`) need Redis
//! and use the first envelope recipient of a message; the in-process Bayes store (no `redis_url`) keeps its
//! counts across restarts only with `[milterd.spam.bayes].file`, and
//! loses up to 5 seconds of learning when the process stops. Multimap types other than ip,
//! from and header_from, regexp/glob maps and HTTP maps are not
//! supported. DMARC `pct=` sampling is not
//! applied (every failure counts) and no DMARC reports are sent. A message
//! over the buffering limits is not verified: forged
//! `Authentication-Results` are still removed, then `error_action`
//! applies. The message is buffered in memory for signing and
//! verification, up to `max_message_size`. Mail submitted with sendmail(1) is outgoing only if
//! cleanup's `{daemon_name}` or the client address says so.
//!
//! # See also
//! postwerk(8), postwerk-policyd(8), Postfix MILTER_README, RFC 6376, RFC 8463,
//! RFC 7208, RFC 7489, RFC 8601, RFC 8617.

pub mod arc;
pub mod controller;
pub mod filter;
pub mod keys;
pub mod lookups;
pub mod reply;
pub mod session;
pub mod sign;
pub mod spam;
pub mod verify;

pub use filter::Shared;
use postwerk_core::config::Config;
use postwerk_core::db::{Db, DbError};
use postwerk_core::service::{self, Limits, Listener};
use sign::Signer;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use verify::{Verifier, VerifyError};

/// The bound listeners: milter, and the rspamc-compatible controller.
#[derive(Debug, Default)]
pub struct Listeners {
    /// `[milterd].listen`.
    pub milter: Vec<Listener>,
    /// `[milterd.spam.controller].listen`.
    pub controller: Vec<Listener>,
}

/// Binds every listener of `[milterd]`.
pub async fn bind(cfg: &Config) -> Result<Listeners, service::ListenError> {
    let m = &cfg.milterd;
    let mut out = Listeners::default();
    for a in &m.listen {
        out.milter.push(service::bind(a, &m.service.unix).await?);
    }
    for a in &m.spam.controller.listen {
        out.controller
            .push(service::bind(a, &m.service.unix).await?);
    }
    Ok(out)
}

/// Why [`shared`] failed.
#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    /// The database pool could not be set up.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The DNS resolver could not be set up.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// The spam scanner could not be set up (e.g. an unknown symbol in
    /// `[milterd.spam.symbols]`).
    #[error(transparent)]
    Spam(#[from] spam::SpamError),
}

/// Builds what sessions share from a config. The pool connects lazily, so
/// a database outage at start means `sign_error_action`, not a crash loop;
/// the resolver, too, only talks to DNS when a message needs it.
pub fn shared(cfg: &Config) -> Result<Arc<Shared>, SharedError> {
    let db = Db::connect_lazy(&cfg.database, false)?;
    let m = &cfg.milterd;
    let signer = Arc::new(Signer::new(
        m.dkim.clone(),
        db,
        m.sign_parallelism,
        m.lookup_cache_ttl,
    ));
    Ok(Arc::new(Shared {
        cfg: m.clone(),
        sealer: Arc::new(arc::Sealer::new(
            m.arc.clone(),
            Arc::clone(&signer),
            cfg.mail.recipient_delimiter.clone(),
            m.lookup_cache_ttl,
        )),
        signer,
        verifier: Arc::new(Verifier::new(m)?),
        scanner: Arc::new(spam::Scanner::new(&m.spam, &m.dns_servers)?),
    }))
}

/// Serves every listener until `shutdown` resolves, then drains. Each new
/// connection takes the current [`Shared`], so a reload applies to new
/// connections while open ones finish with what they had.
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
        listeners.milter,
        limits,
        &stop,
        move |stream, _peer, token| {
            let shared = cur.borrow().clone();
            session::milter(stream, shared, token)
        },
    ));
    servers.extend(service::protocol(
        listeners.controller,
        limits,
        &stop,
        move |stream, peer, token| {
            let shared = current.borrow().clone();
            controller::serve(stream, peer, shared, token)
        },
    ));
    service::serve_all(servers, stop, shutdown).await
}

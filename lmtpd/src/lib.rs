//! postwerk-lmtpd — LMTP delivery into Dovecot's Maildir, with the guide's
//! quota and Sieve, on the guide's vmail database.
//!
//! # What it does
//! Takes the mail Postfix hands to its `virtual_transport` over LMTP
//! (RFC 2033) and files it where the guide's Dovecot reads it:
//! `/var/vmail/mailboxes/%d/%n/mail`, Maildir with `LAYOUT=fs`. For every
//! RCPT it asks the database whether an enabled, receiving (not send-only)
//! account exists; `user+tag@domain` goes to `user@domain`, the tag stays
//! visible to Sieve (`envelope :detail`) and in `Delivered-To:`. It keeps
//! Dovecot's maildir++ `maildirsize` up to date and refuses mail over the
//! account's `quota` (MB, 0 = unlimited). It runs the global
//! `sieve_before` scripts (the guide's `spam-global.sieve`), then the
//! user's active script as ManageSieve wrote it, then `sieve_after`, with
//! sieve-rs. It creates the folders the guide auto-subscribes (Spam,
//! Trash, Drafts, Sent) and keeps the `subscriptions` file. Each recipient
//! gets `250` only after its copy is fsynced and renamed into place.
//!
//! # main.cf
//! ```text
//! virtual_transport = lmtp:unix:private/lmtpd
//! ```
//! (replaces the guide's `lmtp:unix:private/dovecot-lmtp`; Dovecot keeps
//! serving IMAP and ManageSieve on the same mailboxes. `protocols` in
//! dovecot.conf may drop `lmtp`.) See `contrib/postfix/main.cf.lmtpd` and
//! `contrib/dovecot/lmtpd.md`.
//!
//! # Protocol
//! LMTP as Postfix 3.7's `lmtp` client speaks it and as Dovecot 2.3's LMTP
//! answers, captured in `shared/reference/lmtp-maildir.md`. LHLO offers
//! PIPELINING, ENHANCEDSTATUSCODES, 8BITMIME, SIZE and SMTPUTF8 (no
//! CHUNKING, no DSN). Replies: unknown or send-only recipient `550 5.1.1`,
//! full mailbox `552 5.2.2` with `quota_exceeded_message` (or `452 4.2.2`
//! with `quota_full_tempfail`), database down `451 4.3.0` (Postfix retries,
//! never bounces), oversize `552 5.3.4`, disk full `452 4.3.1`, other
//! write errors `451 4.3.0`, Sieve `reject` `550 5.7.1`.
//!
//! # Security
//! Run it as the mail user (`vmail`), or as root so that it can chown what
//! it writes to `mail_user`/`mail_group`. Its UNIX socket belongs in
//! Postfix's `private/` with mode 0660 and owner/group `postfix`. Never
//! listen with LMTP on a public address: it delivers without
//! authentication. It only reads the database.
//!
//! # Config (`[lmtpd]` in postwerk.toml)
//! `listen`, `socket_mode`, `socket_owner`, `socket_group`,
//! `max_connections`, `idle_timeout`, `shutdown_timeout`, `hostname`,
//! `mail_home` (`%d` `%n` `%u`), `mail_dir`, `mail_user`, `mail_group`,
//! `autocreate`, `autosubscribe`, `max_message_size`, `max_line_length`,
//! `max_recipients`, `max_header_lines`, `quota_exceeded_message`,
//! `quota_full_tempfail`, `add_received_header`, `sieve`, `sieve_before`,
//! `sieve_script`, `sieve_after`, `sieve_max_instructions`,
//! `sieve_max_redirects`, `sendmail_path`, `quota_warning` (levels in percent, e.g. `[80, 95]`: one warning mail per crossing, from the null sender); `[mail].recipient_delimiter`.
//! SIGHUP re-reads the file for new sessions; listener changes need a
//! restart.
//!
//! # Limitations
//! No CHUNKING/BDAT and no DSN. Sieve `include` is not supported (the
//! script is then skipped and the mail kept). Quota counts storage only
//! (no message-count limit), as the guide configures it. Redirect,
//! vacation and quota warnings go through `sendmail_path` (killed after
//! 60 s).
//!
//! # See also
//! postwerk(8), postwerk-policyd(8), Postfix lmtp(8), Dovecot's
//! Quota.Maildir and Pigeonhole documentation.

pub mod deliver;
pub mod lookup;
pub mod maildir;
pub mod proto;
pub mod quota;
pub mod reply;
pub mod session;
pub mod sieve;

use maildir::Owner;
use postwerk_core::config::Config;
use postwerk_core::db::Db;
use postwerk_core::service::{self, Limits, Listener};
use session::Shared;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Our deadline for one RCPT database lookup.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Binds every listener of `[lmtpd]`.
pub async fn bind(cfg: &Config) -> Result<Vec<Listener>, service::ListenError> {
    let mut out = Vec::new();
    for a in &cfg.lmtpd.listen {
        out.push(service::bind(a, &cfg.lmtpd.service.unix).await?);
    }
    Ok(out)
}

/// Builds what sessions share from a config. The pool connects lazily, so
/// a database outage at start means 451 answers, not a crash loop.
pub fn shared(cfg: &Config) -> Result<Arc<Shared>, postwerk_core::db::DbError> {
    let db = Db::connect_lazy(&cfg.database, false)?;
    let l = &cfg.lmtpd;
    let owner = Owner {
        uid: l.mail_uid,
        gid: l.mail_gid,
    };
    let engine = sieve::Engine::new(
        &l.hostname,
        sieve::Limits {
            max_instructions: l.sieve_max_instructions,
            max_redirects: l.sieve_max_redirects,
        },
    );
    Ok(Arc::new(Shared {
        db,
        lookup: lookup::Settings {
            delimiters: cfg.mail.recipient_delimiter.clone(),
            username_chars: cfg.mail.username_chars.clone(),
            mail_home: l.mail_home.clone(),
            mail_dir: l.mail_dir.clone(),
            timeout: LOOKUP_TIMEOUT,
            owner,
        },
        deliver: deliver::Settings {
            hostname: l.hostname.clone(),
            owner,
            autocreate: l.autocreate.clone(),
            autosubscribe: l.autosubscribe,
            sieve: l.sieve,
            sieve_before: l.sieve_before.clone(),
            sieve_script: l.sieve_script.clone(),
            sieve_after: l.sieve_after.clone(),
            sendmail_path: l.sendmail_path.clone(),
            quota_warning: l.quota_warning.clone(),
            add_received_header: l.add_received_header,
        },
        sieve: Arc::new(engine),
        idle_timeout: l.service.idle_timeout,
        max_message_size: l.max_message_size,
        max_line_length: l.max_line_length,
        max_header_lines: l.max_header_lines,
        max_recipients: l.max_recipients,
        quota_exceeded_message: l.quota_exceeded_message.clone(),
        quota_full_tempfail: l.quota_full_tempfail,
    }))
}

/// Serves `listeners` until `shutdown` resolves, then drains. Each new
/// connection takes the current [`Shared`] from `current`, so a reload
/// applies to new sessions while open ones finish with what they had.
pub async fn run(
    limits: Limits,
    listeners: Vec<Listener>,
    current: watch::Receiver<Arc<Shared>>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), service::ServeError> {
    service::serve(listeners, limits, shutdown, move |stream, peer, token| {
        let shared = current.borrow().clone();
        session::run(stream, peer, shared, token)
    })
    .await
}

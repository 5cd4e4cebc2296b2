//! LOGIC: is `RCPT TO` a mailbox we deliver to, where is it, and is it
//! full? Database through `postwerk_core::db` (the guide's
//! `virtual_mailbox_maps` semantics: enabled, not send-only), quota from
//! `maildirsize`. Knows nothing about bytes on the wire.

use crate::maildir::Owner;
use crate::quota;
use postwerk_core::address::{Address, usable_user_name};
use postwerk_core::db::{Db, DbError};
use std::path::PathBuf;
use std::time::Duration;

/// An accepted recipient.
#[derive(Debug, Clone)]
pub struct Mailbox {
    /// RCPT TO as the client wrote it (for replies and `Delivered-To:`).
    pub rcpt: String,
    /// The account: `user@domain` without the detail, normalised.
    pub account: Address,
    /// The `+detail`, if any (for Sieve's `subaddress`).
    pub detail: Option<String>,
    /// The user's home (`mail_home` expanded).
    pub home: PathBuf,
    /// The Maildir root (INBOX).
    pub root: PathBuf,
    /// Storage limit in bytes; 0 = unlimited.
    pub quota_bytes: u64,
}

/// The answer to one RCPT.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// Deliverable.
    Accept(Mailbox),
    /// No enabled account with a mailbox (unknown or send-only).
    NoSuchUser,
    /// An account whose name Dovecot cannot use (`[mail].username_chars`):
    /// its mail could never be read, so it is refused like policyd does.
    UnusableName,
    /// The mailbox is full already.
    OverQuota(Mailbox),
    /// Not an address we can parse.
    BadAddress,
}

/// A failure to decide; always temporary for the peer.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The database did not answer in time.
    #[error("database lookup timed out after {0:?}")]
    Timeout(Duration),
    /// Reading `maildirsize` or the Maildir failed.
    #[error("reading the quota of {user} failed: {source}")]
    Storage {
        /// Whose.
        user: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An account name that must not become a path (`/`, leading dot).
    #[error("account {0} cannot be mapped to a home directory safely")]
    UnsafeName(String),
}

/// Expands `%d`, `%n`, `%u`, `%%` in a `mail_home` / `sieve_script`
/// template.
pub fn expand(template: &str, account: &Address) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(account.domain()),
            Some('n') => out.push_str(account.local()),
            Some('u') => out.push_str(&account.to_string()),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// What the lookup needs from the config.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `recipient_delimiter`.
    pub delimiters: String,
    /// `[mail].username_chars` (Dovecot's `auth_username_chars`).
    pub username_chars: String,
    /// `mail_home` template.
    pub mail_home: String,
    /// Maildir root below the home.
    pub mail_dir: String,
    /// Our deadline for the database.
    pub timeout: Duration,
    /// Owner for a recalculated `maildirsize`.
    pub owner: Owner,
}

/// Decides one RCPT.
pub async fn recipient(db: &Db, s: &Settings, rcpt: &str) -> Result<Verdict, LookupError> {
    let Ok(addr) = Address::parse(rcpt) else {
        return Ok(Verdict::BadAddress);
    };
    let (account, detail) = addr.split_detail(&s.delimiters);
    let row = tokio::time::timeout(
        s.timeout,
        db.enabled_account(account.local(), account.domain()),
    )
    .await
    .map_err(|_| LookupError::Timeout(s.timeout))??;
    let Some(row) = row else {
        return Ok(Verdict::NoSuchUser);
    };
    if row.sendonly {
        return Ok(Verdict::NoSuchUser);
    }
    if !usable_user_name(&account, &s.username_chars) {
        return Ok(Verdict::UnusableName);
    }
    let unsafe_part = |p: &str| p.contains('/') || p.starts_with('.') || p.contains('\0');
    if unsafe_part(account.local()) || unsafe_part(account.domain()) {
        return Err(LookupError::UnsafeName(account.to_string()));
    }
    let home = PathBuf::from(expand(&s.mail_home, &account));
    let root = home.join(&s.mail_dir);
    let quota_bytes = u64::try_from(row.quota_mb.max(0))
        .unwrap_or(0)
        .saturating_mul(1024 * 1024);
    let mailbox = Mailbox {
        rcpt: rcpt.to_owned(),
        account,
        detail,
        home,
        root,
        quota_bytes,
    };
    if quota_bytes == 0 {
        return Ok(Verdict::Accept(mailbox));
    }
    let (root, owner) = (mailbox.root.clone(), s.owner);
    let usage = tokio::task::spawn_blocking(move || {
        if root.is_dir() {
            quota::usage(&root, quota_bytes, owner)
        } else {
            Ok(quota::Usage::default())
        }
    })
    .await
    .map_err(|e| LookupError::Storage {
        user: mailbox.account.to_string(),
        source: std::io::Error::other(e.to_string()),
    })?
    .map_err(|source| LookupError::Storage {
        user: mailbox.account.to_string(),
        source,
    })?;
    // Dovecot's lmtp_rcpt_check_quota: refuse at RCPT when already full;
    // the size of this message is checked again after DATA.
    if usage.bytes >= 0 && usage.bytes as u64 >= quota_bytes {
        return Ok(Verdict::OverQuota(mailbox));
    }
    Ok(Verdict::Accept(mailbox))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        let a = Address::parse("User@Example.ORG").unwrap();
        assert_eq!(
            expand("/var/vmail/mailboxes/%d/%n", &a),
            "/var/vmail/mailboxes/example.org/user"
        );
        assert_eq!(expand("/x/%u/100%%/%z", &a), "/x/user@example.org/100%/%z");
    }
}

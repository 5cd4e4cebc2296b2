//! LOGIC: one message to one accepted recipient: the headers Dovecot's
//! LMTP adds, auto-created folders, the quota check with this message's
//! size, Sieve, and the Maildir writes; only returns success once every
//! copy is fsynced and renamed. Blocking I/O and CPU: [`deliver`] runs in
//! `spawn_blocking`. No protocol here; the session maps the result with
//! `reply.rs`.

use crate::lookup::{Mailbox, expand};
use crate::maildir::{self, Flags, Owner};
use crate::quota;
use crate::sieve::{self, Action, Engine, RunEnv};
use postwerk_core::config::lmtpd::check_folder_name;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tracing::{error, warn};

/// What the delivery needs from the config.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Our host name (`Received:`, file names).
    pub hostname: String,
    /// Owner of what we write.
    pub owner: Owner,
    /// Folders created and subscribed when missing.
    pub autocreate: Vec<String>,
    /// Subscribe them too.
    pub autosubscribe: bool,
    /// Whether Sieve runs.
    pub sieve: bool,
    /// `sieve_before` scripts.
    pub sieve_before: Vec<PathBuf>,
    /// The user's active script template.
    pub sieve_script: String,
    /// `sieve_after` scripts.
    pub sieve_after: Vec<PathBuf>,
    /// sendmail(1) for redirect / vacation / quota warnings.
    pub sendmail_path: PathBuf,
    /// Quota warning levels in percent, ascending (empty: none).
    pub quota_warning: Vec<u8>,
    /// Add a `Received:` header.
    pub add_received_header: bool,
}

/// The transaction, as the session saw it.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// MAIL FROM (empty for bounces).
    pub from: String,
    /// The client's LHLO name.
    pub lhlo: String,
    /// The client's IP, if TCP.
    pub client_ip: Option<String>,
    /// Our session id (in `Received:` and the 250 reply).
    pub session_id: String,
}

/// Where one recipient's copy went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    /// Stored into these folders (`INBOX`, `Spam`, …).
    Stored(Vec<String>),
    /// Sieve discarded it.
    Discarded,
    /// Sieve rejected it with this reason.
    Rejected(String),
    /// Storing it would exceed the quota.
    OverQuota,
}

/// A delivery that failed for a reason the peer should retry.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// Disk full or over the filesystem quota (ENOSPC, EDQUOT): `452 4.3.1`.
    #[error("no space left for {user}: {source}")]
    NoSpace {
        /// Whose mailbox.
        user: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Any other I/O failure: `451 4.3.0`.
    #[error("writing the mailbox of {user} failed: {source}")]
    Io {
        /// Whose mailbox.
        user: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The delivery task died (a bug): `451 4.3.0`.
    #[error("delivery task failed: {0}")]
    Task(String),
}

impl postwerk_core::error::Transient for DeliveryError {
    fn transience(&self) -> postwerk_core::error::Transience {
        match self {
            DeliveryError::NoSpace { .. } | DeliveryError::Io { .. } | DeliveryError::Task(_) => {
                postwerk_core::error::Transience::Temporary
            }
        }
    }
}

fn io_error(user: &str, source: io::Error) -> DeliveryError {
    let no_space = matches!(source.raw_os_error(), Some(c) if c == nix::libc::ENOSPC || c == nix::libc::EDQUOT);
    if no_space {
        DeliveryError::NoSpace {
            user: user.to_owned(),
            source,
        }
    } else {
        DeliveryError::Io {
            user: user.to_owned(),
            source,
        }
    }
}

/// RFC 5322 date (`Sun, 29 Nov 2026 05:37:03 +0000`) for `secs` since the
/// epoch, in UTC.
pub fn rfc5322_date(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{}, {} {} {} {:02}:{:02}:{:02} +0000",
        DAYS[(days.rem_euclid(7)) as usize],
        d,
        MONTHS[(m - 1) as usize],
        y,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The headers Dovecot's LMTP puts on top (reference §1.3), LF line ends.
pub fn trace_headers(env: &Envelope, rcpt: &str, hostname: &str, with_received: bool) -> String {
    let mut h = format!("Return-Path: <{}>\nDelivered-To: {}\n", env.from, rcpt);
    if with_received {
        let from = match &env.client_ip {
            Some(ip) => format!("{} ([{ip}])", env.lhlo),
            None => env.lhlo.clone(),
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        h.push_str(&format!(
            "Received: from {from}\n\tby {hostname} with LMTP\n\tid {}\n\t(envelope-from <{}>)\n\tfor <{rcpt}>; {}\n",
            env.session_id,
            env.from,
            rfc5322_date(now)
        ));
    }
    h
}

/// The per-user state Sieve consults.
struct UserBoxes<'a> {
    root: &'a Path,
    home: &'a Path,
    owner: Owner,
}

impl sieve::Mailboxes for UserBoxes<'_> {
    fn exists(&self, folder: &str) -> bool {
        folder.eq_ignore_ascii_case("INBOX")
            || (check_folder_name(folder).is_ok()
                && maildir::is_maildir(&maildir::folder_dir(self.root, folder)))
    }

    fn seen_before(&self, id: &str, expiry: u64) -> bool {
        match seen_before(self.home, id, expiry, self.owner) {
            Ok(seen) => seen,
            Err(e) => {
                // Err on the side of not sending another auto-reply.
                warn!(error = %e, "duplicate/vacation memory unavailable; treating as seen");
                true
            }
        }
    }
}

/// The vacation/duplicate memory: `<home>/.postwerk-duplicates`, lines
/// `<expires unix secs> <id>`; expired lines are dropped when rewriting.
fn seen_before(home: &Path, id: &str, expiry: u64, owner: Owner) -> io::Result<bool> {
    let path = home.join(".postwerk-duplicates");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let id = id.replace(['\n', '\r'], " ");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let mut keep = String::new();
    let mut seen = false;
    for line in text.lines() {
        let Some((exp, lid)) = line.split_once(' ') else {
            continue;
        };
        let Ok(exp) = exp.parse::<u64>() else {
            continue;
        };
        if exp <= now {
            continue;
        }
        if lid == id {
            seen = true;
        }
        keep.push_str(line);
        keep.push('\n');
    }
    if !seen {
        keep.push_str(&format!("{} {id}\n", now.saturating_add(expiry.max(1))));
        maildir::make_dirs(home, owner)?;
        let tmp = home.join(format!(
            ".postwerk-duplicates.{}",
            maildir::unique_name("lmtpd")
        ));
        std::fs::write(&tmp, keep)?;
        owner.apply(&tmp)?;
        std::fs::rename(&tmp, &path)?;
    }
    Ok(seen)
}

/// Creates the configured folders if missing and subscribes them.
fn autocreate(root: &Path, s: &Settings) -> io::Result<()> {
    let missing: Vec<&str> = s
        .autocreate
        .iter()
        .map(String::as_str)
        .filter(|f| !maildir::is_maildir(&maildir::folder_dir(root, f)))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    for f in &missing {
        maildir::ensure_maildir(&maildir::folder_dir(root, f), s.owner)?;
    }
    if s.autosubscribe {
        maildir::subscribe(root, &missing, s.owner)?;
    }
    Ok(())
}

/// Loads the scripts for one user; a broken one is logged and skipped.
fn scripts(engine: &Engine, s: &Settings, mb: &Mailbox) -> Vec<(String, Arc<::sieve::Sieve>)> {
    let user_script = PathBuf::from(expand(&s.sieve_script, &mb.account));
    let paths = s
        .sieve_before
        .iter()
        .chain(std::iter::once(&user_script))
        .chain(s.sieve_after.iter());
    let mut out = Vec::new();
    for p in paths {
        match engine.load(p) {
            Ok(Some(script)) => out.push((p.display().to_string(), script)),
            Ok(None) => {}
            Err(e) => {
                error!(user = %mb.account, error = %e, "sieve script unusable; skipped, mail is kept")
            }
        }
    }
    out
}

/// How long sendmail(1) may take: Postfix's sendmail only hands the
/// message to the local queue, so this is generous.
pub const SENDMAIL_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

/// Sends a redirect, vacation or quota-warning message through
/// sendmail(1), killing it after [`SENDMAIL_DEADLINE`].
fn send(s: &Settings, from: &str, to: &str, message: &[u8]) -> io::Result<()> {
    use std::io::{Read, Write};
    let mut child = Command::new(&s.sendmail_path)
        .args([
            "-i",
            "-f",
            if from.is_empty() { "<>" } else { from },
            "--",
            to,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(message)?;
    }
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > SENDMAIL_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("sendmail did not finish within {SENDMAIL_DEADLINE:?}"),
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    if status.success() {
        Ok(())
    } else {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        Err(io::Error::other(format!(
            "sendmail exited with {status}: {}",
            err.trim()
        )))
    }
}

/// Delivers `body` (LF line ends) to `mb`. Returns only after every copy
/// is durable.
pub fn deliver(
    engine: &Engine,
    s: &Settings,
    env: &Envelope,
    mb: &Mailbox,
    body: &[u8],
) -> Result<Delivered, DeliveryError> {
    let user = mb.account.to_string();
    let err = |e: io::Error| io_error(&user, e);
    maildir::ensure_maildir(&mb.root, s.owner).map_err(err)?;
    autocreate(&mb.root, s).map_err(err)?;
    let head = trace_headers(env, &mb.rcpt, &s.hostname, s.add_received_header);
    let size = (head.len() + body.len()) as u64;
    let mut used_before = None;
    if mb.quota_bytes > 0 {
        let usage = quota::usage(&mb.root, mb.quota_bytes, s.owner).map_err(err)?;
        let used = usage.bytes.max(0) as u64;
        if used + size > mb.quota_bytes {
            return Ok(Delivered::OverQuota);
        }
        used_before = Some(used);
    }
    let actions = if s.sieve {
        let scripts = scripts(engine, s, mb);
        if scripts.is_empty() {
            vec![keep()]
        } else {
            let mut full = Vec::with_capacity(head.len() + body.len());
            full.extend_from_slice(head.as_bytes());
            full.extend_from_slice(body);
            let run_env = RunEnv {
                from: env.from.clone(),
                to: mb.rcpt.clone(),
                user: user.clone(),
            };
            let boxes = UserBoxes {
                root: &mb.root,
                home: &mb.home,
                owner: s.owner,
            };
            engine.run(&scripts, &full, &run_env, &boxes)
        }
    } else {
        vec![keep()]
    };
    let mut stored = Vec::new();
    let mut stored_bytes = 0u64;
    let mut rejected = None;
    for action in actions {
        match action {
            Action::Store {
                folder,
                flags,
                create,
                message,
            } => {
                let mut folder = folder;
                let dir = if folder.eq_ignore_ascii_case("INBOX") {
                    mb.root.clone()
                } else if check_folder_name(&folder).is_err() {
                    warn!(user = %user, folder = %folder, "sieve folder name not allowed; stored in INBOX");
                    folder = "INBOX".into();
                    mb.root.clone()
                } else {
                    let d = maildir::folder_dir(&mb.root, &folder);
                    if !maildir::is_maildir(&d) && !create && !s.autocreate.contains(&folder) {
                        // Pigeonhole without :create: the mailbox must
                        // exist; its fallback is INBOX.
                        warn!(user = %user, folder = %folder, "sieve fileinto a missing folder without :create; stored in INBOX");
                        folder = "INBOX".into();
                        mb.root.clone()
                    } else {
                        if !maildir::is_maildir(&d) {
                            maildir::ensure_maildir(&d, s.owner).map_err(err)?;
                            if s.autosubscribe {
                                maildir::subscribe(&mb.root, &[folder.as_str()], s.owner)
                                    .map_err(err)?;
                            }
                        }
                        d
                    }
                };
                if stored.contains(&folder) {
                    continue; // RFC 5228 §4.1: duplicate fileinto is one copy
                }
                let f = Flags::from_names(&flags);
                let kw = maildir::keyword_letters(&dir, &f.keywords, s.owner).map_err(err)?;
                let info = maildir::info(&f.system, &kw);
                let saved = match &message {
                    Some(m) => maildir::store(&dir, &[m.as_slice()], &info, &s.hostname, s.owner),
                    None => {
                        maildir::store(&dir, &[head.as_bytes(), body], &info, &s.hostname, s.owner)
                    }
                }
                .map_err(err)?;
                if let Err(e) = quota::add(&mb.root, saved.size) {
                    // The message is stored; usage is recounted later.
                    warn!(user = %user, error = %e, "cannot update maildirsize");
                }
                stored_bytes += saved.size;
                stored.push(folder);
            }
            Action::Reject(reason) => rejected = Some(reason),
            Action::Send {
                to,
                message,
                is_auto_reply,
            } => {
                let from = if is_auto_reply { "" } else { env.from.as_str() };
                let result = match &message {
                    Some(m) => send(s, from, &to, m),
                    None => {
                        let mut m = Vec::with_capacity(body.len());
                        m.extend_from_slice(body);
                        send(s, from, &to, &m)
                    }
                };
                match result {
                    Ok(()) => {
                        tracing::info!(user = %user, to = %to, is_auto_reply, "sieve message sent")
                    }
                    Err(e) => {
                        error!(user = %user, to = %to, error = %e, "sieve redirect/vacation failed")
                    }
                }
            }
        }
    }
    if let Some(reason) = rejected
        && stored.is_empty()
    {
        return Ok(Delivered::Rejected(reason));
    }
    if stored.is_empty() {
        return Ok(Delivered::Discarded);
    }
    if let Some(before) = used_before
        && let Some(level) = crossed_level(
            &s.quota_warning,
            mb.quota_bytes,
            before,
            before + stored_bytes,
        )
    {
        let message = quota_warning_message(mb, level, before + stored_bytes, &s.hostname);
        match send(s, "", &mb.account.to_string(), message.as_bytes()) {
            Ok(()) => tracing::info!(user = %user, level, "quota warning sent"),
            Err(e) => error!(user = %user, level, error = %e, "quota warning could not be sent"),
        }
    }
    Ok(Delivered::Stored(stored))
}

/// The highest warning level (percent of `limit`) that usage crossed by
/// going from `before` to `after` bytes, if any: a warning is sent once per
/// crossing, so a mailbox that stays above a level gets no more mail about
/// it until it has dropped below and crosses again.
pub fn crossed_level(levels: &[u8], limit: u64, before: u64, after: u64) -> Option<u8> {
    if limit == 0 {
        return None;
    }
    levels
        .iter()
        .copied()
        .filter(|&l| {
            let threshold = limit.saturating_mul(u64::from(l)) / 100;
            before < threshold && after >= threshold
        })
        .max()
}

/// The warning mail for `mb` at `level` percent (null sender, marked
/// auto-generated so vacation scripts do not answer it).
pub fn quota_warning_message(mb: &Mailbox, level: u8, used: u64, hostname: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    format!(
        "From: Mail Delivery System <postmaster@{domain}>\n\
         To: <{account}>\n\
         Subject: Your mailbox is {level}% full\n\
         Date: {date}\n\
         Message-ID: <quota.{now}.{level}.{local}@{hostname}>\n\
         Auto-Submitted: auto-generated\n\
         Precedence: bulk\n\
         MIME-Version: 1.0\n\
         Content-Type: text/plain; charset=utf-8\n\
         \n\
         Your mailbox {account} uses {used:.1} MiB of its {limit:.1} MiB quota ({level}% or more).\n\
         When it is full, new mail is refused. Please delete or archive old mail.\n",
        domain = mb.account.domain(),
        account = mb.account,
        local = mb.account.local(),
        date = rfc5322_date(now),
        used = mib(used),
        limit = mib(mb.quota_bytes),
    )
}

fn keep() -> Action {
    Action::Store {
        folder: "INBOX".into(),
        flags: Vec::new(),
        create: true,
        message: None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn quota_warning_once_per_crossing() {
        use super::crossed_level;
        let levels = [80, 95];
        assert_eq!(crossed_level(&levels, 1000, 700, 790), None);
        assert_eq!(crossed_level(&levels, 1000, 790, 810), Some(80));
        assert_eq!(
            crossed_level(&levels, 1000, 810, 900),
            None,
            "already above 80"
        );
        assert_eq!(crossed_level(&levels, 1000, 900, 960), Some(95));
        assert_eq!(
            crossed_level(&levels, 1000, 500, 990),
            Some(95),
            "both at once: the higher"
        );
        assert_eq!(crossed_level(&[], 1000, 0, 1000), None);
        assert_eq!(crossed_level(&levels, 0, 0, 1000), None, "unlimited");
    }

    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc5322_date(0), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(1_795_930_623),
            "Sun, 29 Nov 2026 05:37:03 +0000"
        );
        assert_eq!(rfc5322_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
    }

    #[test]
    fn headers_like_dovecot() {
        let env = Envelope {
            from: "user@example.org".into(),
            lhlo: "mx.test.local".into(),
            client_ip: Some("127.0.0.1".into()),
            session_id: "abc".into(),
        };
        let h = trace_headers(&env, "user+tag@example.org", "vm", true);
        assert!(h.starts_with(
            "Return-Path: <user@example.org>\nDelivered-To: user+tag@example.org\nReceived: from mx.test.local ([127.0.0.1])\n\tby vm with LMTP\n\tid abc\n\t(envelope-from <user@example.org>)\n\tfor <user+tag@example.org>; "
        ), "{h}");
    }
}

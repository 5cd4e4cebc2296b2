//! `[lmtpd]`: the LMTP delivery daemon's settings, raw and validated.
//! Names follow Dovecot's where one exists (`mail_home`, `sieve_before`,
//! `quota_exceeded_message`). No I/O here except resolving `mail_user` /
//! `mail_group` and the host name.

use super::ConfigError;
use super::daemon::{ServiceConfig, check_listen, check_service, daemon_raw};
use crate::service::ListenAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Where Postfix's `virtual_transport = lmtp:unix:private/lmtpd` finds
/// lmtpd by default (next to the guide's `private/dovecot-lmtp`).
pub const DEFAULT_LISTEN: &str = "unix:/var/spool/postfix/private/lmtpd";
/// Postfix's lmtp client gives up after `lmtp_data_done_timeout` (600s);
/// an idle session is closed a little after Postfix's own
/// `lmtp_connection_cache_time_limit` (2s) would, with a wide margin.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Dovecot `mail_home` of the guide.
pub const DEFAULT_MAIL_HOME: &str = "/var/vmail/mailboxes/%d/%n";
/// The Maildir root below the home: the guide's `maildir:~/mail:LAYOUT=fs`.
pub const DEFAULT_MAIL_DIR: &str = "mail";
/// Dovecot `mail_uid` / `mail_gid` of the guide.
pub const DEFAULT_MAIL_USER: &str = "vmail";
/// The guide's `namespace inbox { mailbox … { auto = subscribe } }`.
pub const DEFAULT_AUTOCREATE: &[&str] = &["Spam", "Trash", "Drafts", "Sent"];
/// The guide's `sieve_before`.
pub const DEFAULT_SIEVE_BEFORE: &str = "/var/vmail/sieve/global/spam-global.sieve";
/// The guide's `sieve = …;active=/var/vmail/sieve/%d/%n/active-script.sieve`.
pub const DEFAULT_SIEVE_SCRIPT: &str = "/var/vmail/sieve/%d/%n/active-script.sieve";
/// Most Sieve instructions one script may run (sieve-rs `cpu_limit`).
pub const DEFAULT_SIEVE_MAX_INSTRUCTIONS: usize = 10_000;
/// Most redirects one message may cause (Pigeonhole `sieve_max_redirects`
/// defaults to 4).
pub const DEFAULT_SIEVE_MAX_REDIRECTS: usize = 4;
/// The guide's `quota_exceeded_message` (`%u` is the recipient).
pub const DEFAULT_QUOTA_EXCEEDED_MESSAGE: &str = "Benutzer %u hat das Speichervolumen überschritten. / User %u has exhausted allowed storage space.";
/// Largest message accepted: Postfix's `message_size_limit` default
/// (10240000) plus room for the headers Postfix and we add.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 50 * 1024 * 1024;
/// Longest command or message line (RFC 5321 §4.5.3.1.6 allows 1000;
/// Postfix folds message lines at `lmtp_line_length_limit` = 990).
pub const DEFAULT_MAX_LINE_LENGTH: usize = 8192;
/// Most recipients per transaction (Postfix's
/// `lmtp_destination_recipient_limit` is 50).
pub const DEFAULT_MAX_RECIPIENTS: usize = 1000;
/// Most header lines per message.
pub const DEFAULT_MAX_HEADER_LINES: usize = 2000;
/// Where redirect and vacation messages go.
pub const DEFAULT_SENDMAIL_PATH: &str = "/usr/sbin/sendmail";

daemon_raw! {
    /// Raw `[lmtpd]`.
    pub struct Raw {
        pub listen: Option<Vec<String>>,
        pub hostname: Option<String>,
        pub mail_home: Option<String>,
        pub mail_dir: Option<String>,
        pub mail_user: Option<String>,
        pub mail_group: Option<String>,
        pub autocreate: Option<Vec<String>>,
        pub autosubscribe: Option<bool>,
        pub max_message_size: Option<String>,
        pub max_line_length: Option<usize>,
        pub max_recipients: Option<usize>,
        pub max_header_lines: Option<usize>,
        pub quota_exceeded_message: Option<String>,
        pub quota_full_tempfail: Option<bool>,
        pub add_received_header: Option<bool>,
        pub sieve: Option<bool>,
        pub sieve_before: Option<Vec<String>>,
        pub sieve_after: Option<Vec<String>>,
        pub sieve_script: Option<String>,
        pub sieve_max_instructions: Option<usize>,
        pub sieve_max_redirects: Option<usize>,
        pub sendmail_path: Option<String>,
        pub quota_warning: Option<Vec<u8>>,
    }
}

/// Validated `[lmtpd]`.
#[derive(Debug, Clone)]
pub struct LmtpdConfig {
    /// LMTP listeners (`listen`).
    pub listen: Vec<ListenAddr>,
    /// Shared listener settings.
    pub service: ServiceConfig,
    /// Our name in the greeting, LHLO reply, `Received:` and Maildir file
    /// names (default: the system host name).
    pub hostname: String,
    /// Home template: `%d` domain, `%n` local part, `%u` user@domain.
    pub mail_home: String,
    /// Maildir root relative to the home (`~/mail`).
    pub mail_dir: String,
    /// Owner of everything written (`mail_user`); only applied when we run
    /// as root. `None` when the default user `vmail` does not exist here:
    /// files then belong to whoever runs lmtpd.
    pub mail_uid: Option<u32>,
    /// Group of everything written (`mail_group`).
    pub mail_gid: Option<u32>,
    /// The user/group names, for display.
    pub mail_owner: (String, String),
    /// Folders created (and subscribed) on every delivery if missing.
    pub autocreate: Vec<String>,
    /// Whether auto-created folders are added to `subscriptions`.
    pub autosubscribe: bool,
    /// Largest message in bytes (CRLF counted as sent).
    pub max_message_size: usize,
    /// Longest command or message line in bytes.
    pub max_line_length: usize,
    /// Most RCPTs per transaction.
    pub max_recipients: usize,
    /// Most header lines per message.
    pub max_header_lines: usize,
    /// Reply text for a full mailbox; `%u` is the recipient.
    pub quota_exceeded_message: String,
    /// Answer a full mailbox with `452 4.2.2` instead of `552 5.2.2`.
    pub quota_full_tempfail: bool,
    /// Add a `Received:` header as Dovecot's LMTP does.
    pub add_received_header: bool,
    /// Run Sieve at all.
    pub sieve: bool,
    /// Global scripts run before the user's (Pigeonhole `sieve_before`).
    pub sieve_before: Vec<PathBuf>,
    /// Global scripts run after the user's (`sieve_after`).
    pub sieve_after: Vec<PathBuf>,
    /// The user's active script template (`%d`, `%n`, `%u`).
    pub sieve_script: String,
    /// Instruction limit per script run.
    pub sieve_max_instructions: usize,
    /// Redirect limit per message.
    pub sieve_max_redirects: usize,
    /// sendmail(1) used for redirect, vacation and quota warnings.
    pub sendmail_path: PathBuf,
    /// Usage levels in percent of the quota at which the user gets a
    /// warning mail, once per crossing (`quota_warning = [80, 95]`; empty,
    /// the default, sends none).
    pub quota_warning: Vec<u8>,
}

fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

fn check_template(key: &str, t: &str, errors: &mut Vec<ConfigError>) {
    if !t.starts_with('/') {
        errors.push(ConfigError::new(
            key,
            format!("`{t}` must be an absolute path"),
        ));
    }
    let mut chars = t.chars();
    while let Some(c) = chars.next() {
        if c == '%' && !matches!(chars.next(), Some('d' | 'n' | 'u' | '%')) {
            errors.push(ConfigError::new(
                key,
                format!("`{t}`: unknown % variable; allowed: %d (domain), %n (user), %u (user@domain), %%"),
            ));
            return;
        }
    }
}

fn check_paths(key: &str, raw: &[String], errors: &mut Vec<ConfigError>) -> Vec<PathBuf> {
    raw.iter()
        .filter_map(|p| {
            if p.starts_with('/') {
                Some(PathBuf::from(p))
            } else {
                errors.push(ConfigError::new(
                    key,
                    format!("`{p}` must be an absolute path"),
                ));
                None
            }
        })
        .collect()
}

/// Parses `10M`, `512K`, `1G` or a bare byte count.
fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: usize = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size; use e.g. 50M, 512K or bytes"))?;
    let mult: usize = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1024,
        "M" | "MB" | "MIB" => 1024 * 1024,
        "G" | "GB" | "GIB" => 1024 * 1024 * 1024,
        other => {
            return Err(format!(
                "unknown size unit `{other}` in `{s}`; allowed: K, M, G"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{s}` is too large"))
}

fn resolve_user(name: &str) -> Result<(u32, u32), String> {
    if let Ok(uid) = name.parse::<u32>() {
        return Ok((uid, uid));
    }
    match nix::unistd::User::from_name(name) {
        Ok(Some(u)) => Ok((u.uid.as_raw(), u.gid.as_raw())),
        Ok(None) => Err(format!("no such user `{name}`")),
        Err(e) => Err(format!("cannot look up user `{name}`: {e}")),
    }
}

fn resolve_group(name: &str) -> Result<u32, String> {
    if let Ok(gid) = name.parse::<u32>() {
        return Ok(gid);
    }
    match nix::unistd::Group::from_name(name) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        Ok(None) => Err(format!("no such group `{name}`")),
        Err(e) => Err(format!("cannot look up group `{name}`: {e}")),
    }
}

/// Checks `[lmtpd]`.
pub fn check(raw: &Raw, errors: &mut Vec<ConfigError>) -> LmtpdConfig {
    let default_listen = vec![DEFAULT_LISTEN.to_owned()];
    let mail_home = raw
        .mail_home
        .clone()
        .unwrap_or_else(|| DEFAULT_MAIL_HOME.into());
    check_template("[lmtpd].mail_home", &mail_home, errors);
    let sieve_script = raw
        .sieve_script
        .clone()
        .unwrap_or_else(|| DEFAULT_SIEVE_SCRIPT.into());
    check_template("[lmtpd].sieve_script", &sieve_script, errors);
    let mail_dir = raw
        .mail_dir
        .clone()
        .unwrap_or_else(|| DEFAULT_MAIL_DIR.into());
    if mail_dir.starts_with('/') || mail_dir.split('/').any(|c| c == "..") {
        errors.push(ConfigError::new(
            "[lmtpd].mail_dir",
            format!("`{mail_dir}` must be a path relative to the home without `..` (the guide's is \"mail\")"),
        ));
    }
    let user = raw
        .mail_user
        .clone()
        .unwrap_or_else(|| DEFAULT_MAIL_USER.into());
    let (mut uid, mut gid) = (None, None);
    match resolve_user(&user) {
        Ok((u, g)) => (uid, gid) = (Some(u), Some(g)),
        // Every daemon reads the whole file: a host without the guide's
        // vmail user must still run policyd with a default [lmtpd].
        Err(_) if raw.mail_user.is_none() => {}
        Err(e) => errors.push(ConfigError::new("[lmtpd].mail_user", e)),
    }
    // Without mail_group the user's primary group applies, as for mail_gid.
    let group = match &raw.mail_group {
        None => format!("(group of {user})"),
        Some(g) => {
            match resolve_group(g) {
                Ok(v) => gid = Some(v),
                Err(e) => errors.push(ConfigError::new("[lmtpd].mail_group", e)),
            }
            g.clone()
        }
    };
    let autocreate: Vec<String> = raw
        .autocreate
        .clone()
        .unwrap_or_else(|| DEFAULT_AUTOCREATE.iter().map(|s| (*s).to_owned()).collect());
    for f in &autocreate {
        if let Err(e) = check_folder_name(f) {
            errors.push(ConfigError::new(
                "[lmtpd].autocreate",
                format!("`{f}`: {e}"),
            ));
        }
    }
    let max_message_size = match raw.max_message_size.as_deref() {
        None => DEFAULT_MAX_MESSAGE_SIZE,
        Some(s) => match parse_size(s) {
            Ok(n) if n >= 1024 => n,
            Ok(_) => {
                errors.push(ConfigError::new(
                    "[lmtpd].max_message_size",
                    "must be at least 1K",
                ));
                DEFAULT_MAX_MESSAGE_SIZE
            }
            Err(e) => {
                errors.push(ConfigError::new("[lmtpd].max_message_size", e));
                DEFAULT_MAX_MESSAGE_SIZE
            }
        },
    };
    let mut bounded = |key: &str, v: Option<usize>, default: usize, min: usize, max: usize| match v
    {
        None => default,
        Some(n) if n >= min && n <= max => n,
        Some(n) => {
            errors.push(ConfigError::new(
                key,
                format!("{n} is out of range; allowed {min} to {max}"),
            ));
            default
        }
    };
    let max_line_length = bounded(
        "[lmtpd].max_line_length",
        raw.max_line_length,
        DEFAULT_MAX_LINE_LENGTH,
        1000,
        1 << 20,
    );
    let max_recipients = bounded(
        "[lmtpd].max_recipients",
        raw.max_recipients,
        DEFAULT_MAX_RECIPIENTS,
        1,
        100_000,
    );
    let max_header_lines = bounded(
        "[lmtpd].max_header_lines",
        raw.max_header_lines,
        DEFAULT_MAX_HEADER_LINES,
        10,
        1_000_000,
    );
    let sieve_max_instructions = bounded(
        "[lmtpd].sieve_max_instructions",
        raw.sieve_max_instructions,
        DEFAULT_SIEVE_MAX_INSTRUCTIONS,
        100,
        10_000_000,
    );
    let sieve_max_redirects = bounded(
        "[lmtpd].sieve_max_redirects",
        raw.sieve_max_redirects,
        DEFAULT_SIEVE_MAX_REDIRECTS,
        0,
        100,
    );
    let quota_exceeded_message = raw
        .quota_exceeded_message
        .clone()
        .unwrap_or_else(|| DEFAULT_QUOTA_EXCEEDED_MESSAGE.into());
    if quota_exceeded_message.contains(['\r', '\n']) {
        errors.push(ConfigError::new(
            "[lmtpd].quota_exceeded_message",
            "must be one line",
        ));
    }
    let hostname = raw.hostname.clone().unwrap_or_else(system_hostname);
    if hostname.is_empty() || hostname.contains(|c: char| c.is_whitespace() || c == '/' || c == ':')
    {
        errors.push(ConfigError::new(
            "[lmtpd].hostname",
            format!("`{hostname}` is not a host name (no spaces, `/` or `:`)"),
        ));
    }
    let default_before = vec![DEFAULT_SIEVE_BEFORE.to_owned()];
    let sendmail_path = PathBuf::from(
        raw.sendmail_path
            .clone()
            .unwrap_or_else(|| DEFAULT_SENDMAIL_PATH.into()),
    );
    if !sendmail_path.is_absolute() {
        errors.push(ConfigError::new(
            "[lmtpd].sendmail_path",
            "must be an absolute path",
        ));
    }
    let mut quota_warning = raw.quota_warning.clone().unwrap_or_default();
    quota_warning.sort_unstable();
    quota_warning.dedup();
    if quota_warning.iter().any(|&l| l == 0 || l > 100) {
        errors.push(ConfigError::new(
            "[lmtpd].quota_warning",
            format!("{quota_warning:?}: levels are percentages from 1 to 100, e.g. [80, 95]"),
        ));
    }
    LmtpdConfig {
        listen: check_listen(
            "[lmtpd].listen",
            raw.listen.as_ref().unwrap_or(&default_listen),
            errors,
        ),
        service: check_service("lmtpd", &raw.service(), DEFAULT_IDLE_TIMEOUT, errors),
        hostname,
        mail_home,
        mail_dir,
        mail_uid: uid,
        mail_gid: gid,
        mail_owner: (user, group),
        autocreate,
        autosubscribe: raw.autosubscribe.unwrap_or(true),
        max_message_size,
        max_line_length,
        max_recipients,
        max_header_lines,
        quota_exceeded_message,
        quota_full_tempfail: raw.quota_full_tempfail.unwrap_or(false),
        add_received_header: raw.add_received_header.unwrap_or(true),
        sieve: raw.sieve.unwrap_or(true),
        sieve_before: check_paths(
            "[lmtpd].sieve_before",
            raw.sieve_before.as_ref().unwrap_or(&default_before),
            errors,
        ),
        sieve_after: check_paths(
            "[lmtpd].sieve_after",
            raw.sieve_after.as_deref().unwrap_or(&[]),
            errors,
        ),
        sieve_script,
        sieve_max_instructions,
        sieve_max_redirects,
        sendmail_path,
        quota_warning,
    }
}

/// Whether `name` is a usable `LAYOUT=fs` folder name (`/` separates
/// levels): not empty, no empty, `.` or `..` level, no control characters,
/// not Dovecot's own `cur`/`new`/`tmp`.
pub fn check_folder_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 255 {
        return Err("must be 1 to 255 bytes");
    }
    if name.chars().any(|c| c.is_control() || c == '\\') {
        return Err("must not contain control characters or backslashes");
    }
    for level in name.split('/') {
        if level.is_empty() || level == "." || level == ".." || level.starts_with('.') {
            return Err("has an empty level, or one that starts with a dot");
        }
        if matches!(level, "cur" | "new" | "tmp") {
            return Err("cur, new and tmp are Maildir's own directories");
        }
    }
    if name.eq_ignore_ascii_case("INBOX") {
        return Err("INBOX is the Maildir root, not a folder");
    }
    Ok(())
}

/// `postwerk config check` rows for `[lmtpd]`.
pub fn describe(c: &LmtpdConfig) -> Vec<(String, String)> {
    let paths = |p: &[PathBuf]| {
        if p.is_empty() {
            "(none)".to_owned()
        } else {
            p.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let id = |v: Option<u32>| v.map_or_else(|| "not found".to_owned(), |v| v.to_string());
    let mut rows = vec![("[lmtpd].listen".to_owned(), super::list(&c.listen))];
    rows.extend(super::daemon::describe_service("lmtpd", &c.service));
    rows.extend([
        ("[lmtpd].hostname".to_owned(), c.hostname.clone()),
        ("[lmtpd].mail_home".to_owned(), c.mail_home.clone()),
        ("[lmtpd].mail_dir".to_owned(), c.mail_dir.clone()),
        (
            "[lmtpd].mail_user".to_owned(),
            format!("{} ({})", c.mail_owner.0, id(c.mail_uid)),
        ),
        (
            "[lmtpd].mail_group".to_owned(),
            format!("{} ({})", c.mail_owner.1, id(c.mail_gid)),
        ),
        ("[lmtpd].autocreate".to_owned(), c.autocreate.join(", ")),
        (
            "[lmtpd].autosubscribe".to_owned(),
            c.autosubscribe.to_string(),
        ),
        (
            "[lmtpd].max_message_size".to_owned(),
            c.max_message_size.to_string(),
        ),
        (
            "[lmtpd].max_line_length".to_owned(),
            c.max_line_length.to_string(),
        ),
        (
            "[lmtpd].max_recipients".to_owned(),
            c.max_recipients.to_string(),
        ),
        (
            "[lmtpd].max_header_lines".to_owned(),
            c.max_header_lines.to_string(),
        ),
        (
            "[lmtpd].quota_exceeded_message".to_owned(),
            c.quota_exceeded_message.clone(),
        ),
        (
            "[lmtpd].quota_full_tempfail".to_owned(),
            c.quota_full_tempfail.to_string(),
        ),
        (
            "[lmtpd].add_received_header".to_owned(),
            c.add_received_header.to_string(),
        ),
        ("[lmtpd].sieve".to_owned(), c.sieve.to_string()),
        ("[lmtpd].sieve_before".to_owned(), paths(&c.sieve_before)),
        ("[lmtpd].sieve_after".to_owned(), paths(&c.sieve_after)),
        ("[lmtpd].sieve_script".to_owned(), c.sieve_script.clone()),
        (
            "[lmtpd].sieve_max_instructions".to_owned(),
            c.sieve_max_instructions.to_string(),
        ),
        (
            "[lmtpd].sieve_max_redirects".to_owned(),
            c.sieve_max_redirects.to_string(),
        ),
        (
            "[lmtpd].sendmail_path".to_owned(),
            c.sendmail_path.display().to_string(),
        ),
        (
            "[lmtpd].quota_warning".to_owned(),
            if c.quota_warning.is_empty() {
                "(none)".to_owned()
            } else {
                format!("{:?} %", c.quota_warning)
            },
        ),
    ]);
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_folders() {
        assert_eq!(parse_size("50M").unwrap(), 50 * 1024 * 1024);
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert!(parse_size("5X").is_err());
        assert!(check_folder_name("Archive/2024").is_ok());
        for bad in ["", "a//b", "../x", "x/cur", ".hidden", "INBOX"] {
            assert!(check_folder_name(bad).is_err(), "{bad}");
        }
    }
}

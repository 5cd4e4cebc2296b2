//! The one TOML file (`/etc/postwerk/postwerk.toml`), read in two stages:
//! [`raw`] holds what the admin wrote, [`Config::load`] checks it into
//! validated types and reports every error with its key. No database or
//! network access here (a `password_file` is read).

pub mod authd;
pub mod daemon;
pub mod error;
pub mod lmtpd;
pub mod milterd;
pub mod policyd;
pub mod ratelimit;
pub mod raw;
pub mod secret;
pub mod server;
pub mod units;

pub use error::{ConfigError, ConfigErrors};
pub use secret::Secret;

use crate::db::Backend;
use crate::password::Scheme;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where daemons and the CLI look for the config file without `--config`.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/postwerk/postwerk.toml";
/// The embedded SQLite database used when `[database].url` is not set.
pub const DEFAULT_DATABASE_URL: &str = "sqlite:///var/lib/postwerk/vmail.db";
/// Default pool size per daemon.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 10;
/// How long a query waits for a pooled connection (including opening a new
/// one) before the lookup answers "temporary failure".
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default log level (`RUST_LOG` wins).
pub const DEFAULT_LOG_LEVEL: &str = "info";
/// The sections a config file may contain.
pub const SECTIONS: &[&str] = &[
    "database", "log", "mail", "policyd", "authd", "lmtpd", "milterd", "server",
];

/// `[database]`, validated.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// Which server the URL points at.
    pub backend: Backend,
    /// The URL without its password (safe to print).
    pub url: String,
    /// The password, from the URL or `password_file`.
    pub password: Option<Secret>,
    /// Pool size.
    pub max_connections: u32,
    /// Wait for a pooled connection (opening one included) at most this long.
    pub acquire_timeout: Duration,
}

impl DatabaseConfig {
    /// Validates a database URL with defaults for everything else (used by
    /// `postwerk --database URL`).
    pub fn from_url(url: &str) -> Result<Self, ConfigErrors> {
        let raw = raw::Database {
            url: Some(url.to_owned()),
            ..Default::default()
        };
        let mut errors = Vec::new();
        let db = check_database(&raw, &mut errors);
        match db {
            Some(db) if errors.is_empty() => Ok(db),
            _ => Err(ConfigErrors { file: None, errors }),
        }
    }
}

/// `[log]`, validated.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// An `EnvFilter` directive such as `info` or `postwerk_policyd=debug`.
    pub level: String,
}

/// `[mail]`, validated.
#[derive(Debug, Clone)]
pub struct MailConfig {
    /// Postfix/Dovecot `recipient_delimiter`: every character is a delimiter.
    pub recipient_delimiter: String,
    /// Dovecot `default_pass_scheme`: scheme of stored hashes without a
    /// `{SCHEME}` prefix, and of new hashes the CLI makes.
    pub default_pass_scheme: Scheme,
    /// Dovecot `auth_username_chars`: the characters a user name
    /// (`user@domain`) may have. Accounts with others cannot log in to
    /// Dovecot, so postwerk treats them as unusable everywhere
    /// ([`crate::address::usable_user_name`]).
    pub username_chars: String,
}

/// The keys a file sets in section `path` (a table), as `describe` names
/// them: `[path].key` for every key, recursing into sub-tables
/// (`[milterd.spam].redis_url`), and `[[path.key]]` for an array of tables
/// (`[[milterd.spam.multimap]]`), whose rows are all the admin's.
fn explicit_keys(path: &str, table: &toml::Table, out: &mut Vec<String>) {
    for (k, v) in table {
        out.push(format!("[{path}].{k}"));
        match v {
            toml::Value::Table(t) => explicit_keys(&format!("{path}.{k}"), t, out),
            toml::Value::Array(a) if a.iter().all(toml::Value::is_table) && !a.is_empty() => {
                out.push(format!("[[{path}.{k}]]"));
            }
            _ => {}
        }
    }
}

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from, if any.
    pub source: Option<PathBuf>,
    /// `[database]`.
    pub database: DatabaseConfig,
    /// `[log]`.
    pub log: LogConfig,
    /// `[mail]`.
    pub mail: MailConfig,
    /// `[policyd]`.
    pub policyd: policyd::PolicydConfig,
    /// `[authd]`.
    pub authd: authd::AuthdConfig,
    /// `[lmtpd]`.
    pub lmtpd: lmtpd::LmtpdConfig,
    /// `[milterd]`.
    pub milterd: milterd::MilterdConfig,
    /// `[server]`.
    pub server: server::ServerConfig,
    /// Keys the admin set (for marking defaults in `config check`).
    explicit: Vec<String>,
}

impl Config {
    /// Loads `path`. When `path` is `None` the default path is read if it
    /// exists, otherwise built-in defaults apply. An explicitly given file
    /// that does not exist is an error.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigErrors> {
        let (file, text) = match path {
            Some(p) => match std::fs::read_to_string(p) {
                Ok(t) => (Some(p.to_path_buf()), t),
                Err(e) => {
                    return Err(ConfigErrors {
                        file: Some(p.to_path_buf()),
                        errors: vec![ConfigError::new("(file)", format!("cannot read it: {e}"))],
                    });
                }
            },
            None => {
                let p = Path::new(DEFAULT_CONFIG_PATH);
                match std::fs::read_to_string(p) {
                    Ok(t) => (Some(p.to_path_buf()), t),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => (None, String::new()),
                    Err(e) => {
                        return Err(ConfigErrors {
                            file: Some(p.to_path_buf()),
                            errors: vec![ConfigError::new(
                                "(file)",
                                format!("cannot read it: {e}"),
                            )],
                        });
                    }
                }
            }
        };
        let mut cfg = Self::parse(&text).map_err(|mut e| {
            e.file = file.clone();
            e
        })?;
        cfg.source = file;
        Ok(cfg)
    }

    /// Parses and checks config text, collecting every error.
    pub fn parse(text: &str) -> Result<Self, ConfigErrors> {
        let mut errors = Vec::new();
        let table: toml::Table = match text.parse() {
            Ok(t) => t,
            Err(e) => {
                return Err(ConfigErrors {
                    file: None,
                    errors: vec![ConfigError::new(
                        "(syntax)",
                        e.to_string().trim().to_owned(),
                    )],
                });
            }
        };
        let mut explicit = Vec::new();
        for (name, value) in &table {
            if !SECTIONS.contains(&name.as_str()) {
                errors.push(ConfigError::new(
                    format!("[{name}]"),
                    format!("unknown section; allowed: {}", SECTIONS.join(", ")),
                ));
                continue;
            }
            match value.as_table() {
                Some(t) => explicit_keys(name, t, &mut explicit),
                None => errors.push(ConfigError::new(
                    format!("[{name}]"),
                    "must be a section (a table), not a single value",
                )),
            }
        }
        let raw_db: raw::Database = section(&table, "database", &mut errors);
        let raw_log: raw::Log = section(&table, "log", &mut errors);
        let raw_mail: raw::Mail = section(&table, "mail", &mut errors);
        let raw_policyd: policyd::Raw = section(&table, "policyd", &mut errors);
        let policyd = policyd::check(&raw_policyd, &mut errors);
        let raw_authd: authd::Raw = section(&table, "authd", &mut errors);
        let authd = authd::check(&raw_authd, &mut errors);
        let raw_lmtpd: lmtpd::Raw = section(&table, "lmtpd", &mut errors);
        let lmtpd = lmtpd::check(&raw_lmtpd, &mut errors);
        let raw_milterd: milterd::Raw = section(&table, "milterd", &mut errors);
        let milterd = milterd::check(&raw_milterd, &mut errors);
        let raw_server: server::Raw = section(&table, "server", &mut errors);
        let server = server::check(&raw_server, &mut errors);

        let database = check_database(&raw_db, &mut errors);
        let log = LogConfig {
            level: raw_log
                .level
                .unwrap_or_else(|| DEFAULT_LOG_LEVEL.to_owned()),
        };
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&log.level) {
            errors.push(ConfigError::new(
                "[log].level",
                format!(
                    "`{}` is not a log filter ({e}); use error, warn, info, debug or trace",
                    log.level
                ),
            ));
        }
        let recipient_delimiter = raw_mail
            .recipient_delimiter
            .unwrap_or_else(|| crate::address::DEFAULT_RECIPIENT_DELIMITER.to_owned());
        if recipient_delimiter
            .chars()
            .any(|c| c.is_alphanumeric() || c.is_whitespace() || c == '@')
        {
            errors.push(ConfigError::new(
                "[mail].recipient_delimiter",
                format!(
                    "`{recipient_delimiter}` must be punctuation characters such as \"+\" or \"+-\" (each is a delimiter, as in Postfix)"
                ),
            ));
        }
        let default_pass_scheme = match raw_mail.default_pass_scheme.as_deref() {
            None => crate::password::DEFAULT_SCHEME,
            Some(s) => match s.parse::<Scheme>() {
                Ok(s) => s,
                Err(e) => {
                    errors.push(ConfigError::new(
                        "[mail].default_pass_scheme",
                        e.to_string(),
                    ));
                    crate::password::DEFAULT_SCHEME
                }
            },
        };
        let username_chars = raw_mail
            .username_chars
            .unwrap_or_else(|| crate::address::DOVECOT_USERNAME_CHARS.to_owned());
        if username_chars.is_empty()
            || !username_chars.chars().all(|c| c.is_ascii_graphic())
            || !username_chars.contains('@')
        {
            errors.push(ConfigError::new(
                "[mail].username_chars",
                format!(
                    "`{username_chars}` must be printable ASCII characters including @, as Dovecot's auth_username_chars (empty in Dovecot means any: leave the key out instead)"
                ),
            ));
        }
        match database {
            Some(database) if errors.is_empty() => Ok(Self {
                source: None,
                database,
                log,
                mail: MailConfig {
                    recipient_delimiter,
                    default_pass_scheme,
                    username_chars,
                },
                policyd,
                authd,
                lmtpd,
                milterd,
                server,
                explicit,
            }),
            _ => Err(ConfigErrors { file: None, errors }),
        }
    }

    /// Replaces `[database]` (for `--database URL`); its URL then counts as
    /// set by the admin.
    pub fn set_database(&mut self, database: DatabaseConfig) {
        self.database = database;
        self.explicit.push("[database].url".into());
    }

    /// The effective configuration as `(key, value, is_default)` rows, with
    /// secrets shown as `***`; for `postwerk config check`.
    pub fn describe(&self) -> Vec<(String, String, bool)> {
        let d = &self.database;
        let mut rows: Vec<(String, String)> = vec![
            ("[database].url".into(), d.url.clone()),
            (
                "[database].password_file".into(),
                if d.password.is_some() {
                    "***".into()
                } else {
                    "(none)".into()
                },
            ),
            (
                "[database].max_connections".into(),
                d.max_connections.to_string(),
            ),
            (
                "[database].acquire_timeout".into(),
                units::format_duration(d.acquire_timeout),
            ),
            ("[log].level".into(), self.log.level.clone()),
            (
                "[mail].recipient_delimiter".into(),
                self.mail.recipient_delimiter.clone(),
            ),
            (
                "[mail].default_pass_scheme".into(),
                self.mail.default_pass_scheme.to_string(),
            ),
            (
                "[mail].username_chars".into(),
                self.mail.username_chars.clone(),
            ),
        ];
        rows.extend(policyd::describe(&self.policyd));
        rows.extend(authd::describe(&self.authd));
        rows.extend(lmtpd::describe(&self.lmtpd));
        rows.extend(milterd::describe(&self.milterd));
        rows.extend(server::describe(&self.server));
        rows.into_iter()
            .map(|(k, v)| {
                let set_by_admin = self.explicit.iter().any(|e| {
                    *e == k || k.starts_with(&format!("{e}.")) || k.starts_with(&format!("{e} "))
                }) || (k == "[database].password_file"
                    && self.explicit.iter().any(|e| e == "[database].url"));
                let is_default = !set_by_admin;
                (k, v, is_default)
            })
            .collect()
    }
}

/// Formats a list of listen addresses for `describe`.
pub(crate) fn list(addrs: &[crate::service::ListenAddr]) -> String {
    if addrs.is_empty() {
        "(none)".into()
    } else {
        addrs
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn section<T: serde::de::DeserializeOwned + Default>(
    table: &toml::Table,
    name: &str,
    errors: &mut Vec<ConfigError>,
) -> T {
    let Some(value) = table.get(name) else {
        return T::default();
    };
    if !value.is_table() {
        return T::default();
    }
    match value.clone().try_into::<T>() {
        Ok(v) => v,
        Err(e) => {
            // serde names the field ("unknown field `x`, expected one of …").
            let msg = e.to_string();
            let key = msg
                .split('`')
                .nth(1)
                .map(|k| format!("[{name}].{k}"))
                .unwrap_or_else(|| format!("[{name}]"));
            errors.push(ConfigError::new(key, msg.trim().to_owned()));
            T::default()
        }
    }
}

fn check_database(raw: &raw::Database, errors: &mut Vec<ConfigError>) -> Option<DatabaseConfig> {
    let url_text = raw.url.as_deref().unwrap_or(DEFAULT_DATABASE_URL);
    let mut ok = true;
    let mut duration = |key: &str, v: &Option<String>, default: Duration| match v {
        None => default,
        Some(s) => match units::parse_duration(s) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                errors.push(ConfigError::new(key, "must be more than 0"));
                ok = false;
                default
            }
            Err(e) => {
                errors.push(ConfigError::new(key, e));
                ok = false;
                default
            }
        },
    };
    let acquire_timeout = duration(
        "[database].acquire_timeout",
        &raw.acquire_timeout,
        DEFAULT_ACQUIRE_TIMEOUT,
    );
    let max_connections = raw.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
    if max_connections == 0 || max_connections > 1000 {
        errors.push(ConfigError::new(
            "[database].max_connections",
            format!("{max_connections} is out of range; allowed 1 to 1000"),
        ));
        ok = false;
    }
    let (backend, url, url_password) = match crate::db::split_url(url_text) {
        Ok(v) => v,
        Err(e) => {
            errors.push(ConfigError::new("[database].url", e));
            return None;
        }
    };
    let mut password = url_password.map(Secret::new);
    if let Some(pf) = &raw.password_file {
        if password.is_some() {
            errors.push(ConfigError::new(
                "[database].password_file",
                "the url already contains a password; remove one of them",
            ));
            ok = false;
        }
        if backend == Backend::Sqlite {
            errors.push(ConfigError::new(
                "[database].password_file",
                "SQLite databases have no password; remove password_file",
            ));
            ok = false;
        }
        match Secret::from_file(pf) {
            Ok(s) => password = Some(s),
            Err(e) => {
                errors.push(ConfigError::new(
                    "[database].password_file",
                    format!("cannot read {}: {e}", pf.display()),
                ));
                ok = false;
            }
        }
    }
    ok.then_some(DatabaseConfig {
        backend,
        url,
        password,
        max_connections,
        acquire_timeout,
    })
}

/// For the sections' unit tests: parses `text` as one section's raw
/// table and checks it with `check`; `Err` with every error found.
#[cfg(test)]
pub(crate) fn parse_section<R: serde::de::DeserializeOwned, C>(
    text: &str,
    check: impl FnOnce(&R, &mut Vec<ConfigError>) -> C,
) -> Result<C, Vec<ConfigError>> {
    let raw: R =
        toml::from_str(text).map_err(|e| vec![ConfigError::new("(toml)", e.to_string())])?;
    let mut errors = Vec::new();
    let c = check(&raw, &mut errors);
    if errors.is_empty() {
        Ok(c)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys set in sub-tables and arrays of tables are the admin's, not
    /// defaults, in `postwerk config check`.
    #[test]
    fn describe_marks_keys_of_nested_sections_as_set() {
        let c = Config::parse(
            "[milterd.spam]\nredis_prefix = \"x:\"\n[milterd.spam.actions]\nreject = 20.0\n\
             [[milterd.spam.multimap]]\nname = \"BL\"\ntype = \"ip\"\nmap = \"/etc/postwerk/bl.map\"\nscore = 5.0\n",
        )
        .unwrap();
        let rows = c.describe();
        let default = |key: &str| {
            rows.iter()
                .find(|(k, _, _)| k == key || k.starts_with(&format!("{key} ")))
                .unwrap_or_else(|| panic!("no row {key}: {rows:?}"))
                .2
        };
        assert!(!default("[milterd.spam].redis_prefix"));
        assert!(!default("[milterd.spam.actions].reject"));
        assert!(!default("[[milterd.spam.multimap]]"));
        assert!(default("[milterd.spam].redis_url"));
        assert!(default("[milterd.spam.actions].add_header"));
        assert!(default("[policyd].cache_ttl"));
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.database.backend, Backend::Sqlite);
        assert_eq!(c.database.url, DEFAULT_DATABASE_URL);
        assert_eq!(c.database.acquire_timeout, DEFAULT_ACQUIRE_TIMEOUT);
        assert_eq!(c.mail.recipient_delimiter, "+");
        assert!(c.describe().iter().all(|(_, _, is_default)| *is_default));
    }

    #[test]
    fn full_file() {
        let dir = tempfile::tempdir().unwrap();
        let pf = dir.path().join("dbpw");
        std::fs::write(&pf, "vmaildbpass\n").unwrap();
        let text = format!(
            r#"
[database]
url = "mysql://vmail@localhost/vmail?socket=/run/mysqld/mysqld.sock"
password_file = "{}"
max_connections = 4
acquire_timeout = "2s"

[log]
level = "debug"

[mail]
recipient_delimiter = "+-"
default_pass_scheme = "ssha512"
"#,
            pf.display()
        );
        let c = Config::parse(&text).unwrap();
        assert_eq!(c.database.backend, Backend::MySql);
        assert_eq!(
            c.database.password.as_ref().unwrap().expose(),
            "vmaildbpass"
        );
        assert_eq!(c.database.max_connections, 4);
        assert_eq!(c.database.acquire_timeout, Duration::from_secs(2));
        assert_eq!(c.mail.recipient_delimiter, "+-");
        assert_eq!(c.mail.default_pass_scheme, Scheme::Ssha512);
        let rows = c.describe();
        let pw = rows
            .iter()
            .find(|r| r.0 == "[database].password_file")
            .unwrap();
        assert_eq!(pw.1, "***");
        assert!(!format!("{c:?}").contains("vmaildbpass"));
    }

    #[test]
    fn every_error_is_reported_with_its_key() {
        let text = r#"
[database]
url = "oracle://x"
acquire_timeout = "5 fortnights"

[mail]
recipient_delimiter = "x"
default_pass_scheme = "ROT13"

[policyd2]
x = 1
"#;
        let e = Config::parse(text).unwrap_err();
        let s = e.to_string();
        for needle in [
            "[database].url",
            "[database].acquire_timeout",
            "[mail].recipient_delimiter",
            "[mail].default_pass_scheme",
            "[policyd2]",
        ] {
            assert!(s.contains(needle), "missing {needle} in {s}");
        }
    }

    #[test]
    fn unknown_key_is_named() {
        let e = Config::parse("[database]\nurll = \"sqlite:///x\"\n").unwrap_err();
        let s = e.to_string();
        assert!(s.contains("[database].urll"), "{s}");
        assert!(s.contains("url"), "{s}");
    }

    #[test]
    fn syntax_error_is_reported() {
        let e = Config::parse("[database\n").unwrap_err();
        assert!(e.to_string().contains("(syntax)"));
    }

    #[test]
    fn password_in_url_is_split_off() {
        let c = Config::parse("[database]\nurl = \"postgres://vmail:s3cret@127.0.0.1/vmail\"\n")
            .unwrap();
        assert_eq!(c.database.password.as_ref().unwrap().expose(), "s3cret");
        assert!(!c.database.url.contains("s3cret"));
        assert_eq!(c.database.backend, Backend::Postgres);
    }

    #[test]
    fn missing_password_file_is_an_error() {
        let e = Config::parse(
            "[database]\nurl = \"mysql://vmail@localhost/vmail\"\npassword_file = \"/nonexistent/pw\"\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("[database].password_file"));
    }

    #[test]
    fn explicit_missing_file_is_an_error() {
        let e = Config::load(Some(Path::new("/nonexistent/postwerk.toml"))).unwrap_err();
        assert!(e.to_string().contains("cannot read"));
    }
}

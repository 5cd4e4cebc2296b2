//! The guide's `vmail` database on SQLite (embedded default), MariaDB/MySQL
//! (the guide's schema, unchanged) or PostgreSQL. This module owns the
//! connection pools; every SQL statement lives in [`queries`].

pub mod error;
pub mod model;
pub mod queries;

pub use error::DbError;
pub use model::*;
pub use queries::ChangeProbe;
/// The driver's error type, for code that must build one (tests).
pub use sqlx::Error as SqlxError;

use crate::config::DatabaseConfig;
use sqlx::ConnectOptions;
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Mutex, OnceLock};

/// Which database server a URL points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `sqlite:///path/to/vmail.db`
    Sqlite,
    /// `mysql://…` or `mariadb://…`
    MySql,
    /// `postgres://…` or `postgresql://…`
    Postgres,
}

impl Backend {
    /// The schema file for `postwerk db init` (`contrib/sql/*.sql`).
    pub fn schema(self) -> &'static str {
        match self {
            Backend::Sqlite => include_str!("../../../contrib/sql/sqlite.sql"),
            Backend::MySql => include_str!("../../../contrib/sql/mysql.sql"),
            Backend::Postgres => include_str!("../../../contrib/sql/postgres.sql"),
        }
    }

    /// Lowercase name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::MySql => "mysql",
            Backend::Postgres => "postgres",
        }
    }
}

/// Splits a database URL into backend, URL without password, and password.
/// The error says which forms are allowed.
pub fn split_url(url: &str) -> Result<(Backend, String, Option<String>), String> {
    const FORMS: &str = "use sqlite:///path/vmail.db, mysql://user@host/vmail (also ?socket=/run/mysqld/mysqld.sock) or postgres://user@host/vmail";
    let url = url.trim();
    if let Some(rest) = url.strip_prefix("sqlite:") {
        let path = rest.strip_prefix("//").unwrap_or(rest);
        let path = path.split('?').next().unwrap_or(path);
        if path == ":memory:" {
            return Ok((Backend::Sqlite, "sqlite::memory:".into(), None));
        }
        if !path.starts_with('/') {
            return Err(format!(
                "`{url}`: the SQLite path must be absolute; {FORMS}"
            ));
        }
        return Ok((Backend::Sqlite, format!("sqlite://{path}"), None));
    }
    let mut parsed =
        url::Url::parse(url).map_err(|e| format!("`{url}` is not a URL ({e}); {FORMS}"))?;
    let backend = match parsed.scheme() {
        "mysql" | "mariadb" => Backend::MySql,
        "postgres" | "postgresql" => Backend::Postgres,
        other => return Err(format!("unsupported database `{other}:`; {FORMS}")),
    };
    if parsed.path().trim_start_matches('/').is_empty() {
        return Err(format!("`{url}` names no database (e.g. …/vmail); {FORMS}"));
    }
    let password = parsed.password().map(|p| {
        url::form_urlencoded::parse(format!("p={p}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    });
    // Without a password in it the URL is safe to show in logs and errors.
    let _ = parsed.set_password(None);
    let mut text = parsed.to_string();
    if backend == Backend::MySql {
        text = text.replacen("mariadb:", "mysql:", 1);
    }
    Ok((backend, text, password))
}

/// A pool of connections to the vmail database.
#[derive(Debug, Clone)]
pub enum Db {
    /// Embedded SQLite.
    Sqlite(sqlx::SqlitePool),
    /// MariaDB or MySQL.
    MySql(sqlx::MySqlPool),
    /// PostgreSQL.
    Postgres(sqlx::PgPool),
}

impl Db {
    /// Makes a pool that connects on first use, so a database outage at
    /// start-up becomes temporary failures instead of a crash loop. With
    /// `create_sqlite`, a missing SQLite file is created (for `db init`).
    pub fn connect_lazy(cfg: &DatabaseConfig, create_sqlite: bool) -> Result<Self, DbError> {
        let bad = |e: sqlx::Error| DbError::Config(e.to_string());
        let slow = std::time::Duration::from_secs(1);
        Ok(match cfg.backend {
            Backend::Sqlite => {
                let mut opts = sqlx::sqlite::SqliteConnectOptions::from_str(&cfg.url)
                    .map_err(bad)?
                    .create_if_missing(create_sqlite)
                    .foreign_keys(true)
                    .busy_timeout(cfg.acquire_timeout)
                    // Rollback journal, not WAL: Postfix's and Dovecot's own
                    // sqlite drivers may read the same file as other users,
                    // and WAL needs write access for readers.
                    .journal_mode(sqlx::sqlite::SqliteJournalMode::Delete);
                opts = opts
                    .log_statements(tracing::log::LevelFilter::Trace)
                    .log_slow_statements(tracing::log::LevelFilter::Warn, slow);
                Db::Sqlite(pool_options(cfg).connect_lazy_with(opts))
            }
            Backend::MySql => {
                let mut opts = sqlx::mysql::MySqlConnectOptions::from_str(&cfg.url).map_err(bad)?;
                if let Some(pw) = &cfg.password {
                    opts = opts.password(pw.expose());
                }
                opts = opts
                    .log_statements(tracing::log::LevelFilter::Trace)
                    .log_slow_statements(tracing::log::LevelFilter::Warn, slow);
                Db::MySql(pool_options(cfg).connect_lazy_with(opts))
            }
            Backend::Postgres => {
                let mut opts = sqlx::postgres::PgConnectOptions::from_str(&cfg.url).map_err(bad)?;
                if let Some(pw) = &cfg.password {
                    opts = opts.password(pw.expose());
                }
                opts = opts
                    .log_statements(tracing::log::LevelFilter::Trace)
                    .log_slow_statements(tracing::log::LevelFilter::Warn, slow);
                Db::Postgres(pool_options(cfg).connect_lazy_with(opts))
            }
        })
    }

    /// Which server this pool talks to.
    pub fn backend(&self) -> Backend {
        match self {
            Db::Sqlite(_) => Backend::Sqlite,
            Db::MySql(_) => Backend::MySql,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// Closes every connection (waits for checked-out ones).
    pub async fn close(&self) {
        match self {
            Db::Sqlite(p) => p.close().await,
            Db::MySql(p) => p.close().await,
            Db::Postgres(p) => p.close().await,
        }
    }
}

fn pool_options<DB: sqlx::Database>(cfg: &DatabaseConfig) -> sqlx::pool::PoolOptions<DB> {
    sqlx::pool::PoolOptions::new()
        .max_connections(cfg.max_connections)
        .min_connections(0)
        .acquire_timeout(cfg.acquire_timeout)
        // No ping before every query (it doubles each lookup's round
        // trips); a broken connection is retried once in `fetch_all!`.
        .test_before_acquire(false)
}

/// The text of a statement for `backend`: statements are written once with
/// `?` placeholders (MySQL/SQLite) and `{quota}` for the unsigned quota
/// column, and rewritten once per process for PostgreSQL (`$1`, `$2`, …) and
/// MySQL (`CAST(quota AS SIGNED)`, since sqlx refuses to read `int unsigned`
/// into a signed integer).
pub(crate) fn sql_for(sql: &'static str, backend: Backend) -> &'static str {
    static CACHE: OnceLock<Mutex<HashMap<(&'static str, u8), &'static str>>> = OnceLock::new();
    let key = (sql, backend as u8);
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut map = match cache.lock() {
        Ok(m) => m,
        Err(poisoned) => poisoned.into_inner(),
    };
    if let Some(s) = map.get(&key) {
        return s;
    }
    let quota = match backend {
        Backend::MySql => "CAST(quota AS SIGNED)",
        Backend::Sqlite | Backend::Postgres => "quota",
    };
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    for c in fold_case(&sql.replace("{quota}", quota), backend).chars() {
        if c == '?' && backend == Backend::Postgres {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    // Bounded: one entry per statement constant and backend.
    let leaked: &'static str = Box::leak(out.into_boxed_str());
    map.insert(key, leaked);
    leaked
}

/// Rewrites `{lc column}` for a case-insensitive comparison with a
/// lowercase key: the column itself on MySQL/MariaDB (the guide's
/// collation already ignores case, and keeps its index), `lower(column)`
/// on SQLite and PostgreSQL (whose schemas in `contrib/sql/` index that
/// expression).
fn fold_case(sql: &str, backend: Backend) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut rest = sql;
    while let Some(start) = rest.find("{lc ") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 4..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let column = &after[..end];
        match backend {
            Backend::MySql => out.push_str(column),
            Backend::Sqlite | Backend::Postgres => {
                out.push_str("lower(");
                out.push_str(column);
                out.push(')');
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_folding_per_backend() {
        let sql = "SELECT 1 FROM accounts WHERE {lc username} = ? AND {lc domain} = ?";
        assert_eq!(
            fold_case(sql, Backend::MySql),
            "SELECT 1 FROM accounts WHERE username = ? AND domain = ?"
        );
        assert_eq!(
            fold_case(sql, Backend::Postgres),
            "SELECT 1 FROM accounts WHERE lower(username) = ? AND lower(domain) = ?"
        );
        assert_eq!(
            sql_for(
                "SELECT id FROM domains WHERE {lc domain} = ?",
                Backend::Postgres
            ),
            "SELECT id FROM domains WHERE lower(domain) = $1"
        );
        assert_eq!(fold_case("no {lc", Backend::Sqlite), "no {lc");
    }

    #[test]
    fn urls() {
        assert_eq!(
            split_url("sqlite:///var/lib/postwerk/vmail.db").unwrap(),
            (
                Backend::Sqlite,
                "sqlite:///var/lib/postwerk/vmail.db".into(),
                None
            )
        );
        assert_eq!(
            split_url("sqlite:/tmp/x.db").unwrap().1,
            "sqlite:///tmp/x.db"
        );
        assert!(
            split_url("sqlite:relative.db")
                .unwrap_err()
                .contains("absolute")
        );
        let (b, u, p) =
            split_url("mariadb://vmail:p%40ss@localhost/vmail?socket=/run/mysqld/mysqld.sock")
                .unwrap();
        assert_eq!(b, Backend::MySql);
        assert_eq!(p.as_deref(), Some("p@ss"));
        assert!(u.starts_with("mysql://vmail@localhost/vmail"), "{u}");
        assert!(!u.contains("p%40ss"));
        assert_eq!(
            split_url("postgresql://root@127.0.0.1/vmail").unwrap().0,
            Backend::Postgres
        );
        assert!(
            split_url("oracle://x/y")
                .unwrap_err()
                .contains("unsupported")
        );
        assert!(
            split_url("mysql://localhost")
                .unwrap_err()
                .contains("no database")
        );
        assert!(split_url("nonsense").is_err());
    }

    #[test]
    fn placeholders() {
        let q = "SELECT {quota} FROM accounts WHERE username = ? AND domain = ?";
        assert_eq!(
            sql_for(q, Backend::Postgres),
            "SELECT quota FROM accounts WHERE username = $1 AND domain = $2"
        );
        assert_eq!(
            sql_for(q, Backend::MySql),
            "SELECT CAST(quota AS SIGNED) FROM accounts WHERE username = ? AND domain = ?"
        );
        assert_eq!(
            sql_for(q, Backend::Sqlite),
            "SELECT quota FROM accounts WHERE username = ? AND domain = ?"
        );
    }
}

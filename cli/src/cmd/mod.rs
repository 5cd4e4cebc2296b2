//! One module per subcommand, each with its argument types and `run`.
//! Shared here: the context (config, database) and password input.

pub mod account;
pub mod alias;
pub mod autoconfig;
pub mod config;
pub mod db;
pub mod dkim;
pub mod dns;
pub mod domain;
pub mod import_rspamd;
pub mod pw;
pub mod server;
pub mod tlspolicy;

use anyhow::{Context, bail};
use postwerk_core::address::{Address, normalize_domain};
use postwerk_core::config::Config;
use postwerk_core::db::{Db, DbError};
use std::io::IsTerminal;
use tokio::sync::OnceCell;

/// What every subcommand gets.
pub struct Ctx {
    /// The validated configuration (with `--database` applied).
    pub cfg: Config,
    /// `--json` was given.
    pub json: bool,
    db: OnceCell<Db>,
}

impl Ctx {
    /// Makes a context.
    pub fn new(cfg: Config, json: bool) -> Self {
        Self {
            cfg,
            json,
            db: OnceCell::new(),
        }
    }

    /// The database, connected and with the guide's tables present.
    pub async fn db(&self) -> anyhow::Result<&Db> {
        self.db
            .get_or_try_init(|| async {
                if let Some(path) = self.cfg.database.url.strip_prefix("sqlite://")
                    && path != ":memory:"
                    && !std::path::Path::new(path).exists()
                {
                    bail!(
                        "the SQLite database {path} does not exist — create it with `postwerk db init` (or point --database / [database].url at your database)"
                    );
                }
                let db = Db::connect_lazy(&self.cfg.database, false).map_err(|e| self.explain(e))?;
                db.check_schema().await.map_err(|e| self.explain(e))?;
                Ok::<_, anyhow::Error>(db)
            })
            .await
    }

    /// The database without checking the schema, creating a missing SQLite
    /// file (for `db init`).
    pub async fn db_for_init(&self) -> anyhow::Result<&Db> {
        self.db
            .get_or_try_init(|| async {
                if let Some(path) = self.cfg.database.url.strip_prefix("sqlite://")
                    && let Some(dir) = std::path::Path::new(path).parent()
                {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("cannot create directory {}", dir.display()))?;
                }
                Db::connect_lazy(&self.cfg.database, true).map_err(|e| self.explain(e))
            })
            .await
    }

    /// Closes the pool so the process exits promptly.
    pub async fn close(&self) {
        if let Some(db) = self.db.get() {
            db.close().await;
        }
    }

    /// Turns a database error into a message that says what to do.
    pub fn explain(&self, e: DbError) -> anyhow::Error {
        let url = &self.cfg.database.url;
        match e {
            DbError::Unavailable(source) => anyhow::anyhow!(
                "cannot reach the database {url}: {source} — is the server running and the URL right (--database or [database].url)?"
            ),
            DbError::BadRow { detail, .. } if detail.contains("db init") => {
                anyhow::anyhow!("database {url}: {detail}")
            }
            DbError::Query { what, source } => {
                let s = source.to_string();
                if s.contains("unable to open database file") {
                    anyhow::anyhow!(
                        "cannot open the SQLite database {url}: it does not exist or is not readable — create it with `postwerk db init`"
                    )
                } else {
                    anyhow::anyhow!("database {url}: {what} failed: {s}")
                }
            }
            other => anyhow::anyhow!("{other}"),
        }
    }

    /// Every domain in the database, and the ones a command works on:
    /// `given` (which must exist) or all of them.
    pub async fn domains_or(
        &self,
        given: Option<&str>,
    ) -> anyhow::Result<(Vec<String>, Vec<String>)> {
        let all: Vec<String> = self
            .db()
            .await?
            .domain_list()
            .await
            .map_err(|e| self.explain(e))?
            .into_iter()
            .map(|d| d.domain)
            .collect();
        let chosen = match given {
            Some(d) => {
                let d = parse_domain(d)?;
                self.require_domain(&d).await?;
                vec![d]
            }
            None => all.clone(),
        };
        Ok((all, chosen))
    }

    /// Fails with a hint unless `domain` exists.
    pub async fn require_domain(&self, domain: &str) -> anyhow::Result<()> {
        if !self
            .db()
            .await?
            .domain_exists(domain)
            .await
            .map_err(|e| self.explain(e))?
        {
            bail!("domain {domain} does not exist — add it with `postwerk domain add {domain}`");
        }
        Ok(())
    }
}

/// Parses an address given on the command line.
pub fn parse_address(s: &str) -> anyhow::Result<Address> {
    Address::parse(s).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Parses a domain given on the command line.
pub fn parse_domain(s: &str) -> anyhow::Result<String> {
    normalize_domain(s).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Reads a new password: one line from stdin with `--password-stdin` (or
/// when stdin is not a terminal), else prompted twice without echo — the
/// same input rules as `postwerk pw`.
pub fn read_new_password(from_stdin: bool) -> anyhow::Result<Vec<u8>> {
    let pw = if from_stdin || !std::io::stdin().is_terminal() {
        pw::read_password_line(std::io::stdin().lock())?
    } else {
        pw::prompt_password(false)?
    };
    if pw.is_empty() {
        bail!("the password is empty");
    }
    Ok(pw)
}

//! Every SQL statement postwerk runs, named after the guide's semantics.
//! Statements are written once (`?` placeholders, `{quota}` for the
//! unsigned quota column) and adapted per backend by [`super::sql_for`].
//! Lookups return `Ok(None)` / an empty list for "not found"; errors are
//! [`DbError`]s, temporary unless proven otherwise.
//!
//! Keys are normalised by the callers (lowercase, ASCII domain), as
//! Postfix folds map keys and Dovecot applies `%Lu`; rows are matched
//! whatever their case (`{lc column}`, see `fold_case`): natively on
//! MariaDB (the guide's collation), through `lower(column)` on SQLite and
//! PostgreSQL, whose schemas index that expression. An account stored as
//! `Grace` is therefore found as `grace`, and every daemon derives paths
//! from the normalised key, never from the row's spelling.

use super::{Backend, Db, DbError, model::*, sql_for};
use crate::config::Secret;
use sqlx::Row;

/// Runs a SELECT on whichever pool `$db` is and maps each row. A query that
/// fails because its pooled connection broke (the server restarted, an
/// idle connection was cut) is run once more on a fresh connection: pooled
/// connections are not pinged before use, which would double the round
/// trips of every lookup. Reads only, so the retry is harmless.
macro_rules! fetch_all {
    ($db:expr, $what:literal, $sql:expr, [$($bind:expr),* $(,)?], |$row:ident| $map:expr) => {{
        let sql: &'static str = $sql;
        let mut attempt = 0;
        loop {
            let res: Result<Vec<_>, sqlx::Error> = match $db {
                Db::Sqlite(p) => sqlx::query(sql_for(sql, Backend::Sqlite))$(.bind($bind))*
                    .fetch_all(p).await
                    .and_then(|rows| rows.iter().map(|$row| -> Result<_, sqlx::Error> { Ok($map) }).collect()),
                Db::MySql(p) => sqlx::query(sql_for(sql, Backend::MySql))$(.bind($bind))*
                    .fetch_all(p).await
                    .and_then(|rows| rows.iter().map(|$row| -> Result<_, sqlx::Error> { Ok($map) }).collect()),
                Db::Postgres(p) => sqlx::query(sql_for(sql, Backend::Postgres))$(.bind($bind))*
                    .fetch_all(p).await
                    .and_then(|rows| rows.iter().map(|$row| -> Result<_, sqlx::Error> { Ok($map) }).collect()),
            };
            match res {
                Err(e) if attempt == 0 && is_broken_connection(&e) => {
                    tracing::debug!(query = $what, error = %e, "pooled connection broke; retrying once");
                    attempt += 1;
                }
                other => break other.map_err(|e| DbError::from_sqlx($what, e)),
            }
        }
    }};
}

/// Errors that mean the connection itself is gone, not the query.
fn is_broken_connection(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::Io(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed
    )
}

/// Runs an INSERT/UPDATE/DELETE and returns the number of rows affected.
macro_rules! execute {
    ($db:expr, $what:expr, $sql:expr, [$($bind:expr),* $(,)?]) => {{
        let sql: &'static str = $sql;
        let res: Result<u64, sqlx::Error> = match $db {
            Db::Sqlite(p) => sqlx::query(sql_for(sql, Backend::Sqlite))$(.bind($bind))*
                .execute(p).await.map(|r| r.rows_affected()),
            Db::MySql(p) => sqlx::query(sql_for(sql, Backend::MySql))$(.bind($bind))*
                .execute(p).await.map(|r| r.rows_affected()),
            Db::Postgres(p) => sqlx::query(sql_for(sql, Backend::Postgres))$(.bind($bind))*
                .execute(p).await.map(|r| r.rows_affected()),
        };
        res.map_err(|e| DbError::from_sqlx($what, e))
    }};
}

const ACCOUNT_COLUMNS: &str = "username, domain, password, {quota} AS quota, enabled, sendonly";

fn account_from<R: Row>(row: &R) -> Result<Account, sqlx::Error>
where
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<bool>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    usize: sqlx::ColumnIndex<R>,
{
    Ok(Account {
        username: row.try_get(0)?,
        domain: row.try_get(1)?,
        password: Secret::new(row.try_get::<String, _>(2)?),
        quota_mb: row.try_get::<Option<i64>, _>(3)?.unwrap_or(0),
        enabled: row.try_get::<Option<bool>, _>(4)?.unwrap_or(false),
        sendonly: row.try_get::<Option<bool>, _>(5)?.unwrap_or(false),
    })
}

fn alias_from<R: Row>(row: &R) -> Result<Alias, sqlx::Error>
where
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<bool>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    usize: sqlx::ColumnIndex<R>,
{
    Ok(Alias {
        source_username: row.try_get(0)?,
        source_domain: row.try_get(1)?,
        destination_username: row.try_get(2)?,
        destination_domain: row.try_get(3)?,
        enabled: row.try_get::<Option<bool>, _>(4)?.unwrap_or(false),
    })
}

/// `user@domain` from a row, normalised as lookups are (lowercase,
/// punycode); a row that does not parse is kept lowercased as stored.
fn lower_address(user: &str, domain: &str) -> String {
    crate::address::Address::from_parts(user, domain)
        .map(|a| a.to_string())
        .unwrap_or_else(|_| format!("{user}@{domain}").to_lowercase())
}

fn tls_policy_from(
    domain: String,
    policy: String,
    params: Option<String>,
) -> Result<TlsPolicy, DbError> {
    let policy = policy.parse().map_err(|e: String| DbError::BadRow {
        table: "tlspolicies",
        detail: format!("domain {domain}: {e}"),
    })?;
    Ok(TlsPolicy {
        domain,
        policy,
        params,
    })
}

impl Db {
    // ---- schema -------------------------------------------------------

    /// `postwerk db init`: creates the guide's four tables if they do not
    /// exist. Never alters an existing table.
    pub async fn init_schema(&self) -> Result<(), DbError> {
        for stmt in self.backend().schema().split(';') {
            let stmt: String = stmt
                .lines()
                .filter(|l| !l.trim_start().starts_with("--"))
                .collect::<Vec<_>>()
                .join("\n");
            if stmt.trim().is_empty() {
                continue;
            }
            let stmt: &'static str = Box::leak(stmt.into_boxed_str());
            execute!(self, "init_schema", stmt, [])?;
        }
        Ok(())
    }

    /// Checks that the four tables are there and readable; the error says
    /// which one is missing.
    pub async fn check_schema(&self) -> Result<(), DbError> {
        for (table, sql) in [
            ("domains", "SELECT COUNT(*) FROM domains"),
            ("accounts", "SELECT COUNT(*) FROM accounts"),
            ("aliases", "SELECT COUNT(*) FROM aliases"),
            ("tlspolicies", "SELECT COUNT(*) FROM tlspolicies"),
        ] {
            let res = fetch_all!(self, "check_schema", sql, [], |r| r.try_get::<i64, _>(0)?);
            if let Err(e) = res {
                return Err(match e {
                    DbError::Query { source, .. } => DbError::BadRow {
                        table,
                        detail: format!(
                            "cannot read table {table} ({source}); run `postwerk db init`"
                        ),
                    },
                    other => other,
                });
            }
        }
        Ok(())
    }

    // ---- Postfix lookups (the guide's /etc/postfix/sql/*.cf) -------------

    /// `domains.cf` (`virtual_mailbox_domains`): is `domain` ours?
    pub async fn domain_exists(&self, domain: &str) -> Result<bool, DbError> {
        let rows = fetch_all!(
            self,
            "domain_exists",
            "SELECT domain FROM domains WHERE {lc domain} = ?",
            [domain],
            |r| r.try_get::<String, _>(0)?
        )?;
        Ok(!rows.is_empty())
    }

    /// `accounts.cf` (`virtual_mailbox_maps`): the enabled account
    /// `user@domain` (send-only accounts included, as in the guide).
    pub async fn enabled_account(
        &self,
        user: &str,
        domain: &str,
    ) -> Result<Option<Account>, DbError> {
        let mut rows = fetch_all!(
            self,
            "enabled_account",
            "SELECT username, domain, password, {quota} AS quota, enabled, sendonly FROM accounts WHERE {lc username} = ? AND {lc domain} = ? AND enabled = true LIMIT 1",
            [user, domain],
            |r| account_from(r)?
        )?;
        Ok(rows.pop())
    }

    /// `aliases.cf` (`virtual_alias_maps`), exactly as the guide's query:
    /// the enabled alias rows for `user@domain` together with the domain's
    /// catch-all rows (`source_username IS NULL`), but none at all when an
    /// account `user@domain` exists (enabled or not). Several rows make a
    /// distribution list. Returns `user@domain` destinations, sorted.
    pub async fn guide_alias_destinations(
        &self,
        user: &str,
        domain: &str,
    ) -> Result<Vec<String>, DbError> {
        fetch_all!(
            self,
            "guide_alias_destinations",
            "SELECT DISTINCT destination_username, destination_domain FROM aliases \
             WHERE ({lc source_username} = ? OR source_username IS NULL) AND {lc source_domain} = ? AND enabled = true \
             AND NOT EXISTS (SELECT id FROM accounts WHERE {lc username} = ? AND {lc domain} = ?) \
             ORDER BY destination_username, destination_domain",
            [user, domain, user, domain],
            |r| lower_address(&r.try_get::<String, _>(0)?, &r.try_get::<String, _>(1)?)
        )
    }

    /// One step of virtual alias expansion of `addr`, whose own rows are
    /// `rows`, as postwerk decides it for every daemon (README "Differences
    /// from the guide"): an account hides every alias of its name; named
    /// aliases come before the catch-all; `user+tag@` without rows of its
    /// own takes the named aliases of `user@` (one more query), unless
    /// `user@` is an account; then the catch-all. `None`: mail to `addr`
    /// is not aliased.
    pub async fn expand_alias(
        &self,
        addr: &crate::address::Address,
        rows: AddressRows,
        delimiter: &str,
    ) -> Result<Option<AliasExpansion>, DbError> {
        if rows.account.is_some() {
            return Ok(None);
        }
        if !rows.named.is_empty() {
            return Ok(Some(AliasExpansion {
                destinations: rows.named,
                via_base: None,
            }));
        }
        let (base, detail) = addr.split_detail(delimiter);
        if let Some(detail) = detail {
            let base_rows = self.address_rows(base.local(), base.domain()).await?;
            if base_rows.account.is_some() {
                return Ok(None);
            }
            if !base_rows.named.is_empty() {
                return Ok(Some(AliasExpansion {
                    destinations: base_rows.named,
                    via_base: Some((base, detail)),
                }));
            }
        }
        Ok((!rows.catch_all.is_empty()).then_some(AliasExpansion {
            destinations: rows.catch_all,
            via_base: None,
        }))
    }

    /// Everything about `user@domain` that decides where its mail goes, in
    /// one round trip: the account of that name and the enabled named and
    /// catch-all alias rows (expanded by [`Db::expand_alias`]).
    pub async fn address_rows(&self, user: &str, domain: &str) -> Result<AddressRows, DbError> {
        let rows = fetch_all!(
            self,
            "address_rows",
            "SELECT 'a', username, domain, enabled, sendonly FROM accounts \
             WHERE {lc username} = ? AND {lc domain} = ? \
             UNION ALL SELECT CASE WHEN source_username IS NULL THEN 'c' ELSE 'n' END, \
             destination_username, destination_domain, enabled, enabled FROM aliases \
             WHERE ({lc source_username} = ? OR source_username IS NULL) AND {lc source_domain} = ? AND enabled = true",
            [user, domain, user, domain],
            |r| (
                r.try_get::<String, _>(0)?,
                r.try_get::<String, _>(1)?,
                r.try_get::<String, _>(2)?,
                r.try_get::<Option<bool>, _>(3)?.unwrap_or(false),
                r.try_get::<Option<bool>, _>(4)?.unwrap_or(false)
            )
        )?;
        let mut out = AddressRows::default();
        for (kind, u, d, enabled, sendonly) in rows {
            match kind.as_str() {
                "a" => out.account = Some((enabled, sendonly)),
                "n" => out.named.push(lower_address(&u, &d)),
                _ => out.catch_all.push(lower_address(&u, &d)),
            }
        }
        for list in [&mut out.named, &mut out.catch_all] {
            list.sort();
            list.dedup();
        }
        Ok(out)
    }

    /// The enabled alias rows whose source is exactly `user@domain`
    /// (no catch-all), as destinations.
    pub async fn alias_destinations(
        &self,
        user: &str,
        domain: &str,
    ) -> Result<Vec<String>, DbError> {
        fetch_all!(
            self,
            "alias_destinations",
            "SELECT DISTINCT destination_username, destination_domain FROM aliases \
             WHERE {lc source_username} = ? AND {lc source_domain} = ? AND enabled = true \
             ORDER BY destination_username, destination_domain",
            [user, domain],
            |r| lower_address(&r.try_get::<String, _>(0)?, &r.try_get::<String, _>(1)?)
        )
    }

    /// The enabled catch-all destinations of `domain`.
    pub async fn catch_all_destinations(&self, domain: &str) -> Result<Vec<String>, DbError> {
        fetch_all!(
            self,
            "catch_all_destinations",
            "SELECT DISTINCT destination_username, destination_domain FROM aliases \
             WHERE source_username IS NULL AND {lc source_domain} = ? AND enabled = true \
             ORDER BY destination_username, destination_domain",
            [domain],
            |r| lower_address(&r.try_get::<String, _>(0)?, &r.try_get::<String, _>(1)?)
        )
    }

    /// `recipient-access.cf` (`check_recipient_access`): `OK` for an enabled
    /// mailbox account, `REJECT` for an enabled send-only account, `None`
    /// otherwise.
    pub async fn recipient_access(
        &self,
        user: &str,
        domain: &str,
    ) -> Result<Option<RecipientAccess>, DbError> {
        let mut rows = fetch_all!(
            self,
            "recipient_access",
            "SELECT sendonly FROM accounts WHERE {lc username} = ? AND {lc domain} = ? AND enabled = true LIMIT 1",
            [user, domain],
            |r| r.try_get::<Option<bool>, _>(0)?.unwrap_or(false)
        )?;
        Ok(rows.pop().map(|sendonly| {
            if sendonly {
                RecipientAccess::Reject
            } else {
                RecipientAccess::Ok
            }
        }))
    }

    /// `sender-login-maps.cf` (`smtpd_sender_login_maps`): the logins that
    /// may use `user@domain` as sender: the enabled account itself and the
    /// destinations of enabled aliases with that exact source.
    pub async fn sender_login_owners(
        &self,
        user: &str,
        domain: &str,
    ) -> Result<Vec<String>, DbError> {
        let mut owners = fetch_all!(
            self,
            "sender_login_owners",
            "SELECT username, domain FROM accounts WHERE {lc username} = ? AND {lc domain} = ? AND enabled = true \
             UNION SELECT destination_username, destination_domain FROM aliases \
             WHERE {lc source_username} = ? AND {lc source_domain} = ? AND enabled = true",
            [user, domain, user, domain],
            |r| lower_address(&r.try_get::<String, _>(0)?, &r.try_get::<String, _>(1)?)
        )?;
        owners.sort();
        owners.dedup();
        Ok(owners)
    }

    /// `tls-policy.cf` (`smtp_tls_policy_maps`): the policy for `domain`.
    pub async fn tls_policy(&self, domain: &str) -> Result<Option<TlsPolicy>, DbError> {
        let mut rows = fetch_all!(
            self,
            "tls_policy",
            "SELECT domain, policy, params FROM tlspolicies WHERE {lc domain} = ?",
            [domain],
            |r| (
                r.try_get::<String, _>(0)?,
                r.try_get::<String, _>(1)?,
                r.try_get::<Option<String>, _>(2)?
            )
        )?;
        match rows.pop() {
            Some((d, p, params)) => tls_policy_from(d, p, params).map(Some),
            None => Ok(None),
        }
    }

    // ---- Dovecot (the guide's dovecot-sql.conf) --------------------------

    /// `password_query`: the enabled account's stored password.
    pub async fn passdb_lookup(
        &self,
        user: &str,
        domain: &str,
    ) -> Result<Option<PassdbEntry>, DbError> {
        let mut rows = fetch_all!(
            self,
            "passdb_lookup",
            "SELECT username, domain, password FROM accounts WHERE {lc username} = ? AND {lc domain} = ? AND enabled = true",
            [user, domain],
            |r| PassdbEntry {
                user: r.try_get(0)?,
                domain: r.try_get(1)?,
                password: Secret::new(r.try_get::<String, _>(2)?),
            }
        )?;
        Ok(rows.pop())
    }

    /// `user_query`: the quota of an account that has a mailbox (send-only
    /// accounts have no userdb entry).
    pub async fn userdb_lookup(
        &self,
        user: &str,
        domain: &str,
    ) -> Result<Option<UserdbEntry>, DbError> {
        let mut rows = fetch_all!(
            self,
            "userdb_lookup",
            "SELECT {quota} AS quota FROM accounts WHERE {lc username} = ? AND {lc domain} = ? AND sendonly = false",
            [user, domain],
            |r| UserdbEntry {
                quota_mb: r.try_get::<Option<i64>, _>(0)?.unwrap_or(0)
            }
        )?;
        Ok(rows.pop())
    }

    /// `iterate_query` (`doveadm -A`): every account that has a mailbox, as
    /// `user@domain`.
    pub async fn userdb_iterate(&self) -> Result<Vec<String>, DbError> {
        fetch_all!(
            self,
            "userdb_iterate",
            "SELECT username, domain FROM accounts WHERE sendonly = false ORDER BY domain, username",
            [],
            |r| lower_address(&r.try_get::<String, _>(0)?, &r.try_get::<String, _>(1)?)
        )
    }

    // ---- administration (the postwerk CLI) -------------------------------

    /// Adds a domain.
    pub async fn domain_add(&self, domain: &str) -> Result<(), DbError> {
        execute!(
            self,
            "domain_add",
            "INSERT INTO domains (domain) VALUES (?)",
            [domain]
        )
        .map_err(|e| rename_duplicate(e, format!("domain {domain}")))?;
        Ok(())
    }

    /// Every domain with its account and alias counts.
    pub async fn domain_list(&self) -> Result<Vec<DomainSummary>, DbError> {
        fetch_all!(
            self,
            "domain_list",
            "SELECT d.domain, \
             (SELECT COUNT(*) FROM accounts a WHERE a.domain = d.domain), \
             (SELECT COUNT(*) FROM aliases s WHERE s.source_domain = d.domain) \
             FROM domains d ORDER BY d.domain",
            [],
            |r| DomainSummary {
                domain: r.try_get(0)?,
                accounts: r.try_get(1)?,
                aliases: r.try_get(2)?,
            }
        )
    }

    /// Deletes a domain; with `cascade`, first its aliases and accounts.
    /// Returns false when the domain did not exist.
    pub async fn domain_del(&self, domain: &str, cascade: bool) -> Result<bool, DbError> {
        if cascade {
            execute!(
                self,
                "domain_del",
                "DELETE FROM aliases WHERE source_domain = ?",
                [domain]
            )?;
            execute!(
                self,
                "domain_del",
                "DELETE FROM accounts WHERE domain = ?",
                [domain]
            )?;
        }
        let n = execute!(
            self,
            "domain_del",
            "DELETE FROM domains WHERE domain = ?",
            [domain]
        )
        .map_err(|e| match e {
            DbError::ForeignKey { .. } => DbError::ForeignKey {
                what: format!("domain {domain} still has accounts or aliases"),
            },
            other => other,
        })?;
        Ok(n > 0)
    }

    /// Adds an account.
    pub async fn account_add(&self, a: &Account) -> Result<(), DbError> {
        execute!(
            self,
            "account_add",
            "INSERT INTO accounts (username, domain, password, quota, enabled, sendonly) VALUES (?, ?, ?, ?, ?, ?)",
            [
                a.username.as_str(),
                a.domain.as_str(),
                a.password.expose(),
                a.quota_mb,
                a.enabled,
                a.sendonly
            ]
        )
        .map_err(|e| rename_duplicate(e, format!("account {}", a.address())))?;
        Ok(())
    }

    /// One account, enabled or not.
    pub async fn account_get(&self, user: &str, domain: &str) -> Result<Option<Account>, DbError> {
        let mut rows = fetch_all!(
            self,
            "account_get",
            "SELECT username, domain, password, {quota} AS quota, enabled, sendonly FROM accounts WHERE {lc username} = ? AND {lc domain} = ?",
            [user, domain],
            |r| account_from(r)?
        )?;
        Ok(rows.pop())
    }

    /// Accounts, all or of one domain, sorted.
    pub async fn account_list(&self, domain: Option<&str>) -> Result<Vec<Account>, DbError> {
        let _ = ACCOUNT_COLUMNS;
        match domain {
            Some(d) => fetch_all!(
                self,
                "account_list",
                "SELECT username, domain, password, {quota} AS quota, enabled, sendonly FROM accounts WHERE {lc domain} = ? ORDER BY domain, username",
                [d],
                |r| account_from(r)?
            ),
            None => fetch_all!(
                self,
                "account_list",
                "SELECT username, domain, password, {quota} AS quota, enabled, sendonly FROM accounts ORDER BY domain, username",
                [],
                |r| account_from(r)?
            ),
        }
    }

    /// Deletes an account; false if it did not exist.
    pub async fn account_del(&self, user: &str, domain: &str) -> Result<bool, DbError> {
        Ok(execute!(
            self,
            "account_del",
            "DELETE FROM accounts WHERE {lc username} = ? AND {lc domain} = ?",
            [user, domain]
        )? > 0)
    }

    /// Sets an account's password hash; false if it does not exist.
    pub async fn account_set_password(
        &self,
        user: &str,
        domain: &str,
        hash: &Secret,
    ) -> Result<bool, DbError> {
        Ok(execute!(
            self,
            "account_set_password",
            "UPDATE accounts SET password = ? WHERE {lc username} = ? AND {lc domain} = ?",
            [hash.expose(), user, domain]
        )? > 0)
    }

    /// Sets an account's quota in MB; false if it does not exist.
    pub async fn account_set_quota(
        &self,
        user: &str,
        domain: &str,
        quota_mb: i64,
    ) -> Result<bool, DbError> {
        Ok(execute!(
            self,
            "account_set_quota",
            "UPDATE accounts SET quota = ? WHERE {lc username} = ? AND {lc domain} = ?",
            [quota_mb, user, domain]
        )? > 0)
    }

    /// Enables or disables an account; false if it does not exist.
    pub async fn account_set_enabled(
        &self,
        user: &str,
        domain: &str,
        enabled: bool,
    ) -> Result<bool, DbError> {
        Ok(execute!(
            self,
            "account_set_enabled",
            "UPDATE accounts SET enabled = ? WHERE {lc username} = ? AND {lc domain} = ?",
            [enabled, user, domain]
        )? > 0)
    }

    /// Adds one alias row (`source_username` `None` is a catch-all).
    pub async fn alias_add(&self, a: &Alias) -> Result<(), DbError> {
        execute!(
            self,
            "alias_add",
            "INSERT INTO aliases (source_username, source_domain, destination_username, destination_domain, enabled) VALUES (?, ?, ?, ?, ?)",
            [
                a.source_username.as_deref(),
                a.source_domain.as_str(),
                a.destination_username.as_str(),
                a.destination_domain.as_str(),
                a.enabled
            ]
        )
        .map_err(|e| rename_duplicate(e, format!("alias {} -> {}", a.source(), a.destination())))?;
        Ok(())
    }

    /// Whether this exact alias row exists. Needed because UNIQUE keys do
    /// not stop duplicate catch-all rows (NULL never equals NULL).
    pub async fn alias_exists(&self, a: &Alias) -> Result<bool, DbError> {
        let rows = match a.source_username.as_deref() {
            Some(u) => fetch_all!(
                self,
                "alias_exists",
                "SELECT id FROM aliases WHERE source_username = ? AND source_domain = ? AND destination_username = ? AND destination_domain = ?",
                [
                    u,
                    a.source_domain.as_str(),
                    a.destination_username.as_str(),
                    a.destination_domain.as_str()
                ],
                |r| r.try_get::<Option<String>, _>("source_domain").ok()
            )?,
            None => fetch_all!(
                self,
                "alias_exists",
                "SELECT id FROM aliases WHERE source_username IS NULL AND source_domain = ? AND destination_username = ? AND destination_domain = ?",
                [
                    a.source_domain.as_str(),
                    a.destination_username.as_str(),
                    a.destination_domain.as_str()
                ],
                |r| r.try_get::<Option<String>, _>("source_domain").ok()
            )?,
        };
        Ok(!rows.is_empty())
    }

    /// Alias rows, all or with a source in one domain, sorted.
    pub async fn alias_list(&self, domain: Option<&str>) -> Result<Vec<Alias>, DbError> {
        match domain {
            Some(d) => fetch_all!(
                self,
                "alias_list",
                "SELECT source_username, source_domain, destination_username, destination_domain, enabled FROM aliases \
                 WHERE source_domain = ? ORDER BY source_domain, source_username, destination_domain, destination_username",
                [d],
                |r| alias_from(r)?
            ),
            None => fetch_all!(
                self,
                "alias_list",
                "SELECT source_username, source_domain, destination_username, destination_domain, enabled FROM aliases \
                 ORDER BY source_domain, source_username, destination_domain, destination_username",
                [],
                |r| alias_from(r)?
            ),
        }
    }

    /// Deletes alias rows of a source (`None` user = catch-all), all of
    /// them or only the one to `destination`. Returns how many went.
    pub async fn alias_del(
        &self,
        source_user: Option<&str>,
        source_domain: &str,
        destination: Option<(&str, &str)>,
    ) -> Result<u64, DbError> {
        match (source_user, destination) {
            (Some(u), Some((du, dd))) => execute!(
                self,
                "alias_del",
                "DELETE FROM aliases WHERE source_username = ? AND source_domain = ? AND destination_username = ? AND destination_domain = ?",
                [u, source_domain, du, dd]
            ),
            (Some(u), None) => execute!(
                self,
                "alias_del",
                "DELETE FROM aliases WHERE source_username = ? AND source_domain = ?",
                [u, source_domain]
            ),
            (None, Some((du, dd))) => execute!(
                self,
                "alias_del",
                "DELETE FROM aliases WHERE source_username IS NULL AND source_domain = ? AND destination_username = ? AND destination_domain = ?",
                [source_domain, du, dd]
            ),
            (None, None) => execute!(
                self,
                "alias_del",
                "DELETE FROM aliases WHERE source_username IS NULL AND source_domain = ?",
                [source_domain]
            ),
        }
    }

    /// Adds a TLS policy.
    pub async fn tlspolicy_add(&self, p: &TlsPolicy) -> Result<(), DbError> {
        execute!(
            self,
            "tlspolicy_add",
            "INSERT INTO tlspolicies (domain, policy, params) VALUES (?, ?, ?)",
            [p.domain.as_str(), p.policy.as_str(), p.params.as_deref()]
        )
        .map_err(|e| rename_duplicate(e, format!("TLS policy for {}", p.domain)))?;
        Ok(())
    }

    /// Every TLS policy, sorted by domain.
    pub async fn tlspolicy_list(&self) -> Result<Vec<TlsPolicy>, DbError> {
        let rows = fetch_all!(
            self,
            "tlspolicy_list",
            "SELECT domain, policy, params FROM tlspolicies ORDER BY domain",
            [],
            |r| (
                r.try_get::<String, _>(0)?,
                r.try_get::<String, _>(1)?,
                r.try_get::<Option<String>, _>(2)?
            )
        )?;
        rows.into_iter()
            .map(|(d, p, params)| tls_policy_from(d, p, params))
            .collect()
    }

    /// Deletes a TLS policy; false if there was none.
    pub async fn tlspolicy_del(&self, domain: &str) -> Result<bool, DbError> {
        Ok(execute!(
            self,
            "tlspolicy_del",
            "DELETE FROM tlspolicies WHERE domain = ?",
            [domain]
        )? > 0)
    }
}

fn rename_duplicate(e: DbError, what: String) -> DbError {
    match e {
        DbError::Duplicate { .. } => DbError::Duplicate { what },
        other => other,
    }
}

/// Tells whether the vmail tables changed since the last call, cheaply
/// enough to run every second: a cache in front of the queries above can
/// then keep answers until the data really changes.
///
/// - SQLite: `PRAGMA data_version` on a connection of its own, which
///   changes when any other connection commits (O(1), exact).
/// - MariaDB/MySQL: `CHECKSUM TABLE` of the four tables (reads each table;
///   needs only SELECT) — but only when InnoDB's log sequence number
///   (`Innodb_lsn_current`, readable without privileges) moved: every
///   commit that changes a row writes the redo log first, so a number that
///   stood still means no table changed. The number moves on writes to
///   any database of the server, so a busy server still pays the checksum;
///   an idle one (the usual mail server: the tables change when the admin
///   changes them) pays one status read a second. Tables of another engine,
///   or a server without that status (MySQL), always get the checksum.
/// - PostgreSQL: a sum of `hashtext` over the rows of the four tables, in
///   the same statement as `pg_current_snapshot()`, whose text stays the
///   same until a transaction that wrote anything (anywhere on the
///   cluster) ends; while it does, the sum is not read again (unless one
///   of the four is not a plain table, e.g. a view).
#[derive(Debug)]
pub struct ChangeProbe {
    db: Db,
    sqlite: Option<sqlx::SqliteConnection>,
    gate: Option<Gate>,
    settle: std::time::Duration,
}

/// The server's write position (MariaDB: log sequence number; PostgreSQL:
/// snapshot) at which `marker` was computed.
#[derive(Debug)]
struct Gate {
    position: String,
    /// When this position was first read.
    since: std::time::Instant,
    /// Whether `marker` is known to include every commit up to `position`.
    is_settled: bool,
    marker: String,
}

/// MariaDB: how long the log sequence number must have stood still, as
/// seen by a checksum, before the checksum is skipped. InnoDB advances the
/// number when it writes a commit to the redo log, a few microseconds
/// before the commit becomes visible to other transactions
/// (`trx_commit_low`: the mini-transaction, then `trx_commit_in_memory`),
/// so a checksum taken just then can miss a commit whose number it was
/// given; one taken this long after the number was first read cannot.
pub const PROBE_SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

impl ChangeProbe {
    /// A probe on `db`'s server.
    pub fn new(db: Db) -> Self {
        Self {
            db,
            sqlite: None,
            gate: None,
            settle: PROBE_SETTLE,
        }
    }

    /// A probe that trusts MariaDB's log sequence number as soon as it has
    /// read it once (for tests of the skipped path; see [`PROBE_SETTLE`]).
    pub fn with_settle(mut self, settle: std::time::Duration) -> Self {
        self.settle = settle;
        self
    }

    /// The marker of the last checksum when the server's write position is
    /// still the one it was computed at (and settled).
    fn unchanged(&self, position: Option<&str>) -> Option<String> {
        match (&self.gate, position) {
            (Some(g), Some(p)) if g.is_settled && g.position == p => Some(g.marker.clone()),
            _ => None,
        }
    }

    /// Notes `marker` as computed after `position` was read (`None`: the
    /// position cannot be trusted, so every call computes the marker).
    fn remember(&mut self, position: Option<String>, marker: &str, settle: std::time::Duration) {
        let now = std::time::Instant::now();
        self.gate = position.map(|position| match self.gate.take() {
            Some(g) if g.position == position => Gate {
                is_settled: g.is_settled || now.duration_since(g.since) >= settle,
                since: g.since,
                position,
                marker: marker.to_owned(),
            },
            _ => Gate {
                is_settled: settle.is_zero(),
                since: now,
                position,
                marker: marker.to_owned(),
            },
        });
    }

    /// A marker that differs from the previous one when the tables changed
    /// in between (for SQLite: when another connection committed).
    pub async fn marker(&mut self) -> Result<String, DbError> {
        let res = self.read_marker().await;
        if res.is_err() {
            // After an outage, trust nothing remembered from before it.
            self.gate = None;
        }
        res
    }

    async fn read_marker(&mut self) -> Result<String, DbError> {
        let err = |e| DbError::from_sqlx("change_probe", e);
        match &self.db {
            Db::Sqlite(pool) => {
                if self.sqlite.is_none() {
                    self.sqlite = Some(pool.acquire().await.map_err(err)?.detach());
                }
                let Some(conn) = self.sqlite.as_mut() else {
                    return Err(DbError::Config("no probe connection".into()));
                };
                let res: Result<(i64,), sqlx::Error> = sqlx::query_as("PRAGMA data_version")
                    .fetch_one(&mut *conn)
                    .await;
                match res {
                    Ok((v,)) => Ok(v.to_string()),
                    Err(e) => {
                        self.sqlite = None;
                        Err(err(e))
                    }
                }
            }
            Db::MySql(pool) => {
                use futures::TryStreamExt;
                let pool = pool.clone();
                // Read before the checksum: a commit after this read moves
                // the number again, and the next call looks once more. An
                // error (MySQL has no such status) means: always checksum.
                let lsn: Option<String> = sqlx::query_scalar(
                    "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS \
                     WHERE VARIABLE_NAME = 'INNODB_LSN_CURRENT'",
                )
                .fetch_optional(&pool)
                .await
                .ok()
                .flatten();
                if let Some(marker) = self.unchanged(lsn.as_deref()) {
                    return Ok(marker);
                }
                // Only InnoDB writes that number; a table of another engine
                // could change without it.
                let innodb: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() \
                     AND ENGINE = 'InnoDB' AND TABLE_NAME IN ('domains', 'accounts', 'aliases', 'tlspolicies')",
                )
                .fetch_one(&pool)
                .await
                .map_err(err)?;
                let rows: Vec<sqlx::mysql::MySqlRow> =
                    sqlx::raw_sql("CHECKSUM TABLE domains, accounts, aliases, tlspolicies")
                        .fetch(&pool)
                        .try_collect()
                        .await
                        .map_err(err)?;
                let mut out = String::new();
                for r in &rows {
                    let v: Option<u64> = r.try_get_unchecked(1).map_err(err)?;
                    out.push_str(&format!(
                        "{};",
                        v.map_or_else(|| "-".to_owned(), |v| v.to_string())
                    ));
                }
                let settle = self.settle;
                self.remember(lsn.filter(|_| innodb == 4), &out, settle);
                Ok(out)
            }
            Db::Postgres(pool) => {
                let pool = pool.clone();
                let snapshot: Option<String> =
                    sqlx::query_scalar("SELECT pg_current_snapshot()::text")
                        .fetch_one(&pool)
                        .await
                        .ok();
                if let Some(marker) = self.unchanged(snapshot.as_deref()) {
                    return Ok(marker);
                }
                // One statement, so the sum is of exactly the data that
                // snapshot sees. Only plain tables change with the
                // snapshot (a view over a foreign table would not).
                let sql = "SELECT pg_current_snapshot()::text, \
                    (SELECT count(*) FROM pg_class WHERE relkind = 'r' AND oid IN \
                     (to_regclass('domains'), to_regclass('accounts'), to_regclass('aliases'), to_regclass('tlspolicies'))), \
                    concat_ws(';', \
                    (SELECT count(*) || ',' || COALESCE(sum(hashtext(t::text)::bigint), 0) FROM domains t), \
                    (SELECT count(*) || ',' || COALESCE(sum(hashtext(t::text)::bigint), 0) FROM accounts t), \
                    (SELECT count(*) || ',' || COALESCE(sum(hashtext(t::text)::bigint), 0) FROM aliases t), \
                    (SELECT count(*) || ',' || COALESCE(sum(hashtext(t::text)::bigint), 0) FROM tlspolicies t))";
                let (snapshot, tables, v): (String, i64, String) =
                    sqlx::query_as(sql).fetch_one(&pool).await.map_err(err)?;
                self.remember(
                    Some(snapshot).filter(|_| tables == 4),
                    &v,
                    std::time::Duration::ZERO,
                );
                Ok(v)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn probe(settle: Duration) -> ChangeProbe {
        let cfg = crate::config::DatabaseConfig::from_url("sqlite::memory:").expect("valid URL");
        ChangeProbe::new(Db::connect_lazy(&cfg, false).expect("lazy pool")).with_settle(settle)
    }

    #[tokio::test]
    async fn a_settled_position_skips_the_checksum_until_it_moves() {
        let mut p = probe(Duration::ZERO);
        assert_eq!(p.unchanged(Some("5")), None, "nothing remembered yet");
        p.remember(Some("5".into()), "m5", Duration::ZERO);
        assert_eq!(p.unchanged(Some("5")).as_deref(), Some("m5"));
        assert_eq!(p.unchanged(Some("6")), None, "the position moved");
        assert_eq!(p.unchanged(None), None, "no position read");
        p.remember(None, "m", Duration::ZERO);
        assert_eq!(
            p.unchanged(Some("5")),
            None,
            "an untrusted position is forgotten"
        );
    }

    #[tokio::test]
    async fn a_fresh_position_is_checked_again_until_it_settled() {
        let settle = Duration::from_millis(50);
        let mut p = probe(settle);
        p.remember(Some("5".into()), "a", settle);
        assert_eq!(
            p.unchanged(Some("5")),
            None,
            "just read: a commit may not be visible yet"
        );
        p.remember(Some("5".into()), "b", settle);
        assert_eq!(p.unchanged(Some("5")), None, "still within the settle time");
        std::thread::sleep(settle);
        p.remember(Some("5".into()), "c", settle);
        assert_eq!(
            p.unchanged(Some("5")).as_deref(),
            Some("c"),
            "checked after the settle time"
        );
        p.remember(Some("6".into()), "d", settle);
        assert_eq!(p.unchanged(Some("6")), None, "a new position starts over");
    }
}

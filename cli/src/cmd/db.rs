//! `postwerk db`: create and check the schema.

use super::Ctx;
use crate::output;
use anyhow::bail;
use clap::Subcommand;
use postwerk_core::address::{Address, normalize_domain, usable_user_name};
use std::collections::HashMap;

/// `postwerk db …`
#[derive(Subcommand, Debug)]
pub enum DbCmd {
    /// Create the guide's four tables if they do not exist (never alters existing ones)
    Init,
    /// Check that the database is reachable, has the guide's tables, and
    /// holds no rows the mail system would mishandle (names differing only
    /// in case, names not stored lowercase/punycode, user names Dovecot
    /// cannot use); exits 1 when it finds any
    Check,
}

/// Runs a `db` subcommand.
pub async fn run(ctx: &Ctx, cmd: DbCmd) -> anyhow::Result<()> {
    match cmd {
        DbCmd::Init => {
            let db = ctx.db_for_init().await?;
            db.init_schema().await.map_err(|e| ctx.explain(e))?;
            db.check_schema().await.map_err(|e| ctx.explain(e))?;
            output::done(
                ctx.json,
                &format!(
                    "database {} is ready ({} schema)",
                    ctx.cfg.database.url,
                    db.backend().name()
                ),
            )
        }
        DbCmd::Check => {
            let db = ctx.db().await?;
            let domains = db.domain_list().await.map_err(|e| ctx.explain(e))?;
            let accounts = db.account_list(None).await.map_err(|e| ctx.explain(e))?;
            let aliases = db.alias_list(None).await.map_err(|e| ctx.explain(e))?;
            let problems = row_problems(
                &domains.iter().map(|d| d.domain.clone()).collect::<Vec<_>>(),
                &accounts
                    .iter()
                    .map(|a| (a.username.clone(), a.domain.clone()))
                    .collect::<Vec<_>>(),
                &aliases
                    .iter()
                    .map(|a| (a.source_username.clone(), a.source_domain.clone()))
                    .collect::<Vec<_>>(),
                &ctx.cfg.mail.username_chars,
            );
            let summary = format!(
                "database {} is reachable and has the vmail tables",
                ctx.cfg.database.url
            );
            if problems.is_empty() {
                return output::done(ctx.json, &summary);
            }
            if ctx.json {
                output::json(&serde_json::json!({
                    "ok": false,
                    "message": summary,
                    "problems": problems,
                }))?;
            } else {
                println!("{summary}, but {} row(s) need attention:", problems.len());
                for p in &problems {
                    println!("  - {p}");
                }
            }
            bail!("{} problem(s) in the vmail tables", problems.len())
        }
    }
}

/// What `postwerk db check` finds wrong in the rows: each a sentence that
/// names the row, what goes wrong with it, and the fix.
fn row_problems(
    domains: &[String],
    accounts: &[(String, String)],
    alias_sources: &[(Option<String>, String)],
    username_chars: &str,
) -> Vec<String> {
    let mut out = Vec::new();
    for d in domains {
        match normalize_domain(d) {
            Ok(n) if n != *d => out.push(format!(
                "domain `{d}` is not stored as `{n}` (lowercase, punycode): the guide's Postfix and Dovecot miss mail and logins that use the other form; \
                 fix: UPDATE the row (and its accounts and aliases) to `{n}`"
            )),
            Ok(_) => {}
            Err(e) => out.push(format!("domain `{d}` is not a valid domain name: {e}")),
        }
    }
    let mut by_key: HashMap<String, Vec<String>> = HashMap::new();
    for (user, domain) in accounts {
        let stored = format!("{user}@{domain}");
        let addr = match Address::from_parts(user, domain) {
            Ok(a) => a,
            Err(e) => {
                out.push(format!("account `{stored}` is not a valid address: {e}"));
                continue;
            }
        };
        let key = addr.to_string();
        if key != stored {
            out.push(format!(
                "account `{stored}` is not stored as `{key}`: with the guide's Dovecot it logs in as `{stored}` and reads a different \
                 mailbox directory than its mail is delivered to (postwerk uses `{key}` for both); fix: rename the row and the directory to `{key}`"
            ));
        }
        if !usable_user_name(&addr, username_chars) {
            out.push(format!(
                "account `{stored}` has characters Dovecot does not accept in a user name (auth_username_chars): it can neither log in \
                 nor get mail; postwerk refuses its mail at RCPT; fix: rename it, or allow the characters in both dovecot.conf and [mail].username_chars"
            ));
        }
        by_key.entry(key).or_default().push(stored);
    }
    let mut clashes: Vec<_> = by_key.into_iter().filter(|(_, v)| v.len() > 1).collect();
    clashes.sort();
    for (key, rows) in clashes {
        out.push(format!(
            "accounts {} differ only in case: they share the mailbox of `{key}`; fix: delete or rename all but one",
            rows.iter().map(|r| format!("`{r}`")).collect::<Vec<_>>().join(", ")
        ));
    }
    for (user, domain) in alias_sources {
        let stored = match user {
            Some(u) => format!("{u}@{domain}"),
            None => format!("@{domain}"),
        };
        let normal = match user {
            Some(u) => Address::from_parts(u, domain).map(|a| a.to_string()),
            None => normalize_domain(domain).map(|d| format!("@{d}")),
        };
        if let Ok(n) = normal
            && n != stored
        {
            out.push(format!(
                "alias source `{stored}` is not stored as `{n}`: the guide's Postfix maps on PostgreSQL and SQLite miss it; fix: rename it to `{n}`"
            ));
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use postwerk_core::address::DOVECOT_USERNAME_CHARS;

    #[test]
    fn finds_what_the_guide_mishandles() {
        let domains = vec!["example.org".to_owned(), "Müller.example".to_owned()];
        let accounts = vec![
            ("grace".to_owned(), "example.org".to_owned()),
            ("Grace".to_owned(), "example.org".to_owned()),
            ("o'brien".to_owned(), "example.org".to_owned()),
            ("ok".to_owned(), "example.org".to_owned()),
        ];
        let aliases = vec![(Some("Sales".to_owned()), "example.org".to_owned())];
        let p = row_problems(&domains, &accounts, &aliases, DOVECOT_USERNAME_CHARS);
        let has = |needle: &str| p.iter().any(|l| l.contains(needle));
        assert!(has(
            "domain `Müller.example` is not stored as `xn--mller-kva.example`"
        ));
        assert!(has(
            "account `Grace@example.org` is not stored as `grace@example.org`"
        ));
        assert!(has("differ only in case"));
        assert!(has("account `o'brien@example.org` has characters"));
        assert!(has("alias source `Sales@example.org`"));
        assert!(!has("`ok@example.org`"), "{p:#?}");
        assert_eq!(p.len(), 5, "{p:#?}");
        assert!(row_problems(&[], &[], &[], DOVECOT_USERNAME_CHARS).is_empty());
    }
}

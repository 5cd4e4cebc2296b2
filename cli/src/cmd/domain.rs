//! `postwerk domain`: the `domains` table.

use super::{Ctx, parse_domain};
use crate::output;
use anyhow::bail;
use clap::Subcommand;
use postwerk_core::address::domain_to_unicode;

/// `postwerk domain …`
#[derive(Subcommand, Debug)]
pub enum DomainCmd {
    /// Add a mail domain (Unicode or punycode; stored as punycode)
    Add {
        /// The domain, e.g. example.org
        domain: String,
    },
    /// List domains with their account and alias counts
    List,
    /// Delete a domain
    Del {
        /// The domain
        domain: String,
        /// Also delete its accounts and aliases
        #[arg(long)]
        force: bool,
    },
}

/// Runs a `domain` subcommand.
pub async fn run(ctx: &Ctx, cmd: DomainCmd) -> anyhow::Result<()> {
    let db = ctx.db().await?;
    match cmd {
        DomainCmd::Add { domain } => {
            let d = parse_domain(&domain)?;
            db.domain_add(&d).await.map_err(|e| ctx.explain(e))?;
            output::done(ctx.json, &format!("added domain {d}"))
        }
        DomainCmd::List => {
            let list = db.domain_list().await.map_err(|e| ctx.explain(e))?;
            if ctx.json {
                return output::json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|d| {
                    let u = domain_to_unicode(&d.domain);
                    let shown = if u == d.domain {
                        u
                    } else {
                        format!("{} ({u})", d.domain)
                    };
                    vec![shown, d.accounts.to_string(), d.aliases.to_string()]
                })
                .collect();
            output::table(&["DOMAIN", "ACCOUNTS", "ALIASES"], &rows);
            Ok(())
        }
        DomainCmd::Del { domain, force } => {
            let d = parse_domain(&domain)?;
            let summary = db
                .domain_list()
                .await
                .map_err(|e| ctx.explain(e))?
                .into_iter()
                .find(|s| s.domain == d);
            let Some(summary) = summary else {
                bail!("domain {d} does not exist — see `postwerk domain list`");
            };
            if (summary.accounts > 0 || summary.aliases > 0) && !force {
                bail!(
                    "domain {d} still has {} account(s) and {} alias(es) — delete them first, or use `postwerk domain del {d} --force` to delete them too",
                    summary.accounts,
                    summary.aliases
                );
            }
            db.domain_del(&d, force).await.map_err(|e| ctx.explain(e))?;
            output::done(
                ctx.json,
                &format!(
                    "deleted domain {d} ({} account(s), {} alias(es)); mail on disk is left in place",
                    summary.accounts, summary.aliases
                ),
            )
        }
    }
}

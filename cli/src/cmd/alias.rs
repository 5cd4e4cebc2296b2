//! `postwerk alias`: the `aliases` table — aliases, distribution lists
//! (several rows for one source) and catch-alls (`@domain`).

use super::{Ctx, parse_address, parse_domain};
use crate::output;
use anyhow::bail;
use clap::Subcommand;
use postwerk_core::db::Alias;

/// `postwerk alias …`
#[derive(Subcommand, Debug)]
pub enum AliasCmd {
    /// Add an alias: mail to SOURCE goes to every DEST (SOURCE @domain is the catch-all)
    Add {
        /// user@domain, or @domain for a catch-all (its domain must exist)
        source: String,
        /// One or more destination addresses (local or foreign)
        #[arg(required = true)]
        destinations: Vec<String>,
        /// Create the rows disabled
        #[arg(long)]
        disabled: bool,
    },
    /// List aliases, all or with a source in one domain
    List {
        /// Only this source domain
        domain: Option<String>,
    },
    /// Delete an alias: every row of SOURCE, or only the one to DEST
    Del {
        /// user@domain or @domain
        source: String,
        /// Only this destination
        destination: Option<String>,
    },
}

/// A parsed alias source: `None` user is the catch-all.
fn parse_source(s: &str) -> anyhow::Result<(Option<String>, String)> {
    match s.trim().strip_prefix('@') {
        Some(domain) => Ok((None, parse_domain(domain)?)),
        None => {
            let a = parse_address(s)?;
            Ok((Some(a.local().to_owned()), a.domain().to_owned()))
        }
    }
}

/// Runs an `alias` subcommand.
pub async fn run(ctx: &Ctx, cmd: AliasCmd) -> anyhow::Result<()> {
    let db = ctx.db().await?;
    match cmd {
        AliasCmd::Add {
            source,
            destinations,
            disabled,
        } => {
            let (user, domain) = parse_source(&source)?;
            ctx.require_domain(&domain).await?;
            let dests = destinations
                .iter()
                .map(|d| parse_address(d))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let mut added = Vec::new();
            for d in &dests {
                let row = Alias {
                    source_username: user.clone(),
                    source_domain: domain.clone(),
                    destination_username: d.local().to_owned(),
                    destination_domain: d.domain().to_owned(),
                    enabled: !disabled,
                };
                if db.alias_exists(&row).await.map_err(|e| ctx.explain(e))? {
                    bail!(
                        "alias {} -> {} already exists",
                        row.source(),
                        row.destination()
                    );
                }
                db.alias_add(&row).await.map_err(|e| ctx.explain(e))?;
                added.push(row.destination());
            }
            let src = format!("{}@{domain}", user.as_deref().unwrap_or(""));
            let mut msg = format!("added alias {src} -> {}", added.join(", "));
            if let Some(u) = &user
                && db
                    .account_get(u, &domain)
                    .await
                    .map_err(|e| ctx.explain(e))?
                    .is_some()
            {
                msg.push_str(&format!(
                    "\nnote: {src} is also an account; the guide's alias map ignores aliases of existing accounts"
                ));
            }
            output::done(ctx.json, &msg)
        }
        AliasCmd::List { domain } => {
            let domain = domain.as_deref().map(parse_domain).transpose()?;
            let list = db
                .alias_list(domain.as_deref())
                .await
                .map_err(|e| ctx.explain(e))?;
            if ctx.json {
                let views: Vec<_> = list
                    .iter()
                    .map(|a| {
                        serde_json::json!({
                            "source": a.source(),
                            "destination": a.destination(),
                            "catch_all": a.source_username.is_none(),
                            "enabled": a.enabled,
                        })
                    })
                    .collect();
                return output::json(&views);
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|a| {
                    let mut src = a.source();
                    if a.source_username.is_none() {
                        src.push_str(" (catch-all)");
                    }
                    vec![src, a.destination(), output::yes_no(a.enabled)]
                })
                .collect();
            output::table(&["SOURCE", "DESTINATION", "ENABLED"], &rows);
            Ok(())
        }
        AliasCmd::Del {
            source,
            destination,
        } => {
            let (user, domain) = parse_source(&source)?;
            let dest = destination.as_deref().map(parse_address).transpose()?;
            let n = db
                .alias_del(
                    user.as_deref(),
                    &domain,
                    dest.as_ref().map(|d| (d.local(), d.domain())),
                )
                .await
                .map_err(|e| ctx.explain(e))?;
            let src = format!("{}@{domain}", user.as_deref().unwrap_or(""));
            if n == 0 {
                match &dest {
                    Some(d) => bail!("there is no alias {src} -> {d} — see `postwerk alias list`"),
                    None => bail!("there is no alias {src} — see `postwerk alias list`"),
                }
            }
            output::done(ctx.json, &format!("deleted {n} alias row(s) of {src}"))
        }
    }
}

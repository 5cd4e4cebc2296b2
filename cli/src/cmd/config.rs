//! `postwerk config`: check the configuration file.

use super::Ctx;
use crate::output;
use clap::Subcommand;

/// `postwerk config …`
#[derive(Subcommand, Debug)]
pub enum ConfigCmd {
    /// Validate the config file, print the effective settings (defaults marked, secrets as ***) and test the database
    Check,
}

/// Runs a `config` subcommand.
pub async fn run(ctx: &Ctx, cmd: ConfigCmd) -> anyhow::Result<()> {
    match cmd {
        ConfigCmd::Check => {
            let rows = ctx.cfg.describe();
            let source = ctx
                .cfg
                .source
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "(no file: built-in defaults)".into());
            let db = ctx.db().await.map(|_| ()).map_err(|e| format!("{e:#}"));
            if ctx.json {
                let settings: serde_json::Map<String, serde_json::Value> = rows
                    .iter()
                    .map(|(k, v, d)| (k.clone(), serde_json::json!({ "value": v, "default": d })))
                    .collect();
                output::json(&serde_json::json!({
                    "file": source,
                    "settings": settings,
                    "database": match &db { Ok(()) => "ok".to_owned(), Err(e) => e.clone() },
                }))?;
            } else {
                println!("config: {source}");
                let table: Vec<Vec<String>> = rows
                    .iter()
                    .map(|(k, v, d)| {
                        vec![
                            k.clone(),
                            v.clone(),
                            if *d {
                                "(default)".into()
                            } else {
                                String::new()
                            },
                        ]
                    })
                    .collect();
                output::table(&["KEY", "VALUE", ""], &table);
                match &db {
                    Ok(()) => println!("database: reachable, vmail tables present"),
                    Err(e) => println!("database: {e}"),
                }
            }
            db.map_err(|_| {
                anyhow::anyhow!("the configuration is valid, but the database check failed")
            })
        }
    }
}

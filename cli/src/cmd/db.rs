//! `postwerk db`: create and check the schema.

use super::Ctx;
use crate::output;
use clap::Subcommand;

/// `postwerk db …`
#[derive(Subcommand, Debug)]
pub enum DbCmd {
    /// Create the guide's four tables if they do not exist (never alters existing ones)
    Init,
    /// Check that the database is reachable and has the guide's tables
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
            ctx.db().await?;
            output::done(
                ctx.json,
                &format!(
                    "database {} is reachable and has the vmail tables",
                    ctx.cfg.database.url
                ),
            )
        }
    }
}

//! `postwerk`: the admin command for the guide's vmail database — domains,
//! accounts, aliases, TLS policies, password hashes — on SQLite, MariaDB or
//! PostgreSQL. Replaces the guide's hand-written SQL inserts and
//! `doveadm pw` copy-paste, and writes what the guide has the admin type by
//! hand: DNS records (`postwerk dns`) and client autoconfig files
//! (`postwerk autoconfig`).

mod cmd;
mod output;

use clap::{Parser, Subcommand};
use postwerk_core::config::{Config, DatabaseConfig};
use std::path::PathBuf;
use std::process::ExitCode;

/// sysexits.h EX_CONFIG: the configuration is unusable.
const EX_CONFIG: u8 = 78;

#[derive(Parser, Debug)]
#[command(
    name = "postwerk",
    version,
    about = "Manage the vmail database of a Postfix + Dovecot mail server"
)]
struct Cli {
    /// Config file [default: /etc/postwerk/postwerk.toml if it exists]
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Database URL, overriding [database].url (sqlite:///path, mysql://user@host/db, postgres://user@host/db)
    #[arg(long, global = true, env = "POSTWERK_DATABASE_URL", value_name = "URL")]
    database: Option<String>,
    /// Print machine-readable JSON instead of tables
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create or check the database schema
    #[command(subcommand)]
    Db(cmd::db::DbCmd),
    /// Manage mail domains
    #[command(subcommand)]
    Domain(cmd::domain::DomainCmd),
    /// Manage accounts (mailboxes and send-only logins)
    #[command(subcommand)]
    Account(cmd::account::AccountCmd),
    /// Manage aliases, distribution lists and catch-alls
    #[command(subcommand)]
    Alias(cmd::alias::AliasCmd),
    /// Manage outgoing TLS policies (smtp_tls_policy_maps)
    #[command(subcommand)]
    Tlspolicy(cmd::tlspolicy::TlsPolicyCmd),
    /// Make or test a Dovecot password hash, like `doveadm pw`
    Pw(cmd::pw::PwArgs),
    /// DKIM keys for postwerk-milterd and their DNS records
    #[command(subcommand)]
    Dkim(cmd::dkim::DkimCmd),
    /// Check the configuration file
    #[command(subcommand)]
    Config(cmd::config::ConfigCmd),
    /// Print the DNS records of a mail domain, or check them (--check)
    Dns(cmd::dns::DnsArgs),
    /// Write client autoconfig files (Thunderbird, Outlook, Apple) for every domain
    Autoconfig(cmd::autoconfig::AutoconfigArgs),
    /// Print the postwerk.toml tables equivalent to Rspamd's local.d/override.d settings
    ImportRspamd(cmd::import_rspamd::ImportRspamdArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cli = match cli.command {
        Command::Pw(args) => return report(cmd::pw::run(args)),
        Command::ImportRspamd(args) => return report(cmd::import_rspamd::run(args)),
        command => Cli { command, ..cli },
    };
    let cfg = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprint!("postwerk: {e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    let mut cfg = cfg;
    if let Some(url) = &cli.database {
        match DatabaseConfig::from_url(url) {
            Ok(d) => cfg.set_database(d),
            Err(e) => {
                eprint!("postwerk: --database: {e}");
                return ExitCode::from(EX_CONFIG);
            }
        }
    }
    let ctx = cmd::Ctx::new(cfg, cli.json);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("postwerk: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        let r = match cli.command {
            Command::Db(c) => cmd::db::run(&ctx, c).await,
            Command::Domain(c) => cmd::domain::run(&ctx, c).await,
            Command::Account(c) => cmd::account::run(&ctx, c).await,
            Command::Alias(c) => cmd::alias::run(&ctx, c).await,
            Command::Tlspolicy(c) => cmd::tlspolicy::run(&ctx, c).await,
            Command::Config(c) => cmd::config::run(&ctx, c).await,
            Command::Dkim(c) => cmd::dkim::run(&ctx, c).await,
            Command::Dns(a) => cmd::dns::run(&ctx, a).await,
            Command::Autoconfig(a) => cmd::autoconfig::run(&ctx, a).await,
            Command::Pw(_) | Command::ImportRspamd(_) => Ok(()),
        };
        ctx.close().await;
        r
    });
    report(result)
}

fn report(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("postwerk: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

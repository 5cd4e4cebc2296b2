//! postwerk-lmtpd: LMTP delivery into Dovecot-compatible Maildir on the
//! vmail database. See the crate documentation (lib.rs) for what it does.

use clap::Parser;
use postwerk_core::config::Config;
use postwerk_core::service;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tracing::{error, info, warn};

/// sysexits.h EX_CONFIG.
const EX_CONFIG: u8 = 78;

#[derive(Parser, Debug)]
#[command(
    name = "postwerk-lmtpd",
    version,
    about = "LMTP delivery into Maildir with quota and Sieve"
)]
struct Args {
    /// Config file [default: /etc/postwerk/postwerk.toml if it exists]
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let cfg = match Config::load(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprint!("postwerk-lmtpd: {e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    if let Err(e) = postwerk_core::log::init(&cfg.log.level) {
        eprintln!("postwerk-lmtpd: {e}");
        return ExitCode::from(EX_CONFIG);
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(run(args.config, cfg))
}

async fn run(path: Option<PathBuf>, cfg: Config) -> ExitCode {
    let listeners = match postwerk_lmtpd::bind(&cfg).await {
        Ok(l) => l,
        Err(e) => {
            error!(error = %e, "cannot listen");
            return ExitCode::from(EX_CONFIG);
        }
    };
    if cfg.lmtpd.mail_uid.is_none() {
        warn!(user = %cfg.lmtpd.mail_owner.0, "mail_user does not exist; files will belong to the user running lmtpd");
    }
    let shared = match postwerk_lmtpd::shared(&cfg) {
        Ok(s) => s,
        Err(e) => {
            error!(error = %e, "bad database configuration");
            return ExitCode::from(EX_CONFIG);
        }
    };
    let (tx, rx) = tokio::sync::watch::channel(shared);
    let mut reloads = match service::reload_stream() {
        Ok(r) => r,
        Err(e) => {
            error!(error = %e, "cannot handle SIGHUP");
            return ExitCode::FAILURE;
        }
    };
    let cfg = Arc::new(cfg);
    let reload_cfg = cfg.clone();
    tokio::spawn(async move {
        let mut active = reload_cfg;
        while reloads.recv().await.is_some() {
            service::notify_reloading();
            match Config::load(path.as_deref()) {
                Err(e) => error!(error = %e, "reload: invalid configuration; keeping the old one"),
                Ok(new) => {
                    if format!("{:?}", new.lmtpd.listen) != format!("{:?}", active.lmtpd.listen)
                        || new.lmtpd.service.limits != active.lmtpd.service.limits
                    {
                        warn!("reload: listeners or connection limits changed; takes effect on restart");
                    }
                    match postwerk_lmtpd::shared(&new) {
                        Ok(s) => {
                            let _ = tx.send(s);
                            info!("configuration reloaded");
                            active = Arc::new(new);
                        }
                        Err(e) => {
                            error!(error = %e, "reload: bad database configuration; keeping the old one")
                        }
                    }
                }
            }
            service::notify_ready();
        }
    });
    info!(
        listen = ?cfg.lmtpd.listen,
        mail_home = %cfg.lmtpd.mail_home,
        database = %cfg.database.url,
        "postwerk-lmtpd started"
    );
    service::notify_ready();
    let res = postwerk_lmtpd::run(cfg.lmtpd.service.limits, listeners, rx, service::terminate()).await;
    service::notify_stopping();
    match res {
        Ok(()) => {
            info!("postwerk-lmtpd stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            error!(error = %e, "cannot serve");
            ExitCode::FAILURE
        }
    }
}

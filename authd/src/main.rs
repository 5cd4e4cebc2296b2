//! postwerk-authd: Postfix SASL (Dovecot auth-client) and Dovecot dict passdb/userdb on the
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
    name = "postwerk-authd",
    version,
    about = "Postfix SASL and Dovecot passdb/userdb on the vmail database"
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
            eprint!("postwerk-authd: {e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    if let Err(e) = postwerk_core::log::init(&cfg.log.level) {
        eprintln!("postwerk-authd: {e}");
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
    let listeners = match postwerk_authd::bind(&cfg).await {
        Ok(l) => l,
        Err(e) => {
            error!(error = %e, "cannot listen");
            return ExitCode::from(EX_CONFIG);
        }
    };
    let shared = match postwerk_authd::shared(&cfg) {
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
                    let listen_changed =
                        format!("{:?}{:?}", new.authd.auth_listen, new.authd.dict_listen)
                            != format!(
                                "{:?}{:?}",
                                active.authd.auth_listen, active.authd.dict_listen
                            );
                    if listen_changed || new.authd.service.limits != active.authd.service.limits {
                        warn!(
                            "reload: listeners or connection limits changed; takes effect on restart"
                        );
                    }
                    match postwerk_authd::shared(&new) {
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
        auth = ?cfg.authd.auth_listen,
        dict = ?cfg.authd.dict_listen,
        database = %cfg.database.url,
        "postwerk-authd started"
    );
    service::notify_ready();
    let res = postwerk_authd::run(
        cfg.authd.service.limits,
        listeners,
        rx,
        service::terminate(),
    )
    .await;
    service::notify_stopping();
    match res {
        Ok(()) => {
            info!("postwerk-authd stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            error!(error = %e, "cannot serve");
            ExitCode::FAILURE
        }
    }
}

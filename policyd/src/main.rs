//! postwerk-policyd: Postfix socketmap / tcp_table / policy service on the
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
    name = "postwerk-policyd",
    version,
    about = "Postfix lookup tables and policy checks on the vmail database"
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
            eprint!("postwerk-policyd: {e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    if let Err(e) = postwerk_core::log::init(&cfg.log.level) {
        eprintln!("postwerk-policyd: {e}");
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
    let listeners = match postwerk_policyd::bind(&cfg).await {
        Ok(l) => l,
        Err(e) => {
            error!(error = %e, "cannot listen");
            return ExitCode::from(EX_CONFIG);
        }
    };
    let shared = match postwerk_policyd::shared(&cfg) {
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
                    let listen_changed = format!(
                        "{:?}{:?}{:?}",
                        new.policyd.socketmap_listen,
                        new.policyd.tcp_table_listen,
                        new.policyd.policy_listen
                    ) != format!(
                        "{:?}{:?}{:?}",
                        active.policyd.socketmap_listen,
                        active.policyd.tcp_table_listen,
                        active.policyd.policy_listen
                    );
                    if listen_changed || new.policyd.service.limits != active.policyd.service.limits
                    {
                        warn!(
                            "reload: listeners or connection limits changed; takes effect on restart"
                        );
                    }
                    match postwerk_policyd::shared(&new) {
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
        socketmap = ?cfg.policyd.socketmap_listen,
        tcp_table = ?cfg.policyd.tcp_table_listen,
        policy = ?cfg.policyd.policy_listen,
        database = %cfg.database.url,
        "postwerk-policyd started"
    );
    service::notify_ready();
    let res = postwerk_policyd::run(
        cfg.policyd.service.limits,
        listeners,
        rx,
        service::terminate(),
    )
    .await;
    service::notify_stopping();
    match res {
        Ok(()) => {
            info!("postwerk-policyd stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            error!(error = %e, "cannot serve");
            ExitCode::FAILURE
        }
    }
}

//! postwerk-authd: Postfix SASL (Dovecot auth-client) and Dovecot dict
//! passdb/userdb on the vmail database. See the crate documentation (lib.rs)
//! for what it does; the process life cycle is
//! `postwerk_core::service::daemon_main`.

use clap::Parser;
use postwerk_authd::{Listeners, Shared};
use postwerk_core::config::Config;
use postwerk_core::config::daemon::ServiceConfig;
use postwerk_core::service::{self, Daemon, Limits, ListenError, ServeError};
use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tokio::sync::watch;

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

struct Authd;

impl Daemon for Authd {
    const NAME: &'static str = "postwerk-authd";
    type Listeners = Listeners;
    type Shared = Shared;
    type SharedError = postwerk_core::db::DbError;

    fn bind(cfg: &Config) -> impl Future<Output = Result<Listeners, ListenError>> + Send {
        postwerk_authd::bind(cfg)
    }
    fn shared(cfg: &Config) -> Result<Arc<Shared>, Self::SharedError> {
        postwerk_authd::shared(cfg)
    }
    fn service(cfg: &Config) -> &ServiceConfig {
        &cfg.authd.service
    }
    fn needs_restart(old: &Config, new: &Config) -> bool {
        let (o, n) = (&old.authd, &new.authd);
        o.auth_listen != n.auth_listen
            || o.dict_listen != n.dict_listen
            || o.service.limits != n.service.limits
    }
    fn describe(cfg: &Config) -> String {
        format!(
            "auth {:?}, dict {:?}",
            cfg.authd.auth_listen, cfg.authd.dict_listen
        )
    }
    fn run(
        limits: Limits,
        listeners: Listeners,
        current: watch::Receiver<Arc<Shared>>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = Result<(), ServeError>> + Send {
        postwerk_authd::run(limits, listeners, current, shutdown)
    }
}

fn main() -> ExitCode {
    service::daemon_main::<Authd>(Args::parse().config)
}

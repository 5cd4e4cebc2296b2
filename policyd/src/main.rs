//! postwerk-policyd: Postfix socketmap / tcp_table / policy service on the
//! vmail database. See the crate documentation (lib.rs) for what it does;
//! the process life cycle is `postwerk_core::service::daemon_main`.

use clap::Parser;
use postwerk_core::config::Config;
use postwerk_core::config::daemon::ServiceConfig;
use postwerk_core::service::{self, Daemon, Limits, ListenError, ServeError};
use postwerk_policyd::{Listeners, session::Shared};
use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tokio::sync::watch;

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

struct Policyd;

impl Daemon for Policyd {
    const NAME: &'static str = "postwerk-policyd";
    type Listeners = Listeners;
    type Shared = Shared;
    type SharedError = postwerk_core::db::DbError;

    fn bind(cfg: &Config) -> impl Future<Output = Result<Listeners, ListenError>> + Send {
        postwerk_policyd::bind(cfg)
    }
    fn shared(cfg: &Config) -> Result<Arc<Shared>, Self::SharedError> {
        postwerk_policyd::shared(cfg)
    }
    fn service(cfg: &Config) -> &ServiceConfig {
        &cfg.policyd.service
    }
    fn needs_restart(old: &Config, new: &Config) -> bool {
        let (o, n) = (&old.policyd, &new.policyd);
        o.socketmap_listen != n.socketmap_listen
            || o.tcp_table_listen != n.tcp_table_listen
            || o.policy_listen != n.policy_listen
            || o.service.limits != n.service.limits
    }
    fn describe(cfg: &Config) -> String {
        let p = &cfg.policyd;
        format!(
            "socketmap {:?}, tcp_table {:?}, policy {:?}",
            p.socketmap_listen, p.tcp_table_listen, p.policy_listen
        )
    }
    fn run(
        limits: Limits,
        listeners: Listeners,
        current: watch::Receiver<Arc<Shared>>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = Result<(), ServeError>> + Send {
        postwerk_policyd::run(limits, listeners, current, shutdown)
    }
}

fn main() -> ExitCode {
    service::daemon_main::<Policyd>(Args::parse().config)
}

//! postwerk-milterd: the milter for Postfix (DKIM signing of outgoing
//! mail). See the crate documentation (lib.rs) for what it does; the
//! process life cycle is `postwerk_core::service::daemon_main`.

use clap::Parser;
use postwerk_core::config::Config;
use postwerk_core::config::daemon::ServiceConfig;
use postwerk_core::service::{self, Daemon, Limits, ListenError, ServeError};
use postwerk_milterd::{Listeners, Shared};
use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tokio::sync::watch;

#[derive(Parser, Debug)]
#[command(
    name = "postwerk-milterd",
    version,
    about = "Postfix milter: DKIM signing, verification and spam scoring"
)]
struct Args {
    /// Config file [default: /etc/postwerk/postwerk.toml if it exists]
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
}

struct Milterd;

impl Daemon for Milterd {
    const NAME: &'static str = "postwerk-milterd";
    type Listeners = Listeners;
    type Shared = Shared;
    type SharedError = postwerk_milterd::SharedError;

    fn bind(cfg: &Config) -> impl Future<Output = Result<Listeners, ListenError>> + Send {
        postwerk_milterd::bind(cfg)
    }
    fn shared(cfg: &Config) -> Result<Arc<Shared>, Self::SharedError> {
        postwerk_milterd::shared(cfg)
    }
    fn service(cfg: &Config) -> &ServiceConfig {
        &cfg.milterd.service
    }
    fn needs_restart(old: &Config, new: &Config) -> bool {
        let (o, n) = (&old.milterd, &new.milterd);
        o.listen != n.listen
            || o.spam.controller.listen != n.spam.controller.listen
            || o.service.limits != n.service.limits
    }
    fn describe(cfg: &Config) -> String {
        let m = &cfg.milterd;
        format!(
            "listen {:?}, controller {:?}, DKIM selectors {:?}, keys {}, spam scoring {}",
            m.listen,
            m.spam.controller.listen,
            m.dkim.selectors,
            m.dkim.path,
            if !m.spam.enabled {
                "off"
            } else if m.spam.shadow {
                "shadow"
            } else {
                "on"
            }
        )
    }
    fn run(
        limits: Limits,
        listeners: Listeners,
        current: watch::Receiver<Arc<Shared>>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = Result<(), ServeError>> + Send {
        postwerk_milterd::run(limits, listeners, current, shutdown)
    }
}

fn main() -> ExitCode {
    service::daemon_main::<Milterd>(Args::parse().config)
}

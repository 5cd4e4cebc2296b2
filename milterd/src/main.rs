//! postwerk-milterd: the milter for Postfix (DKIM signing of outgoing
//! mail). See the crate documentation (lib.rs) for what it does; the
//! process life cycle is `postwerk_core::service::daemon_main`.

use clap::Parser;
use postwerk_core::config::Config;
use postwerk_core::service::{self, Daemon, Limits, ListenError, Listener, ServeError};
use postwerk_milterd::Shared;
use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tokio::sync::watch;

#[derive(Parser, Debug)]
#[command(
    name = "postwerk-milterd",
    version,
    about = "Postfix milter: DKIM signing of outgoing mail"
)]
struct Args {
    /// Config file [default: /etc/postwerk/postwerk.toml if it exists]
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
}

struct Milterd;

impl Daemon for Milterd {
    const NAME: &'static str = "postwerk-milterd";
    type Listeners = Vec<Listener>;
    type Shared = Shared;
    type SharedError = postwerk_milterd::SharedError;

    fn bind(cfg: &Config) -> impl Future<Output = Result<Vec<Listener>, ListenError>> + Send {
        postwerk_milterd::bind(cfg)
    }
    fn shared(cfg: &Config) -> Result<Arc<Shared>, Self::SharedError> {
        postwerk_milterd::shared(cfg)
    }
    fn limits(cfg: &Config) -> Limits {
        cfg.milterd.service.limits
    }
    fn needs_restart(old: &Config, new: &Config) -> bool {
        let (o, n) = (&old.milterd, &new.milterd);
        o.listen != n.listen || o.service.limits != n.service.limits
    }
    fn describe(cfg: &Config) -> String {
        let m = &cfg.milterd;
        format!(
            "listen {:?}, DKIM selectors {:?}, keys {}",
            m.listen, m.dkim.selectors, m.dkim.path
        )
    }
    fn run(
        limits: Limits,
        listeners: Vec<Listener>,
        current: watch::Receiver<Arc<Shared>>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = Result<(), ServeError>> + Send {
        postwerk_milterd::run(limits, listeners, current, shutdown)
    }
}

fn main() -> ExitCode {
    service::daemon_main::<Milterd>(Args::parse().config)
}

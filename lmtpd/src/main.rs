//! postwerk-lmtpd: LMTP delivery into Dovecot-compatible Maildir on the
//! vmail database. See the crate documentation (lib.rs) for what it does;
//! the process life cycle is `postwerk_core::service::daemon_main`.

use clap::Parser;
use postwerk_core::config::Config;
use postwerk_core::config::daemon::ServiceConfig;
use postwerk_core::service::{self, Daemon, Limits, ListenError, Listener, ServeError};
use postwerk_lmtpd::session::Shared;
use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tokio::sync::watch;
use tracing::warn;

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

struct Lmtpd;

impl Daemon for Lmtpd {
    const NAME: &'static str = "postwerk-lmtpd";
    type Listeners = Vec<Listener>;
    type Shared = Shared;
    type SharedError = postwerk_core::db::DbError;

    fn bind(cfg: &Config) -> impl Future<Output = Result<Vec<Listener>, ListenError>> + Send {
        postwerk_lmtpd::bind(cfg)
    }
    fn shared(cfg: &Config) -> Result<Arc<Shared>, Self::SharedError> {
        if cfg.lmtpd.mail_uid.is_none() {
            warn!(user = %cfg.lmtpd.mail_owner.0, "mail_user does not exist; files will belong to the user running lmtpd");
        }
        postwerk_lmtpd::shared(cfg)
    }
    fn service(cfg: &Config) -> &ServiceConfig {
        &cfg.lmtpd.service
    }
    fn needs_restart(old: &Config, new: &Config) -> bool {
        old.lmtpd.listen != new.lmtpd.listen || old.lmtpd.service.limits != new.lmtpd.service.limits
    }
    fn describe(cfg: &Config) -> String {
        format!(
            "listen {:?}, mail_home {}",
            cfg.lmtpd.listen, cfg.lmtpd.mail_home
        )
    }
    fn run(
        limits: Limits,
        listeners: Vec<Listener>,
        current: watch::Receiver<Arc<Shared>>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = Result<(), ServeError>> + Send {
        postwerk_lmtpd::run(limits, listeners, current, shutdown)
    }
}

fn main() -> ExitCode {
    service::daemon_main::<Lmtpd>(Args::parse().config)
}

//! The life cycle every postwerk daemon shares (STYLE.md §6), like
//! Postfix's `multi_server_main()`: load and check the config (exit 78 on
//! error), start logging, bind the listeners, drop root if started as root
//! with `user =` (exit 77 if that fails, or if started as root without it
//! unless told), build what sessions share,
//! tell systemd we are ready, serve until SIGTERM, and re-read the config on
//! SIGHUP — swapping in the new shared state for new sessions, keeping the
//! old config if the new one is invalid. A daemon supplies only its
//! service through [`Daemon`].

use crate::config::Config;
use crate::config::daemon::ServiceConfig;
use crate::service::{self, Limits, ListenError, ServeError};
use std::fmt::Display;
use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tokio::sync::watch;
use tracing::{error, info, warn};

/// sysexits.h `EX_CONFIG`: the configuration is unusable.
pub const EX_CONFIG: u8 = 78;
/// sysexits.h `EX_NOPERM`: refused to run with these privileges.
pub const EX_NOPERM: u8 = 77;
/// Set to `1` to let a daemon run as root (tests, containers); otherwise
/// a daemon started as root without `user =` in its section refuses to run.
/// The Debian units start each daemon as its own user (lmtpd as `vmail`);
/// started as root with `user =`, a daemon binds and then becomes that user.
pub const ALLOW_ROOT_ENV: &str = "POSTWERK_ALLOW_ROOT";

/// One daemon's service, plugged into [`daemon_main`].
pub trait Daemon: 'static {
    /// The program name (`postwerk-policyd`), for messages.
    const NAME: &'static str;
    /// The bound listeners.
    type Listeners: Send + 'static;
    /// What every session shares (pools, compiled rules); rebuilt on reload.
    type Shared: Send + Sync + 'static;
    /// Why [`Daemon::shared`] failed.
    type SharedError: Display + Send;

    /// Binds the daemon's listeners from `cfg`.
    fn bind(cfg: &Config) -> impl Future<Output = Result<Self::Listeners, ListenError>> + Send;
    /// Builds the shared state from `cfg` (database pools connect lazily).
    fn shared(cfg: &Config) -> Result<Arc<Self::Shared>, Self::SharedError>;
    /// The daemon's section's shared settings (`user`, sockets, limits).
    fn service(cfg: &Config) -> &ServiceConfig;
    /// Connection limits from `cfg`.
    fn limits(cfg: &Config) -> Limits {
        Self::service(cfg).limits
    }
    /// Whether a reload changed settings that only a restart applies
    /// (listeners, limits).
    fn needs_restart(old: &Config, new: &Config) -> bool;
    /// A one-line description of the config for the start-up log.
    fn describe(cfg: &Config) -> String;
    /// Serves until `shutdown`, each new session taking the current shared
    /// state from `current`.
    fn run(
        limits: Limits,
        listeners: Self::Listeners,
        current: watch::Receiver<Arc<Self::Shared>>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = Result<(), ServeError>> + Send;
}

/// Runs daemon `D` with the config at `path` (default path when `None`):
/// the whole process life cycle. Returns the process exit code.
pub fn daemon_main<D: Daemon>(path: Option<PathBuf>) -> ExitCode {
    let cfg = match Config::load(path.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprint!("{}: {e}", D::NAME);
            return ExitCode::from(EX_CONFIG);
        }
    };
    if let Err(e) = crate::log::init(&cfg.log.level) {
        eprintln!("{}: {e}", D::NAME);
        return ExitCode::from(EX_CONFIG);
    }
    let as_root = nix::unistd::geteuid().is_root();
    let run_as = D::service(&cfg).run_as.clone();
    if as_root && run_as.is_none() && std::env::var_os(ALLOW_ROOT_ENV).is_none_or(|v| v != "1") {
        eprintln!(
            "{}: refusing to run as root: start it as its own unprivileged user (the Debian packages' units do), \
             set `user = \"...\"` in its section to have it switch to that user after binding, \
             or set {ALLOW_ROOT_ENV}=1 to run it as root anyway",
            D::NAME
        );
        return ExitCode::from(EX_NOPERM);
    }
    if !as_root && let Some(r) = &run_as {
        // Already unprivileged (systemd's User=, say): nothing to switch;
        // a different user than configured is worth a word.
        if let Ok(ids) = service::privileges::resolve(r)
            && ids.uid != nix::unistd::geteuid()
        {
            warn!(user = %r.user, "not started as root, so cannot switch to the configured user; running as uid {}", nix::unistd::geteuid());
        }
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(run::<D>(path, cfg))
}

async fn run<D: Daemon>(path: Option<PathBuf>, cfg: Config) -> ExitCode {
    // Before anything else: from here on SIGTERM drains instead of killing.
    let shutdown = service::terminate();
    let mut reloads = match service::reload_stream() {
        Ok(r) => r,
        Err(e) => {
            error!(error = %e, "cannot handle SIGHUP");
            return ExitCode::FAILURE;
        }
    };
    let listeners = match D::bind(&cfg).await {
        Ok(l) => l,
        Err(e) => {
            error!(error = %e, "cannot listen");
            return ExitCode::from(EX_CONFIG);
        }
    };
    if nix::unistd::geteuid().is_root()
        && let Some(r) = &D::service(&cfg).run_as
    {
        match service::privileges::drop_to(r) {
            Ok(ids) => {
                info!(user = %ids.name, uid = %ids.uid, gid = %ids.gid, "listening; switched from root")
            }
            Err(e) => {
                error!(error = %e, "cannot drop root privileges; not serving as root");
                return ExitCode::from(EX_NOPERM);
            }
        }
    }
    let shared = match D::shared(&cfg) {
        Ok(s) => s,
        Err(e) => {
            error!(error = %e, "bad configuration");
            return ExitCode::from(EX_CONFIG);
        }
    };
    let (tx, rx) = watch::channel(shared);
    let limits = D::limits(&cfg);
    info!(config = %D::describe(&cfg), database = %cfg.database.url, "{} started", D::NAME);
    tokio::spawn(async move {
        let mut active = cfg;
        while reloads.recv().await.is_some() {
            service::notify_reloading();
            match Config::load(path.as_deref()) {
                Err(e) => error!(error = %e, "reload: invalid configuration; keeping the old one"),
                Ok(new) => {
                    if D::needs_restart(&active, &new) {
                        warn!(
                            "reload: listeners or connection limits changed; takes effect on restart"
                        );
                    }
                    match D::shared(&new) {
                        Ok(s) => {
                            let _ = tx.send(s);
                            info!("configuration reloaded");
                            active = new;
                        }
                        Err(e) => {
                            error!(error = %e, "reload: bad configuration; keeping the old one")
                        }
                    }
                }
            }
            service::notify_ready();
        }
    });
    service::notify_ready();
    let res = D::run(limits, listeners, rx, shutdown).await;
    service::notify_stopping();
    match res {
        Ok(()) => {
            info!("{} stopped", D::NAME);
            ExitCode::SUCCESS
        }
        Err(e) => {
            error!(error = %e, "cannot serve");
            ExitCode::FAILURE
        }
    }
}

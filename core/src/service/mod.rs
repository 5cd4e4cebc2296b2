//! Service plumbing every daemon shares: listeners (UNIX, TCP, systemd
//! socket activation), the accept loop with its limits and graceful drain,
//! signals and systemd readiness. No protocol and no database here: a
//! daemon hands [`serve()`] a handler that owns each connection.
//!
//! A daemon's `main` uses it in this order (STYLE.md §6):
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use postwerk_core::service::{self, Limits, ListenAddr, UnixOptions};
//!
//! let addr: ListenAddr = "unix:/var/spool/postfix/private/policyd".parse()?;
//! let listener = service::bind(&addr, &UnixOptions::default()).await?;
//! service::notify_ready();
//! service::serve(vec![listener], Limits::default(), service::terminate(), |stream, peer, token| async move {
//!     // the daemon's session loop: read a request, answer it, and stop
//!     // once `token` is cancelled
//!     # let _ = (stream, peer, token);
//! })
//! .await?;
//! service::notify_stopping();
//! # Ok(()) }
//! ```

pub mod daemon;
pub mod limits;
pub mod listen;
pub mod notify;
pub mod privileges;
pub mod serve;
pub mod signals;

pub use daemon::{Daemon, EX_CONFIG, daemon_main};
pub use limits::{DEFAULT_MAX_CONNECTIONS, DEFAULT_SHUTDOWN_TIMEOUT, Limits};
pub use listen::{
    ListenAddr, ListenError, Listener, LocalAddr, Peer, Stream, SystemdSocket, UnixOptions, bind,
};
pub use notify::{notify_ready, notify_reloading, notify_stopping};
pub use serve::{ServeError, Server, protocol, serve, serve_all};
pub use signals::{ReloadStream, SignalError, reload_stream, terminate};

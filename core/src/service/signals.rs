//! The signals a daemon reacts to: SIGTERM/SIGINT (drain and stop) and
//! SIGHUP (re-read the config). This module only reports them; it never
//! exits the process or touches the config itself.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tracing::{error, info};

/// A signal handler could not be installed.
#[derive(Debug, thiserror::Error)]
#[error("cannot install a handler for {signal}: {source}")]
pub struct SignalError {
    /// The signal, e.g. `SIGHUP`.
    pub signal: &'static str,
    /// The error from tokio.
    pub source: io::Error,
}

/// Resolves when SIGTERM (systemd stop) or SIGINT (Ctrl-C) arrives: pass it
/// as the `shutdown` future of [`serve`](super::serve::serve).
///
/// The handlers are installed when this is called (inside a runtime), not
/// when the future is first polled: a daemon calls it before binding its
/// listeners, so a SIGTERM right after start drains instead of killing the
/// process. Should installing one fail (it does not on Linux), that signal
/// keeps its default action, which still stops the daemon, only without
/// draining; this is logged with `error!`.
pub fn terminate() -> impl std::future::Future<Output = ()> + Send + 'static {
    let mut term = install(SignalKind::terminate(), "SIGTERM");
    let mut int = install(SignalKind::interrupt(), "SIGINT");
    async move {
        let name = tokio::select! {
            () = recv(&mut term) => "SIGTERM",
            () = recv(&mut int) => "SIGINT",
        };
        info!(signal = name, "stop requested");
    }
}

fn install(kind: SignalKind, name: &'static str) -> Option<Signal> {
    match signal(kind) {
        Ok(sig) => Some(sig),
        Err(e) => {
            error!(signal = name, error = %e, "cannot install signal handler; this signal will stop the daemon without draining");
            None
        }
    }
}

/// Waits for the next delivery, or forever if there is no handler (or the
/// signal driver went away with the runtime).
async fn recv(sig: &mut Option<Signal>) {
    if let Some(sig) = sig
        && sig.recv().await.is_some()
    {
        return;
    }
    std::future::pending().await
}

/// Installs the SIGHUP handler and returns the stream of reload requests.
///
/// Call it at startup, before notifying readiness: from then on SIGHUP no
/// longer kills the daemon. Several SIGHUPs that arrive before the stream
/// is polled are merged into one item.
pub fn reload_stream() -> Result<ReloadStream, SignalError> {
    signal(SignalKind::hangup())
        .map(|inner| ReloadStream { inner })
        .map_err(|source| SignalError {
            signal: "SIGHUP",
            source,
        })
}

/// SIGHUP deliveries, each meaning "re-read the config" (see STYLE.md §4).
/// Also usable as a [`futures::Stream`] of `()`.
#[derive(Debug)]
pub struct ReloadStream {
    inner: Signal,
}

impl ReloadStream {
    /// Waits for the next SIGHUP. `None` only when the runtime shuts down.
    pub async fn recv(&mut self) -> Option<()> {
        let received = self.inner.recv().await;
        if received.is_some() {
            info!(signal = "SIGHUP", "reload requested");
        }
        received
    }
}

impl Stream for ReloadStream {
    type Item = ();

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<()>> {
        let poll = self.get_mut().inner.poll_recv(cx);
        if let Poll::Ready(Some(())) = poll {
            info!(signal = "SIGHUP", "reload requested");
        }
        poll
    }
}

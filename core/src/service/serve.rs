//! The accept loop every daemon runs, our equivalent of Postfix's
//! `multi_server_main()` (src/master/multi_server.c): accept on all
//! listeners, bound the number of sessions, run each session in its own
//! task and span, and drain on shutdown. No protocol here: the daemon's
//! handler owns the connection, and this module never reads from it.

use std::any::Any;
use std::future::Future;
use std::io;
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, Span, debug, error, info, info_span, warn};

use super::limits::Limits;
use super::listen::{Listener, Peer, Stream, log_listening};

/// First pause after an accept error such as EMFILE; it doubles up to
/// [`ACCEPT_BACKOFF_MAX`] while the errors last.
pub const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);

/// Longest pause between accept attempts while accept keeps failing.
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Why [`serve`] refused to start. Once running, it only returns `Ok`.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The daemon was given nothing to listen on.
    #[error("no listeners: configure at least one listen address")]
    NoListeners,
    /// `max_connections` is 0 or larger than a semaphore can hold.
    #[error("max_connections = {value} is not allowed; use 1 to {max}")]
    MaxConnections {
        /// The configured value.
        value: usize,
        /// The largest value allowed.
        max: usize,
    },
}

/// Accepts connections on all `listeners` and runs `handler` once per
/// connection, until `shutdown` resolves.
///
/// - At most `limits.max_connections` sessions run at once. When all are
///   busy, nothing more is accepted (clients wait in the listen backlog)
///   until a session ends; connections are never accepted and dropped.
/// - Each session runs in its own task inside a `session{peer=… conn=N}`
///   span and gets a [`CancellationToken`] that is cancelled at shutdown.
/// - A panicking session is logged with `error!` and closes only its own
///   connection. Accept errors (EMFILE …) are logged and retried after a
///   backoff; they never stop the server.
/// - On shutdown: stop accepting and close the listeners (UNIX socket files
///   we created are removed), cancel the sessions' token, wait up to
///   `limits.shutdown_timeout` for them to finish their current request,
///   then abort the rest and log how many.
///
/// The handler should check its token between requests and return once it
/// is cancelled, after answering the request in progress.
pub async fn serve<H, Fut>(
    listeners: Vec<Listener>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
    handler: H,
) -> Result<(), ServeError>
where
    H: Fn(Stream, Peer, CancellationToken) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    if listeners.is_empty() {
        return Err(ServeError::NoListeners);
    }
    if limits.max_connections == 0 || limits.max_connections > Semaphore::MAX_PERMITS {
        return Err(ServeError::MaxConnections {
            value: limits.max_connections,
            max: Semaphore::MAX_PERMITS,
        });
    }
    for listener in &listeners {
        log_listening(listener);
    }

    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let sessions = TaskTracker::new();
    // `stop` asks sessions to finish; `abort` ends those that did not in time.
    let stop = CancellationToken::new();
    let abort = CancellationToken::new();
    let aborted = Arc::new(AtomicUsize::new(0));
    let mut shutdown = pin!(shutdown);
    let mut conn: u64 = 0;
    let mut turn: usize = 0;
    let mut backoff = ACCEPT_BACKOFF_MIN;
    let mut is_full = false;

    'accept: loop {
        // Take the permit before accepting, so a full server leaves new
        // connections in the kernel's backlog instead of accepting and
        // dropping them.
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                is_full = false;
                permit
            }
            Err(TryAcquireError::NoPermits) => {
                if !is_full {
                    warn!(
                        max_connections = limits.max_connections,
                        "connection limit reached; new connections wait until a session closes"
                    );
                    is_full = true;
                }
                tokio::select! {
                    biased;
                    () = &mut shutdown => break 'accept,
                    permit = permits.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_closed) => break 'accept,
                    },
                }
            }
            Err(TryAcquireError::Closed) => break 'accept,
        };

        let (stream, peer) = loop {
            turn = turn.wrapping_add(1);
            tokio::select! {
                biased;
                () = &mut shutdown => break 'accept,
                (index, result) = accept_any(&listeners, turn) => match result {
                    Ok(accepted) => {
                        backoff = ACCEPT_BACKOFF_MIN;
                        break accepted;
                    }
                    Err(e) if is_client_gone(&e) => {
                        debug!(error = %e, "accept failed; the client went away");
                    }
                    Err(e) => {
                        let listen = listeners.get(index).map(|l| l.local_addr().to_string());
                        error!(
                            listen = listen.as_deref().unwrap_or("?"),
                            error = %e,
                            retry_ms = backoff.as_millis() as u64,
                            "accept failed; retrying"
                        );
                        tokio::select! {
                            biased;
                            () = &mut shutdown => break 'accept,
                            () = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                    }
                },
            }
        };

        conn += 1;
        let span = info_span!("session", peer = %peer, conn);
        let token = stop.child_token();
        // Calling the handler only builds its future, but a handler that
        // panics right there must not take the accept loop down with it.
        match std::panic::catch_unwind(AssertUnwindSafe(|| handler(stream, peer, token))) {
            Ok(session) => {
                sessions.spawn(supervise(
                    session,
                    span,
                    permit,
                    abort.clone(),
                    Arc::clone(&aborted),
                ));
            }
            Err(panic) => {
                error!(
                    parent: &span,
                    panic = panic_message(panic.as_ref()),
                    "session panicked; connection closed"
                );
            }
        }
    }

    // Closing the listeners first makes new clients fail fast (Postfix
    // then tries again later) instead of waiting in a backlog nobody reads.
    drop(listeners);
    info!(
        sessions = sessions.len(),
        "shutting down; stopped accepting, waiting for sessions to finish"
    );
    sessions.close();
    stop.cancel();
    if tokio::time::timeout(limits.shutdown_timeout, sessions.wait())
        .await
        .is_err()
    {
        abort.cancel();
        sessions.wait().await;
        warn!(
            aborted = aborted.load(Ordering::Relaxed),
            shutdown_timeout_ms = limits.shutdown_timeout.as_millis() as u64,
            "sessions did not finish within shutdown_timeout and were aborted"
        );
    }
    info!("all sessions closed");
    Ok(())
}

/// Accepts on whichever listener is ready first. `turn` rotates which one
/// is polled first, so a busy listener cannot starve the others.
async fn accept_any(listeners: &[Listener], turn: usize) -> (usize, io::Result<(Stream, Peer)>) {
    // `serve` checked that there is at least one listener; select_all
    // panics on an empty list.
    let start = turn % listeners.len().max(1);
    let accepts = listeners
        .iter()
        .enumerate()
        .cycle()
        .skip(start)
        .take(listeners.len())
        .map(|(index, listener)| Box::pin(async move { (index, listener.accept().await) }));
    let (output, _, _) = futures::future::select_all(accepts).await;
    output
}

/// Errors that concern one connection that died before we accepted it
/// (accept(2), "Error handling"); the next accept can proceed at once.
fn is_client_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
            | io::ErrorKind::NetworkDown
    )
}

/// Runs one session in its own task and reports how it ended. The session
/// runs in a task of its own so that a panic comes back as a `JoinError`
/// here instead of unwinding through the server.
async fn supervise<F>(
    session: F,
    span: Span,
    permit: OwnedSemaphorePermit,
    abort: CancellationToken,
    aborted: Arc<AtomicUsize>,
) where
    F: Future<Output = ()> + Send + 'static,
{
    // Held until the session is gone, however it ends.
    let _permit = permit;
    debug!(parent: &span, "connection accepted");
    let mut task = tokio::spawn(session.instrument(span.clone()));
    let result = tokio::select! {
        result = &mut task => result,
        () = abort.cancelled() => {
            task.abort();
            task.await
        }
    };
    match result {
        Ok(()) => debug!(parent: &span, "connection closed"),
        Err(e) if e.is_panic() => {
            let panic = e.into_panic();
            error!(
                parent: &span,
                panic = panic_message(panic.as_ref()),
                "session panicked; connection closed"
            );
        }
        Err(_) => {
            aborted.fetch_add(1, Ordering::Relaxed);
            debug!(parent: &span, "session aborted at shutdown_timeout");
        }
    }
}

/// The text of a panic payload (`panic!("…")` gives a `&str` or a `String`).
fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(non-string panic payload)"
    }
}

/// One protocol's accept loop (a boxed [`serve`]) of a daemon that speaks
/// several protocols.
pub type Server = std::pin::Pin<Box<dyn Future<Output = Result<(), ServeError>> + Send>>;

/// One protocol's accept loop for [`serve_all`]: [`serve`] on `listeners`
/// until `stop` is cancelled. `None` when there are no listeners (a
/// protocol the admin did not configure).
pub fn protocol<H, Fut>(
    listeners: Vec<Listener>,
    limits: Limits,
    stop: &CancellationToken,
    handler: H,
) -> Option<Server>
where
    H: Fn(Stream, Peer, CancellationToken) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    if listeners.is_empty() {
        return None;
    }
    let stop = stop.clone();
    Some(Box::pin(async move {
        serve(listeners, limits, stop.cancelled_owned(), handler).await
    }))
}

/// Runs the accept loops of a daemon that speaks several protocols until
/// `shutdown` resolves, then cancels `stop` (each loop's own shutdown
/// future is `stop.cancelled_owned()`) and waits until every loop has
/// drained. Returns the first error; no loops at all is an error.
pub async fn serve_all(
    servers: Vec<Server>,
    stop: CancellationToken,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    if servers.is_empty() {
        return Err(ServeError::NoListeners);
    }
    let all = futures::future::join_all(servers);
    tokio::pin!(all);
    tokio::select! {
        results = &mut all => return results.into_iter().collect(),
        () = shutdown => stop.cancel(),
    }
    all.await.into_iter().collect()
}

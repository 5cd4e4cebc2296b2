//! CONNECTION: runs indymilter on one accepted connection. Our shared
//! accept loop (`postwerk_core::service::serve`) owns listening, limits and
//! drain; indymilter owns the milter protocol of the connection (framing,
//! the state machine, per-packet timeouts). A graceful stop waits for an
//! open mail transaction to end before the connection is closed.

use crate::filter::{self, Shared};
use indymilter::{Actions, Listener};
use postwerk_core::service::Stream;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// The accepted stream; reports when indymilter drops it (the session is
/// over).
struct Tracked {
    stream: Stream,
    _closed: oneshot::Sender<()>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let me = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut me.stream).poll_read(cx, buf);
        if let (Poll::Ready(Ok(())), Stream::Tcp(s)) = (&r, &me.stream)
            && buf.filled().len() > before
        {
            // Postfix writes several small packets in a row that need no
            // reply (macros, then the command; headers), with Nagle's
            // algorithm on: the next one waits for our ACK of the last,
            // and a delayed ACK costs up to 40 ms each time. Quick-ACK
            // mode is not permanent (tcp(7)), so it is set after every
            // read. A failure only costs speed.
            let _ = socket2::SockRef::from(s).set_tcp_quickack(true);
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// An indymilter listener that yields one connection, then nothing.
struct OneConnection(Option<Tracked>);

impl Listener for OneConnection {
    type Io = Tracked;
    fn poll_accept(&mut self, _cx: &mut Context<'_>) -> Poll<std::io::Result<Tracked>> {
        match self.0.take() {
            Some(s) => Poll::Ready(Ok(s)),
            None => Poll::Pending,
        }
    }
}

/// Serves one milter connection until Postfix quits, the idle timeout
/// passes, or shutdown is requested (then after the open transaction).
pub async fn milter(stream: Stream, shared: Arc<Shared>, token: CancellationToken) {
    if let Stream::Tcp(s) = &stream
        && let Err(e) = s.set_nodelay(true)
    {
        // Without it the small reply packets wait for delayed ACKs
        // (Nagle), costing tens of milliseconds per message.
        warn!(error = %e, "cannot set TCP_NODELAY");
    }
    let (closed_tx, closed_rx) = oneshot::channel::<()>();
    let (busy_tx, mut busy_rx) = watch::channel(false);
    let config = indymilter::Config {
        max_connections: 1,
        actions: Actions::empty(),
        connection_timeout: shared.cfg.service.idle_timeout,
    };
    let callbacks = filter::callbacks(shared, busy_tx);
    let listener = OneConnection(Some(Tracked {
        stream,
        _closed: closed_tx,
    }));
    let done = async move {
        tokio::select! {
            _ = closed_rx => {}
            () = token.cancelled() => {
                // Let the transaction in progress finish (or the session
                // end by itself); the connection closes after it.
                let _ = busy_rx.wait_for(|busy| !*busy).await;
                debug!("shutdown: closing the milter connection");
            }
        }
    };
    if let Err(e) = indymilter::run(listener, callbacks, config, done).await {
        warn!(error = %e, "milter session failed");
    }
}

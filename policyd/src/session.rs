//! CONNECTION: the read → answer → write loop of each protocol, with the
//! idle timeout, frame limits and graceful shutdown. A malformed request is
//! the peer's bug: it is logged and the connection closed.

use crate::lookup::{Lookup, Map};
use crate::policy_service::PolicyService;
use crate::proto::netstring::NetstringCodec;
use crate::proto::policy::PolicyCodec;
use crate::proto::socketmap::{self, Request};
use crate::proto::tcp_table::{self, TcpTableCodec};
use crate::reply;
use futures::{SinkExt, StreamExt};
use postwerk_core::service::Stream;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::codec::Framed;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tracing::{Instrument, debug, debug_span, warn};

/// What every session needs.
#[derive(Debug)]
pub struct Shared {
    /// The lookup logic.
    pub lookup: Arc<Lookup>,
    /// The policy-delegation logic.
    pub policy: PolicyService,
    /// Close connections idle this long.
    pub idle_timeout: Duration,
    /// Largest request in bytes.
    pub max_request: usize,
}

/// The idle timeout of one connection. Requests come thousands of times a
/// second on one connection (postmap, smtpd, cleanup), so the timer is not
/// armed anew per request (a timer-wheel insert and remove each time, found
/// by profiling, issue 3): the time the wait for a frame began is noted,
/// and the one timer, when it fires, either closes the connection or moves
/// itself to that time plus the timeout.
struct Idle {
    timeout: Duration,
    waiting_since: Instant,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl Idle {
    fn new(timeout: Duration) -> Idle {
        let now = Instant::now();
        Idle {
            timeout,
            waiting_since: now,
            timer: Box::pin(tokio::time::sleep_until(now + timeout)),
        }
    }
}

/// Waits for the next frame, the idle timeout (counted from now) or
/// shutdown; `None` ends the session.
async fn next_frame<S, T, E>(
    framed: &mut S,
    idle: &mut Idle,
    cancelled: &mut Pin<&mut WaitForCancellationFuture<'_>>,
) -> Option<Result<T, E>>
where
    S: futures::Stream<Item = Result<T, E>> + Unpin,
{
    idle.waiting_since = Instant::now();
    loop {
        tokio::select! {
            biased;
            _ = cancelled.as_mut() => return None,
            next = framed.next() => return next,
            _ = idle.timer.as_mut() => {
                let due = idle.waiting_since + idle.timeout;
                if Instant::now() >= due {
                    debug!("idle timeout; closing");
                    return None;
                }
                idle.timer.as_mut().reset(due);
            }
        }
    }
}

/// One socketmap connection: many requests, one at a time.
pub async fn socketmap(stream: Stream, shared: Arc<Shared>, token: CancellationToken) {
    let mut framed = Framed::new(stream, NetstringCodec::new(shared.max_request));
    let mut idle = Idle::new(shared.idle_timeout);
    let cancelled = token.cancelled();
    tokio::pin!(cancelled);
    // One buffer for the replies of this connection.
    let mut out = Vec::with_capacity(128);
    while let Some(frame) = next_frame(&mut framed, &mut idle, &mut cancelled).await {
        let payload = match frame {
            Ok(p) => p,
            Err(e) => {
                warn!(error = %e, "malformed socketmap request; closing");
                break;
            }
        };
        let reply = match Request::parse(&payload) {
            Ok(req) => answer_socketmap(&shared.lookup, req).await,
            Err(e) => {
                warn!(error = %e, "malformed socketmap request; closing");
                let _ = framed
                    .send(socketmap::Reply::Perm("malformed request".into()).to_payload())
                    .await;
                break;
            }
        };
        reply.write_payload(&mut out);
        if framed.send(&out[..]).await.is_err() {
            break;
        }
    }
}

async fn answer_socketmap(lookup: &Lookup, req: Request<'_>) -> socketmap::Reply {
    let Some(map) = Map::from_name(req.name) else {
        warn!(map = %req.name, "unknown map name; answered PERM");
        return reply::unknown_map(req.name);
    };
    let Some(key) = req.key else {
        debug!(map = map.name(), "key is not UTF-8; not found");
        return socketmap::Reply::NotFound;
    };
    let started = std::time::Instant::now();
    let span = debug_span!("lookup", map = map.name(), key = %key);
    let result = lookup.lookup(map, key).instrument(span).await;
    if let Err(e) = &result {
        warn!(map = map.name(), key = %key, error = %e, "lookup failed; answered TEMP");
    }
    let reply = reply::socketmap(&result);
    debug!(map = map.name(), key = %key, reply = ?reply, elapsed = ?started.elapsed(), "socketmap");
    reply
}

/// One tcp_table connection. tcp_table has no map name, so each listener
/// serves one map (`tcp_table_listen = ["inet:127.0.0.1:10041=aliases"]`
/// style is not supported; see the map-per-port setup in lib.rs).
pub async fn tcp_table(stream: Stream, map: Map, shared: Arc<Shared>, token: CancellationToken) {
    let mut framed = Framed::new(stream, TcpTableCodec::new(shared.max_request));
    let mut idle = Idle::new(shared.idle_timeout);
    let cancelled = token.cancelled();
    tokio::pin!(cancelled);
    while let Some(frame) = next_frame(&mut framed, &mut idle, &mut cancelled).await {
        let tcp_table::Request::Get(key) = match frame {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %e, "malformed tcp_table request; closing");
                break;
            }
        };
        let reply = match key {
            None => tcp_table::Reply::NotFound,
            Some(key) => {
                let result = shared.lookup.lookup(map, &key).await;
                if let Err(e) = &result {
                    warn!(map = map.name(), key = %key, error = %e, "lookup failed; answered 400");
                }
                reply::tcp_table(&result)
            }
        };
        if framed.send(&reply).await.is_err() {
            break;
        }
    }
}

/// One policy-delegation connection.
pub async fn policy(stream: Stream, shared: Arc<Shared>, token: CancellationToken) {
    let mut framed = Framed::new(stream, PolicyCodec::new(shared.max_request));
    let mut idle = Idle::new(shared.idle_timeout);
    let cancelled = token.cancelled();
    tokio::pin!(cancelled);
    while let Some(frame) = next_frame(&mut framed, &mut idle, &mut cancelled).await {
        let req = match frame {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %e, "malformed policy request; closing");
                break;
            }
        };
        let reply = shared.policy.check(&req).await;
        if framed.send(&reply).await.is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::SinkExt;

    // One timer per connection (issue 3): frames keep the connection open
    // however long it lives, and the timeout still counts from the start
    // of each wait.
    #[tokio::test(start_paused = true)]
    async fn idle_timeout_counts_from_the_last_wait_not_the_first_frame() {
        let token = CancellationToken::new();
        let cancelled = token.cancelled();
        tokio::pin!(cancelled);
        let mut idle = Idle::new(Duration::from_secs(10));
        let (mut tx, mut frames) = futures::channel::mpsc::channel::<Result<u32, ()>>(4);
        let sender = tokio::spawn(async move {
            for i in 0..3 {
                tokio::time::sleep(Duration::from_secs(6)).await;
                let _ = tx.send(Ok(i)).await;
            }
            // Silent from here on, but connected.
            std::future::pending::<()>().await;
        });
        let start = Instant::now();
        for i in 0..3 {
            let f = next_frame(&mut frames, &mut idle, &mut cancelled).await;
            assert_eq!(f, Some(Ok(i)));
        }
        assert_eq!(start.elapsed(), Duration::from_secs(18));
        assert_eq!(
            next_frame(&mut frames, &mut idle, &mut cancelled).await,
            None
        );
        assert_eq!(start.elapsed(), Duration::from_secs(28));
        sender.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_the_wait_at_once() {
        let token = CancellationToken::new();
        let cancelled = token.cancelled();
        tokio::pin!(cancelled);
        let mut idle = Idle::new(Duration::from_secs(10));
        let mut frames = futures::stream::pending::<Result<u32, ()>>();
        token.cancel();
        let start = Instant::now();
        assert_eq!(
            next_frame(&mut frames, &mut idle, &mut cancelled).await,
            None
        );
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}

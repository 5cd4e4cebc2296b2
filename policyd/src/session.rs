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
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
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

/// Waits for the next frame, the idle timeout or shutdown; `None` ends the
/// session.
async fn next_frame<S, T, E>(
    framed: &mut S,
    idle: Duration,
    token: &CancellationToken,
) -> Option<Result<T, E>>
where
    S: futures::Stream<Item = Result<T, E>> + Unpin,
{
    tokio::select! {
        _ = token.cancelled() => None,
        r = tokio::time::timeout(idle, framed.next()) => match r {
            Err(_) => {
                debug!("idle timeout; closing");
                None
            }
            Ok(next) => next,
        },
    }
}

/// One socketmap connection: many requests, one at a time.
pub async fn socketmap(stream: Stream, shared: Arc<Shared>, token: CancellationToken) {
    let mut framed = Framed::new(stream, NetstringCodec::new(shared.max_request));
    while let Some(frame) = next_frame(&mut framed, shared.idle_timeout, &token).await {
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
        if framed.send(reply.to_payload()).await.is_err() {
            break;
        }
    }
}

async fn answer_socketmap(lookup: &Lookup, req: Request) -> socketmap::Reply {
    let Some(map) = Map::from_name(&req.name) else {
        warn!(map = %req.name, "unknown map name; answered PERM");
        return reply::unknown_map(&req.name);
    };
    let Some(key) = req.key else {
        debug!(map = map.name(), "key is not UTF-8; not found");
        return socketmap::Reply::NotFound;
    };
    let started = Instant::now();
    let span = debug_span!("lookup", map = map.name(), key = %key);
    let result = lookup.lookup(map, &key).instrument(span).await;
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
    while let Some(frame) = next_frame(&mut framed, shared.idle_timeout, &token).await {
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
    while let Some(frame) = next_frame(&mut framed, shared.idle_timeout, &token).await {
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

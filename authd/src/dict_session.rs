//! CONNECTION: one dict connection from Dovecot's auth process. Requests
//! are answered one at a time, in order (the dict client matches replies
//! by order). Dovecot 2.3 opens a connection per lookup and closes it
//! after the reply; both work. A malformed line or a write command is
//! logged and the connection closed.

use crate::proto::dict::{Codec, Command, ITERATE_EXACT_KEY, Reply};
use crate::reply;
use crate::userdb::Userdb;
use futures::{SinkExt, StreamExt};
use postwerk_core::service::Stream;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// What every dict session needs.
#[derive(Debug)]
pub struct Shared {
    /// The lookups.
    pub userdb: Userdb,
    /// Close a connection idle this long.
    pub idle_timeout: Duration,
}

/// Serves one connection until EOF, a protocol error, the idle timeout or
/// shutdown.
pub async fn serve(stream: Stream, shared: Arc<Shared>, token: CancellationToken) {
    let mut framed = Framed::new(stream, Codec::new());
    loop {
        let frame = tokio::select! {
            () = token.cancelled() => break,
            r = tokio::time::timeout(shared.idle_timeout, framed.next()) => match r {
                Err(_) => {
                    debug!("idle timeout; closing");
                    break;
                }
                Ok(None) => break,
                Ok(Some(f)) => f,
            },
        };
        let cmd = match frame {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "malformed or unsupported dict request; closing");
                break;
            }
        };
        let started = Instant::now();
        match cmd {
            Command::Hello {
                major,
                minor,
                dict_name,
            } => {
                // 2.3 sends major 3; older majors use another framing.
                if major != 3 {
                    warn!(
                        major,
                        minor, "dict client speaks an unsupported protocol version; closing"
                    );
                    break;
                }
                debug!(major, minor, dict = %dict_name, "dict hello");
            }
            Command::Lookup { key } => {
                let result = shared.userdb.lookup(&key).await;
                if let Err(e) = &result {
                    warn!(key = %key, error = %e, "dict lookup failed; answered F");
                }
                let r = reply::dict_lookup(&result);
                debug!(key = %key, found = matches!(r, Reply::Found(_)), elapsed = ?started.elapsed(), "dict lookup");
                if framed.send(&r).await.is_err() {
                    break;
                }
            }
            Command::Iterate {
                flags,
                max_rows,
                path,
            } => {
                let rows = if flags & ITERATE_EXACT_KEY != 0 {
                    // One key: an iterate over it is a lookup.
                    shared
                        .userdb
                        .lookup(&path)
                        .await
                        .map(|v| v.map(|v| vec![(path.clone(), v)]).unwrap_or_default())
                } else {
                    shared.userdb.iterate(&path, max_rows).await
                };
                let mut ok = true;
                match rows {
                    Ok(rows) => {
                        debug!(path = %path, rows = rows.len(), elapsed = ?started.elapsed(), "dict iterate");
                        for (key, value) in rows {
                            if framed.feed(&Reply::Row { key, value }).await.is_err() {
                                ok = false;
                                break;
                            }
                        }
                        ok = ok && framed.send(&Reply::IterEnd).await.is_ok();
                    }
                    Err(e) => {
                        warn!(path = %path, error = %e, "dict iterate failed; answered F");
                        ok = framed.send(&reply::dict_failure(&e)).await.is_ok();
                    }
                }
                if !ok {
                    break;
                }
            }
        }
    }
}

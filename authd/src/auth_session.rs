//! CONNECTION: one auth-client connection (Postfix smtpd, doveadm). Sends
//! the handshake, checks the client's VERSION, keeps the per-connection
//! request ids, runs credential checks concurrently (a slow lookup never
//! blocks other requests on the connection), delays failures by
//! `auth_failure_delay` and closes on a malformed line (the client's bug,
//! logged as Dovecot does). Never logs a password or SASL payload.

use crate::authenticate::{self, Authenticator, Credentials, Exchange, Mechanism, Step, Verdict};
use crate::proto::auth_client::{Auth, Codec, Command, Reply, VERSION_MAJOR};
use crate::reply;
use base64::Engine as _;
use futures::stream::FuturesUnordered;
use futures::{SinkExt, StreamExt};
use postwerk_core::service::Stream;
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

/// Requests one connection may have open at once (Postfix has one; doveadm
/// one; anything near this is a misbehaving client).
pub const MAX_PENDING: usize = 64;

/// What every auth-client session needs.
#[derive(Debug)]
pub struct Shared {
    /// Credential checks.
    pub auth: Arc<Authenticator>,
    /// `auth_failure_delay`.
    pub failure_delay: Duration,
    /// `plaintext_on_insecure`.
    pub plaintext_on_insecure: bool,
    /// Close a connection idle this long (no request open).
    pub idle_timeout: Duration,
    /// Connection counter for `CUID`.
    pub next_cuid: AtomicU32,
}

impl Shared {
    /// Builds the shared state.
    pub fn new(
        auth: Arc<Authenticator>,
        failure_delay: Duration,
        plaintext_on_insecure: bool,
        idle_timeout: Duration,
    ) -> Self {
        Self {
            auth,
            failure_delay,
            plaintext_on_insecure,
            idle_timeout,
            next_cuid: AtomicU32::new(1),
        }
    }
}

/// Per-request state.
#[derive(Debug)]
enum Request {
    /// We sent CONT and wait for the client's answer.
    Waiting { exchange: Exchange, meta: Meta },
    /// The credentials are being checked; `is_cancelled` once the client
    /// broke the protocol for this id (its result is then dropped).
    Busy { is_cancelled: bool },
}

/// What a request keeps from its AUTH line.
#[derive(Debug, Clone)]
struct Meta {
    mechanism: Mechanism,
    remote_ip: Option<IpAddr>,
    service: String,
    started: Instant,
}

type Pending = Pin<Box<dyn Future<Output = (u32, Reply)> + Send>>;

/// The connection's state machine: `AwaitVersion → Ready`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitVersion,
    Ready { has_cpid: bool },
}

/// Serves one connection until EOF, a protocol error, the idle timeout or
/// shutdown (after answering the requests in progress).
pub async fn serve(stream: Stream, shared: Arc<Shared>, token: CancellationToken) {
    let mut framed = Framed::new(stream, Codec::new());
    let cuid = shared.next_cuid.fetch_add(1, Ordering::Relaxed);
    let handshake = Reply::Handshake {
        mechanisms: authenticate::ANNOUNCED.to_vec(),
        spid: std::process::id(),
        cuid,
        cookie: rand::random(),
    };
    if framed.send(&handshake).await.is_err() {
        return;
    }
    let mut state = State::AwaitVersion;
    let mut requests: HashMap<u32, Request> = HashMap::new();
    let mut running: FuturesUnordered<Pending> = FuturesUnordered::new();
    let mut is_stopping = false;
    loop {
        if is_stopping && running.is_empty() {
            break;
        }
        let frame = tokio::select! {
            Some((id, reply)) = running.next(), if !running.is_empty() => {
                if let Some(Request::Busy { is_cancelled: true }) = requests.remove(&id) {
                    continue;
                }
                if framed.send(&reply).await.is_err() {
                    break;
                }
                continue;
            }
            () = token.cancelled(), if !is_stopping => {
                is_stopping = true;
                continue;
            }
            r = tokio::time::timeout(shared.idle_timeout, framed.next()), if !is_stopping => match r {
                Err(_) if running.is_empty() && requests.is_empty() => {
                    debug!("idle timeout; closing");
                    break;
                }
                Err(_) => continue,
                Ok(None) => break,
                Ok(Some(f)) => f,
            },
        };
        let cmd = match frame {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "BUG: auth client sent a malformed line; closing");
                break;
            }
        };
        let outcome = match (state, cmd) {
            (State::AwaitVersion, Command::Version { major, minor }) => {
                if major != VERSION_MAJOR {
                    warn!(
                        major,
                        minor, "auth client speaks an incompatible protocol version; closing"
                    );
                    break;
                }
                state = State::Ready { has_cpid: false };
                Ok(())
            }
            (State::AwaitVersion, _) => Err("first line is not VERSION"),
            (State::Ready { .. }, Command::Version { .. }) => Err("VERSION sent twice"),
            (State::Ready { has_cpid: false }, Command::Cpid(pid)) => {
                debug!(client_pid = pid, "auth client handshake done");
                state = State::Ready { has_cpid: true };
                Ok(())
            }
            (State::Ready { has_cpid: true }, Command::Cpid(_)) => Err("CPID sent twice"),
            (State::Ready { .. }, Command::Auth(auth)) => {
                begin(&shared, auth, &mut requests, &mut running, &mut framed).await
            }
            (State::Ready { .. }, Command::Cont { id, data }) => {
                cont(&shared, id, &data, &mut requests, &mut running, &mut framed).await
            }
        };
        match outcome {
            Ok(()) => {}
            Err(WRITE_FAILED) => {
                debug!("client went away; closing");
                break;
            }
            Err(why) => {
                warn!(reason = why, "BUG: auth client broke the protocol; closing");
                break;
            }
        }
    }
}

/// Handles AUTH. `Err` closes the connection (Dovecot does the same for
/// these client bugs).
async fn begin(
    shared: &Arc<Shared>,
    auth: Auth,
    requests: &mut HashMap<u32, Request>,
    running: &mut FuturesUnordered<Pending>,
    framed: &mut Framed<Stream, Codec>,
) -> Result<(), &'static str> {
    let id = auth.id;
    if requests.contains_key(&id) {
        return Err("duplicate request id");
    }
    if requests.len() >= MAX_PENDING {
        return Err("too many requests open at once");
    }
    let Some(mechanism) = Mechanism::from_name(&auth.mechanism) else {
        return Err("unsupported mechanism");
    };
    let meta = Meta {
        mechanism,
        remote_ip: auth.remote_ip,
        service: auth.service.clone(),
        started: Instant::now(),
    };
    debug!(id, mechanism = mechanism.name(), service = %auth.service, rip = ?auth.remote_ip, secured = auth.is_secured, "auth request");
    // disable_plaintext_auth: PLAIN and LOGIN only where the client says
    // the session is secured (Postfix: after STARTTLS or on smtps).
    if !auth.is_secured && !shared.plaintext_on_insecure {
        info!(id, mechanism = mechanism.name(), rip = ?auth.remote_ip, "plaintext authentication refused on an insecure connection");
        return send(framed, &reply::refused(id, reply::PLAINTEXT_REASON)).await;
    }
    let initial = match auth.resp.as_deref().map(decode_b64).transpose() {
        Ok(i) => i,
        Err(()) => {
            warn!(id, rip = ?auth.remote_ip, "invalid base64 in initial response");
            return send(framed, &reply::bad_base64(id, reply::BAD_BASE64_INITIAL)).await;
        }
    };
    step(
        shared,
        id,
        authenticate::start(mechanism, initial),
        meta,
        requests,
        running,
        framed,
    )
    .await
}

async fn cont(
    shared: &Arc<Shared>,
    id: u32,
    data: &str,
    requests: &mut HashMap<u32, Request>,
    running: &mut FuturesUnordered<Pending>,
    framed: &mut Framed<Stream, Codec>,
) -> Result<(), &'static str> {
    match requests.remove(&id) {
        None => send(framed, &reply::refused(id, reply::UNKNOWN_REQUEST)).await,
        Some(Request::Busy { .. }) => {
            requests.insert(id, Request::Busy { is_cancelled: true });
            send(framed, &reply::refused(id, reply::UNEXPECTED_CONT)).await
        }
        Some(Request::Waiting { exchange, meta }) => match decode_b64(data) {
            Err(()) => {
                warn!(id, rip = ?meta.remote_ip, "invalid base64 in continued response");
                send(framed, &reply::bad_base64(id, reply::BAD_BASE64_CONT)).await
            }
            Ok(bytes) => {
                step(
                    shared,
                    id,
                    authenticate::next(exchange, bytes),
                    meta,
                    requests,
                    running,
                    framed,
                )
                .await
            }
        },
    }
}

async fn step(
    shared: &Arc<Shared>,
    id: u32,
    step: Step,
    meta: Meta,
    requests: &mut HashMap<u32, Request>,
    running: &mut FuturesUnordered<Pending>,
    framed: &mut Framed<Stream, Codec>,
) -> Result<(), &'static str> {
    match step {
        Step::Challenge(challenge, exchange) => {
            requests.insert(id, Request::Waiting { exchange, meta });
            send(framed, &Reply::Cont { id, challenge }).await
        }
        Step::Done(creds) => {
            requests.insert(
                id,
                Request::Busy {
                    is_cancelled: false,
                },
            );
            running.push(Box::pin(check(shared.clone(), id, creds, meta)));
            Ok(())
        }
        Step::Fail(failure) => {
            requests.insert(
                id,
                Request::Busy {
                    is_cancelled: false,
                },
            );
            let delay = shared.failure_delay;
            info!(id, mechanism = meta.mechanism.name(), rip = ?meta.remote_ip, failure = ?failure, "authentication failed: bad mechanism input");
            running.push(Box::pin(async move {
                tokio::time::sleep_until(meta.started + delay).await;
                (id, reply::mech_failure(id, &failure))
            }));
            Ok(())
        }
    }
}

/// Checks credentials and produces the (delayed, if failed) reply.
async fn check(shared: Arc<Shared>, id: u32, creds: Credentials, meta: Meta) -> (u32, Reply) {
    let span = info_span!("auth", id, user = %creds.authcid, rip = ?meta.remote_ip, mech = meta.mechanism.name(), service = %meta.service);
    async move {
        let result = shared.auth.check(&creds, meta.remote_ip).await;
        let user = match &result {
            Ok(Verdict::Ok { user } | Verdict::Fail { user, .. }) => user.clone(),
            Err(_) => postwerk_core::address::Address::parse(&creds.authcid)
                .map(|a| a.to_string())
                .unwrap_or_else(|_| creds.authcid.to_lowercase()),
        };
        let elapsed = meta.started.elapsed();
        match &result {
            Ok(Verdict::Ok { user }) => info!(%user, ?elapsed, "authenticated"),
            Ok(Verdict::Fail { user, reason }) => info!(%user, ?reason, ?elapsed, "authentication failed"),
            Err(e) => warn!(%user, error = %e, ?elapsed, "authentication could not be decided; answered temp_fail"),
        }
        let reply = reply::auth_client(id, &user, &result);
        if !matches!(reply, Reply::Ok { .. }) {
            // Dovecot auth_failure_delay: every failure, temporary ones
            // included, comes this long after the request (so unknown
            // users and wrong passwords take the same time).
            tokio::time::sleep_until(meta.started + shared.failure_delay).await;
        }
        (id, reply)
    }
    .instrument(span)
    .await
}

/// The `Err` of [`send`]: the peer is gone, not a protocol error.
const WRITE_FAILED: &str = "write failed";

fn decode_b64(s: &str) -> Result<Vec<u8>, ()> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|_| ())
}

async fn send(framed: &mut Framed<Stream, Codec>, reply: &Reply) -> Result<(), &'static str> {
    framed.send(reply).await.map_err(|_| WRITE_FAILED)
}

//! CONNECTION: one LMTP session, `Fresh → Greeted → Mail → Rcpt(n) →
//! Data`, with the idle timeout and graceful shutdown. Malformed commands
//! get 500/501 and the session goes on; a command in the wrong state gets
//! `503 5.5.1`. After DATA every accepted recipient gets its own reply, in
//! RCPT order (RFC 2033 §4.2), each sent as soon as that copy is durable.

use crate::deliver::{self, Delivered, DeliveryError, Envelope};
use crate::lookup::{self, Mailbox, Verdict};
use crate::proto::lmtp::{Command, Frame, LmtpCodec, Message, Reply};
use crate::reply;
use crate::sieve::Engine;
use futures::{SinkExt, StreamExt};
use postwerk_core::db::Db;
use postwerk_core::service::{Peer, Stream};
use rand::Rng;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

/// What every session shares (one config generation).
#[derive(Debug)]
pub struct Shared {
    /// The vmail database.
    pub db: Db,
    /// RCPT lookup settings.
    pub lookup: lookup::Settings,
    /// Delivery settings.
    pub deliver: deliver::Settings,
    /// Compiled Sieve scripts and the runtime.
    pub sieve: Arc<Engine>,
    /// Close a session idle this long.
    pub idle_timeout: Duration,
    /// Largest message.
    pub max_message_size: usize,
    /// Longest line.
    pub max_line_length: usize,
    /// Most header lines.
    pub max_header_lines: usize,
    /// Most RCPTs per transaction.
    pub max_recipients: usize,
    /// `quota_exceeded_message` (with `%u`).
    pub quota_exceeded_message: String,
    /// 452 instead of 552 for a full mailbox.
    pub quota_full_tempfail: bool,
}

impl Shared {
    fn quota_text(&self, mb_or_rcpt: &str) -> String {
        self.quota_exceeded_message.replace("%u", mb_or_rcpt)
    }
}

/// The transaction state (STYLE.md §2).
#[derive(Debug)]
enum State {
    /// Before LHLO.
    Fresh,
    /// After LHLO, no transaction.
    Greeted,
    /// After MAIL; the accepted recipients so far (`Rcpt(n)`).
    Mail { from: String, rcpts: Vec<Mailbox> },
}

fn session_id() -> String {
    rand::thread_rng()
        .sample_iter(&rand::distributions::Alphanumeric)
        .take(22)
        .map(char::from)
        .collect()
}

type Conn = Framed<Stream, LmtpCodec>;

async fn send(framed: &mut Conn, reply: &Reply) -> bool {
    debug!(reply = %reply.to_string().trim_end(), "sent");
    framed.send(reply).await.is_ok()
}

/// One LMTP connection.
pub async fn run(stream: Stream, peer: Peer, shared: Arc<Shared>, token: CancellationToken) {
    let codec = LmtpCodec::new(
        shared.max_line_length,
        shared.max_message_size,
        shared.max_header_lines,
    );
    let mut framed = Framed::new(stream, codec);
    let sid = session_id();
    let hostname = shared.deliver.hostname.clone();
    if !send(&mut framed, &reply::greeting(&hostname)).await {
        return;
    }
    let client_ip = match peer {
        Peer::Tcp(a) => Some(a.ip().to_string()),
        Peer::Unix => None,
    };
    let mut state = State::Fresh;
    let mut lhlo = String::new();
    let mut txn: u32 = 0;
    loop {
        // Shutdown is honoured between commands only: a message being
        // read or delivered is finished first (STYLE.md §6); a transaction
        // before DATA has nothing to lose, the client retries after 421.
        let in_data = framed.codec().is_in_data();
        let frame = tokio::select! {
            _ = token.cancelled(), if !in_data => {
                let _ = send(&mut framed, &Reply::new(421, "4.3.2", format!("{hostname} Server shutting down"))).await;
                break;
            }
            r = tokio::time::timeout(shared.idle_timeout, framed.next()) => match r {
                Err(_) => {
                    debug!("idle timeout; closing");
                    let _ = send(&mut framed, &Reply::new(421, "4.4.2", format!("{hostname} Timeout, closing"))).await;
                    break;
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    debug!(error = %e, "connection failed");
                    break;
                }
                Ok(Some(Ok(f))) => f,
            },
        };
        let cmd = match frame {
            Frame::Data(result) => {
                let State::Mail { from, rcpts } = std::mem::replace(&mut state, State::Greeted)
                else {
                    // The codec only enters data mode after a DATA we accepted.
                    warn!("message without a transaction; ignored");
                    continue;
                };
                txn += 1;
                let env = Envelope {
                    from,
                    lhlo: lhlo.clone(),
                    client_ip: client_ip.clone(),
                    session_id: sid.clone(),
                };
                let span = info_span!("txn", id = %format!("{sid}:T{txn}"));
                let ok = finish_data(&mut framed, &shared, &env, rcpts, result, txn)
                    .instrument(span)
                    .await;
                if !ok {
                    break;
                }
                continue;
            }
            Frame::Command(Err(e)) => {
                warn!(error = %e, "malformed command");
                if !send(&mut framed, &reply::syntax(&e)).await {
                    break;
                }
                continue;
            }
            Frame::Command(Ok(cmd)) => cmd,
        };
        debug!(command = ?cmd, "received");
        let reply = match cmd {
            Command::Lhlo(host) => {
                lhlo = host;
                state = State::Greeted;
                reply::lhlo(&hostname, shared.max_message_size)
            }
            Command::SmtpGreeting => Reply::new(500, "5.5.1", "This is LMTP: use LHLO"),
            Command::Mail { from, params } => match state {
                State::Fresh => reply::bad_sequence("LHLO first"),
                State::Mail { .. } => reply::bad_sequence("MAIL already given"),
                State::Greeted => {
                    if params
                        .size
                        .is_some_and(|s| s > shared.max_message_size as u64)
                    {
                        reply::mail_too_big()
                    } else {
                        state = State::Mail {
                            from,
                            rcpts: Vec::new(),
                        };
                        reply::mail_ok()
                    }
                }
            },
            Command::Rcpt { to, .. } => match &mut state {
                State::Fresh | State::Greeted => reply::bad_sequence("MAIL first"),
                State::Mail { rcpts, .. } if rcpts.len() >= shared.max_recipients => {
                    reply::too_many_recipients()
                }
                State::Mail { rcpts, .. } => {
                    let result = lookup::recipient(&shared.db, &shared.lookup, &to).await;
                    let quota_text = match &result {
                        Ok(Verdict::OverQuota(mb)) => shared.quota_text(&mb.account.to_string()),
                        _ => String::new(),
                    };
                    let r = reply::rcpt(&to, &result, &quota_text, shared.quota_full_tempfail);
                    match result {
                        Ok(Verdict::Accept(mb)) => rcpts.push(mb),
                        Ok(v) => {
                            info!(to = %to, verdict = ?verdict_name(&v), reply = r.code, "recipient refused")
                        }
                        Err(e) => {
                            warn!(to = %to, error = %e, "recipient lookup failed; answered 451")
                        }
                    }
                    r
                }
            },
            Command::Data => match &state {
                State::Mail { rcpts, .. } if !rcpts.is_empty() => {
                    framed.codec_mut().start_data();
                    reply::data_go()
                }
                State::Mail { .. } => reply::bad_sequence("No valid recipients"),
                State::Fresh | State::Greeted => reply::bad_sequence("MAIL first"),
            },
            Command::Bdat => Reply::new(502, "5.5.1", "CHUNKING not offered; use DATA"),
            Command::Rset => {
                if !matches!(state, State::Fresh) {
                    state = State::Greeted;
                }
                Reply::new(250, "2.0.0", "OK")
            }
            Command::Noop => Reply::new(250, "2.0.0", "OK"),
            Command::Vrfy => Reply::new(252, "2.3.3", "Try RCPT instead"),
            Command::Help => Reply::new(214, "2.0.0", "See RFC 2033"),
            Command::Quit => {
                let _ = send(&mut framed, &Reply::new(221, "2.0.0", "Bye")).await;
                break;
            }
        };
        if !send(&mut framed, &reply).await {
            break;
        }
    }
}

fn verdict_name(v: &Verdict) -> &'static str {
    match v {
        Verdict::Accept(_) => "accept",
        Verdict::NoSuchUser => "no such user",
        Verdict::UnusableName => "name unusable by Dovecot (username_chars)",
        Verdict::OverQuota(_) => "over quota",
        Verdict::BadAddress => "bad address",
    }
}

/// Delivers the message to every recipient and sends one reply each.
/// Returns false when the connection is gone.
async fn finish_data(
    framed: &mut Conn,
    shared: &Arc<Shared>,
    env: &Envelope,
    rcpts: Vec<Mailbox>,
    result: Result<Message, crate::proto::lmtp::DataError>,
    txn: u32,
) -> bool {
    let msg = match result {
        Ok(m) => Arc::new(m),
        Err(e) => {
            warn!(from = %env.from, error = %e, recipients = rcpts.len(), "message refused");
            let r = reply::data_error(e);
            for _ in &rcpts {
                if !send(framed, &r).await {
                    return false;
                }
            }
            return true;
        }
    };
    let id = format!("{}:T{txn}", env.session_id);
    for (n, mb) in rcpts.into_iter().enumerate() {
        let started = Instant::now();
        let (shared2, env2, msg2, mb2) = (shared.clone(), env.clone(), msg.clone(), mb.clone());
        let result = tokio::task::spawn_blocking(move || {
            deliver::deliver(&shared2.sieve, &shared2.deliver, &env2, &mb2, &msg2.body)
        })
        .await
        .unwrap_or_else(|e| Err(DeliveryError::Task(e.to_string())));
        let quota_text = shared.quota_text(&mb.account.to_string());
        let r = reply::delivered(
            &mb.rcpt,
            &format!("{id}:R{}", n + 1),
            &result,
            &quota_text,
            shared.quota_full_tempfail,
        );
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match &result {
            Ok(Delivered::Stored(folders)) => info!(
                from = %env.from, to = %mb.rcpt, folders = %folders.join(","), size = msg.wire_size,
                elapsed_ms, "delivered"
            ),
            Ok(other) => {
                info!(from = %env.from, to = %mb.rcpt, result = ?other, reply = r.code, elapsed_ms, "not stored")
            }
            Err(e) => {
                warn!(from = %env.from, to = %mb.rcpt, error = %e, reply = r.code, "delivery failed")
            }
        }
        if !send(framed, &r).await {
            return false;
        }
    }
    true
}

//! SESSION + MAPPING: the rspamc-compatible HTTP controller
//! (`[milterd.spam.controller].listen`; Rspamd's controller and normal
//! worker on one port, shared/reference/rspamd-compat.md). One request per
//! connection, read within `timeout`, then the reply, then close:
//!
//! | request | rspamc command | answer |
//! |---|---|---|
//! | `POST /checkv2` | `symbols` (default) | scan result, Rspamd 3.4's v2 JSON |
//! | `POST /symbols`, `/check` | (legacy) | v1 JSON |
//! | `POST /learnspam`, `/learnham` | `learn_spam`, `learn_ham` | `{"success":true}`; `208 <mid> has been already learned as spam, ignore it` |
//! | `GET /stat` | `stat` | counters and Bayes statistics |
//! | `GET /ping` | | `pong` |
//! | `GET /metrics` | | Prometheus text |
//! | `GET /history` | | the recent scans as JSON |
//! | `GET /` | | a small web page: counters, actions, recent scans |
//!
//! Passwords: clients in `secure_ip` (default loopback, as Rspamd) and
//! UNIX socket clients need none. Others send `Password:`; learning needs
//! `enable_password` (or `password` when no enable password is set),
//! everything else `password` or `enable_password`. The stored password
//! is plain text, a Dovecot-style `{SCHEME}` hash (`postwerk pw`/`doveadm
//! pw`), or Rspamd's `$2$` hash from `rspamadm pw` (the guide's
//! `worker-controller.inc`, see [`catena`]). A `$2$` check costs tens of
//! milliseconds of CPU and runs on the blocking pool.

pub mod catena;
pub mod http;
pub mod json;
pub mod page;

use crate::filter::Shared;
use crate::spam::bayes::{Class, Learned};
use crate::spam::{self, Envelope};
use http::{HttpError, Response};
use postwerk_core::config::Secret;
use postwerk_core::password::{self, Scheme};
use postwerk_core::service::{Peer, Stream};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Anybody (`/ping`).
    Open,
    /// `password` (or `enable_password`).
    Read,
    /// `enable_password` (or `password` without one).
    Write,
}

/// Reads one request within the timeout; `Err` carries the reply for a
/// bad request, `Ok(None)` means the client went away.
async fn read_request(
    stream: &mut Stream,
    max_body: u64,
) -> Result<Option<(http::Head, Vec<u8>)>, HttpError> {
    let mut buf = Vec::with_capacity(8192);
    let mut chunk = [0u8; 8192];
    let (head, head_len) = loop {
        if let Some(h) = http::parse_head(&buf, max_body)? {
            break h;
        }
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|_| HttpError::Malformed("read failed"))?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    // The declared length was checked against max_body before this.
    let want = usize::try_from(head.content_length)
        .map_err(|_| HttpError::BodyTooLarge(head.content_length))?;
    let mut body = buf.split_off(head_len.min(buf.len()));
    if body.len() > want {
        body.truncate(want);
    }
    body.reserve(want - body.len());
    while body.len() < want {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|_| HttpError::Malformed("read failed"))?;
        if n == 0 {
            return Err(HttpError::Malformed("body shorter than Content-Length"));
        }
        let take = n.min(want - body.len());
        body.extend_from_slice(&chunk[..take]);
    }
    Ok(Some((head, body)))
}

/// Serves one controller connection.
pub async fn serve(mut stream: Stream, peer: Peer, shared: Arc<Shared>, _token: CancellationToken) {
    spam::local()
        .stats
        .control_connections
        .fetch_add(1, Ordering::Relaxed);
    let ctl = &shared.cfg.spam.controller;
    let max_body = shared.cfg.max_message_size as u64;
    let response =
        match tokio::time::timeout(ctl.timeout, read_request(&mut stream, max_body)).await {
            Err(_) => Some(Response::error(408, "request timeout")),
            Ok(Err(e)) => {
                warn!(peer = %peer, error = %e, "bad controller request");
                Some(Response::error(e.status(), &e.to_string()))
            }
            Ok(Ok(None)) => None,
            Ok(Ok(Some((head, body)))) => Some(handle(&shared, &peer, &head, &body).await),
        };
    if let Some(r) = response {
        let bytes = r.to_bytes();
        match tokio::time::timeout(ctl.timeout, async {
            stream.write_all(&bytes).await?;
            stream.flush().await?;
            stream.shutdown().await
        })
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => debug!(peer = %peer, error = %e, "controller client went away"),
            Err(_) => debug!(peer = %peer, "controller client did not read the reply"),
        }
    }
}

fn peer_ip(peer: &Peer) -> Option<IpAddr> {
    match peer {
        Peer::Tcp(a) => Some(a.ip()),
        Peer::Unix => None,
    }
}

/// Whether `given` is the stored password `stored`.
async fn password_matches(given: &str, stored: &Secret) -> bool {
    let s = stored.expose();
    if catena::is_rspamd_hash(s) {
        // The guide's worker-controller.inc hash, from `rspamadm pw`.
        let (given, s) = (given.as_bytes().to_vec(), s.to_owned());
        return match tokio::task::spawn_blocking(move || catena::verify(&given, &s)).await {
            Ok(Some(ok)) => ok,
            Ok(None) => {
                error!("controller password looks like an Rspamd $2$ hash but is malformed");
                false
            }
            Err(e) => {
                error!(error = %e, "controller password check failed");
                false
            }
        };
    }
    // A stored string without a {SCHEME} prefix is the plain password.
    match password::verify_blocking(given.as_bytes().to_vec(), s.to_owned(), Scheme::Plain).await {
        Ok(ok) => ok,
        Err(e) => {
            error!(error = %e, "controller password cannot be checked");
            false
        }
    }
}

/// Whether the request may go ahead.
async fn is_allowed(shared: &Shared, peer: &Peer, head: &http::Head, access: Access) -> bool {
    let ctl = &shared.cfg.spam.controller;
    if access == Access::Open {
        return true;
    }
    match peer_ip(peer) {
        None => return true,
        Some(ip) if ctl.secure_ip.iter().any(|n| n.contains(ip)) => return true,
        Some(_) => {}
    }
    let Some(given) = head.field("Password").or_else(|| head.field("Pass")) else {
        return false;
    };
    let candidates: Vec<&Secret> = match access {
        Access::Write => ctl
            .enable_password
            .as_ref()
            .or(ctl.password.as_ref())
            .into_iter()
            .collect(),
        Access::Read | Access::Open => ctl
            .password
            .iter()
            .chain(ctl.enable_password.iter())
            .collect(),
    };
    for c in candidates {
        if password_matches(given, c).await {
            return true;
        }
    }
    false
}

async fn handle(shared: &Shared, peer: &Peer, head: &http::Head, body: &[u8]) -> Response {
    let started = Instant::now();
    let path = head.path.trim_end_matches('/');
    let path = if path.is_empty() { "/" } else { path };
    let access = match path {
        "/ping" => Access::Open,
        "/learnspam" | "/learnham" => Access::Write,
        _ => Access::Read,
    };
    if !is_allowed(shared, peer, head, access).await {
        info!(peer = %peer, path, "controller request refused: password required");
        return Response::error(403, "Unauthorized");
    }
    let scanner = &shared.scanner;
    let r = match (head.method.as_str(), path) {
        (_, "/ping") => Response::text(200, "text/plain", "pong\r\n"),
        ("POST", "/checkv2" | "/symbols" | "/check") => {
            let is_v1 = path != "/checkv2";
            let rcpts: Vec<String> = head
                .all("Rcpt")
                .iter()
                .map(|r| r.trim_matches(['<', '>']).to_owned())
                .collect();
            let ip = head.field("Ip").and_then(|i| i.parse().ok());
            let helo = head.field("Helo").unwrap_or("");
            let from = head.field("From").unwrap_or("").trim_matches(['<', '>']);
            let qid = head.field("Queue-Id").unwrap_or("");
            let env = Envelope {
                client_ip: ip,
                helo,
                mail_from: from,
                rcpts: &rcpts,
                queue_id: qid,
                deliver_to: head.field("Deliver-To"),
            };
            // SPF/DKIM/DMARC only when the client told the address, as
            // Rspamd's checks need it.
            let verdict = if ip.is_some() && shared.cfg.verify.enabled {
                let venv = crate::verify::Envelope {
                    client_ip: ip,
                    helo,
                    mail_from: from,
                };
                Some(shared.verifier.verify(body, &venv).await)
            } else {
                None
            };
            let auth = verdict.as_ref().map(crate::verify::Verdict::auth_results);
            let scan = scanner
                .scan(body, &env, auth.as_ref(), !shared.cfg.spam.shadow)
                .await;
            info!(
                peer = %peer,
                queue_id = if qid.is_empty() { "-" } else { qid },
                score = scan.score,
                action = scan.action.as_str(),
                "controller scan"
            );
            let ar = verdict.as_ref().map(|v| v.header.replace("\r\n", "\n"));
            let v = if is_v1 {
                json::check_v1(&scan, ar.as_deref())
            } else {
                json::check_v2(&scan, ar.as_deref())
            };
            Response::json(200, &v)
        }
        ("POST", "/learnspam" | "/learnham") => {
            let class = if path == "/learnspam" {
                Class::Spam
            } else {
                Class::Ham
            };
            match scanner.learn(body, class, head.field("Deliver-To")).await {
                Ok((Learned::Learned | Learned::Relearned, mid)) => {
                    info!(peer = %peer, class = class.as_str(), message_id = mid.as_deref().unwrap_or("-"), "learned");
                    Response::json(200, &serde_json::json!({"success": true}))
                }
                Ok((Learned::Already, mid)) => {
                    let text = format!(
                        "<{}> has been already learned as {}, ignore it",
                        mid.as_deref().unwrap_or("undef"),
                        class.as_str()
                    );
                    let mut r = Response::error(208, &text);
                    r.reason = text;
                    r
                }
                Ok((Learned::Empty, _)) => {
                    Response::error(400, "message has no text to learn from")
                }
                Err(e) => {
                    error!(peer = %peer, error = %e, "learning failed");
                    Response::error(503, "Bayes store unavailable, try again later")
                }
            }
        }
        ("GET" | "POST", "/stat") => match scanner.bayes_stat().await {
            Ok(st) => Response::json(
                200,
                &json::stat(&spam::local().stats.snapshot(), &st, scanner.store_kind()),
            ),
            Err(e) => {
                error!(error = %e, "Bayes statistics unavailable");
                Response::json(
                    200,
                    &json::stat(
                        &spam::local().stats.snapshot(),
                        &Default::default(),
                        scanner.store_kind(),
                    ),
                )
            }
        },
        ("GET", "/history") => Response::json(200, &json::history(&spam::local().stats.snapshot())),
        ("GET", "/metrics") => {
            let st = scanner.bayes_stat().await.unwrap_or_default();
            Response::text(
                200,
                "text/plain; version=0.0.4",
                json::metrics(&spam::local().stats.snapshot(), &st),
            )
        }
        ("GET", "/") => Response::text(
            200,
            "text/html; charset=utf-8",
            page::render(&spam::local().stats.snapshot()),
        ),
        (
            _,
            "/checkv2" | "/symbols" | "/check" | "/learnspam" | "/learnham" | "/history"
            | "/metrics",
        ) => Response::error(405, "method not allowed"),
        _ => Response::error(404, "unknown command"),
    };
    debug!(peer = %peer, method = %head.method, path, status = r.status, elapsed_ms = started.elapsed().as_millis() as u64, "controller request");
    r
}

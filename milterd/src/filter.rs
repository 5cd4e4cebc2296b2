//! SESSION EDGE: the indymilter callbacks and the per-connection,
//! per-message state they share: the macros Postfix sends, outgoing versus
//! incoming, the buffered header fields and body (bounded by the config).
//! The decisions are made in [`crate::sign`]; the replies are chosen in
//! [`crate::reply`].

use crate::reply;
use crate::sign::{Field, Message, Outcome, SignError, Signer, Skip};
use bytes::Bytes;
use indymilter::{
    Actions, Callbacks, Context, ContextActions, EomContext, MacroStage, NegotiateContext,
    ProtoOpts, SocketInfo, Status,
};
use postwerk_core::config::milterd::MilterdConfig;
use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

/// The longest the end-of-message work may take; Postfix waits
/// `milter_content_timeout` (300 s) for our answer.
pub const EOM_DEADLINE: Duration = Duration::from_secs(120);

/// What every connection needs; built from one config and replaced as a
/// whole on reload.
#[derive(Debug)]
pub struct Shared {
    /// `[milterd]`.
    pub cfg: MilterdConfig,
    /// The DKIM signer.
    pub signer: Arc<Signer>,
}

/// Why a message counts as outgoing, or that it is incoming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The client authenticated (`{auth_authen}`).
    Authenticated(String),
    /// Postfix's `{daemon_name}` is the originating one (the guide's
    /// submission and smtps services).
    DaemonName,
    /// The client address is in `trusted_networks`.
    TrustedNetwork(IpAddr),
    /// Anything else: mail from other servers.
    Incoming,
}

impl Origin {
    /// Whether mail from here is signed.
    pub fn is_outgoing(&self) -> bool {
        !matches!(self, Origin::Incoming)
    }
}

/// Decides [`Origin`] from what Postfix told us.
pub fn origin(
    cfg: &MilterdConfig,
    auth_user: Option<&str>,
    daemon_name: Option<&str>,
    client_addr: Option<IpAddr>,
) -> Origin {
    if let Some(user) = auth_user.filter(|u| !u.is_empty()) {
        return Origin::Authenticated(user.to_owned());
    }
    if daemon_name == Some(cfg.originating_daemon_name.as_str()) {
        return Origin::DaemonName;
    }
    if let Some(ip) = client_addr
        && cfg.trusted_networks.iter().any(|n| n.contains(ip))
    {
        return Origin::TrustedNetwork(ip);
    }
    Origin::Incoming
}

/// Why a message could not be buffered completely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// More than `max_headers` fields.
    Headers,
    /// More than `max_header_size` bytes of fields.
    HeaderSize,
    /// More than `max_message_size` bytes.
    MessageSize,
}

/// One mail transaction (MAIL FROM to end of message or abort).
#[derive(Debug, Default)]
struct Transaction {
    queue_id: Option<String>,
    auth_user: Option<String>,
    origin: Option<Origin>,
    fields: Vec<Field>,
    header_bytes: usize,
    body: Vec<Bytes>,
    body_len: usize,
    overflow: Option<Overflow>,
    started: Option<Instant>,
}

/// One milter connection (one SMTP session of Postfix).
pub struct State {
    shared: Arc<Shared>,
    busy: watch::Sender<bool>,
    has_leading_space: bool,
    client_addr: Option<IpAddr>,
    client_name: Option<String>,
    daemon_name: Option<String>,
    tx: Transaction,
}

impl State {
    fn reset(&mut self) {
        self.tx = Transaction::default();
        self.busy.send_replace(false);
    }
}

fn macro_str(macros: &indymilter::Macros, name: &CStr) -> Option<String> {
    macros
        .get(name)
        .map(|v| v.to_string_lossy().into_owned())
        .filter(|v| !v.is_empty())
}

fn cstring(s: &str) -> CString {
    // Our literals contain no NUL.
    CString::new(s).unwrap_or_default()
}

/// The callbacks of one connection. `busy` is true while a transaction is
/// open, so that shutdown can wait for it.
pub fn callbacks(shared: Arc<Shared>, busy: watch::Sender<bool>) -> Callbacks<State> {
    let busy = Arc::new(busy);
    Callbacks::new()
        .on_negotiate({
            let shared = shared.clone();
            move |cx: &mut NegotiateContext<State>, actions: Actions, opts: ProtoOpts| {
                let shared = shared.clone();
                let busy = busy.clone();
                Box::pin(async move { negotiate(cx, shared, &busy, actions, opts) })
            }
        })
        .on_connect(|cx, _hostname, socket| Box::pin(async move { connect(cx, socket) }))
        .on_mail(|cx, _args| Box::pin(async move { mail(cx) }))
        .on_header(|cx, name, value| Box::pin(async move { header(cx, name, value) }))
        .on_eoh(|cx| Box::pin(async move { eoh(cx) }))
        .on_body(|cx, chunk| Box::pin(async move { body(cx, chunk) }))
        .on_eom(|cx| Box::pin(eom(cx)))
        .on_abort(|cx| {
            Box::pin(async move {
                if let Some(s) = cx.data.as_mut() {
                    s.reset();
                }
                Status::Continue
            })
        })
        .on_close(|cx| {
            Box::pin(async move {
                if let Some(s) = cx.data.as_mut() {
                    s.reset();
                }
                Status::Continue
            })
        })
}

/// The protocol steps and replies we ask for (see milter.md §2): no HELO,
/// RCPT, DATA or unknown commands; no replies to connect, MAIL, headers
/// and body chunks (we only decide at end of headers and end of message);
/// header values with their leading space, so that what we sign is what
/// Postfix stores.
const NO_STEPS: ProtoOpts = ProtoOpts::NO_HELO
    .union(ProtoOpts::NO_RCPT)
    .union(ProtoOpts::NO_DATA)
    .union(ProtoOpts::NO_UNKNOWN);
const NO_REPLIES: ProtoOpts = ProtoOpts::NOREPLY_CONNECT
    .union(ProtoOpts::NOREPLY_MAIL)
    .union(ProtoOpts::NOREPLY_HEADER)
    .union(ProtoOpts::NOREPLY_BODY);

fn negotiate(
    cx: &mut NegotiateContext<State>,
    shared: Arc<Shared>,
    busy: &Arc<watch::Sender<bool>>,
    mta_actions: Actions,
    mta_opts: ProtoOpts,
) -> Status {
    let wanted_actions = Actions::ADD_HEADER | Actions::REQUEST_MACROS;
    cx.requested_actions = mta_actions & wanted_actions;
    let mut opts = NO_STEPS & mta_opts;
    opts |= NO_REPLIES & mta_opts;
    let has_leading_space = mta_opts.contains(ProtoOpts::LEADING_SPACE);
    if has_leading_space {
        opts |= ProtoOpts::LEADING_SPACE;
    }
    cx.requested_opts = opts;
    if mta_actions.contains(Actions::REQUEST_MACROS) {
        let mut macros = HashMap::new();
        macros.insert(
            MacroStage::Connect,
            cstring("{daemon_name} {client_addr} {client_name} j"),
        );
        macros.insert(
            MacroStage::Mail,
            cstring("i {auth_authen} {auth_type} {mail_addr}"),
        );
        macros.insert(MacroStage::Eoh, cstring("i"));
        macros.insert(MacroStage::Eom, cstring("i"));
        cx.requested_macros = macros;
    }
    debug!(
        actions = ?cx.requested_actions,
        opts = ?cx.requested_opts,
        "milter options negotiated"
    );
    cx.data = Some(State {
        shared,
        busy: watch::Sender::clone(busy),
        has_leading_space,
        client_addr: None,
        client_name: None,
        daemon_name: None,
        tx: Transaction::default(),
    });
    Status::Continue
}

fn connect(cx: &mut Context<State>, socket: SocketInfo) -> Status {
    let addr = match socket {
        SocketInfo::Inet(a) => Some(a.ip()),
        SocketInfo::Unix(_) | SocketInfo::Unknown => None,
    };
    let daemon_name = macro_str(&cx.macros, c"{daemon_name}");
    let client_name = macro_str(&cx.macros, c"{client_name}");
    let macro_addr = macro_str(&cx.macros, c"{client_addr}").and_then(|a| a.parse().ok());
    if let Some(s) = cx.data.as_mut() {
        s.client_addr = addr.or(macro_addr);
        s.daemon_name = daemon_name;
        s.client_name = client_name;
        debug!(client = ?s.client_addr, client_name = ?s.client_name, daemon_name = ?s.daemon_name, "connect");
    }
    Status::Noreply
}

fn mail(cx: &mut Context<State>) -> Status {
    let auth_user = macro_str(&cx.macros, c"{auth_authen}");
    let queue_id = macro_str(&cx.macros, c"i");
    // {daemon_name} may come at MAIL with a macro list from main.cf.
    let daemon_name = macro_str(&cx.macros, c"{daemon_name}");
    if let Some(s) = cx.data.as_mut() {
        s.tx = Transaction::default();
        s.busy.send_replace(true);
        let daemon_name = daemon_name.or_else(|| s.daemon_name.clone());
        let origin = origin(
            &s.shared.cfg,
            auth_user.as_deref(),
            daemon_name.as_deref(),
            s.client_addr,
        );
        debug!(origin = ?origin, "mail from");
        s.tx.origin = Some(origin);
        s.tx.auth_user = auth_user;
        s.tx.queue_id = queue_id;
        s.tx.started = Some(Instant::now());
    }
    Status::Noreply
}

fn header(cx: &mut Context<State>, name: CString, value: CString) -> Status {
    let Some(s) = cx.data.as_mut() else {
        return Status::Noreply;
    };
    if s.tx.overflow.is_some() {
        return Status::Noreply;
    }
    let size = name.as_bytes().len() + value.as_bytes().len() + 3;
    if s.tx.fields.len() >= s.shared.cfg.max_headers {
        s.tx.overflow = Some(Overflow::Headers);
    } else if s.tx.header_bytes + size > s.shared.cfg.max_header_size {
        s.tx.overflow = Some(Overflow::HeaderSize);
    } else {
        s.tx.header_bytes += size;
        s.tx.fields.push(Field {
            name: name.to_string_lossy().into_owned(),
            value: value.into_bytes(),
        });
        return Status::Noreply;
    }
    // Free what we cannot use any more.
    s.tx.fields = Vec::new();
    Status::Noreply
}

fn eoh(cx: &mut Context<State>) -> Status {
    let queue_id = macro_str(&cx.macros, c"i");
    let Some(s) = cx.data.as_mut() else {
        return Status::Continue;
    };
    if s.tx.queue_id.is_none() {
        s.tx.queue_id = queue_id;
    }
    let is_outgoing = s.tx.origin.as_ref().is_some_and(Origin::is_outgoing);
    if !is_outgoing || !s.shared.cfg.dkim.sign {
        // LIMITATION: incoming mail is not verified yet (issue 6, part 2),
        // so nothing more of it is needed.
        info!(
            queue_id = s.tx.queue_id.as_deref().unwrap_or("-"),
            origin = ?s.tx.origin,
            "incoming; passed unchanged"
        );
        s.reset();
        return Status::Accept;
    }
    Status::Continue
}

fn body(cx: &mut Context<State>, chunk: Bytes) -> Status {
    let Some(s) = cx.data.as_mut() else {
        return Status::Noreply;
    };
    if s.tx.overflow.is_some() {
        return Status::Noreply;
    }
    if s.tx.body_len + s.tx.header_bytes + chunk.len() > s.shared.cfg.max_message_size {
        s.tx.overflow = Some(Overflow::MessageSize);
        s.tx.body = Vec::new();
    } else {
        s.tx.body_len += chunk.len();
        s.tx.body.push(chunk);
    }
    Status::Noreply
}

async fn eom(cx: &mut EomContext<State>) -> Status {
    let queue_id = macro_str(&cx.macros, c"i");
    let Some(s) = cx.data.as_mut() else {
        return Status::Accept;
    };
    let tx = std::mem::take(&mut s.tx);
    s.busy.send_replace(false);
    let qid = tx.queue_id.or(queue_id).unwrap_or_else(|| "-".into());
    let elapsed = tx.started.map(|t| t.elapsed()).unwrap_or_default();
    let origin = tx.origin.unwrap_or(Origin::Incoming);
    let cfg = &s.shared.cfg;
    if let Some(overflow) = tx.overflow {
        warn!(
            queue_id = %qid,
            overflow = ?overflow,
            action = cfg.error_action.as_str(),
            "message over the buffering limits; not signed"
        );
        return reply::failure(cfg.error_action);
    }
    let msg = Message {
        fields: &tx.fields,
        has_leading_space: s.has_leading_space,
        body: &tx.body,
        auth_user: tx.auth_user.as_deref(),
    };
    let signer = Arc::clone(&s.shared.signer);
    let result = match tokio::time::timeout(EOM_DEADLINE, signer.sign(&msg)).await {
        Ok(r) => r,
        Err(_) => Err(SignError::Task(format!(
            "no result within {EOM_DEADLINE:?}"
        ))),
    };
    match result {
        Ok(Outcome::Signed {
            domain,
            keys,
            values,
        }) => {
            for value in &values {
                // The milter protocol folds header values with bare LF;
                // Postfix stores a CR of "\r\n\t" as part of the line.
                let value = value.replace("\r\n", "\n");
                let value = if s.has_leading_space { format!(" {value}") } else { value };
                // Index 0: the very top, above Postfix's own Received:
                // (milter.md §4.2), where signatures are expected.
                if let Err(e) = cx.actions.insert_header(0, "DKIM-Signature", value).await {
                    error!(queue_id = %qid, error = %e, "cannot add DKIM-Signature");
                    return reply::failure(cfg.dkim.sign_error_action);
                }
            }
            info!(
                queue_id = %qid,
                origin = ?origin,
                domain = %domain,
                keys = %keys.join(", "),
                elapsed_ms = elapsed.as_millis() as u64,
                "signed"
            );
            Status::Accept
        }
        Ok(Outcome::Unsigned(skip)) => {
            match &skip {
                Skip::NoKey(paths) => warn!(
                    queue_id = %qid,
                    keys = %paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
                    "no DKIM key file for the sender's domain; passed unsigned"
                ),
                other => {
                    info!(queue_id = %qid, origin = ?origin, reason = ?other, "outgoing; not signed")
                }
            }
            Status::Accept
        }
        Err(e) => {
            let action = cfg.dkim.sign_error_action;
            error!(queue_id = %qid, error = %e, action = action.as_str(), "DKIM signing failed");
            reply::failure(action)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postwerk_core::config::Config;

    #[test]
    fn origins() {
        let cfg = Config::parse("[milterd]\ntrusted_networks = [\"192.0.2.0/24\"]")
            .unwrap()
            .milterd;
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(
            origin(&cfg, Some("u@example.org"), None, ip("198.51.100.1")),
            Origin::Authenticated("u@example.org".into())
        );
        assert_eq!(
            origin(&cfg, None, Some("ORIGINATING"), ip("198.51.100.1")),
            Origin::DaemonName
        );
        assert!(matches!(
            origin(&cfg, None, Some("mx"), ip("192.0.2.9")),
            Origin::TrustedNetwork(_)
        ));
        assert_eq!(
            origin(&cfg, Some(""), Some("mx"), ip("198.51.100.1")),
            Origin::Incoming
        );
        assert_eq!(origin(&cfg, None, None, None), Origin::Incoming);
    }
}

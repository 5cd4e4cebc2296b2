//! SESSION EDGE: the indymilter callbacks and the per-connection,
//! per-message state they share: the macros Postfix sends, outgoing versus
//! incoming, the buffered header fields and body (bounded by the config).
//! The decisions are made in [`crate::sign`] (outgoing) and
//! [`crate::verify`] (incoming); the replies are chosen in
//! [`crate::reply`].

use crate::arc::{self, Plan, Sealer};
use crate::reply;
use crate::sign::{Field, Message, Outcome, SignError, Signer, Skip, push_crlf};
use crate::spam::{self, Action, Scanner};
use crate::verify::{self, ArcSeal, Envelope, SealRequest, Verifier};
use bytes::Bytes;
use indymilter::{
    Actions, Callbacks, Context, ContextActions, EomContext, MacroStage, NegotiateContext,
    ProtoOpts, SocketInfo, Status,
};
use postwerk_core::config::milterd::{DmarcRejectAction, FailureAction, MilterdConfig};
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
    /// The ARC sealer.
    pub sealer: Arc<Sealer>,
    /// The verifier of incoming mail.
    pub verifier: Arc<Verifier>,
    /// The spam scanner of incoming mail.
    pub scanner: Arc<Scanner>,
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
    /// The envelope sender without angle brackets (empty: `<>`).
    mail_from: Option<String>,
    /// The envelope recipients Postfix accepted, without angle brackets.
    rcpts: Vec<String>,
    /// Occurrences of the header fields spam scoring owns
    /// ([`spam::headers::OWNED`], same order), to remove them.
    spam_fields: [i32; 5],
    /// What another filter (Rspamd, in shadow mode) said:
    /// `X-Spam-Status` / `X-Rspamd-Action` values.
    foreign_verdict: Vec<String>,
    /// `Authentication-Results` fields seen so far.
    ar_count: i32,
    /// 1-based occurrences of `Authentication-Results` fields that claim
    /// our authserv-id (the milter `m` index, milter.md §4.2).
    forged_ar: Vec<i32>,
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
    /// The last HELO/EHLO argument (after STARTTLS Postfix sends it again).
    helo: Option<String>,
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
        .on_helo(|cx, name| Box::pin(async move { helo(cx, name) }))
        .on_mail(|cx, args| Box::pin(async move { mail(cx, args) }))
        .on_rcpt(|cx, args| Box::pin(async move { rcpt(cx, args) }))
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

/// The protocol steps and replies we ask for (see milter.md §2): no DATA
/// or unknown commands; no replies to connect, HELO, MAIL, RCPT, headers
/// and body chunks (we only decide at end of headers and end of message;
/// the recipients are needed for greylisting); header values with their
/// leading space, so that what we sign is what Postfix stores.
const NO_STEPS: ProtoOpts = ProtoOpts::NO_DATA.union(ProtoOpts::NO_UNKNOWN);
const NO_REPLIES: ProtoOpts = ProtoOpts::NOREPLY_CONNECT
    .union(ProtoOpts::NOREPLY_HELO)
    .union(ProtoOpts::NOREPLY_MAIL)
    .union(ProtoOpts::NOREPLY_RCPT)
    .union(ProtoOpts::NOREPLY_HEADER)
    .union(ProtoOpts::NOREPLY_BODY);

fn negotiate(
    cx: &mut NegotiateContext<State>,
    shared: Arc<Shared>,
    busy: &Arc<watch::Sender<bool>>,
    mta_actions: Actions,
    mta_opts: ProtoOpts,
) -> Status {
    // CHANGE_HEADER: removing forged Authentication-Results (`m`).
    let wanted_actions = Actions::ADD_HEADER | Actions::CHANGE_HEADER | Actions::REQUEST_MACROS;
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
        helo: None,
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

fn helo(cx: &mut Context<State>, name: CString) -> Status {
    if let Some(s) = cx.data.as_mut() {
        s.helo = Some(name.to_string_lossy().into_owned());
    }
    Status::Noreply
}

/// The address of a MAIL packet argument: `<a@b>` from smtpd, `a@b` from
/// the sendmail(1) path (milter.md §3.1); `<>` is the null sender.
fn envelope_address(arg: &str) -> String {
    let a = arg.trim();
    let a = a.strip_prefix('<').unwrap_or(a);
    let a = a.strip_suffix('>').unwrap_or(a);
    a.to_owned()
}

fn mail(cx: &mut Context<State>, args: Vec<CString>) -> Status {
    let sender = args
        .first()
        .map(|a| envelope_address(&a.to_string_lossy()))
        .or_else(|| macro_str(&cx.macros, c"{mail_addr}"));
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
        s.tx.mail_from = sender;
        s.tx.queue_id = queue_id;
        s.tx.started = Some(Instant::now());
    }
    Status::Noreply
}

/// Most recipients remembered per message (for greylisting).
const MAX_RCPTS: usize = 1000;

fn rcpt(cx: &mut Context<State>, args: Vec<CString>) -> Status {
    if let Some(s) = cx.data.as_mut()
        && s.tx.rcpts.len() < MAX_RCPTS
        && let Some(a) = args.first()
    {
        s.tx.rcpts.push(envelope_address(&a.to_string_lossy()));
    }
    Status::Noreply
}

fn header(cx: &mut Context<State>, name: CString, value: CString) -> Status {
    let Some(s) = cx.data.as_mut() else {
        return Status::Noreply;
    };
    // Counted even past the buffering limits, so stale copies are removed
    // from any message.
    if let Some(i) = spam::headers::OWNED
        .iter()
        .position(|n| n.as_bytes().eq_ignore_ascii_case(name.as_bytes()))
    {
        s.tx.spam_fields[i] += 1;
    }
    if s.tx.foreign_verdict.len() < 4
        && (name.as_bytes().eq_ignore_ascii_case(b"X-Spam-Status")
            || name.as_bytes().eq_ignore_ascii_case(b"X-Rspamd-Action"))
    {
        let v: String = value.to_string_lossy().chars().take(200).collect();
        s.tx.foreign_verdict.push(format!(
            "{}: {}",
            name.to_string_lossy(),
            v.split_whitespace().collect::<Vec<_>>().join(" ")
        ));
    }
    if name
        .as_bytes()
        .eq_ignore_ascii_case(verify::FIELD.as_bytes())
    {
        // Counted even past the buffering limits, so forged fields are
        // removed from any message.
        s.tx.ar_count += 1;
        if verify::is_forged(value.as_bytes(), s.shared.verifier.authserv_id()) {
            s.tx.forged_ar.push(s.tx.ar_count);
        }
    }
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
    let is_needed = if is_outgoing {
        s.shared.cfg.dkim.sign
    } else {
        s.shared.cfg.verify.enabled || s.shared.cfg.spam.enabled
    };
    if !is_needed {
        info!(
            queue_id = s.tx.queue_id.as_deref().unwrap_or("-"),
            origin = ?s.tx.origin,
            "passed unchanged (signing or verification is off)"
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
    let mut tx = std::mem::take(&mut s.tx);
    s.busy.send_replace(false);
    let qid = tx
        .queue_id
        .take()
        .or(queue_id)
        .unwrap_or_else(|| "-".into());
    let elapsed = tx.started.map(|t| t.elapsed()).unwrap_or_default();
    let origin = tx.origin.take().unwrap_or(Origin::Incoming);
    let cfg = &s.shared.cfg;
    if !origin.is_outgoing() {
        let helo = s.helo.clone().unwrap_or_default();
        let client_ip = s.client_addr;
        let shared = Arc::clone(&s.shared);
        return incoming(cx, &shared, tx, &qid, client_ip, &helo, elapsed).await;
    }
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
                let value = if s.has_leading_space {
                    format!(" {value}")
                } else {
                    value
                };
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
            let shared = Arc::clone(&s.shared);
            let plan = shared.sealer.plan_outgoing(&domain).await;
            let req = match seal_request(plan, &shared.sealer, &qid) {
                Ok(r) => r,
                Err(action) => return reply::failure(action),
            };
            let (Some(req), Some(ip)) = (req, s.client_addr) else {
                return Status::Accept;
            };
            // The message as it leaves: our signatures on top, in the
            // order the inserts above leave them (the last one topmost).
            let mut raw = Vec::new();
            for value in values.iter().rev() {
                raw.extend_from_slice(b"DKIM-Signature: ");
                raw.extend_from_slice(value.as_bytes());
                raw.extend_from_slice(b"\r\n");
            }
            raw.extend_from_slice(&raw_message(&tx.fields, s.has_leading_space, &tx.body));
            match shared.verifier.seal_outgoing(&raw, ip, &req).await {
                Ok(fields) => {
                    if let Err(e) = insert_arc(&cx.actions, &fields, s.has_leading_space).await {
                        error!(queue_id = %qid, error = %e, "cannot add the ARC set");
                        return reply::failure(shared.cfg.arc.seal_error_action);
                    }
                    info!(queue_id = %qid, domain = %req.key.domain, selector = %req.key.selector, "sealed (ARC)");
                    Status::Accept
                }
                Err(arc::SealError::NotSealable(why)) => {
                    info!(queue_id = %qid, reason = %why, "outgoing; not sealed (ARC)");
                    Status::Accept
                }
                Err(e) => {
                    let action = shared.cfg.arc.seal_error_action;
                    error!(queue_id = %qid, error = %e, action = action.as_str(), "ARC sealing failed");
                    reply::failure(action)
                }
            }
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

/// The seal request for `plan`, logging why there is none; `Err(answer)`
/// when the domain has a key but the decision failed (database down,
/// broken key file): `[milterd.arc].seal_error_action`.
fn seal_request(
    plan: Result<Plan, arc::SealError>,
    sealer: &Sealer,
    qid: &str,
) -> Result<Option<SealRequest>, FailureAction> {
    match plan {
        Ok(Plan::Seal(key)) => Ok(Some(SealRequest {
            key,
            headers: sealer.headers(),
        })),
        Ok(Plan::Skip(arc::Skip::NoKey(paths))) => {
            warn!(
                queue_id = %qid,
                keys = %paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
                "no ARC key file for the domain; not sealed"
            );
            Ok(None)
        }
        Ok(Plan::Skip(arc::Skip::NoRsaKey(domain))) => {
            warn!(queue_id = %qid, domain = %domain, "no RSA key for the domain (ARC allows only rsa-sha256); not sealed");
            Ok(None)
        }
        Ok(Plan::Skip(arc::Skip::Disabled | arc::Skip::NotForwarded)) => Ok(None),
        Err(e) => {
            let action = sealer.config().seal_error_action;
            error!(queue_id = %qid, error = %e, action = action.as_str(), "ARC sealing failed");
            Err(action)
        }
    }
}

/// Inserts an ARC set (fields top first) at the top of the message.
async fn insert_arc(
    actions: &indymilter::EomActions,
    fields: &[(String, String)],
    has_leading_space: bool,
) -> Result<(), indymilter::ActionError> {
    // Each goes to index 0, so the last inserted is topmost: insert the
    // bottom one (ARC-Authentication-Results) first.
    for (name, value) in fields.iter().rev() {
        let value = value.replace("\r\n", "\n");
        let value = if has_leading_space {
            format!(" {value}")
        } else {
            value
        };
        actions.insert_header(0, name.as_str(), value).await?;
    }
    Ok(())
}

/// The whole message as received, CRLF line ends, for verification.
fn raw_message(fields: &[Field], has_leading_space: bool, body: &[Bytes]) -> Vec<u8> {
    let body_len: usize = body.iter().map(Bytes::len).sum();
    let mut raw = Vec::with_capacity(body_len + 4096);
    for f in fields {
        raw.extend_from_slice(f.name.as_bytes());
        raw.push(b':');
        if !has_leading_space {
            raw.push(b' ');
        }
        push_crlf(&mut raw, &f.value);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"\r\n");
    for chunk in body {
        raw.extend_from_slice(chunk);
    }
    raw
}

/// End of message for incoming mail: verify, apply the DMARC outcome
/// policy, score, remove forged `Authentication-Results` and stale spam
/// headers, add ours.
async fn incoming(
    cx: &mut EomContext<State>,
    shared: &Shared,
    tx: Transaction,
    qid: &str,
    client_ip: Option<IpAddr>,
    helo: &str,
    elapsed: Duration,
) -> Status {
    let cfg = &shared.cfg;
    let error_action = cfg.error_action;
    let verifier = &shared.verifier;
    let has_leading_space = cx.data.as_ref().is_some_and(|s| s.has_leading_space);
    let raw = tx
        .overflow
        .is_none()
        .then(|| raw_message(&tx.fields, has_leading_space, &tx.body));
    let mail_from = tx.mail_from.as_deref().unwrap_or("");
    // ARC: a message that an alias of ours forwards off-site is sealed
    // (the seal carries the results verified here).
    let seal = if raw.is_some() && cfg.verify.enabled {
        let plan = shared.sealer.plan_forwarded(&tx.rcpts).await;
        match seal_request(plan, &shared.sealer, qid) {
            Ok(r) => r,
            Err(action) => return reply::failure(action),
        }
    } else {
        None
    };
    let verdict = match &raw {
        Some(raw) if cfg.verify.enabled => {
            let env = Envelope {
                client_ip,
                helo,
                mail_from,
            };
            Some(verifier.verify_and_seal(raw, &env, seal.as_ref()).await)
        }
        _ => None,
    };
    match verdict.as_ref().and_then(|v| v.arc_set.as_ref()) {
        Some(ArcSeal::Failed(e)) => {
            let action = cfg.arc.seal_error_action;
            error!(queue_id = %qid, error = %e, action = action.as_str(), "ARC sealing failed");
            return reply::failure(action);
        }
        Some(ArcSeal::NotSealable(why)) => {
            info!(queue_id = %qid, reason = %why, "forwarded off-site; not sealed (ARC)");
        }
        Some(ArcSeal::Sealed(_)) | None => {}
    }
    if let Some(v) = &verdict
        && v.is_dmarc_reject
        && verifier.dmarc_reject_action() == DmarcRejectAction::Reject
    {
        info!(
            queue_id = %qid,
            from_domain = %v.from_domain,
            results = %verify::summary(&v.header),
            "incoming; rejected by the sender domain's DMARC policy"
        );
        return reply::dmarc_reject(&mut cx.reply);
    }
    // Highest occurrence first: each removal leaves the lower indexes as
    // they were, however Postfix counts removed fields.
    if cfg.verify.enabled {
        for &index in tx.forged_ar.iter().rev() {
            if let Err(e) = cx
                .actions
                .change_header(verify::FIELD, index, None::<CString>)
                .await
            {
                error!(queue_id = %qid, error = %e, "cannot remove a forged Authentication-Results");
                return reply::failure(error_action);
            }
        }
    }
    let Some(raw) = raw else {
        warn!(
            queue_id = %qid,
            overflow = ?tx.overflow,
            forged_removed = tx.forged_ar.len(),
            action = error_action.as_str(),
            "message over the buffering limits; not verified or scored"
        );
        return reply::failure(error_action);
    };

    // Spam scoring (Rspamd's scanner), unless the client is local.
    let spam_cfg = &cfg.spam;
    let is_local =
        client_ip.is_some_and(|ip| spam_cfg.local_networks.iter().any(|n| n.contains(ip)));
    let scan = if spam_cfg.enabled && !is_local {
        let env = spam::Envelope {
            client_ip,
            helo,
            mail_from,
            rcpts: &tx.rcpts,
            queue_id: qid,
            deliver_to: None,
        };
        let auth = verdict.as_ref().map(verify::Verdict::auth_results);
        Some(
            shared
                .scanner
                .scan(&raw, &env, auth.as_ref(), !spam_cfg.shadow)
                .await,
        )
    } else {
        None
    };
    let acting = scan.as_ref().filter(|_| !spam_cfg.shadow);
    if let Some(s) = &scan {
        let symbols = s
            .symbols
            .iter()
            .map(|x| format!("{}({:.2})", x.name, x.score))
            .collect::<Vec<_>>()
            .join(",");
        if spam_cfg.shadow {
            info!(
                queue_id = %qid,
                score = s.score,
                action = s.action.as_str(),
                symbols = %symbols,
                other_filter = %if tx.foreign_verdict.is_empty() { "-".to_owned() } else { tx.foreign_verdict.join("; ") },
                "shadow: scored, not acted on"
            );
        } else {
            info!(
                queue_id = %qid,
                score = s.score,
                action = s.action.as_str(),
                symbols = %symbols,
                autolearn = s.autolearned.map_or("-", |c| c.as_str()),
                scan_ms = s.elapsed.as_millis() as u64,
                "incoming; scored"
            );
        }
    }
    if let Some(s) = acting {
        match s.action {
            Action::Reject => {
                let text = s.message.as_deref().unwrap_or("Spam message rejected");
                return reply::spam_reject(&mut cx.reply, text);
            }
            Action::SoftReject => {
                let text = s.message.as_deref().unwrap_or("Try again later");
                return reply::spam_tempfail(&mut cx.reply, text);
            }
            Action::NoAction | Action::Greylist | Action::AddHeader => {}
        }
        for (i, name) in spam::headers::OWNED.iter().enumerate() {
            for index in (1..=tx.spam_fields[i]).rev() {
                if let Err(e) = cx
                    .actions
                    .change_header(*name, index, None::<CString>)
                    .await
                {
                    error!(queue_id = %qid, error = %e, field = name, "cannot remove a stale spam header");
                    return reply::failure(error_action);
                }
            }
        }
    }
    let space = |v: String| {
        if has_leading_space {
            format!(" {v}")
        } else {
            v
        }
    };
    if let Some(v) = &verdict {
        // Inserted after the removals: Postfix applies the changes in
        // order, and ours must not shift the occurrence numbers above.
        let value = space(v.header.replace("\r\n", "\n"));
        // Index 0: the top, above Postfix's own Received: (RFC 8601 §5:
        // the field is prepended, like a trace field).
        if let Err(e) = cx.actions.insert_header(0, verify::FIELD, value).await {
            error!(queue_id = %qid, error = %e, "cannot add Authentication-Results");
            return reply::failure(error_action);
        }
        // The ARC set goes above it (RFC 8617 §4.2: a new set is
        // prepended).
        if let Some(ArcSeal::Sealed(fields)) = &v.arc_set {
            if let Err(e) = insert_arc(&cx.actions, fields, has_leading_space).await {
                error!(queue_id = %qid, error = %e, "cannot add the ARC set");
                return reply::failure(cfg.arc.seal_error_action);
            }
            if let Some(req) = &seal {
                info!(
                    queue_id = %qid,
                    domain = %req.key.domain,
                    selector = %req.key.selector,
                    chain = v.arc,
                    "forwarded off-site; sealed (ARC)"
                );
            }
        }
    }
    if let Some(s) = acting {
        for (name, value) in spam::headers::added(s) {
            if let Err(e) = cx.actions.add_header(name, space(value)).await {
                error!(queue_id = %qid, error = %e, field = name, "cannot add a spam header");
                return reply::failure(error_action);
            }
        }
    }
    // `header`: quarantine into Junk through the guide's global Sieve
    // script (`X-Spam-Flag: YES`); not twice when scoring added it.
    let has_flag = acting.is_some_and(|s| s.action == Action::AddHeader);
    if let Some(v) = &verdict
        && v.is_dmarc_reject
        && verifier.dmarc_reject_action() == DmarcRejectAction::Header
        && !has_flag
        && let Err(e) = cx
            .actions
            .insert_header(0, "X-Spam-Flag", space("YES".to_owned()))
            .await
    {
        error!(queue_id = %qid, error = %e, "cannot add X-Spam-Flag");
        return reply::failure(error_action);
    }
    if let Some(v) = &verdict {
        info!(
            queue_id = %qid,
            from_domain = %v.from_domain,
            results = %verify::summary(&v.header),
            forged_removed = tx.forged_ar.len(),
            elapsed_ms = elapsed.as_millis() as u64,
            "incoming; verified"
        );
    }
    Status::Accept
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

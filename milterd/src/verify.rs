//! LOGIC: verification of incoming mail with mail-auth: SPF for the HELO
//! and MAIL FROM identities (RFC 7208), every DKIM signature (RFC 6376),
//! the ARC chain (RFC 8617), DMARC policy and alignment (RFC 7489); the
//! ARC set of a message that is sealed (the seal needs the verified chain
//! and results, see [`crate::arc`]); the one
//! `Authentication-Results:` value we add (RFC 8601) and which existing
//! `Authentication-Results:` fields are forged (they claim our
//! authserv-id). Knows nothing about milter packets; DNS goes through the
//! resolver configured in `[milterd]`, every step under a deadline, and a
//! DNS timeout or SERVFAIL is a `temperror` result, never an error.

use crate::arc::{self, SealError, SealKey};
use mail_auth::dmarc::Policy;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use mail_auth::hickory_resolver::system_conf::read_system_conf;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    ArcOutput, AuthenticatedMessage, AuthenticationResults, DkimOutput, DkimResult, DmarcOutput,
    DmarcResult, MessageAuthenticator, SpfOutput, SpfResult,
};
use postwerk_core::config::milterd::{DmarcRejectAction, MilterdConfig, VerifyConfig};
use std::net::IpAddr;
use tokio::time::Instant;

/// The header field we add and police.
pub const FIELD: &str = "Authentication-Results";

/// Why the verifier could not be built.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The system resolver configuration could not be read.
    #[error("cannot set up the DNS resolver: {0}")]
    Resolver(String),
}

/// What the SMTP session told us about the sender.
#[derive(Debug, Clone, Default)]
pub struct Envelope<'a> {
    /// The client's address (`{client_addr}` or the connect packet);
    /// `None` for mail that did not come over IP.
    pub client_ip: Option<IpAddr>,
    /// The last HELO/EHLO argument.
    pub helo: &'a str,
    /// The envelope sender without angle brackets; empty for `<>`.
    pub mail_from: &'a str,
}

/// The outcome of verifying one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The `Authentication-Results:` value (without leading space), folded
    /// with CRLF TAB.
    pub header: String,
    /// The RFC5322.From domain DMARC was evaluated for (empty if none).
    pub from_domain: String,
    /// The DMARC result (`pass`, `fail`, `none`, `temperror`, ...).
    pub dmarc: &'static str,
    /// The domain publishes `p=reject` and the message failed DMARC.
    pub is_dmarc_reject: bool,
    /// SPF for MAIL FROM (`pass`, `fail`, ...); `None`: not checked (not
    /// received over IP).
    pub spf: Option<&'static str>,
    /// One result word per DKIM signature.
    pub dkim: Vec<&'static str>,
    /// The From: domain's DMARC policy (`reject`, `quarantine`, `none`).
    pub dmarc_policy: Option<&'static str>,
    /// The ARC chain result (`pass`, `fail`, `none`, ...).
    pub arc: &'static str,
    /// What became of the ARC seal, when one was asked for.
    pub arc_set: Option<ArcSeal>,
}

/// The outcome of sealing one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArcSeal {
    /// The ARC set, fields top first.
    Sealed(Vec<(String, String)>),
    /// The message cannot carry our seal, and passes without: its chain
    /// already failed (RFC 8617 §5.1.2: a chain with `cv=fail` is not
    /// extended), or it has no field to sign or cannot be parsed.
    NotSealable(String),
    /// Sealing failed (the key or the crypto library refused).
    Failed(String),
}

/// What [`Verifier::verify`] needs to seal the message as well.
#[derive(Debug, Clone)]
pub struct SealRequest {
    /// The key and identity.
    pub key: SealKey,
    /// The fields the `ARC-Message-Signature` covers.
    pub headers: Vec<String>,
}

impl Verdict {
    /// The results for spam scoring.
    pub fn auth_results(&self) -> crate::spam::rules::AuthResults {
        crate::spam::rules::AuthResults {
            spf: self.spf,
            dkim: self.dkim.clone(),
            dmarc: (!self.from_domain.is_empty()).then_some(self.dmarc),
            dmarc_policy: self.dmarc_policy,
        }
    }
}

fn spf_word(r: SpfResult) -> &'static str {
    match r {
        SpfResult::Pass => "pass",
        SpfResult::Fail => "fail",
        SpfResult::SoftFail => "softfail",
        SpfResult::Neutral => "neutral",
        SpfResult::TempError => "temperror",
        SpfResult::PermError => "permerror",
        SpfResult::None => "none",
    }
}

fn dkim_word(r: &mail_auth::DkimResult) -> &'static str {
    match r {
        mail_auth::DkimResult::Pass => "pass",
        mail_auth::DkimResult::Neutral(_) => "neutral",
        mail_auth::DkimResult::Fail(_) => "fail",
        mail_auth::DkimResult::PermError(_) => "permerror",
        mail_auth::DkimResult::TempError(_) => "temperror",
        mail_auth::DkimResult::None => "none",
    }
}

/// Verifies incoming mail: the resolver and the settings.
pub struct Verifier {
    auth: MessageAuthenticator,
    /// Interned (see [`interned`]): the ARC-Authentication-Results a seal
    /// carries to the blocking pool borrow it.
    authserv_id: &'static str,
    cfg: VerifyConfig,
    /// Bounds the seals computed at once (`[milterd].sign_parallelism`).
    seal_permits: std::sync::Arc<tokio::sync::Semaphore>,
}

/// `s` as a `&'static str`, leaked once per distinct value (authserv-ids:
/// one per config, a reload with the same id costs nothing).
fn interned(s: &str) -> &'static str {
    static IDS: std::sync::OnceLock<std::sync::Mutex<Vec<&'static str>>> =
        std::sync::OnceLock::new();
    let mut ids = IDS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(id) = ids.iter().find(|id| **id == s) {
        return id;
    }
    let id: &'static str = Box::leak(s.to_owned().into_boxed_str());
    ids.push(id);
    id
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("authserv_id", &self.authserv_id)
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// The authserv-id when `[milterd.verify].authserv_id` is not set: the
/// host name (RFC 8601 §2.5 suggests the host name of the MTA).
pub fn default_authserv_id() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// A resolver for `servers` (`[milterd].dns_servers`; empty:
/// /etc/resolv.conf) whose queries time out after `timeout`. Answers are
/// cached within their TTL.
pub fn resolver(
    servers: &[std::net::SocketAddr],
    timeout: std::time::Duration,
) -> Result<MessageAuthenticator, VerifyError> {
    let (config, mut opts) = if servers.is_empty() {
        read_system_conf().map_err(|e| VerifyError::Resolver(e.to_string()))?
    } else {
        let servers = servers
            .iter()
            .map(|a| {
                let mut ns = NameServerConfig::udp_and_tcp(a.ip());
                for c in &mut ns.connections {
                    c.port = a.port();
                }
                ns
            })
            .collect();
        (
            ResolverConfig::from_parts(None, Vec::new(), servers),
            ResolverOpts::default(),
        )
    };
    opts.timeout = timeout;
    MessageAuthenticator::new(config, opts).map_err(|e| VerifyError::Resolver(e.to_string()))
}

impl Verifier {
    /// Builds the resolver of `[milterd]` (`dns_servers`, or
    /// /etc/resolv.conf) with `dns_timeout` per query. Answers are cached
    /// by the resolver, within their TTL.
    pub fn new(cfg: &MilterdConfig) -> Result<Verifier, VerifyError> {
        let auth = resolver(&cfg.dns_servers, cfg.dns_timeout)?;
        Ok(Verifier {
            auth,
            authserv_id: interned(
                &cfg.verify
                    .authserv_id
                    .clone()
                    .unwrap_or_else(default_authserv_id),
            ),
            cfg: cfg.verify.clone(),
            seal_permits: std::sync::Arc::new(tokio::sync::Semaphore::new(
                cfg.sign_parallelism.max(1),
            )),
        })
    }

    /// The authserv-id we write and police.
    pub fn authserv_id(&self) -> &str {
        self.authserv_id
    }

    /// What to do with a DMARC `p=reject` failure.
    pub fn dmarc_reject_action(&self) -> DmarcRejectAction {
        self.cfg.dmarc_reject_action
    }

    /// The ARC chain of `message`, within `deadline` (`temperror` after).
    async fn arc_chain<'x>(
        &self,
        message: &'x AuthenticatedMessage<'x>,
        deadline: Instant,
    ) -> ArcOutput<'x> {
        match within(deadline, self.auth.verify_arc(message)).await {
            Some(out) => out,
            // Sealing after a timeout says cv=fail; the result is kept
            // as temperror in our Authentication-Results.
            None => arc::chain(message, DkimResult::TempError(timed_out())),
        }
    }

    /// Seals outgoing `raw` (CRLF, with our DKIM-Signature fields on
    /// top) sent from `client_ip`. The `ARC-Authentication-Results` says
    /// what we checked: the chain the message arrived with (`arc=none`
    /// for a message written by our user).
    pub async fn seal_outgoing(
        &self,
        raw: &[u8],
        client_ip: std::net::IpAddr,
        req: &SealRequest,
    ) -> Result<Vec<(String, String)>, SealError> {
        let deadline = Instant::now() + self.cfg.timeout;
        let message = AuthenticatedMessage::parse(raw)
            .ok_or_else(|| SealError::NotSealable("the message cannot be parsed".to_owned()))?;
        let chain = self.arc_chain(&message, deadline).await;
        let results = AuthenticationResults::new(self.authserv_id)
            .with_arc_result(&arc_result(&chain), client_ip);
        let result = chain.result().clone();
        self.seal_blocking(raw.to_vec(), results, result, req.clone())
            .await
    }

    /// Seals `raw` on the blocking pool (two RSA signatures and a body
    /// hash), at most `sign_parallelism` at once. `result` is the verified
    /// chain's result; the chain itself is read again from `raw`.
    async fn seal_blocking(
        &self,
        raw: Vec<u8>,
        results: AuthenticationResults<'static>,
        result: DkimResult,
        req: SealRequest,
    ) -> Result<Vec<(String, String)>, SealError> {
        let _permit = self
            .seal_permits
            .acquire()
            .await
            .map_err(|e| SealError::Task(e.to_string()))?;
        tokio::task::spawn_blocking(move || {
            let message = AuthenticatedMessage::parse(&raw)
                .ok_or_else(|| SealError::NotSealable("the message cannot be parsed".to_owned()))?;
            let chain = arc::chain(&message, result);
            arc::seal(&message, &results, &chain, &req.key, &req.headers)
        })
        .await
        .map_err(|e| SealError::Task(e.to_string()))?
    }

    /// Verifies `raw` (the whole message, CRLF line ends) sent by `env`.
    /// Never fails: what cannot be checked in time is `temperror`.
    pub async fn verify(&self, raw: &[u8], env: &Envelope<'_>) -> Verdict {
        self.verify_and_seal(raw, env, None).await
    }

    /// [`Verifier::verify`], and with `seal` also the ARC set for the
    /// message, whose `ARC-Authentication-Results` are these results and
    /// whose `cv=` is the chain's result.
    pub async fn verify_and_seal(
        &self,
        raw: &[u8],
        env: &Envelope<'_>,
        seal: Option<&SealRequest>,
    ) -> Verdict {
        let deadline = Instant::now() + self.cfg.timeout;
        let host = self.authserv_id;
        let helo = env.helo.trim();
        let mail_from = env.mail_from.trim();
        // With a null sender the MAIL FROM identity is postmaster@HELO
        // (RFC 7208 §2.4), and DMARC aligns with the HELO domain.
        let spf_domain = mail_from.rsplit_once('@').map_or(helo, |(_, d)| d);
        let mut r = Results {
            client_ip: env.client_ip,
            helo: helo.to_owned(),
            mail_from: mail_from.to_owned(),
            ..Results::default()
        };

        // SPF: the HELO identity, then MAIL FROM (RFC 7208 §2.3, §2.4).
        if let Some(ip) = env.client_ip {
            if is_domain(helo) {
                let out = within(
                    deadline,
                    self.auth
                        .verify_spf(SpfParameters::verify_ehlo(ip, helo, host)),
                )
                .await;
                r.spf_helo = Some(out.unwrap_or_else(|| timed_out_spf(helo)));
            }
            let out = if is_domain(spf_domain) {
                within(
                    deadline,
                    self.auth
                        .verify_spf(SpfParameters::verify_mail_from(ip, helo, host, mail_from)),
                )
                .await
                .unwrap_or_else(|| timed_out_spf(spf_domain))
            } else {
                SpfOutput::new(spf_domain.to_owned()).with_result(SpfResult::None)
            };
            r.spf_mail_from = Some(out);
        }

        let spf = r.spf_mail_from.as_ref().map(|o| spf_word(o.result()));
        let Some(message) = AuthenticatedMessage::parse(raw) else {
            return Verdict {
                header: format(host, &r),
                from_domain: String::new(),
                dmarc: "none",
                is_dmarc_reject: false,
                spf,
                dkim: Vec::new(),
                dmarc_policy: None,
                arc: "none",
                arc_set: seal
                    .map(|_| ArcSeal::NotSealable("the message cannot be parsed".to_owned())),
            };
        };
        let from_domain = message
            .from
            .first()
            .and_then(|f| f.rsplit_once('@'))
            .map(|(_, d)| d.to_ascii_lowercase())
            .unwrap_or_default();

        // DKIM: every signature (RFC 6376 §6.1), one clause each.
        let dkim = within(deadline, self.auth.verify_dkim(&message))
            .await
            .unwrap_or_else(|| vec![DkimOutput::temp_err(timed_out())]);
        // ARC (RFC 8617 §5.2): the chain as it arrived.
        let chain = self.arc_chain(&message, deadline).await;
        let arc_word = dkim_word(arc_result(&chain).result());

        // DMARC (RFC 7489 §6.6): aligned SPF or aligned DKIM.
        let mut is_dmarc_reject = false;
        let mut dmarc_result = "none";
        let mut dmarc_policy = None;
        let dkim_words: Vec<&'static str> = dkim.iter().map(|d| dkim_word(d.result())).collect();
        let dmarc = if from_domain.is_empty() {
            None
        } else {
            let none = SpfOutput::new(String::new()).with_result(SpfResult::None);
            let spf = r.spf_mail_from.as_ref().unwrap_or(&none);
            let out = within(
                deadline,
                self.auth
                    .verify_dmarc(DmarcParameters::new(&message, &dkim, spf_domain, spf)),
            )
            .await
            .unwrap_or_else(|| {
                DmarcOutput::new(from_domain.clone())
                    .with_dkim_result(DmarcResult::TempError(timed_out()))
                    .with_spf_result(DmarcResult::TempError(timed_out()))
            });
            let result = out.result();
            dmarc_result = dmarc_word(&result);
            is_dmarc_reject =
                out.policy() == Policy::Reject && matches!(result, DmarcResult::Fail(_));
            dmarc_policy = match out.policy() {
                Policy::Reject => Some("reject"),
                Policy::Quarantine => Some("quarantine"),
                Policy::None => Some("none"),
                Policy::Unspecified => None,
            };
            Some(out)
        };
        r.dkim = Some(dkim);
        r.dmarc = dmarc;
        r.arc = Some(chain);
        let arc_set = match (seal, &r.arc) {
            (Some(_), Some(chain)) if !chain.can_be_sealed() => Some(ArcSeal::NotSealable(
                "the chain it arrived with has already failed (cv=fail)".to_owned(),
            )),
            // A chain we could not check (DNS timeout or SERVFAIL) is not
            // sealed with cv=fail, which would end it for good over a
            // passing outage: the message goes on unsealed, arc=temperror.
            (Some(_), Some(chain)) if matches!(chain.result(), DkimResult::TempError(_)) => Some(
                ArcSeal::NotSealable("the chain could not be verified now (DNS)".to_owned()),
            ),
            (Some(req), Some(chain)) => {
                let results = aar(self.authserv_id, &r);
                let result = chain.result().clone();
                Some(
                    match self
                        .seal_blocking(raw.to_vec(), results, result, req.clone())
                        .await
                    {
                        Ok(fields) => ArcSeal::Sealed(fields),
                        Err(SealError::NotSealable(why)) => ArcSeal::NotSealable(why),
                        Err(e) => ArcSeal::Failed(e.to_string()),
                    },
                )
            }
            (Some(_), None) | (None, _) => None,
        };
        Verdict {
            header: format(host, &r),
            from_domain,
            dmarc: dmarc_result,
            is_dmarc_reject,
            spf,
            dkim: dkim_words,
            dmarc_policy,
            arc: arc_word,
            arc_set,
        }
    }
}

/// The chain result as RFC 8617 §2.2 words it: `pass`, `fail` or `none`
/// (plus `temperror` for a DNS failure, RFC 8601 §2.7). mail-auth says
/// `neutral` for a body hash mismatch and `permerror` for a broken
/// header; for ARC both are `fail`.
fn arc_result(chain: &ArcOutput<'_>) -> ArcOutput<'static> {
    let result = match chain.result() {
        DkimResult::Neutral(e) | DkimResult::PermError(e) => DkimResult::Fail(e.clone()),
        other => other.clone(),
    };
    ArcOutput::default().with_result(result)
}

/// The error we record when the deadline passed.
fn timed_out() -> mail_auth::Error {
    mail_auth::Error::Dns(mail_auth::DnsError::Resolver(
        "verification timed out".to_owned(),
    ))
}

fn timed_out_spf(domain: &str) -> SpfOutput {
    SpfOutput::new(domain.to_owned()).with_result(SpfResult::TempError)
}

/// Runs `fut` until `deadline`; `None` if it did not finish.
async fn within<F: std::future::Future>(deadline: Instant, fut: F) -> Option<F::Output> {
    tokio::time::timeout_at(deadline, fut).await.ok()
}

/// The clauses of a mail-auth builder (`;\r\n\tspf=pass ...`) without
/// its authserv-id, so that we can put them together in our order.
fn tail(authserv_id: &str, ar: AuthenticationResults<'_>) -> String {
    let s = ar.to_string();
    s.get(authserv_id.len()..).unwrap_or_default().to_owned()
}

/// The RFC 8601 result word of a DMARC result.
fn dmarc_word(r: &DmarcResult) -> &'static str {
    match r {
        DmarcResult::Pass => "pass",
        DmarcResult::Fail(_) => "fail",
        DmarcResult::TempError(_) => "temperror",
        DmarcResult::PermError(_) => "permerror",
        DmarcResult::None => "none",
    }
}

/// A name SPF can be evaluated for: a domain, not an address literal
/// (`[192.0.2.1]`) or an empty HELO.
fn is_domain(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('[')
        && s.contains('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

/// The authserv-id of an `Authentication-Results:` value (RFC 8601 §2.2:
/// `[CFWS] authserv-id [ CFWS authres-version ] ...`), lowercased.
pub fn authserv_id_of(value: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(value);
    let mut rest = text.as_ref();
    // Skip leading whitespace and comments (nested parentheses allowed).
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix('(') {
            let mut depth = 1usize;
            let mut end = None;
            for (i, c) in after.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            end = Some(i + 1);
                            break;
                        }
                    }
                    _ => {}
                }
            }
            rest = &after[end?..];
        } else {
            break;
        }
    }
    let id: String = rest
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != ';' && *c != '(')
        .collect();
    let id = id.trim_matches('"');
    (!id.is_empty()).then(|| id.to_ascii_lowercase())
}

/// Whether an existing `Authentication-Results:` value claims to be ours
/// (RFC 8601 §5: such fields from outside must be removed).
pub fn is_forged(value: &[u8], authserv_id: &str) -> bool {
    authserv_id_of(value).is_some_and(|id| id.eq_ignore_ascii_case(authserv_id))
}

/// The result words of a header value, for the log
/// (`spf=pass spf=fail dkim=pass dmarc=none`).
pub fn summary(header: &str) -> String {
    header
        .split(';')
        .skip(1)
        .filter_map(|c| c.split_whitespace().next())
        .collect::<Vec<_>>()
        .join(" ")
}

/// What was found, before it is written down.
#[derive(Debug, Default)]
pub struct Results<'x> {
    /// The client address, when the mail came over IP.
    pub client_ip: Option<IpAddr>,
    /// The HELO name.
    pub helo: String,
    /// The envelope sender (empty for `<>`).
    pub mail_from: String,
    /// SPF for the HELO identity, if it was checked.
    pub spf_helo: Option<SpfOutput>,
    /// SPF for the MAIL FROM identity, if it was checked.
    pub spf_mail_from: Option<SpfOutput>,
    /// One output per DKIM signature; `None`: the message could not be
    /// parsed.
    pub dkim: Option<Vec<DkimOutput<'x>>>,
    /// DMARC, if the message has a From: domain.
    pub dmarc: Option<DmarcOutput>,
    /// The ARC chain, if the message could be parsed.
    pub arc: Option<ArcOutput<'x>>,
}

/// The `ARC-Authentication-Results` of a seal: what [`format`] writes,
/// as one mail-auth builder (RFC 8617 §4.1.1: a copy of our
/// `Authentication-Results`).
pub fn aar<'a>(authserv_id: &'a str, r: &Results<'_>) -> AuthenticationResults<'a> {
    let mut ar = AuthenticationResults::new(authserv_id);
    if let Some(ip) = r.client_ip {
        if let Some(out) = &r.spf_helo {
            ar = ar.with_spf_ehlo_result(out, ip, &r.helo);
        }
        if let Some(out) = &r.spf_mail_from {
            ar = ar.with_spf_mailfrom_result(out, ip, &r.mail_from, &r.helo);
        }
    }
    if let Some(d) = &r.dkim {
        ar = ar.with_dkim_results(d, "");
    }
    if let (Some(a), Some(ip)) = (&r.arc, r.client_ip) {
        ar = ar.with_arc_result(&arc_result(a), ip);
    }
    if let Some(d) = &r.dmarc
        && !d.domain().is_empty()
    {
        ar = ar.with_dmarc_result(d);
    }
    ar
}

/// The `Authentication-Results:` value for `r` (RFC 8601 §2.2): our
/// authserv-id, then `spf` (HELO, MAIL FROM), `dkim` (one per signature),
/// `dmarc`, one clause per line; `authserv-id; none` if nothing was
/// checked.
pub fn format(authserv_id: &str, r: &Results<'_>) -> String {
    let mut clauses = String::new();
    match r.client_ip {
        None => clauses.push_str(";\r\n\tspf=none (not received over IP)"),
        Some(ip) => {
            if let Some(out) = &r.spf_helo {
                clauses.push_str(&tail(
                    authserv_id,
                    AuthenticationResults::new(authserv_id).with_spf_ehlo_result(out, ip, &r.helo),
                ));
            }
            if let Some(out) = &r.spf_mail_from {
                clauses.push_str(&tail(
                    authserv_id,
                    AuthenticationResults::new(authserv_id).with_spf_mailfrom_result(
                        out,
                        ip,
                        &r.mail_from,
                        &r.helo,
                    ),
                ));
            }
        }
    }
    match &r.dkim {
        None => clauses.push_str(";\r\n\tdkim=permerror (unparsable message)"),
        Some(d) if d.is_empty() => clauses.push_str(";\r\n\tdkim=none"),
        Some(d) => clauses.push_str(&tail(
            authserv_id,
            AuthenticationResults::new(authserv_id).with_dkim_results(d, ""),
        )),
    }
    match (&r.arc, r.client_ip) {
        (None, _) => {}
        (Some(a), Some(ip)) => clauses.push_str(&tail(
            authserv_id,
            AuthenticationResults::new(authserv_id).with_arc_result(&arc_result(a), ip),
        )),
        (Some(a), None) => {
            clauses.push_str(";\r\n\tarc=");
            clauses.push_str(dkim_word(arc_result(a).result()));
        }
    }
    if let Some(d) = &r.dmarc
        && !d.domain().is_empty()
    {
        clauses.push_str(&tail(
            authserv_id,
            AuthenticationResults::new(authserv_id).with_dmarc_result(d),
        ));
    }
    if clauses.is_empty() {
        clauses.push_str("; none");
    }
    format!("{authserv_id}{clauses}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authserv_id_is_the_first_token() {
        assert_eq!(
            authserv_id_of(b" mx.example.org; dkim=pass").as_deref(),
            Some("mx.example.org")
        );
        assert_eq!(
            authserv_id_of(b"\n\t(a (nested) comment) MX.Example.ORG 1;\n\tspf=pass").as_deref(),
            Some("mx.example.org")
        );
        assert_eq!(
            authserv_id_of(b"mx.example.org;none").as_deref(),
            Some("mx.example.org")
        );
        assert_eq!(authserv_id_of(b"  "), None);
        assert_eq!(authserv_id_of(b"(unterminated"), None);
    }

    #[test]
    fn forged_means_our_id_in_any_case() {
        assert!(is_forged(
            b" Mail.Example.Org; dkim=pass",
            "mail.example.org"
        ));
        assert!(!is_forged(b" mx.other.test; dkim=pass", "mail.example.org"));
        // A longer name that starts with ours is somebody else's.
        assert!(!is_forged(
            b" mail.example.org.evil.test; dkim=pass",
            "mail.example.org"
        ));
        assert!(!is_forged(b"", "mail.example.org"));
    }

    #[test]
    fn header_lists_spf_dkim_dmarc_one_per_line() {
        let ip: IpAddr = "192.0.2.10".parse().unwrap();
        let r = Results {
            client_ip: Some(ip),
            helo: "mx.sender.test".into(),
            mail_from: "bounce@sender.test".into(),
            spf_helo: Some(SpfOutput::new("mx.sender.test".into()).with_result(SpfResult::None)),
            spf_mail_from: Some(SpfOutput::new("sender.test".into()).with_result(SpfResult::Pass)),
            dkim: Some(vec![
                DkimOutput::pass(),
                DkimOutput::fail(mail_auth::Error::Dkim(
                    mail_auth::dkim::DkimError::SignatureExpired,
                )),
            ]),
            dmarc: Some(
                DmarcOutput::new("sender.test".into())
                    .with_spf_result(DmarcResult::Pass)
                    .with_dkim_result(DmarcResult::None),
            ),
            arc: Some(ArcOutput::default()),
        };
        let h = format("mail.example.org", &r);
        let lines: Vec<&str> = h.split("\r\n\t").collect();
        assert_eq!(lines[0], "mail.example.org;", "{h}");
        assert!(lines[1].starts_with("spf=none "), "{h}");
        assert!(lines[1].ends_with(" smtp.helo=mx.sender.test;"), "{h}");
        assert!(lines[2].starts_with("spf=pass "), "{h}");
        assert!(
            lines[2].ends_with(" smtp.mailfrom=bounce@sender.test;"),
            "{h}"
        );
        assert_eq!(lines[3], "dkim=pass;", "{h}");
        assert!(lines[4].starts_with("dkim=fail"), "{h}");
        assert_eq!(lines[5], "arc=none smtp.remote-ip=192.0.2.10;", "{h}");
        assert!(
            lines[6].starts_with("dmarc=pass header.from=sender.test"),
            "{h}"
        );
        assert_eq!(lines.len(), 7, "{h}");
        assert_eq!(
            summary(&h),
            "spf=none spf=pass dkim=pass dkim=fail arc=none dmarc=pass"
        );
    }

    #[test]
    fn header_without_ip_or_signatures() {
        let r = Results {
            dkim: Some(Vec::new()),
            ..Results::default()
        };
        assert_eq!(
            format("mx", &r),
            "mx;\r\n\tspf=none (not received over IP);\r\n\tdkim=none"
        );
        let unparsable = Results {
            client_ip: Some("192.0.2.1".parse().unwrap()),
            ..Results::default()
        };
        assert_eq!(
            format("mx", &unparsable),
            "mx;\r\n\tdkim=permerror (unparsable message)"
        );
    }

    #[test]
    fn only_domains_get_spf() {
        assert!(is_domain("mx.sender.test"));
        assert!(!is_domain("[192.0.2.1]"));
        assert!(!is_domain("localhost"));
        assert!(!is_domain(""));
    }
}

//! LOGIC: the policy-delegation checks (`check_policy_service`): the
//! sender-login check for setups that cannot use `smtpd_sender_login_maps`,
//! sending rate limits, and the quota check at RCPT (Dovecot's
//! quota-status service). `DUNNO` when nothing applies.

use crate::lookup::{Lookup, Map, Route, Target};
use crate::proto::policy::{Reply, Request};
use crate::ratelimit::{RateLimiter, Verdict};
use postwerk_core::address::Address;
use postwerk_core::config::authd::expand_home;
use postwerk_core::config::policyd::SenderLoginCheck;
use std::sync::Arc;
use std::time::SystemTime;
use tracing::{info, warn};

/// What a peer is told when a check cannot be made; Postfix retries.
pub const TEMP_ACTION: &str = "451 4.3.0 Temporary lookup failure";

/// The policy checks.
#[derive(Debug)]
pub struct PolicyService {
    lookup: Arc<Lookup>,
    sender_login: SenderLoginCheck,
    ratelimit: RateLimiter,
    quota: Option<QuotaCheck>,
}

/// The quota check's settings.
#[derive(Debug, Clone)]
pub struct QuotaCheck {
    /// 552 (refuse) or 452 (the sender retries).
    pub reply: u16,
    /// Dovecot `mail_home` template (`/var/vmail/mailboxes/%d/%n`).
    pub mail_home: String,
    /// The Maildir below the home (`mail`).
    pub mail_dir: String,
}

impl QuotaCheck {
    /// The action for a recipient whose mailbox is full, with Dovecot's
    /// `quota_status_overquota` text.
    fn over_quota_action(&self, rcpt: &str) -> String {
        match self.reply {
            452 => format!("452 4.2.2 <{rcpt}> Mailbox is full, try again later"),
            _ => format!("552 5.2.2 <{rcpt}> Mailbox is full"),
        }
    }
}

fn action(a: impl Into<String>) -> Reply {
    Reply { action: a.into() }
}

impl PolicyService {
    /// The service over `lookup`.
    pub fn new(
        lookup: Arc<Lookup>,
        sender_login: SenderLoginCheck,
        ratelimit: RateLimiter,
    ) -> Self {
        Self {
            lookup,
            sender_login,
            ratelimit,
            quota: None,
        }
    }

    /// Turns the quota check on (`Some`) or off.
    pub fn with_quota_check(mut self, quota: Option<QuotaCheck>) -> Self {
        self.quota = quota;
        self
    }

    /// Answers one request.
    pub async fn check(&self, req: &Request) -> Reply {
        if req.get("request") != Some("smtpd_access_policy") {
            warn!(request = ?req.get("request"), "unknown policy request type; answered DUNNO");
            return action("DUNNO");
        }
        let state = req.get("protocol_state").unwrap_or("");
        let sasl = req.non_empty("sasl_username").map(|u| u.to_lowercase());
        let sender = req.non_empty("sender").and_then(|s| Address::parse(s).ok());
        if matches!(state, "MAIL" | "RCPT")
            && let Some(reply) = self
                .check_sender_login(sasl.as_deref(), sender.as_ref(), req)
                .await
        {
            return reply;
        }
        if state == "RCPT" && self.ratelimit.is_enabled() {
            let who = sasl
                .clone()
                .or_else(|| sender.as_ref().map(|s| s.to_string()));
            if let Some(who) = who {
                let instance = req.get("instance").unwrap_or("");
                if let Verdict::Exceeded { what, limit } = self
                    .ratelimit
                    .check(&who, instance, SystemTime::now())
                    .await
                {
                    info!(who = %who, what, limit, "rate limit exceeded; answered DEFER_IF_PERMIT");
                    return action(format!(
                        "DEFER_IF_PERMIT Rate limit exceeded: {who} may send at most {limit} {what} per hour, try again later"
                    ));
                }
            }
        }
        if matches!(state, "RCPT" | "END-OF-MESSAGE")
            && let Some(quota) = &self.quota
            && let Some(rcpt) = req.non_empty("recipient")
        {
            let size: u64 = req.get("size").and_then(|s| s.parse().ok()).unwrap_or(0);
            match self.over_quota(quota, rcpt, size).await {
                Ok(false) => {}
                Ok(true) => {
                    info!(
                        recipient = rcpt,
                        size, "mailbox cannot take the message; refused"
                    );
                    return action(quota.over_quota_action(rcpt));
                }
                Err(e) => {
                    warn!(recipient = rcpt, error = %e, "quota check failed; answered 451");
                    return action(TEMP_ACTION);
                }
            }
        }
        action("DUNNO")
    }

    /// Whether mail of `size` bytes to `rcpt` fits nowhere: every mailbox
    /// of ours it ends in (through aliases and catch-alls) is too full to
    /// take it. `false` when any destination is foreign, not followed, or
    /// has room — or when a Maildir cannot be read (logged; LMTP still
    /// enforces the quota).
    async fn over_quota(
        &self,
        quota: &QuotaCheck,
        rcpt: &str,
        size: u64,
    ) -> Result<bool, crate::lookup::LookupError> {
        let mailboxes = match self.lookup.destinations(rcpt).await? {
            Route::Account(Target::Mailbox, a) => vec![a],
            Route::Alias(targets) => {
                if targets
                    .iter()
                    .any(|(t, _)| matches!(t, Target::Foreign | Target::Unsure))
                {
                    return Ok(false);
                }
                targets
                    .into_iter()
                    .filter(|(t, _)| *t == Target::Mailbox)
                    .map(|(_, a)| a)
                    .collect()
            }
            _ => return Ok(false),
        };
        if mailboxes.is_empty() {
            return Ok(false);
        }
        for mailbox in mailboxes {
            let Some(account) = self
                .lookup
                .db()
                .enabled_account(mailbox.local(), mailbox.domain())
                .await?
            else {
                return Ok(false);
            };
            let limit = u64::try_from(account.quota_mb.max(0))
                .unwrap_or(0)
                .saturating_mul(1024 * 1024);
            if limit == 0 {
                return Ok(false);
            }
            let root = std::path::Path::new(&expand_home(
                &quota.mail_home,
                mailbox.local(),
                mailbox.domain(),
            ))
            .join(&quota.mail_dir);
            let read = {
                let root = root.clone();
                tokio::task::spawn_blocking(move || {
                    postwerk_core::maildirsize::read_usage(&root, limit)
                })
                .await
            };
            let used = match read {
                Ok(Ok(u)) => u64::try_from(u.bytes.max(0)).unwrap_or(0),
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => 0,
                Ok(Err(e)) => {
                    warn!(mailbox = %mailbox, path = %root.display(), error = %e,
                        "cannot read the Maildir's quota; letting the mail through (LMTP enforces the quota)");
                    return Ok(false);
                }
                Err(e) => {
                    warn!(mailbox = %mailbox, error = %e, "quota task failed; letting the mail through");
                    return Ok(false);
                }
            };
            // Dovecot: refused when usage plus the message exceeds the
            // limit; a message of unknown size (0) needs one byte of room.
            if used.saturating_add(size.max(1)) <= limit {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// `reject_authenticated_sender_login_mismatch` (and, with `all`,
    /// `reject_unauthenticated_sender_login_mismatch`) on the vmail data.
    async fn check_sender_login(
        &self,
        sasl: Option<&str>,
        sender: Option<&Address>,
        req: &Request,
    ) -> Option<Reply> {
        if self.sender_login == SenderLoginCheck::Off {
            return None;
        }
        let sender = sender?; // null sender (bounces): nothing to check
        if sasl.is_none() && self.sender_login == SenderLoginCheck::Authenticated {
            return None;
        }
        let owners = match self
            .lookup
            .lookup(Map::SenderLogin, &sender.to_string())
            .await
        {
            Ok(o) => o,
            Err(e) => {
                warn!(sender = %sender, error = %e, "sender login lookup failed; answered 451");
                return Some(action(TEMP_ACTION));
            }
        };
        let owned_by = |login: &str| {
            owners.as_deref().is_some_and(|o| {
                o.split([',', ' '])
                    .any(|x| x.trim().eq_ignore_ascii_case(login))
            })
        };
        match sasl {
            Some(login) if owned_by(login) => None,
            Some(login) => {
                info!(sender = %sender, login, client = ?req.get("client_address"), "sender not owned by login; rejected");
                Some(action(format!(
                    "REJECT Sender address {sender} is not owned by user {login}"
                )))
            }
            None if owners.is_some() => {
                info!(sender = %sender, client = ?req.get("client_address"), "owned sender without login; rejected");
                Some(action(format!(
                    "REJECT Sender address {sender} requires authentication"
                )))
            }
            None => None,
        }
    }
}

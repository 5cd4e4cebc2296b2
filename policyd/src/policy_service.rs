//! LOGIC: the policy-delegation checks (`check_policy_service`): the
//! sender-login check for setups that cannot use `smtpd_sender_login_maps`,
//! and sending rate limits. `DUNNO` when nothing applies.

use crate::lookup::{Lookup, Map};
use crate::proto::policy::{Reply, Request};
use crate::ratelimit::{RateLimiter, Verdict};
use postwerk_core::address::Address;
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
        }
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
        action("DUNNO")
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

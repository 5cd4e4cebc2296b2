//! LOGIC: ARC sealing (RFC 8617). Decides which messages get an ARC set
//! (incoming mail that an alias of ours forwards to a domain that is not
//! ours; outgoing mail with `seal_outgoing`), finds the sealing key (the
//! guide's `arc.conf`: the DKIM key path and selector) and makes the
//! `ARC-Seal`, `ARC-Message-Signature` and `ARC-Authentication-Results`
//! fields with mail-auth. Knows nothing about milter packets; the chain is
//! verified in [`crate::verify`].
//!
//! milterd sees the recipients before Postfix's virtual alias expansion
//! (the milter `R` packet carries what the client sent), so whether a
//! message leaves again is decided here from the alias table, as
//! policyd's `aliases` map resolves it: an account hides the aliases of
//! its name, a named alias wins over the catch-all, `user+tag@` falls
//! back to `user@`, aliases of our domains are followed.

use crate::keys::{self, Algo, Key, KeyError};
use crate::lookups::TtlCache;
use crate::sign::{SharedKey, Signer};
use mail_auth::arc::{ArcSealer, Set};
use mail_auth::common::headers::{Header, HeaderWriter};
use mail_auth::dkim::Canonicalization;
use mail_auth::{ArcOutput, AuthenticatedMessage, AuthenticationResults, DkimResult};
use postwerk_core::address::Address;
use postwerk_core::config::milterd::{ArcConfig, DkimConfig};
use postwerk_core::db::DbError;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Most alias lookups for one message's recipients (a list of lists must
/// not cost unbounded queries).
const RESOLVE_BUDGET: u32 = 64;
/// Deepest alias chain followed (Postfix's own limit is 100, but the
/// guide's tables hardly nest).
const RESOLVE_DEPTH: u32 = 10;
/// Deadline of the alias lookups of one message.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Header fields covered by our `ARC-Message-Signature`: the DKIM list
/// plus the `DKIM-Signature` fields (as the big forwarders do), so a
/// later hop sees that the original signatures are the ones we checked.
/// ARC fields themselves are never listed (RFC 8617 §4.1.2).
pub fn ams_headers(dkim: &DkimConfig) -> Vec<String> {
    let mut h: Vec<String> = dkim
        .sign_headers
        .iter()
        .filter(|n| !n.to_ascii_lowercase().starts_with("arc-"))
        .cloned()
        .collect();
    h.push("DKIM-Signature".to_owned());
    h
}

/// What was decided for one message.
#[derive(Debug, Clone)]
pub enum Plan {
    /// Seal with this key.
    Seal(SealKey),
    /// No seal, and why.
    Skip(Skip),
}

/// The sealing identity.
#[derive(Debug, Clone)]
pub struct SealKey {
    /// `d=`.
    pub domain: String,
    /// `s=`.
    pub selector: String,
    /// The RSA key.
    pub key: Arc<Key>,
}

/// Why a message is not sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// `seal_forwarded` / `seal_outgoing` is off.
    Disabled,
    /// No recipient is forwarded off-site.
    NotForwarded,
    /// No key file for the domain (the files looked for).
    NoKey(Vec<PathBuf>),
    /// The domain's keys are all Ed25519; ARC allows only rsa-sha256
    /// (RFC 8617 §7).
    NoRsaKey(String),
}

/// Why sealing failed although the domain has a key.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The alias lookup failed.
    #[error("alias lookup failed: {0}")]
    Db(#[from] DbError),
    /// The alias lookup took too long.
    #[error("alias lookup timed out after {0:?}")]
    Timeout(Duration),
    /// A key file exists but cannot be used.
    #[error("{0}")]
    Key(KeyError),
    /// mail-auth refused to seal.
    #[error("sealing failed: {0}")]
    Crypto(String),
    /// The message cannot be sealed: no header field to sign, or its
    /// chain already failed. Not an error of ours: it passes unsealed.
    #[error("cannot be sealed: {0}")]
    NotSealable(String),
    /// The key task died.
    #[error("key task failed: {0}")]
    Task(String),
}

/// The ARC sealer: the config, and the signer's key cache and database.
#[derive(Debug)]
pub struct Sealer {
    cfg: ArcConfig,
    dkim: DkimConfig,
    signer: Arc<Signer>,
    delimiter: String,
    /// Per recipient (lower case): `Some(domain)` when it is an alias of
    /// ours that forwards off-site, else `None`.
    forwards: TtlCache<Option<String>>,
}

impl Sealer {
    /// A sealer sharing `signer`'s keys and database; `delimiter` is
    /// `[mail].recipient_delimiter`.
    /// The forwarding answers are reused for `lookup_ttl`, as the
    /// signer's domain answers.
    pub fn new(
        cfg: ArcConfig,
        signer: Arc<Signer>,
        delimiter: String,
        lookup_ttl: Duration,
    ) -> Self {
        Sealer {
            dkim: signer.config().clone(),
            cfg,
            signer,
            delimiter,
            forwards: TtlCache::new(lookup_ttl),
        }
    }

    /// The config in use.
    pub fn config(&self) -> &ArcConfig {
        &self.cfg
    }

    /// The fields our `ARC-Message-Signature` covers.
    pub fn headers(&self) -> Vec<String> {
        ams_headers(&self.dkim)
    }

    /// For incoming mail to `rcpts`: seal when one of them is an alias of
    /// ours that forwards to a domain that is not ours, with `d=` that
    /// alias's domain (Rspamd's `use_domain_sign_inbound = "recipient"`).
    pub async fn plan_forwarded(&self, rcpts: &[String]) -> Result<Plan, SealError> {
        if !self.cfg.seal_forwarded {
            return Ok(Plan::Skip(Skip::Disabled));
        }
        let found = tokio::time::timeout(LOOKUP_TIMEOUT, self.forwarding_domain(rcpts))
            .await
            .map_err(|_| SealError::Timeout(LOOKUP_TIMEOUT))??;
        match found {
            None => Ok(Plan::Skip(Skip::NotForwarded)),
            Some(domain) => self.plan_for(domain).await,
        }
    }

    /// For outgoing mail whose `From:` domain (one of ours) is `domain`.
    pub async fn plan_outgoing(&self, domain: &str) -> Result<Plan, SealError> {
        if !self.cfg.seal_outgoing {
            return Ok(Plan::Skip(Skip::Disabled));
        }
        self.plan_for(domain.to_owned()).await
    }

    /// The sealing key of `domain`: `[milterd.arc].selector`, else the
    /// first RSA key among the DKIM selectors.
    async fn plan_for(&self, domain: String) -> Result<Plan, SealError> {
        let selectors = match &self.cfg.selector {
            Some(s) => vec![s.clone()],
            None => self.dkim.selectors.clone(),
        };
        let path = self
            .cfg
            .path
            .clone()
            .unwrap_or_else(|| self.dkim.path.clone());
        let signer = Arc::clone(&self.signer);
        let d = domain.clone();
        // Key files are read on the blocking pool (as for DKIM).
        let found = tokio::task::spawn_blocking(move || {
            let mut missing = Vec::new();
            let mut has_other = false;
            for selector in selectors {
                let file = keys::expand_path(&path, &d, &selector);
                match signer.key(&file) {
                    Ok(k) if k.algo() == Algo::Rsa => return Ok(Ok((selector, k))),
                    Ok(_) => has_other = true,
                    Err(KeyError::Missing(p)) => missing.push(p),
                    Err(e) => return Err(SealError::Key(e)),
                }
            }
            Ok(Err((missing, has_other)))
        })
        .await
        .map_err(|e| SealError::Task(e.to_string()))??;
        Ok(match found {
            Ok((selector, key)) => Plan::Seal(SealKey {
                domain,
                selector,
                key,
            }),
            Err((_, true)) => Plan::Skip(Skip::NoRsaKey(domain)),
            Err((missing, false)) => Plan::Skip(Skip::NoKey(missing)),
        })
    }

    /// The domain of the first recipient that is one of our aliases and
    /// reaches, following aliases, an address of a domain that is not
    /// ours; `None` if none does.
    async fn forwarding_domain(&self, rcpts: &[String]) -> Result<Option<String>, DbError> {
        let mut budget = RESOLVE_BUDGET;
        for rcpt in rcpts {
            let Ok(addr) = Address::parse(rcpt) else {
                continue;
            };
            let key = addr.to_string();
            let forwards = match self.forwards.get(&key) {
                Some(known) => known,
                None => {
                    let found = if self.is_ours(addr.domain(), &mut budget).await? {
                        let mut seen = vec![addr.clone()];
                        self.leaves(&addr, &mut seen, &mut budget, 0)
                            .await?
                            .then(|| addr.domain().to_owned())
                    } else {
                        None
                    };
                    // An answer cut short by the budget is not kept.
                    if budget > 0 {
                        self.forwards.put(&key, found.clone());
                    }
                    found
                }
            };
            if forwards.is_some() {
                return Ok(forwards);
            }
        }
        Ok(None)
    }

    async fn is_ours(&self, domain: &str, budget: &mut u32) -> Result<bool, DbError> {
        if *budget == 0 {
            return Ok(false);
        }
        *budget -= 1;
        self.signer.domain_exists(domain).await
    }

    /// Whether mail to `addr` (of our domain) is forwarded off-site.
    fn leaves<'a>(
        &'a self,
        addr: &'a Address,
        seen: &'a mut Vec<Address>,
        budget: &'a mut u32,
        depth: u32,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<bool, DbError>> + Send + 'a>>
    {
        Box::pin(async move {
            if *budget == 0 || depth >= RESOLVE_DEPTH {
                return Ok(false);
            }
            *budget -= 1;
            let db = self.signer.db();
            let rows = db.address_rows(addr.local(), addr.domain()).await?;
            // The expansion policyd answers Postfix with (core's).
            let Some(expansion) = db.expand_alias(addr, rows, &self.delimiter).await? else {
                return Ok(false);
            };
            if expansion.via_base.is_some() {
                *budget = budget.saturating_sub(1);
            }
            for dest in expansion.destinations {
                let Ok(d) = Address::parse(&dest) else {
                    continue;
                };
                if seen.contains(&d) {
                    continue;
                }
                if !self.is_ours(d.domain(), budget).await? {
                    return Ok(true);
                }
                seen.push(d.clone());
                if self.leaves(&d, seen, budget, depth + 1).await? {
                    return Ok(true);
                }
            }
            Ok(false)
        })
    }
}

/// The chain result of `message`'s ARC sets as [`ArcOutput`], for sealing
/// a message whose chain was verified elsewhere (`result`).
pub fn chain<'x>(message: &'x AuthenticatedMessage<'x>, result: DkimResult) -> ArcOutput<'x> {
    let mut out = ArcOutput::default().with_result(result);
    for ((seal, sig), res) in message
        .as_headers
        .iter()
        .zip(&message.ams_headers)
        .zip(&message.aar_headers)
    {
        out = out.with_set(Set {
            signature: Header::new(sig.name, sig.value, &sig.header),
            seal: Header::new(seal.name, seal.value, &seal.header),
            results: Header::new(res.name, res.value, &res.header),
        });
    }
    out
}

/// Makes the ARC set for `message` (the whole message as it will leave,
/// CRLF) with `results` as its `ARC-Authentication-Results` and `arc` the
/// verified chain (its result decides `cv=`). Returns the three fields as
/// `(name, value)` pairs, top first (`ARC-Seal`, `ARC-Message-Signature`,
/// `ARC-Authentication-Results`), values without the leading space and
/// folded with CRLF TAB.
pub fn seal(
    message: &AuthenticatedMessage<'_>,
    results: &AuthenticationResults<'_>,
    arc: &ArcOutput<'_>,
    key: &SealKey,
    headers: &[String],
) -> Result<Vec<(String, String)>, SealError> {
    let set = ArcSealer::from_key(SharedKey(Arc::clone(&key.key)))
        .domain(key.domain.as_str())
        .selector(key.selector.as_str())
        .headers(headers.iter().cloned())
        .header_canonicalization(Canonicalization::Relaxed)
        .body_canonicalization(Canonicalization::Relaxed)
        .seal(message, results, arc)
        .map_err(|e| match e {
            mail_auth::Error::NoHeadersFound => {
                SealError::NotSealable("no header field to sign".to_owned())
            }
            mail_auth::Error::Arc(mail_auth::arc::ArcError::InvalidCV) => {
                SealError::NotSealable("the chain has already failed (cv=fail)".to_owned())
            }
            other => SealError::Crypto(other.to_string()),
        })?;
    Ok(split_fields(&set.to_header()))
}

/// `Name: value\r\n\tmore\r\n...` → `(name, value)` per field.
fn split_fields(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.split("\r\n") {
        if line.is_empty() {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = out.last_mut() {
                v.push_str("\r\n");
                v.push_str(line);
            }
        } else if let Some((n, v)) = line.split_once(':') {
            out.push((n.to_owned(), v.trim_start().to_owned()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_split_with_their_folds() {
        let f = split_fields(
            "ARC-Seal: i=1; a=rsa-sha256;\r\n\tb=abc;\r\nARC-Message-Signature: i=1;\r\n\th=from;\r\nARC-Authentication-Results: i=1; mx; arc=none\r\n",
        );
        assert_eq!(f.len(), 3);
        assert_eq!(
            f[0],
            ("ARC-Seal".into(), "i=1; a=rsa-sha256;\r\n\tb=abc;".into())
        );
        assert_eq!(f[2].0, "ARC-Authentication-Results");
    }

    /// A sealer on a fresh SQLite database with the guide's tables:
    /// example.org and example.net ours; accounts user1@ and bob@
    /// example.org; aliases as each case needs.
    async fn sealer_with(aliases: &[(Option<&str>, &str, &str)]) -> (Sealer, tempfile::TempDir) {
        use postwerk_core::db::model::{Account, Alias};
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[database]\nurl = \"sqlite://{}\"\n[milterd.dkim]\npath = \"{}/$domain.$selector.key\"\n",
            dir.path().join("vmail.db").display(),
            dir.path().display()
        );
        let cfg = postwerk_core::config::Config::parse(&text).unwrap();
        let db = postwerk_core::db::Db::connect_lazy(&cfg.database, true).unwrap();
        db.init_schema().await.unwrap();
        for d in ["example.org", "example.net"] {
            db.domain_add(d).await.unwrap();
        }
        for user in ["user1", "bob"] {
            db.account_add(&Account {
                username: user.into(),
                domain: "example.org".into(),
                password: postwerk_core::config::Secret::new("{PLAIN}x"),
                quota_mb: 0,
                enabled: true,
                sendonly: false,
            })
            .await
            .unwrap();
        }
        for (source, domain, dest) in aliases {
            let (du, dd) = dest.split_once('@').unwrap();
            db.alias_add(&Alias {
                source_username: source.map(str::to_owned),
                source_domain: (*domain).to_owned(),
                destination_username: du.to_owned(),
                destination_domain: dd.to_owned(),
                enabled: true,
            })
            .await
            .unwrap();
        }
        let signer = Arc::new(Signer::new(cfg.milterd.dkim.clone(), db, 1, Duration::ZERO));
        (
            Sealer::new(
                cfg.milterd.arc.clone(),
                signer,
                "+".to_owned(),
                Duration::ZERO,
            ),
            dir,
        )
    }

    async fn forwarded(s: &Sealer, rcpt: &str) -> Option<String> {
        s.forwarding_domain(&[rcpt.to_owned()]).await.unwrap()
    }

    #[tokio::test]
    async fn only_aliases_that_leave_our_domains_are_forwarded() {
        let (s, _dir) = sealer_with(&[
            (Some("fwd"), "example.org", "friend@foreign.example"),
            (Some("team"), "example.org", "user1@example.org"),
            (Some("team"), "example.org", "bob@example.org"),
            (Some("chain"), "example.org", "fwd@example.org"),
            (Some("loop"), "example.org", "loop@example.org"),
            // An account hides an alias of its name (the guide's query).
            (Some("bob"), "example.org", "friend@foreign.example"),
            (None, "example.net", "someone@foreign.example"),
        ])
        .await;
        assert_eq!(
            forwarded(&s, "fwd@example.org").await.as_deref(),
            Some("example.org")
        );
        assert_eq!(
            forwarded(&s, "FWD@Example.ORG").await.as_deref(),
            Some("example.org")
        );
        // user+tag@ reaches the alias user@.
        assert_eq!(
            forwarded(&s, "fwd+news@example.org").await.as_deref(),
            Some("example.org")
        );
        assert_eq!(
            forwarded(&s, "chain@example.org").await.as_deref(),
            Some("example.org")
        );
        // The catch-all of example.net forwards.
        assert_eq!(
            forwarded(&s, "anyone@example.net").await.as_deref(),
            Some("example.net")
        );
        assert_eq!(forwarded(&s, "team@example.org").await, None);
        assert_eq!(forwarded(&s, "user1@example.org").await, None);
        assert_eq!(forwarded(&s, "bob@example.org").await, None);
        assert_eq!(forwarded(&s, "loop@example.org").await, None);
        assert_eq!(forwarded(&s, "nobody@example.org").await, None);
        assert_eq!(forwarded(&s, "x@foreign.example").await, None);
        assert_eq!(forwarded(&s, "not an address").await, None);
        // The first forwarding recipient decides the domain.
        let both = s
            .forwarding_domain(&["user1@example.org".into(), "x@example.net".into()])
            .await
            .unwrap();
        assert_eq!(both.as_deref(), Some("example.net"));
    }

    #[tokio::test]
    async fn a_domain_without_a_key_is_a_skip_naming_the_file() {
        let (s, dir) = sealer_with(&[(Some("fwd"), "example.org", "a@foreign.example")]).await;
        let plan = s.plan_forwarded(&["fwd@example.org".into()]).await.unwrap();
        let want = dir.path().join("example.org.2020.key");
        match plan {
            Plan::Skip(Skip::NoKey(paths)) => assert_eq!(paths, vec![want]),
            other => panic!("{other:?}"),
        }
        let plan = s
            .plan_forwarded(&["user1@example.org".into()])
            .await
            .unwrap();
        assert!(matches!(plan, Plan::Skip(Skip::NotForwarded)), "{plan:?}");
    }

    #[test]
    fn ams_covers_dkim_signatures_but_no_arc_fields() {
        let mut d = postwerk_core::config::Config::parse("")
            .unwrap()
            .milterd
            .dkim;
        d.sign_headers.push("ARC-Seal".into());
        let h = ams_headers(&d);
        assert!(h.iter().any(|n| n == "DKIM-Signature"));
        assert!(h.iter().any(|n| n == "From"));
        assert!(!h.iter().any(|n| n.eq_ignore_ascii_case("arc-seal")));
    }
}

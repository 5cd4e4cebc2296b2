//! LOGIC: DKIM signing of outgoing mail. Given the header fields and body
//! of a message that [`crate::filter`] has classified as outgoing, decides
//! whether to sign (is the `From:` domain one of ours, is there a key) and
//! makes one `DKIM-Signature` per configured selector with mail-auth,
//! relaxed/relaxed. Knows nothing about milter packets.

use crate::keys::{self, Algo, Key, KeyError};
use crate::lookups::TtlCache;
use bytes::Bytes;
use mail_auth::common::crypto::{Algorithm, Sha256, SigningKey};
use mail_auth::common::headers::{HeaderWriter, Writable};
use mail_auth::dkim::{Canonicalization, DkimSigner};
use postwerk_core::config::milterd::DkimConfig;
use postwerk_core::db::{Db, DbError};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::Semaphore;
use tracing::{debug, warn};

/// Deadline of the `domain_exists` lookup.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// One header field as Postfix sent it: the name and the raw value
/// (folds as bare `\n`; with a leading space when HDR_LEADSPC was
/// negotiated).
#[derive(Debug, Clone)]
pub struct Field {
    /// The field name.
    pub name: String,
    /// The value bytes after the colon.
    pub value: Vec<u8>,
}

/// What a message gives the signer.
#[derive(Debug)]
pub struct Message<'a> {
    /// Header fields in order.
    pub fields: &'a [Field],
    /// Whether values carry their own leading space (HDR_LEADSPC).
    pub has_leading_space: bool,
    /// The body chunks with CRLF line ends.
    pub body: &'a [Bytes],
    /// The SASL login (`{auth_authen}`), if any.
    pub auth_user: Option<&'a str>,
}

/// Why a message was not signed, although it is outgoing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// Signing is off (`[milterd.dkim].sign = false`).
    Disabled,
    /// No `From:` header field, or no address in it.
    NoFrom,
    /// The `From:` domain is not in the `domains` table.
    NotOurDomain(String),
    /// `allow_username_mismatch = false` and the `From:` domain is not the
    /// authenticated user's.
    UsernameMismatch {
        /// The `From:` domain.
        domain: String,
        /// The login.
        user: String,
    },
    /// No key file for any selector.
    NoKey(Vec<PathBuf>),
}

/// The result of signing.
#[derive(Debug)]
pub enum Outcome {
    /// `DKIM-Signature` values (without the leading space), one per key.
    Signed {
        /// The `d=` domain.
        domain: String,
        /// `selector (algorithm)` per signature, for the log.
        keys: Vec<String>,
        /// Header values to add.
        values: Vec<String>,
    },
    /// Passed unsigned, and why.
    Unsigned(Skip),
}

/// Why signing failed for a domain that should be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The domain lookup failed.
    #[error("domain lookup failed: {0}")]
    Db(#[from] DbError),
    /// The domain lookup took too long.
    #[error("domain lookup timed out after {0:?}")]
    Timeout(Duration),
    /// A key file exists but cannot be used.
    #[error("{0}")]
    Key(KeyError),
    /// mail-auth refused to sign.
    #[error("signing failed: {0}")]
    Crypto(String),
    /// The signing task died.
    #[error("signing task failed: {0}")]
    Task(String),
}

/// A cached key and what identified the file it came from.
struct Cached {
    stamp: (SystemTime, u64, u64),
    key: Arc<Key>,
}

/// A shared key as mail-auth's [`SigningKey`] (DKIM signatures and ARC
/// seals).
pub(crate) struct SharedKey(pub(crate) Arc<Key>);

impl SigningKey for SharedKey {
    type Hasher = Sha256;
    fn sign(&self, input: impl Writable) -> mail_auth::Result<Vec<u8>> {
        let mut data = Vec::with_capacity(1024);
        input.write(&mut data);
        self.0.sign(&data).map_err(|e| {
            mail_auth::Error::Crypto(mail_auth::common::crypto::CryptoError::Library(e))
        })
    }
    fn algorithm(&self) -> Algorithm {
        match self.0.algo() {
            Algo::Rsa => Algorithm::RsaSha256,
            Algo::Ed25519 => Algorithm::Ed25519Sha256,
        }
    }
}

/// The DKIM signer: config, the domain table, a key cache.
pub struct Signer {
    cfg: DkimConfig,
    db: Db,
    cache: Mutex<HashMap<PathBuf, Cached>>,
    permits: Semaphore,
    /// "Is this domain ours?", per domain.
    domains: TtlCache<bool>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// The first address of a `From:` value: `Name <a@b>`, `a@b`, `a@b (c)`.
pub fn from_domain(value: &[u8]) -> Option<String> {
    let v = String::from_utf8_lossy(value);
    let addr = match (v.find('<'), v.rfind('>')) {
        (Some(a), Some(b)) if a < b => v[a + 1..b].to_owned(),
        _ => {
            // Drop comments, take the first of a list.
            let mut out = String::new();
            let mut depth = 0u32;
            for c in v.chars() {
                match c {
                    '(' => depth += 1,
                    ')' => depth = depth.saturating_sub(1),
                    _ if depth == 0 => out.push(c),
                    _ => {}
                }
            }
            out.split(',').next().unwrap_or("").trim().to_owned()
        }
    };
    let (_, domain) = addr.trim().rsplit_once('@')?;
    let domain = domain.trim().trim_end_matches('.');
    if domain.is_empty() {
        return None;
    }
    postwerk_core::address::normalize_domain(domain).ok()
}

impl Signer {
    /// A signer; `parallelism` bounds the signatures computed at once;
    /// the database's answers about domains are reused for `lookup_ttl`.
    pub fn new(cfg: DkimConfig, db: Db, parallelism: usize, lookup_ttl: Duration) -> Self {
        Signer {
            cfg,
            db,
            cache: Mutex::new(HashMap::new()),
            permits: Semaphore::new(parallelism.max(1)),
            domains: TtlCache::new(lookup_ttl),
        }
    }

    /// Whether `domain` (normalized) is in the `domains` table, from the
    /// lookup cache when it was asked within the TTL.
    pub async fn domain_exists(&self, domain: &str) -> Result<bool, DbError> {
        if let Some(known) = self.domains.get(domain) {
            return Ok(known);
        }
        let exists = self.db.domain_exists(domain).await?;
        self.domains.put(domain, exists);
        Ok(exists)
    }

    /// The config in use.
    pub fn config(&self) -> &DkimConfig {
        &self.cfg
    }

    /// Signs `msg` if its `From:` domain is ours and has a key.
    pub async fn sign(self: &Arc<Self>, msg: &Message<'_>) -> Result<Outcome, SignError> {
        if !self.cfg.sign {
            return Ok(Outcome::Unsigned(Skip::Disabled));
        }
        // RFC 6376 §5.4 and DMARC alignment: the From domain decides.
        let Some(domain) = msg
            .fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case("from"))
            .and_then(|f| from_domain(&f.value))
        else {
            return Ok(Outcome::Unsigned(Skip::NoFrom));
        };
        if !self.cfg.allow_username_mismatch
            && let Some(user) = msg.auth_user
        {
            let user_domain = user
                .rsplit_once('@')
                .and_then(|(_, d)| postwerk_core::address::normalize_domain(d).ok());
            if user_domain.as_deref() != Some(domain.as_str()) {
                return Ok(Outcome::Unsigned(Skip::UsernameMismatch {
                    domain,
                    user: user.to_owned(),
                }));
            }
        }
        match tokio::time::timeout(LOOKUP_TIMEOUT, self.domain_exists(&domain)).await {
            Err(_) => return Err(SignError::Timeout(LOOKUP_TIMEOUT)),
            Ok(Err(e)) => return Err(SignError::Db(e)),
            Ok(Ok(false)) => return Ok(Outcome::Unsigned(Skip::NotOurDomain(domain))),
            Ok(Ok(true)) => {}
        }

        // Only the fields that will be signed go to mail-auth: the others
        // do not change the signature.
        let mut section = Vec::with_capacity(4096);
        let mut present: Vec<String> = Vec::new();
        for f in msg.fields {
            if !self
                .cfg
                .sign_headers
                .iter()
                .any(|h| h.eq_ignore_ascii_case(&f.name))
            {
                continue;
            }
            if !present.iter().any(|p| p.eq_ignore_ascii_case(&f.name)) {
                present.push(f.name.clone());
            }
            section.extend_from_slice(f.name.as_bytes());
            section.push(b':');
            if !msg.has_leading_space {
                section.push(b' ');
            }
            push_crlf(&mut section, &f.value);
            section.extend_from_slice(b"\r\n");
        }
        section.extend_from_slice(b"\r\n");
        // Over-signing: a name listed once more than it occurs makes
        // mail-auth add it to h= as a non-existent field (RFC 6376 §8.15).
        let mut names = present.clone();
        names.extend(self.cfg.oversign_headers.iter().cloned());

        let permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| SignError::Task(e.to_string()))?;
        let this = Arc::clone(self);
        let body: Vec<Bytes> = msg.body.to_vec();
        let task_domain = domain.clone();
        let result = tokio::task::spawn_blocking(move || {
            this.sign_blocking(&task_domain, &names, &section, &body)
        })
        .await
        .map_err(|e| SignError::Task(e.to_string()))?;
        drop(permit);
        let (keys, values, missing) = result?;
        if values.is_empty() {
            return Ok(Outcome::Unsigned(Skip::NoKey(missing)));
        }
        for path in &missing {
            warn!(domain = %domain, key = %path.display(), "no DKIM key file for this selector; signed with the others only");
        }
        Ok(Outcome::Signed {
            domain,
            keys,
            values,
        })
    }

    /// Loads the keys and signs; runs on the blocking pool.
    #[allow(clippy::type_complexity)]
    fn sign_blocking(
        &self,
        domain: &str,
        names: &[String],
        section: &[u8],
        body: &[Bytes],
    ) -> Result<(Vec<String>, Vec<String>, Vec<PathBuf>), SignError> {
        let mut keys = Vec::new();
        let mut values = Vec::new();
        let mut missing = Vec::new();
        for selector in &self.cfg.selectors {
            let path = keys::expand_path(&self.cfg.path, domain, selector);
            let key = match self.key(&path) {
                Ok(k) => k,
                Err(KeyError::Missing(p)) => {
                    missing.push(p);
                    continue;
                }
                Err(e) => return Err(SignError::Key(e)),
            };
            let algo = key.algo();
            let signer = DkimSigner::from_key(SharedKey(key))
                .domain(domain)
                .selector(selector)
                .headers(names.iter().cloned())
                .header_canonicalization(Canonicalization::Relaxed)
                .body_canonicalization(Canonicalization::Relaxed);
            // The streaming signer hashes the body chunk by chunk, without
            // joining them (mail-auth's sign_chained takes header chunks).
            let mut stream = signer.sign_streaming();
            stream.write(section);
            for chunk in body {
                stream.write(chunk);
            }
            let sig = stream
                .finish()
                .map_err(|e| SignError::Crypto(e.to_string()))?;
            let header = sig.to_header();
            let value = header
                .strip_prefix("DKIM-Signature:")
                .unwrap_or(&header)
                .trim_start()
                .trim_end_matches(['\r', '\n'])
                .to_owned();
            keys.push(format!("{selector} ({})", algo.name()));
            values.push(value);
        }
        Ok((keys, values, missing))
    }

    /// The database (the `domains` table; ARC's alias lookups).
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The key at `path`, from the cache unless the file changed (so a
    /// replaced key is picked up without a restart). Reads the file: call
    /// it on the blocking pool.
    pub fn key(&self, path: &PathBuf) -> Result<Arc<Key>, KeyError> {
        use std::os::unix::fs::MetadataExt;
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(KeyError::Missing(path.clone()));
            }
            Err(source) => {
                return Err(KeyError::Unreadable {
                    path: path.clone(),
                    source,
                });
            }
        };
        let stamp = (
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            meta.len(),
            meta.ino(),
        );
        if let Ok(cache) = self.cache.lock()
            && let Some(c) = cache.get(path)
            && c.stamp == stamp
        {
            return Ok(Arc::clone(&c.key));
        }
        let key = Arc::new(keys::load(path)?);
        debug!(key = %path.display(), algo = key.algo().name(), bits = key.bits, "DKIM key loaded");
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(
                path.clone(),
                Cached {
                    stamp,
                    key: Arc::clone(&key),
                },
            );
        }
        Ok(key)
    }
}

/// Appends `value` with every bare LF turned into CRLF (Postfix hands
/// milters folded values with `\n` only; RFC 5322 lines end in CRLF).
pub(crate) fn push_crlf(out: &mut Vec<u8>, value: &[u8]) {
    let mut prev = 0u8;
    for &b in value {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_domains() {
        assert_eq!(
            from_domain(b" User <u@Example.ORG>").as_deref(),
            Some("example.org")
        );
        assert_eq!(
            from_domain(b" u@example.org (me)").as_deref(),
            Some("example.org")
        );
        assert_eq!(
            from_domain(b" \"a@b\" <u@example.net>").as_deref(),
            Some("example.net")
        );
        assert_eq!(
            from_domain(b" a@x.test, b@y.test").as_deref(),
            Some("x.test")
        );
        assert_eq!(from_domain(b" undisclosed"), None);
        assert_eq!(from_domain(b"\xff\xfe"), None);
    }

    #[test]
    fn crlf() {
        let mut v = Vec::new();
        push_crlf(&mut v, b"a\n\tb\r\n\tc");
        assert_eq!(v, b"a\r\n\tb\r\n\tc");
    }
}

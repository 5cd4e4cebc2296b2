//! LOGIC + I/O: MTA-STS (RFC 8461) for the `tls_policy` map, for domains
//! the `tlspolicies` table has no row for — what postfix-mta-sts-resolver
//! does as a separate daemon:
//!
//! 1. TXT `_mta-sts.<domain>` (`v=STSv1; id=…`) through the resolver;
//! 2. the policy from `https://mta-sts.<domain>/.well-known/mta-sts.txt`
//!    (certificate checked, no redirects, at most 64 KiB);
//! 3. `mode: enforce` answers `secure match=<mx patterns> servername=hostname`
//!    (Postfix then insists on a verified certificate for one of the MX
//!    names); `testing` and `none` answer nothing (Postfix's default
//!    policy, the guide's `dane`/`may`).
//!
//! Policies are cached for their `max_age`; the TXT record is checked again
//! at most every `check_interval`, and the policy fetched again when its
//! `id` changed. Any failure (DNS, TLS, HTTP, parse, the time budget) falls
//! back to the cached policy while it is valid, else to no answer: MTA-STS
//! never holds mail back by itself.

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, info, warn};

/// Largest policy file read (RFC 8461 §3.3 suggests 64 KiB).
pub const MAX_POLICY_BYTES: usize = 64 * 1024;
/// Longest `max_age` honoured (RFC 8461: 31557600 s, one year).
pub const MAX_AGE_LIMIT: u64 = 31_557_600;

/// A parsed policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// `mode`.
    pub mode: Mode,
    /// `mx` patterns (`mail.example.com`, `*.example.net`).
    pub mx: Vec<String>,
    /// `max_age` in seconds.
    pub max_age: u64,
}

/// `mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Refuse delivery over unauthenticated TLS.
    Enforce,
    /// Report only: deliver as without MTA-STS.
    Testing,
    /// No policy.
    None,
}

impl Policy {
    /// Parses an `mta-sts.txt` body (`key: value` lines, CRLF or LF).
    pub fn parse(text: &str) -> Result<Policy, String> {
        let mut version = None;
        let mut mode = None;
        let mut mx = Vec::new();
        let mut max_age = None;
        for line in text.lines() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() {
                continue;
            }
            let Some((k, v)) = line.split_once(':') else {
                return Err(format!("line without `key: value`: {line:?}"));
            };
            let v = v.trim();
            match k.trim() {
                "version" => version = Some(v.to_owned()),
                "mode" => {
                    mode = Some(match v {
                        "enforce" => Mode::Enforce,
                        "testing" => Mode::Testing,
                        "none" => Mode::None,
                        other => return Err(format!("unknown mode `{other}`")),
                    })
                }
                "mx" => mx.push(v.to_ascii_lowercase()),
                "max_age" => {
                    max_age = Some(
                        v.parse::<u64>()
                            .map_err(|_| format!("max_age `{v}` is not a number"))?
                            .min(MAX_AGE_LIMIT),
                    )
                }
                _ => {} // extensions are ignored (RFC 8461 §3.2)
            }
        }
        if version.as_deref() != Some("STSv1") {
            return Err("no `version: STSv1`".into());
        }
        let mode = mode.ok_or("no mode")?;
        let max_age = max_age.ok_or("no max_age")?;
        if mode != Mode::None && mx.is_empty() {
            return Err("no mx".into());
        }
        Ok(Policy { mode, mx, max_age })
    }

    /// The `tls_policy` answer: `secure match=… servername=hostname` for
    /// `enforce`, nothing otherwise.
    pub fn answer(&self) -> Option<String> {
        if self.mode != Mode::Enforce {
            return None;
        }
        let matches: Vec<String> = self
            .mx
            .iter()
            .map(|m| match m.strip_prefix("*.") {
                // Postfix's ".domain" matches any subdomain, like "*.".
                Some(rest) => format!(".{rest}"),
                None => m.clone(),
            })
            .collect();
        Some(format!(
            "secure match={} servername=hostname",
            matches.join(":")
        ))
    }
}

/// The `id` of a `v=STSv1; id=…` TXT record.
pub fn txt_id(txt: &str) -> Option<String> {
    let mut fields = txt.split(';').map(str::trim);
    if fields.next()? != "v=STSv1" {
        return None;
    }
    fields
        .find_map(|f| f.strip_prefix("id="))
        .map(str::to_owned)
        .filter(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// Settings (`[policyd.mta_sts]`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// DNS servers (`IP` or `IP:PORT`); empty: /etc/resolv.conf.
    pub nameservers: Vec<SocketAddr>,
    /// Extra trusted CA certificates (PEM), besides the system's.
    pub ca_file: Option<std::path::PathBuf>,
    /// Budget for one domain's DNS + HTTPS work (less than the lookup
    /// deadline, so a slow domain gets the default policy, not TIMEOUT).
    pub timeout: Duration,
    /// How often a cached policy's TXT record is checked again.
    pub check_interval: Duration,
}

/// A cached domain.
#[derive(Debug, Clone)]
struct Cached {
    id: String,
    policy: Policy,
    fetched: Instant,
    checked: Instant,
}

/// The MTA-STS client and cache.
pub struct MtaSts {
    resolver: TokioResolver,
    tls: tokio_rustls::TlsConnector,
    settings: Settings,
    cache: Mutex<HashMap<String, Cached>>,
}

impl std::fmt::Debug for MtaSts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MtaSts")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl MtaSts {
    /// Sets up the resolver and the TLS client (system roots plus
    /// `ca_file`).
    pub fn new(settings: Settings) -> Result<Self, String> {
        let mut builder = if settings.nameservers.is_empty() {
            TokioResolver::builder_tokio().map_err(|e| format!("reading /etc/resolv.conf: {e}"))?
        } else {
            let servers = settings
                .nameservers
                .iter()
                .map(|addr| {
                    let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                    for c in &mut ns.connections {
                        c.port = addr.port();
                    }
                    ns
                })
                .collect();
            TokioResolver::builder_with_config(
                ResolverConfig::from_parts(None, Vec::new(), servers),
                TokioRuntimeProvider::default(),
            )
        };
        let opts = builder.options_mut();
        opts.timeout = settings.timeout;
        opts.attempts = 1;
        // Our own cache decides when to look again (check_interval).
        opts.cache_size = 0;
        let resolver = builder
            .build()
            .map_err(|e| format!("cannot set up the resolver: {e}"))?;

        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        if let Some(path) = &settings.ca_file {
            let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            use rustls::pki_types::pem::PemObject;
            for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            resolver,
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            settings,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The `tls_policy` answer for `domain` (normalised ASCII), or `None`
    /// for Postfix's default policy. Never an error, never slower than the
    /// configured timeout (plus the HTTPS budget).
    pub async fn answer(&self, domain: &str) -> Option<String> {
        let cached = self.cache.lock().ok()?.get(domain).cloned();
        let now = Instant::now();
        if let Some(c) = &cached
            && now.duration_since(c.checked) < self.settings.check_interval
            && now.duration_since(c.fetched) < Duration::from_secs(c.policy.max_age)
        {
            return c.policy.answer();
        }
        let fresh =
            tokio::time::timeout(self.settings.timeout, self.refresh(domain, cached.as_ref()))
                .await;
        let still_valid =
            |c: &Cached| now.duration_since(c.fetched) < Duration::from_secs(c.policy.max_age);
        match fresh {
            Ok(Ok(Some(c))) => {
                let answer = c.policy.answer();
                if let Ok(mut cache) = self.cache.lock() {
                    cache.insert(domain.to_owned(), c);
                }
                answer
            }
            Ok(Ok(None)) => {
                // No TXT record: a still valid cached policy applies
                // (RFC 8461 §5.1), else none.
                cached.filter(still_valid).and_then(|c| c.policy.answer())
            }
            Ok(Err(e)) => {
                warn!(domain, error = %e, "MTA-STS lookup failed; using the cached policy or none");
                cached.filter(still_valid).and_then(|c| c.policy.answer())
            }
            Err(_) => {
                warn!(
                    domain,
                    "MTA-STS lookup timed out; using the cached policy or none"
                );
                cached.filter(still_valid).and_then(|c| c.policy.answer())
            }
        }
    }

    /// Checks the TXT record and fetches the policy when its id changed.
    /// `Ok(None)`: the domain publishes no MTA-STS.
    async fn refresh(
        &self,
        domain: &str,
        cached: Option<&Cached>,
    ) -> Result<Option<Cached>, String> {
        let name = format!("_mta-sts.{domain}.");
        let ids: Vec<String> = match self.resolver.lookup(name.clone(), RecordType::TXT).await {
            Ok(l) => l
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::TXT(t) => txt_id(&t.to_string()),
                    _ => None,
                })
                .collect(),
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => Vec::new(),
            Err(e) => return Err(format!("TXT {name}: {e}")),
        };
        // Exactly one valid record (RFC 8461 §3.1).
        let [id] = ids.as_slice() else {
            return Ok(None);
        };
        let now = Instant::now();
        if let Some(c) = cached
            && &c.id == id
        {
            let mut c = c.clone();
            c.checked = now;
            if now.duration_since(c.fetched) < Duration::from_secs(c.policy.max_age) {
                return Ok(Some(c));
            }
        }
        let policy = self.fetch(domain).await?;
        info!(domain, id, mode = ?policy.mode, max_age = policy.max_age, "MTA-STS policy fetched");
        Ok(Some(Cached {
            id: id.clone(),
            policy,
            fetched: now,
            checked: now,
        }))
    }

    /// GET `https://mta-sts.<domain>/.well-known/mta-sts.txt`.
    async fn fetch(&self, domain: &str) -> Result<Policy, String> {
        let host = format!("mta-sts.{domain}");
        let ips = self
            .resolver
            .lookup_ip(format!("{host}."))
            .await
            .map_err(|e| format!("{host}: {e}"))?;
        let ip = ips
            .iter()
            .next()
            .ok_or_else(|| format!("{host}: no address"))?;
        let tcp = tokio::time::timeout(
            self.settings.timeout,
            tokio::net::TcpStream::connect(SocketAddr::new(ip, 443)),
        )
        .await
        .map_err(|_| format!("{host}: connect timed out"))?
        .map_err(|e| format!("{host}: {e}"))?;
        let server_name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| format!("{host}: {e}"))?;
        let mut tls = self
            .tls
            .connect(server_name, tcp)
            .await
            .map_err(|e| format!("{host}: TLS: {e}"))?;
        let request = format!(
            "GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: {host}\r\nUser-Agent: postwerk-policyd\r\nConnection: close\r\n\r\n"
        );
        tls.write_all(request.as_bytes())
            .await
            .map_err(|e| format!("{host}: {e}"))?;
        let mut body = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            let n = match tls.read(&mut buf).await {
                Ok(n) => n,
                // Servers that close without close_notify.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
                Err(e) => return Err(format!("{host}: {e}")),
            };
            if n == 0 {
                break;
            }
            body.extend_from_slice(&buf[..n]);
            if body.len() > MAX_POLICY_BYTES + 4096 {
                return Err(format!(
                    "{host}: policy larger than {MAX_POLICY_BYTES} bytes"
                ));
            }
        }
        let text = String::from_utf8_lossy(&body);
        let (head, payload) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| format!("{host}: no HTTP header end"))?;
        let status = head.lines().next().unwrap_or_default();
        if status.split_whitespace().nth(1) != Some("200") {
            return Err(format!("{host}: {status}"));
        }
        if head.lines().any(|l| {
            l.to_ascii_lowercase().starts_with("transfer-encoding:")
                && l.to_ascii_lowercase().contains("chunked")
        }) {
            return Policy::parse(&dechunk(payload)).map_err(|e| format!("{host}: {e}"));
        }
        debug!(host, "MTA-STS policy body read");
        Policy::parse(payload).map_err(|e| format!("{host}: {e}"))
    }
}

/// Undoes HTTP/1.1 chunked transfer encoding (best effort; a malformed
/// body fails to parse as a policy).
fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies() {
        let p = Policy::parse(
            "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n",
        )
        .unwrap();
        assert_eq!(p.mode, Mode::Enforce);
        assert_eq!(p.max_age, 604_800);
        assert_eq!(
            p.answer().as_deref(),
            Some("secure match=mail.example.com:.example.net servername=hostname")
        );
        let t = Policy::parse("version: STSv1\nmode: testing\nmx: a.example\nmax_age: 86400\n")
            .unwrap();
        assert_eq!(t.answer(), None);
        assert!(Policy::parse("mode: enforce\nmx: a\nmax_age: 1\n").is_err());
        assert!(Policy::parse("version: STSv1\nmode: enforce\nmax_age: 1\n").is_err());
        assert!(Policy::parse("version: STSv1\nmode: strict\nmx: a\nmax_age: 1\n").is_err());
        let long = Policy::parse("version: STSv1\nmode: none\nmax_age: 99999999999\n").unwrap();
        assert_eq!(long.max_age, MAX_AGE_LIMIT);
    }

    #[test]
    fn txt_records() {
        assert_eq!(
            txt_id("v=STSv1; id=20240101T000000").as_deref(),
            Some("20240101T000000")
        );
        assert_eq!(txt_id("v=STSv1;id=abc;").as_deref(), Some("abc"));
        assert_eq!(txt_id("v=spf1 -all"), None);
        assert_eq!(txt_id("v=STSv1; id="), None);
        assert_eq!(txt_id("v=STSv1; id=a-b"), None);
    }

    #[test]
    fn chunked() {
        assert_eq!(
            dechunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            "hello world"
        );
    }
}

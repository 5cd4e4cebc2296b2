//! The mail server as DNS and mail clients see it: `[server]` with the
//! command-line overrides and the system's host name applied, plus the
//! MTA-STS policy it publishes. Shared by `postwerk dns` and `postwerk
//! autoconfig`; no database and no network here.

use anyhow::{Context, bail};
use postwerk_core::address::normalize_domain;
use postwerk_core::config::server::{MtaSts, ServerConfig};
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use std::path::PathBuf;

/// IMAP over TLS, the port the guide's clients use (dovecot.conf
/// `protocols = imap`, examples/firewall-ports.txt).
pub const IMAPS_PORT: u16 = 993;
/// SMTP submission over TLS (the guide's `smtps` in master.cf, RFC 8314).
pub const SUBMISSIONS_PORT: u16 = 465;
/// SMTP submission with STARTTLS (the guide's `submission` in master.cf).
pub const SUBMISSION_PORT: u16 = 587;
/// The port other mail servers deliver to, whose certificate a TLSA
/// record pins (RFC 7672 §3.1: `_25._tcp.HOST`).
pub const SMTP_PORT: u16 = 25;

/// Command-line overrides of `[server]`.
#[derive(clap::Args, Debug, Default)]
pub struct ServerArgs {
    /// The mail host's name, the MX target (Postfix myhostname) [default: [server].hostname, else the system's host name]
    #[arg(long, value_name = "HOST")]
    pub hostname: Option<String>,
    /// A public address of the mail host, for its A/AAAA records; repeat for more [default: [server].addresses]
    #[arg(long = "address", value_name = "IP")]
    pub addresses: Vec<IpAddr>,
    /// The name clients use for IMAP [default: [server].imap_host, else the host name]
    #[arg(long, value_name = "HOST")]
    pub imap_host: Option<String>,
    /// The name clients use for SMTP submission [default: [server].smtp_host, else the host name]
    #[arg(long, value_name = "HOST")]
    pub smtp_host: Option<String>,
}

/// `[server]`, resolved.
#[derive(Debug, Clone)]
pub struct Server {
    /// The mail host's name (no trailing dot, lowercase ASCII).
    pub hostname: String,
    /// Its public addresses; empty when not stated.
    pub addresses: Vec<IpAddr>,
    /// The IMAP host name for clients.
    pub imap_host: String,
    /// The submission host name for clients.
    pub smtp_host: String,
    /// The SPF record every domain gets, if the admin chose one.
    pub spf: Option<String>,
    /// The DMARC record.
    pub dmarc: String,
    /// MTA-STS mode.
    pub mta_sts: MtaSts,
    /// MTA-STS `max_age`.
    pub mta_sts_max_age: u64,
    /// TLS-RPT `rua=`.
    pub tls_rpt: Option<String>,
    /// The certificate for the TLSA record.
    pub tls_certificate: Option<PathBuf>,
}

fn fqdn(what: &str, name: &str) -> anyhow::Result<String> {
    let n = normalize_domain(name).map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
    if !n.contains('.') {
        bail!(
            "{what} `{name}` is not a fully qualified host name (like mail.example.org); set [server].hostname or give --hostname"
        );
    }
    Ok(n)
}

impl Server {
    /// `[server]` with `args` applied; the host name falls back to the
    /// system's, which must then be fully qualified (as Postfix's
    /// `myhostname` default is).
    pub fn resolve(cfg: &ServerConfig, args: &ServerArgs) -> anyhow::Result<Server> {
        let hostname = match args.hostname.as_deref().or(cfg.hostname.as_deref()) {
            Some(h) => fqdn("--hostname", h)?,
            None => {
                let h = nix::unistd::gethostname()
                    .context("cannot read the system's host name")?
                    .to_string_lossy()
                    .into_owned();
                fqdn("the system's host name", &h)?
            }
        };
        let imap_host = match args.imap_host.as_deref().or(cfg.imap_host.as_deref()) {
            Some(h) => fqdn("--imap-host", h)?,
            None => hostname.clone(),
        };
        let smtp_host = match args.smtp_host.as_deref().or(cfg.smtp_host.as_deref()) {
            Some(h) => fqdn("--smtp-host", h)?,
            None => hostname.clone(),
        };
        let addresses = if args.addresses.is_empty() {
            cfg.addresses.clone()
        } else {
            args.addresses.clone()
        };
        Ok(Server {
            hostname,
            addresses,
            imap_host,
            smtp_host,
            spf: cfg.spf.clone(),
            dmarc: cfg.dmarc.clone(),
            mta_sts: cfg.mta_sts,
            mta_sts_max_age: cfg.mta_sts_max_age,
            tls_rpt: cfg.tls_rpt.clone(),
            tls_certificate: cfg.tls_certificate.clone(),
        })
    }

    /// The domain the mail host belongs to: `mysystems.tld` for
    /// `mail.mysystems.tld` (the guide's "main" domain, whose SPF record the
    /// other domains include).
    pub fn host_domain(&self) -> &str {
        self.hostname
            .split_once('.')
            .map(|(_, d)| d)
            .unwrap_or(&self.hostname)
    }

    /// The MTA-STS policy file (RFC 8461 §3.2), served at
    /// `https://mta-sts.DOMAIN/.well-known/mta-sts.txt`; `None` when off.
    /// The same for every domain: they all have the one MX.
    pub fn mta_sts_policy(&self) -> Option<String> {
        let mode = self.mta_sts.mode()?;
        Some(format!(
            "version: STSv1\r\nmode: {mode}\r\nmx: {}\r\nmax_age: {}\r\n",
            self.hostname, self.mta_sts_max_age
        ))
    }

    /// The policy's `id=` for the `_mta-sts` TXT record: derived from the
    /// policy's content, so it changes exactly when the policy does, which
    /// is what tells senders to fetch it again (RFC 8461 §3.1).
    pub fn mta_sts_id(policy: &str) -> String {
        let digest = Sha256::digest(policy.as_bytes());
        digest[..10].iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(mta_sts: MtaSts) -> Server {
        Server {
            hostname: "mail.mysystems.tld".into(),
            addresses: vec![],
            imap_host: "imap.mysystems.tld".into(),
            smtp_host: "smtp.mysystems.tld".into(),
            spf: None,
            dmarc: "v=DMARC1; p=reject;".into(),
            mta_sts,
            mta_sts_max_age: 604_800,
            tls_rpt: None,
            tls_certificate: None,
        }
    }

    #[test]
    fn host_domain_is_the_parent() {
        assert_eq!(server(MtaSts::Off).host_domain(), "mysystems.tld");
    }

    #[test]
    fn mta_sts_policy_and_id_follow_the_mode() {
        assert!(server(MtaSts::Off).mta_sts_policy().is_none());
        let enforce = server(MtaSts::Enforce).mta_sts_policy().unwrap();
        assert_eq!(
            enforce,
            "version: STSv1\r\nmode: enforce\r\nmx: mail.mysystems.tld\r\nmax_age: 604800\r\n"
        );
        let testing = server(MtaSts::Testing).mta_sts_policy().unwrap();
        let (a, b) = (Server::mta_sts_id(&enforce), Server::mta_sts_id(&testing));
        assert_ne!(a, b);
        // RFC 8461 §3.1: id is 1 to 32 alphanumeric characters.
        assert!(a.len() <= 32 && a.bytes().all(|c| c.is_ascii_alphanumeric()));
    }
}

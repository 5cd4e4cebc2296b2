//! `[server]`: how this mail server is known to the world — its host name,
//! its public addresses and the policies it publishes in DNS — for
//! `postwerk dns` and `postwerk autoconfig`. No daemon reads it, and no
//! I/O happens here (the host name default is resolved by the caller).

use super::ConfigError;
use crate::address::normalize_domain;
use std::net::IpAddr;
use std::path::PathBuf;

/// The guide's DMARC record ("Einrichtung des DNS", DMARC Records).
pub const DEFAULT_DMARC: &str = "v=DMARC1; p=reject;";
/// How long senders cache the MTA-STS policy (RFC 8461 §3.2 `max_age`):
/// one week, the value RFC 8461's examples and the big providers use.
pub const DEFAULT_MTA_STS_MAX_AGE: u64 = 604_800;

/// Raw `[server]`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Raw {
    pub hostname: Option<String>,
    pub addresses: Option<Vec<String>>,
    pub imap_host: Option<String>,
    pub smtp_host: Option<String>,
    pub spf: Option<String>,
    pub dmarc: Option<String>,
    pub mta_sts: Option<String>,
    pub mta_sts_max_age: Option<u64>,
    pub tls_rpt: Option<String>,
    pub tls_certificate: Option<PathBuf>,
}

/// RFC 8461 §3.2 policy `mode`, or no MTA-STS at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MtaSts {
    /// No MTA-STS records or policy files (the guide has none).
    Off,
    /// `mode: testing`: senders report failures but deliver anyway.
    Testing,
    /// `mode: enforce`: senders refuse to deliver without valid TLS.
    Enforce,
}

impl MtaSts {
    /// The policy file's `mode:` value; `None` when off.
    pub fn mode(self) -> Option<&'static str> {
        match self {
            MtaSts::Off => None,
            MtaSts::Testing => Some("testing"),
            MtaSts::Enforce => Some("enforce"),
        }
    }
}

/// Validated `[server]`.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// `hostname`: the mail host's name (Postfix `myhostname`), the MX
    /// target; `None` means the system's host name.
    pub hostname: Option<String>,
    /// `addresses`: the public IPv4/IPv6 addresses of the mail host, for its
    /// A/AAAA records; empty means "not stated" (`--check` then only asks
    /// that the name resolves).
    pub addresses: Vec<IpAddr>,
    /// `imap_host`: the name mail clients use for IMAP (the guide's
    /// `imap.mysystems.tld`, a CNAME); default: `hostname`.
    pub imap_host: Option<String>,
    /// `smtp_host`: the name mail clients use for submission (the guide's
    /// `smtp.mysystems.tld`); default: `hostname`.
    pub smtp_host: Option<String>,
    /// `spf`: the SPF record of every domain; default: the guide's two
    /// (`v=spf1 a:HOST mx ?all` for the mail host's own domain, `v=spf1
    /// include:THAT ?all` for the others).
    pub spf: Option<String>,
    /// `dmarc`: the DMARC record of every domain.
    pub dmarc: String,
    /// `mta_sts`: publish an MTA-STS policy (RFC 8461).
    pub mta_sts: MtaSts,
    /// `mta_sts_max_age`: the policy's `max_age` in seconds.
    pub mta_sts_max_age: u64,
    /// `tls_rpt`: where TLS reports go (RFC 8460 `rua=`, e.g.
    /// `mailto:tls-reports@example.org`); `None`: no TLS-RPT record.
    pub tls_rpt: Option<String>,
    /// `tls_certificate`: the mail host's certificate (PEM) for its TLSA
    /// record (DANE, RFC 7672); `None`: no TLSA record unless asked.
    pub tls_certificate: Option<PathBuf>,
}

fn host(key: &str, raw: Option<&str>, errors: &mut Vec<ConfigError>) -> Option<String> {
    let raw = raw?;
    match normalize_domain(raw) {
        Ok(h) if h.contains('.') => Some(h),
        Ok(_) => {
            errors.push(ConfigError::new(
                key,
                format!("`{raw}` is not a fully qualified host name (e.g. mail.example.org)"),
            ));
            None
        }
        Err(e) => {
            errors.push(ConfigError::new(key, e.to_string()));
            None
        }
    }
}

/// Checks `[server]`.
pub fn check(raw: &Raw, errors: &mut Vec<ConfigError>) -> ServerConfig {
    let addresses = raw
        .addresses
        .iter()
        .flatten()
        .filter_map(|a| match a.parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                errors.push(ConfigError::new(
                    "[server].addresses",
                    format!("`{a}` is not an IPv4 or IPv6 address"),
                ));
                None
            }
        })
        .collect();
    let spf = raw.spf.clone();
    if let Some(s) = &spf
        && !s.to_ascii_lowercase().starts_with("v=spf1")
    {
        errors.push(ConfigError::new(
            "[server].spf",
            format!("`{s}` is not an SPF record; it must start with v=spf1 (RFC 7208 §4.5)"),
        ));
    }
    let dmarc = raw
        .dmarc
        .clone()
        .unwrap_or_else(|| DEFAULT_DMARC.to_owned());
    if !dmarc.starts_with("v=DMARC1;") {
        errors.push(ConfigError::new(
            "[server].dmarc",
            format!(
                "`{dmarc}` is not a DMARC record; it must start with `v=DMARC1;` (RFC 7489 §6.3)"
            ),
        ));
    }
    let mta_sts = match raw.mta_sts.as_deref() {
        None | Some("off") => MtaSts::Off,
        Some("testing") => MtaSts::Testing,
        Some("enforce") => MtaSts::Enforce,
        Some(other) => {
            errors.push(ConfigError::new(
                "[server].mta_sts",
                format!("`{other}` is not allowed; use off, testing or enforce"),
            ));
            MtaSts::Off
        }
    };
    let mta_sts_max_age = raw.mta_sts_max_age.unwrap_or(DEFAULT_MTA_STS_MAX_AGE);
    // RFC 8461 §3.2: max_age is at most 31557600 (one year).
    if mta_sts_max_age == 0 || mta_sts_max_age > 31_557_600 {
        errors.push(ConfigError::new(
            "[server].mta_sts_max_age",
            format!("{mta_sts_max_age} is out of range; allowed 1 to 31557600 seconds"),
        ));
    }
    let tls_rpt = raw.tls_rpt.clone();
    if let Some(t) = &tls_rpt
        && !t
            .split(',')
            .all(|u| u.trim().starts_with("mailto:") || u.trim().starts_with("https://"))
    {
        errors.push(ConfigError::new(
            "[server].tls_rpt",
            format!(
                "`{t}` is not a list of report addresses; use mailto:ADDRESS or https://URL, separated by commas (RFC 8460 §3)"
            ),
        ));
    }
    ServerConfig {
        hostname: host("[server].hostname", raw.hostname.as_deref(), errors),
        addresses,
        imap_host: host("[server].imap_host", raw.imap_host.as_deref(), errors),
        smtp_host: host("[server].smtp_host", raw.smtp_host.as_deref(), errors),
        spf,
        dmarc,
        mta_sts,
        mta_sts_max_age,
        tls_rpt,
        tls_certificate: raw.tls_certificate.clone(),
    }
}

/// `postwerk config check` rows for `[server]`.
pub fn describe(s: &ServerConfig) -> Vec<(String, String)> {
    let or = |v: &Option<String>, d: &str| v.clone().unwrap_or_else(|| d.to_owned());
    vec![
        (
            "[server].hostname".into(),
            or(&s.hostname, "(the system's host name)"),
        ),
        (
            "[server].addresses".into(),
            if s.addresses.is_empty() {
                "(not stated)".into()
            } else {
                s.addresses
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        ),
        ("[server].imap_host".into(), or(&s.imap_host, "(hostname)")),
        ("[server].smtp_host".into(), or(&s.smtp_host, "(hostname)")),
        ("[server].spf".into(), or(&s.spf, "(the guide's records)")),
        ("[server].dmarc".into(), s.dmarc.clone()),
        (
            "[server].mta_sts".into(),
            s.mta_sts.mode().unwrap_or("off").into(),
        ),
        (
            "[server].mta_sts_max_age".into(),
            s.mta_sts_max_age.to_string(),
        ),
        ("[server].tls_rpt".into(), or(&s.tls_rpt, "(none)")),
        (
            "[server].tls_certificate".into(),
            s.tls_certificate
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "(none)".into()),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ServerConfig, Vec<ConfigError>> {
        crate::config::parse_section::<Raw, _>(text, check)
    }

    #[test]
    fn defaults_are_the_guides() {
        let c = parse("").unwrap();
        assert_eq!(c.dmarc, "v=DMARC1; p=reject;");
        assert_eq!(c.mta_sts, MtaSts::Off);
        assert!(c.hostname.is_none() && c.addresses.is_empty() && c.tls_rpt.is_none());
    }

    #[test]
    fn full_section() {
        let c = parse(
            r#"
hostname = "Mail.MySystems.tld."
addresses = ["203.0.113.1", "2001:db8::1"]
imap_host = "imap.mysystems.tld"
mta_sts = "enforce"
tls_rpt = "mailto:tls@mysystems.tld"
"#,
        )
        .unwrap();
        assert_eq!(c.hostname.as_deref(), Some("mail.mysystems.tld"));
        assert_eq!(c.addresses.len(), 2);
        assert_eq!(c.mta_sts.mode(), Some("enforce"));
    }

    #[test]
    fn every_bad_key_is_named() {
        let e = parse(
            r#"
hostname = "mail"
addresses = ["203.0.113.300"]
spf = "include:x"
dmarc = "p=reject"
mta_sts = "yes"
mta_sts_max_age = 0
tls_rpt = "tls@example.org"
"#,
        )
        .unwrap_err();
        let keys: Vec<&str> = e.iter().map(|e| e.key.as_str()).collect();
        for k in [
            "[server].hostname",
            "[server].addresses",
            "[server].spf",
            "[server].dmarc",
            "[server].mta_sts",
            "[server].mta_sts_max_age",
            "[server].tls_rpt",
        ] {
            assert!(keys.contains(&k), "{k} missing in {keys:?}");
        }
    }
}

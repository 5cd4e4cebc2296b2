//! `postwerk dns`: every DNS record the guide asks the admin to create for a
//! mail domain ("Einrichtung des DNS", SPF, DMARC, DKIM, autoconfig), plus
//! client discovery (RFC 6186 SRV, Autodiscover), MTA-STS, TLS-RPT and
//! TLSA when enabled — printed as zone-file lines, and with `--check`
//! resolved and compared, each missing or wrong record with its fix.
//! DKIM records come from the keys milterd signs with (`postwerk dkim`).

use super::Ctx;
use super::server::{IMAPS_PORT, SMTP_PORT, SUBMISSION_PORT, SUBMISSIONS_PORT, Server, ServerArgs};
use crate::output;
use anyhow::{Context, bail};
use base64::Engine;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use postwerk_milterd::keys;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// TTL of host, MX and CNAME records, as in the guide (86400).
const TTL_HOST: u32 = 86_400;
/// TTL of TXT and SRV records, as in the guide's SPF and DMARC (3600).
const TTL_TXT: u32 = 3_600;
/// How long `--check` waits for one answer.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// `postwerk dns …`
#[derive(clap::Args, Debug)]
pub struct DnsArgs {
    /// The mail domain [default: every domain in the database]
    domain: Option<String>,
    #[command(flatten)]
    server: ServerArgs,
    /// Also print the TLSA record (DANE, `3 1 1`) of this certificate, PEM, the first one in the file [default: [server].tls_certificate]
    #[arg(long, value_name = "PEM")]
    tlsa: Option<PathBuf>,
    /// Resolve every record and report those missing or wrong, with the fix; exits 1 if any is
    #[arg(long)]
    check: bool,
    /// Ask this DNS server for --check (IP or IP:PORT; repeat for more) [default: /etc/resolv.conf]
    #[arg(long, value_name = "ADDR")]
    nameserver: Vec<String>,
}

/// The data of one record.
#[derive(Debug, Clone, PartialEq)]
enum Data {
    Mx {
        preference: u16,
        exchange: String,
    },
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    /// A/AAAA whose address the admin did not state (`[server].addresses`):
    /// printed as a placeholder, checked for existence only.
    AnyAddress,
    Cname(String),
    Txt(String),
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: String,
    },
    /// `3 1 1`: DANE-EE, SubjectPublicKeyInfo, SHA-256 (RFC 7671 §5.1).
    Tlsa(Vec<u8>),
}

/// One record to publish.
#[derive(Debug, Clone)]
struct Record {
    /// The zone (DNS domain) the record goes into.
    zone: String,
    /// What it is for, printed as a comment.
    purpose: &'static str,
    /// Owner name, no trailing dot.
    name: String,
    ttl: u32,
    data: Data,
}

fn quote_txt(value: &str) -> String {
    // RFC 1035 §5.1: a character-string holds at most 255 bytes; longer
    // values are split and resolvers join them again.
    value
        .as_bytes()
        .chunks(keys::TXT_CHUNK)
        .map(|c| {
            let s = String::from_utf8_lossy(c);
            format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

impl Data {
    fn rtype(&self) -> &'static str {
        match self {
            Data::Mx { .. } => "MX",
            Data::A(_) => "A",
            Data::Aaaa(_) => "AAAA",
            Data::AnyAddress => "A",
            Data::Cname(_) => "CNAME",
            Data::Txt(_) => "TXT",
            Data::Srv { .. } => "SRV",
            Data::Tlsa(_) => "TLSA",
        }
    }

    fn value(&self) -> String {
        match self {
            Data::Mx {
                preference,
                exchange,
            } => format!("{preference} {exchange}."),
            Data::A(ip) => ip.to_string(),
            Data::Aaaa(ip) => ip.to_string(),
            Data::AnyAddress => "<the mail host's IPv4 address> (and AAAA for IPv6)".into(),
            Data::Cname(t) => format!("{t}."),
            Data::Txt(v) => quote_txt(v),
            Data::Srv {
                priority,
                weight,
                port,
                target,
            } => format!("{priority} {weight} {port} {target}."),
            Data::Tlsa(hash) => format!("3 1 1 {}", hex(hash)),
        }
    }
}

impl Record {
    fn zone_line(&self) -> String {
        format!(
            "{}. {} IN {} {}",
            self.name,
            self.ttl,
            self.data.rtype(),
            self.data.value()
        )
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The mail host's own records: its addresses, the client host names, and
/// its TLSA record. They live in the host's zone, once for all domains.
fn host_records(server: &Server, tlsa: Option<&[u8]>) -> Vec<Record> {
    let host = &server.hostname;
    let zone = server.host_domain().to_owned();
    let mut out = Vec::new();
    if server.addresses.is_empty() {
        out.push(Record {
            zone: zone.clone(),
            purpose: "the mail host's address (state it: [server].addresses or --address)",
            name: host.clone(),
            ttl: TTL_HOST,
            data: Data::AnyAddress,
        });
    }
    for ip in &server.addresses {
        out.push(Record {
            zone: zone.clone(),
            purpose: "the mail host's address",
            name: host.clone(),
            ttl: TTL_HOST,
            data: match ip {
                IpAddr::V4(v4) => Data::A(*v4),
                IpAddr::V6(v6) => Data::Aaaa(*v6),
            },
        });
    }
    let mut aliases = vec![&server.imap_host];
    if server.smtp_host != server.imap_host {
        aliases.push(&server.smtp_host);
    }
    for alias in aliases {
        if alias != host {
            out.push(Record {
                zone: zone.clone(),
                purpose: "the host name mail clients use",
                name: alias.clone(),
                ttl: TTL_HOST,
                data: Data::Cname(host.clone()),
            });
        }
    }
    if let Some(hash) = tlsa {
        out.push(Record {
            zone: zone.clone(),
            purpose: "DANE for mail from other servers (RFC 7672); publish the next key's record before a key change",
            name: format!("_{SMTP_PORT}._tcp.{host}"),
            ttl: TTL_TXT,
            data: Data::Tlsa(hash.to_vec()),
        });
    }
    out
}

/// The SPF record for `domain`: the configured one, else the guide's
/// (`a:HOST mx ?all` for the host's own domain; `include:` of that domain
/// for the others, when it is one of ours and so has that record).
fn spf(server: &Server, domain: &str, ours: &[String]) -> String {
    if let Some(s) = &server.spf {
        return s.clone();
    }
    let main = server.host_domain();
    if domain != main && ours.iter().any(|d| d == main) {
        format!("v=spf1 include:{main} ?all")
    } else {
        format!("v=spf1 a:{} mx ?all", server.hostname)
    }
}

/// The records of one mail domain.
fn domain_records(
    server: &Server,
    domain: &str,
    ours: &[String],
    dkim: &[(String, keys::Key)],
) -> Vec<Record> {
    let host = &server.hostname;
    let mut out = vec![
        Record {
            zone: domain.to_owned(),
            purpose: "where other servers deliver mail for the domain",
            name: domain.to_owned(),
            ttl: TTL_HOST,
            data: Data::Mx {
                preference: 0,
                exchange: host.clone(),
            },
        },
        Record {
            zone: domain.to_owned(),
            purpose: "SPF: which servers send mail for the domain",
            name: domain.to_owned(),
            ttl: TTL_TXT,
            data: Data::Txt(spf(server, domain, ours)),
        },
        Record {
            zone: domain.to_owned(),
            purpose: "DMARC: what receivers do with mail that fails SPF and DKIM",
            name: format!("_dmarc.{domain}"),
            ttl: TTL_TXT,
            data: Data::Txt(server.dmarc.clone()),
        },
    ];
    for (selector, key) in dkim {
        out.push(Record {
            zone: domain.to_owned(),
            purpose: "DKIM: the public key milterd signs with",
            name: keys::record_name(selector, domain)
                .trim_end_matches('.')
                .to_owned(),
            ttl: TTL_TXT,
            data: Data::Txt(keys::txt_value(key)),
        });
    }
    let client = [
        (
            "autoconfig",
            "Thunderbird autoconfig (postwerk autoconfig writes the file)",
        ),
        ("autodiscover", "Outlook Autodiscover"),
    ];
    for (label, purpose) in client {
        out.push(Record {
            zone: domain.to_owned(),
            purpose,
            name: format!("{label}.{domain}"),
            ttl: TTL_HOST,
            data: Data::Cname(host.clone()),
        });
    }
    let srv = [
        (
            "_autodiscover",
            443,
            host,
            "Outlook Autodiscover (SRV lookup)",
        ),
        (
            "_imaps",
            IMAPS_PORT,
            &server.imap_host,
            "IMAP over TLS (RFC 6186)",
        ),
        (
            "_submissions",
            SUBMISSIONS_PORT,
            &server.smtp_host,
            "submission over TLS (RFC 8314)",
        ),
        (
            "_submission",
            SUBMISSION_PORT,
            &server.smtp_host,
            "submission with STARTTLS (RFC 6186)",
        ),
    ];
    for (service, port, target, purpose) in srv {
        out.push(Record {
            zone: domain.to_owned(),
            purpose,
            name: format!("{service}._tcp.{domain}"),
            ttl: TTL_TXT,
            data: Data::Srv {
                priority: 0,
                weight: 1,
                port,
                target: target.clone(),
            },
        });
    }
    if let Some(policy) = server.mta_sts_policy() {
        out.push(Record {
            zone: domain.to_owned(),
            purpose: "MTA-STS: senders must use TLS to the MX (the id changes with the policy)",
            name: format!("_mta-sts.{domain}"),
            ttl: TTL_TXT,
            data: Data::Txt(format!("v=STSv1; id={}", Server::mta_sts_id(&policy))),
        });
        out.push(Record {
            zone: domain.to_owned(),
            purpose: "MTA-STS: the host serving the policy file (postwerk autoconfig writes it)",
            name: format!("mta-sts.{domain}"),
            ttl: TTL_HOST,
            data: Data::Cname(host.clone()),
        });
    }
    if let Some(rua) = &server.tls_rpt {
        out.push(Record {
            zone: domain.to_owned(),
            purpose: "TLS-RPT: where senders report TLS failures (RFC 8460)",
            name: format!("_smtp._tls.{domain}"),
            ttl: TTL_TXT,
            data: Data::Txt(format!("v=TLSRPTv1; rua={rua}")),
        });
    }
    out
}

/// SHA-256 of the SubjectPublicKeyInfo of the first certificate in a PEM
/// file: the data of a `3 1 1` TLSA record, which survives certificate
/// renewals that keep the key (RFC 7671 §5.1; Let's Encrypt clients keep
/// it with `--reuse-key`).
pub fn tlsa_spki_sha256(pem_path: &Path) -> anyhow::Result<Vec<u8>> {
    let text = std::fs::read_to_string(pem_path)
        .with_context(|| format!("cannot read {}", pem_path.display()))?;
    let begin = "-----BEGIN CERTIFICATE-----";
    let start = text
        .find(begin)
        .with_context(|| format!("{} holds no PEM certificate", pem_path.display()))?;
    let rest = &text[start + begin.len()..];
    let end = rest
        .find("-----END CERTIFICATE-----")
        .with_context(|| format!("{}: unterminated certificate", pem_path.display()))?;
    let b64: String = rest[..end].split_whitespace().collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .with_context(|| format!("{}: bad base64 in the certificate", pem_path.display()))?;
    let spki = spki_of(&der)
        .with_context(|| format!("{}: not an X.509 certificate", pem_path.display()))?;
    Ok(Sha256::digest(spki).to_vec())
}

/// One DER element (X.690 §8.1): tag, content, the whole element, and
/// what follows it.
struct Tlv<'a> {
    tag: u8,
    whole: &'a [u8],
    content: &'a [u8],
    rest: &'a [u8],
}

fn der(buf: &[u8]) -> Option<Tlv<'_>> {
    let tag = *buf.first()?;
    let first = *buf.get(1)?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for b in buf.get(2..2 + n)? {
            len = (len << 8) | usize::from(*b);
        }
        (len, 2 + n)
    };
    let end = header.checked_add(len)?;
    Some(Tlv {
        tag,
        whole: buf.get(..end)?,
        content: buf.get(header..end)?,
        rest: buf.get(end..)?,
    })
}

/// RFC 5280 §4.1: Certificate ::= SEQUENCE { tbsCertificate SEQUENCE {
/// [0] version OPTIONAL, serialNumber, signature, issuer, validity,
/// subject, subjectPublicKeyInfo, … } … }.
fn spki_of(cert: &[u8]) -> Option<&[u8]> {
    const SEQUENCE: u8 = 0x30;
    const VERSION: u8 = 0xa0;
    let cert = der(cert).filter(|t| t.tag == SEQUENCE)?;
    let tbs = der(cert.content).filter(|t| t.tag == SEQUENCE)?;
    let mut rest = tbs.content;
    if der(rest)?.tag == VERSION {
        rest = der(rest)?.rest;
    }
    for _ in 0..5 {
        rest = der(rest)?.rest;
    }
    der(rest).filter(|t| t.tag == SEQUENCE).map(|t| t.whole)
}

/// What `--check` found for one record.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
enum Status {
    /// Published as it should be.
    Ok { found: String },
    /// Nothing there.
    Missing,
    /// Something else is there.
    Wrong { found: String },
    /// The lookup failed (SERVFAIL, timeout): cannot tell.
    Error { error: String },
}

/// The answers for a name and type: `Ok(empty)` for NXDOMAIN and NODATA.
type Answers = Result<Vec<RData>, String>;

struct Checker {
    resolver: TokioResolver,
    cache: HashMap<(String, RecordType), Answers>,
    /// Set when the name server did not answer at all: the remaining
    /// records get the same error at once instead of each waiting for
    /// its own timeout.
    unreachable: Option<String>,
}

impl Checker {
    fn new(nameservers: &[String]) -> anyhow::Result<Checker> {
        let mut builder = if nameservers.is_empty() {
            TokioResolver::builder_tokio()
                .context("cannot read /etc/resolv.conf; give --nameserver")?
        } else {
            let servers = nameservers
                .iter()
                .map(|s| {
                    let addr = s
                        .parse::<SocketAddr>()
                        .or_else(|_| s.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                        .map_err(|_| {
                            anyhow::anyhow!("--nameserver `{s}` is not IP or IP:PORT ([IPv6]:PORT)")
                        })?;
                    let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                    for c in &mut ns.connections {
                        c.port = addr.port();
                    }
                    Ok(ns)
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            TokioResolver::builder_with_config(
                ResolverConfig::from_parts(None, Vec::new(), servers),
                TokioRuntimeProvider::default(),
            )
        };
        let opts = builder.options_mut();
        opts.timeout = CHECK_TIMEOUT;
        opts.attempts = 2;
        let resolver = builder
            .build()
            .map_err(|e| anyhow::anyhow!("cannot set up the resolver: {e}"))?;
        Ok(Checker {
            resolver,
            cache: HashMap::new(),
            unreachable: None,
        })
    }

    async fn lookup(&mut self, name: &str, rtype: RecordType) -> Answers {
        let key = (name.to_owned(), rtype);
        if let Some(a) = self.cache.get(&key) {
            return a.clone();
        }
        if let Some(e) = &self.unreachable {
            return Err(e.clone());
        }
        let answers = match self.resolver.lookup(format!("{name}."), rtype).await {
            Ok(l) => Ok(l
                .answers()
                .iter()
                .filter(|r| r.record_type() == rtype)
                .map(|r| r.data.clone())
                .collect()),
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => Ok(Vec::new()),
            Err(e @ NetError::Timeout) => {
                let e = format!("the name server does not answer ({e})");
                self.unreachable = Some(e.clone());
                Err(e)
            }
            Err(e) => Err(e.to_string()),
        };
        self.cache.insert(key, answers.clone());
        answers
    }

    async fn check(&mut self, rec: &Record) -> Status {
        match self.status(rec).await {
            Ok(s) => s,
            Err(error) => Status::Error { error },
        }
    }

    async fn status(&mut self, rec: &Record) -> Result<Status, String> {
        let name = rec.name.as_str();
        Ok(match &rec.data {
            Data::Mx { exchange, .. } => {
                let found: Vec<String> = self
                    .lookup(name, RecordType::MX)
                    .await?
                    .iter()
                    .filter_map(|d| match d {
                        RData::MX(mx) => Some(format!("{} {}", mx.preference, mx.exchange)),
                        _ => None,
                    })
                    .collect();
                let target = format!("{exchange}.");
                verdict(&found, |f| {
                    f.split_once(' ')
                        .is_some_and(|(_, h)| h.eq_ignore_ascii_case(&target))
                })
            }
            Data::A(ip) => {
                let found = self.addresses(name, RecordType::A).await?;
                verdict(&found, |f| *f == ip.to_string())
            }
            Data::Aaaa(ip) => {
                let found = self.addresses(name, RecordType::AAAA).await?;
                verdict(&found, |f| *f == ip.to_string())
            }
            Data::AnyAddress => {
                let mut found = self.addresses(name, RecordType::A).await?;
                found.extend(self.addresses(name, RecordType::AAAA).await?);
                verdict(&found, |_| true)
            }
            Data::Cname(target) => {
                let cnames: Vec<String> = self
                    .lookup(name, RecordType::CNAME)
                    .await?
                    .iter()
                    .filter_map(|d| match d {
                        RData::CNAME(c) => Some(c.0.to_string()),
                        _ => None,
                    })
                    .collect();
                let want = format!("{target}.");
                if !cnames.is_empty() {
                    verdict(&cnames, |c| c.eq_ignore_ascii_case(&want))
                } else {
                    // A and AAAA records with the host's addresses do the
                    // same job as the CNAME.
                    let mut here = self.addresses(name, RecordType::A).await?;
                    here.extend(self.addresses(name, RecordType::AAAA).await?);
                    let mut there = self.addresses(target, RecordType::A).await?;
                    there.extend(self.addresses(target, RecordType::AAAA).await?);
                    here.sort();
                    there.sort();
                    if here.is_empty() {
                        Status::Missing
                    } else if here == there {
                        Status::Ok {
                            found: format!("{} (the addresses of {target})", here.join(", ")),
                        }
                    } else {
                        Status::Wrong {
                            found: here.join(", "),
                        }
                    }
                }
            }
            Data::Txt(want) => {
                let texts: Vec<String> = self
                    .lookup(name, RecordType::TXT)
                    .await?
                    .iter()
                    .filter_map(|d| match d {
                        RData::TXT(t) => Some(
                            t.txt_data
                                .iter()
                                .map(|s| String::from_utf8_lossy(s).into_owned())
                                .collect::<String>(),
                        ),
                        _ => None,
                    })
                    .collect();
                txt_status(want, &texts)
            }
            Data::Srv { port, target, .. } => {
                let found: Vec<String> = self
                    .lookup(name, RecordType::SRV)
                    .await?
                    .iter()
                    .filter_map(|d| match d {
                        RData::SRV(s) => Some(format!(
                            "{} {} {} {}",
                            s.priority, s.weight, s.port, s.target
                        )),
                        _ => None,
                    })
                    .collect();
                let want = format!("{port} {target}.");
                verdict(&found, |f| {
                    f.splitn(3, ' ')
                        .nth(2)
                        .is_some_and(|pt| pt.eq_ignore_ascii_case(&want))
                })
            }
            Data::Tlsa(hash) => {
                let found: Vec<String> = self
                    .lookup(name, RecordType::TLSA)
                    .await?
                    .iter()
                    .filter_map(|d| match d {
                        RData::TLSA(t) => Some(format!(
                            "{} {} {} {}",
                            u8::from(t.cert_usage),
                            u8::from(t.selector),
                            u8::from(t.matching),
                            hex(&t.cert_data)
                        )),
                        _ => None,
                    })
                    .collect();
                let want = format!("3 1 1 {}", hex(hash));
                verdict(&found, |f| f.eq_ignore_ascii_case(&want))
            }
        })
    }

    async fn addresses(&mut self, name: &str, rtype: RecordType) -> Result<Vec<String>, String> {
        Ok(self
            .lookup(name, rtype)
            .await?
            .iter()
            .filter_map(|d| match d {
                RData::A(a) => Some(a.0.to_string()),
                RData::AAAA(a) => Some(a.0.to_string()),
                _ => None,
            })
            .collect())
    }
}

/// Ok if one found value matches, Missing if none was found, else Wrong.
fn verdict(found: &[String], matches: impl Fn(&String) -> bool) -> Status {
    if found.is_empty() {
        Status::Missing
    } else if let Some(f) = found.iter().find(|f| matches(f)) {
        Status::Ok { found: f.clone() }
    } else {
        Status::Wrong {
            found: found.join(", "),
        }
    }
}

/// `v=spf1 …` → `v=spf1`: the tag that says what kind of TXT record it is.
fn version_tag(txt: &str) -> String {
    txt.split([';', ' '])
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// `k=v; k=v` → pairs, keys lowercase.
fn tags(txt: &str) -> Vec<(String, String)> {
    txt.split(';')
        .filter_map(|t| t.split_once('='))
        .map(|(k, v)| {
            (
                k.trim().to_ascii_lowercase(),
                v.split_whitespace().collect(),
            )
        })
        .collect()
}

/// Compares a TXT record of a known kind the way receivers read it: the
/// one record with our version tag must exist (RFC 7208 §4.5, RFC 7489
/// §6.6.3: more than one is an error), and must say what we need.
fn txt_status(want: &str, texts: &[String]) -> Status {
    let kind = version_tag(want);
    let same: Vec<&String> = texts.iter().filter(|t| version_tag(t) == kind).collect();
    match same.as_slice() {
        [] => Status::Missing,
        [one] => {
            let ok = if kind == "v=spf1" {
                // Every mechanism we ask for must be there; a stricter
                // `all` than the guide's `?all` is the admin's choice.
                let have: Vec<String> = one
                    .split_whitespace()
                    .map(|t| t.to_ascii_lowercase())
                    .collect();
                want.split_whitespace()
                    .map(|t| t.to_ascii_lowercase())
                    .filter(|t| !t.ends_with("all"))
                    .all(|t| have.contains(&t))
            } else {
                // Every tag we set must have our value; more tags (rua=,
                // pct=) are the admin's. DKIM's p= is case-sensitive base64.
                let have = tags(one);
                tags(want).iter().all(|(k, v)| {
                    have.iter().any(|(hk, hv)| {
                        hk == k
                            && if kind == "v=dkim1" {
                                hv == v
                            } else {
                                hv.eq_ignore_ascii_case(v)
                            }
                    })
                })
            };
            if ok {
                Status::Ok {
                    found: (*one).clone(),
                }
            } else {
                Status::Wrong {
                    found: (*one).clone(),
                }
            }
        }
        many => Status::Wrong {
            found: format!(
                "{} records starting with {kind} (there must be exactly one): {}",
                many.len(),
                many.iter()
                    .map(|t| format!("\"{t}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
    }
}

#[derive(Serialize)]
struct Row {
    zone: String,
    purpose: &'static str,
    name: String,
    #[serde(rename = "type")]
    rtype: &'static str,
    ttl: u32,
    value: String,
    zone_line: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    check: Option<Status>,
}

/// Runs `postwerk dns`.
pub async fn run(ctx: &Ctx, args: DnsArgs) -> anyhow::Result<()> {
    let server = Server::resolve(&ctx.cfg.server, &args.server)?;
    let (ours, domains) = ctx.domains_or(args.domain.as_deref()).await?;
    if ours.is_empty() {
        bail!("the database has no domains yet — add one with `postwerk domain add DOMAIN`");
    }
    let cert = args.tlsa.as_ref().or(server.tls_certificate.as_ref());
    let tlsa = cert.map(|c| tlsa_spki_sha256(c)).transpose()?;

    let mut notes = Vec::new();
    let mut records = host_records(&server, tlsa.as_deref());
    let dkim_cfg = &ctx.cfg.milterd.dkim;
    for domain in &domains {
        let mut dkim = Vec::new();
        if dkim_cfg.sign {
            for selector in &dkim_cfg.selectors {
                let path = keys::expand_path(&dkim_cfg.path, domain, selector);
                match keys::load(&path) {
                    Ok(k) => dkim.push((selector.clone(), k)),
                    Err(e) => notes.push(format!(
                        "no DKIM record for {domain} selector {selector}: {e} — make the key with `postwerk dkim keygen --domain {domain} --selector {selector}`"
                    )),
                }
            }
        } else {
            notes.push(format!(
                "no DKIM record for {domain}: [milterd.dkim].sign is off"
            ));
        }
        records.extend(domain_records(&server, domain, &ours, &dkim));
    }

    // One block per zone, the mail host's own records first in theirs.
    records.sort_by(|a, b| a.zone.cmp(&b.zone));

    let mut checker = if args.check {
        Some(Checker::new(&args.nameserver)?)
    } else {
        None
    };
    let mut rows = Vec::with_capacity(records.len());
    for rec in &records {
        let check = match checker.as_mut() {
            Some(c) => Some(c.check(rec).await),
            None => None,
        };
        rows.push(Row {
            zone: rec.zone.clone(),
            purpose: rec.purpose,
            name: format!("{}.", rec.name),
            rtype: rec.data.rtype(),
            ttl: rec.ttl,
            value: rec.data.value(),
            zone_line: rec.zone_line(),
            check,
        });
    }

    let bad = rows
        .iter()
        .filter(|r| !matches!(r.check, None | Some(Status::Ok { .. })))
        .count();
    if ctx.json {
        output::json(&serde_json::json!({ "records": rows, "notes": notes }))?;
    } else if args.check {
        print_check(&rows);
    } else {
        let (mut zone, mut last) = ("", "");
        for r in &rows {
            if r.zone != zone {
                if !zone.is_empty() {
                    println!();
                }
                println!("; ===== in the zone of {}", r.zone);
                zone = &r.zone;
                last = "";
            }
            if r.purpose != last {
                println!("; {}", r.purpose);
                last = r.purpose;
            }
            if r.value.starts_with('<') {
                println!("; {}", r.zone_line);
            } else {
                println!("{}", r.zone_line);
            }
        }
    }
    for n in &notes {
        eprintln!("postwerk: note: {n}");
    }
    if bad > 0 {
        bail!(
            "{bad} of {} records are missing, wrong or could not be checked",
            rows.len()
        );
    }
    Ok(())
}

fn print_check(rows: &[Row]) {
    for r in rows {
        let (word, found) = match &r.check {
            Some(Status::Ok { found }) => ("ok", Some(found.as_str())),
            Some(Status::Missing) => ("MISSING", None),
            Some(Status::Wrong { found }) => ("WRONG", Some(found.as_str())),
            Some(Status::Error { error }) => ("ERROR", Some(error.as_str())),
            None => continue,
        };
        println!("{word:<8} {} {} ({})", r.name, r.rtype, r.purpose);
        match &r.check {
            Some(Status::Ok { .. }) | None => {}
            Some(Status::Missing) => println!("         fix: add    {}", r.zone_line),
            Some(Status::Wrong { .. }) => {
                println!("         found:      {}", found.unwrap_or_default());
                println!("         fix: make it {}", r.zone_line);
            }
            Some(Status::Error { .. }) => {
                println!(
                    "         cannot check: {}; try again, or ask another server (--nameserver)",
                    found.unwrap_or_default()
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spf_tags_compare_by_mechanism() {
        let want = "v=spf1 a:mail.mysystems.tld mx ?all";
        assert!(matches!(
            txt_status(want, &["v=spf1 mx a:MAIL.mysystems.tld -all".into()]),
            Status::Ok { .. }
        ));
        assert!(matches!(
            txt_status(
                want,
                &["v=spf1 -all".into(), "google-site-verification=x".into()]
            ),
            Status::Wrong { .. }
        ));
        assert!(matches!(
            txt_status(want, &["v=spf1 mx ?all".into(), "v=spf1 a ?all".into()]),
            Status::Wrong { .. }
        ));
        assert!(matches!(
            txt_status(want, &["other".into()]),
            Status::Missing
        ));
    }

    #[test]
    fn dmarc_and_dkim_compare_by_tag() {
        assert!(matches!(
            txt_status(
                "v=DMARC1; p=reject;",
                &["v=DMARC1; p=Reject; rua=mailto:d@example.org".into()]
            ),
            Status::Ok { .. }
        ));
        assert!(matches!(
            txt_status("v=DMARC1; p=reject;", &["v=DMARC1; p=none".into()]),
            Status::Wrong { .. }
        ));
        assert!(matches!(
            txt_status("v=DKIM1; k=rsa; p=AbC", &["v=DKIM1; k=rsa; p=abc".into()]),
            Status::Wrong { .. }
        ));
        assert!(matches!(
            txt_status(
                "v=DKIM1; k=rsa; p=AbC",
                &["v=DKIM1; h=sha256; k=rsa; p=A bC".into()]
            ),
            Status::Ok { .. }
        ));
    }

    #[test]
    fn long_txt_is_split_and_quoted() {
        let v = format!("v=DKIM1; p={}", "A".repeat(300));
        let q = quote_txt(&v);
        assert_eq!(q.matches('"').count(), 4);
        assert_eq!(quote_txt("a\"b"), "\"a\\\"b\"");
    }

    #[test]
    fn der_walk_refuses_garbage() {
        assert!(spki_of(&[]).is_none());
        assert!(spki_of(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_none());
        assert!(spki_of(&[0x30, 0x03, 0x02, 0x01, 0x00]).is_none());
    }
}

//! LOGIC + DNS: DNS block lists (`[[milterd.spam.dnsbl]]`). IP lists
//! (Spamhaus ZEN style) are asked for the client address, reversed
//! (`9.2.0.192.zen.example`; IPv6 by nibbles, RFC 5782 §2.4); URL lists
//! (SURBL/DBL style) for the host names of links in the body
//! (`example.com.dbl.example`). An A record answer means listed (its
//! address is shown as the option, e.g. `192.0.2.9:127.0.0.2`); NXDOMAIN or
//! no record means not listed. Each query times out after
//! `dnsbl_timeout` and all of them end at the message's deadline; a
//! timeout or SERVFAIL adds `DNSBL_FAIL`, never fails the message.
//! Answers (listed or not) are cached for `dnsbl_cache_ttl`.

use mail_auth::MessageAuthenticator;
use postwerk_core::config::milterd::spam::{Dnsbl, DnsblKind, SpamConfig};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Most link hosts asked per message.
pub const MAX_URL_QUERIES: usize = 16;
/// Most cached answers.
pub const CACHE_MAX: usize = 100_000;

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// Listed: the symbol and `subject:answer`.
    Listed {
        /// The symbol.
        name: String,
        /// `192.0.2.9:127.0.0.2`.
        option: String,
    },
    /// A list could not be asked: `zone:reason`.
    Failed(String),
}

#[derive(Debug, Clone)]
enum Answer {
    Listed(Vec<Ipv4Addr>),
    NotListed,
}

/// The configured lists and their resolver and cache.
pub struct Lists {
    lists: Vec<Dnsbl>,
    resolver: Option<MessageAuthenticator>,
    timeout: Duration,
    ttl: Duration,
    cache: Mutex<HashMap<String, (Instant, Answer)>>,
}

impl std::fmt::Debug for Lists {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lists")
            .field("lists", &self.lists)
            .finish_non_exhaustive()
    }
}

/// The query name of `ip` in `zone`.
pub fn ip_query(ip: IpAddr, zone: &str) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.{zone}", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return ip_query(IpAddr::V4(v4), zone);
            }
            let mut s = String::with_capacity(64 + zone.len());
            for b in v6.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", b & 0xf, b >> 4));
            }
            s.push_str(zone);
            s
        }
    }
}

impl Lists {
    /// The lists of `cfg`; the resolver asks `dns` (empty:
    /// /etc/resolv.conf). No resolver is built when no list is configured.
    pub fn new(cfg: &SpamConfig, dns: &[std::net::SocketAddr]) -> Result<Lists, String> {
        let resolver = if cfg.dnsbl.is_empty() {
            None
        } else {
            Some(crate::verify::resolver(dns, cfg.dnsbl_timeout).map_err(|e| e.to_string())?)
        };
        Ok(Lists {
            lists: cfg.dnsbl.clone(),
            resolver,
            timeout: cfg.dnsbl_timeout,
            ttl: cfg.dnsbl_cache_ttl,
            cache: Mutex::new(HashMap::new()),
        })
    }

    fn cached(&self, q: &str) -> Option<Answer> {
        let c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        c.get(q)
            .filter(|(exp, _)| *exp > Instant::now())
            .map(|(_, a)| a.clone())
    }

    fn remember(&self, q: String, a: Answer) {
        let mut c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if c.len() >= CACHE_MAX {
            let now = Instant::now();
            c.retain(|_, (exp, _)| *exp > now);
            if c.len() >= CACHE_MAX {
                c.clear();
            }
        }
        c.insert(q, (Instant::now() + self.ttl, a));
    }

    async fn ask(&self, q: &str, deadline: Instant) -> Result<Answer, String> {
        if let Some(a) = self.cached(q) {
            return Ok(a);
        }
        let Some(r) = &self.resolver else {
            return Ok(Answer::NotListed);
        };
        let end = deadline.min(Instant::now() + self.timeout);
        let answer = match tokio::time::timeout_at(end, r.ipv4_lookup_raw(q)).await {
            Err(_) => return Err("query timed out".to_owned()),
            Ok(Ok(entry)) if entry.entry.is_empty() => Answer::NotListed,
            Ok(Ok(entry)) => Answer::Listed(entry.entry.to_vec()),
            Ok(Err(mail_auth::Error::Dns(mail_auth::DnsError::RecordNotFound(_)))) => {
                Answer::NotListed
            }
            Ok(Err(e)) => return Err(format!("DNS error: {e}")),
        };
        self.remember(q.to_owned(), answer.clone());
        Ok(answer)
    }

    /// Asks every list about `ip` and `hosts`, concurrently, until
    /// `deadline`.
    pub async fn check(
        &self,
        ip: Option<IpAddr>,
        hosts: &[String],
        deadline: Instant,
    ) -> Vec<Found> {
        let mut queries: Vec<(&Dnsbl, String, String)> = Vec::new();
        for l in &self.lists {
            match l.kind {
                DnsblKind::Ip => {
                    if let Some(ip) = ip {
                        queries.push((l, ip.to_string(), ip_query(ip, &l.zone)));
                    }
                }
                DnsblKind::Url => {
                    for h in hosts
                        .iter()
                        .filter(|h| h.parse::<IpAddr>().is_err() && h.contains('.'))
                        .take(MAX_URL_QUERIES)
                    {
                        queries.push((l, h.clone(), format!("{h}.{}", l.zone)));
                    }
                }
            }
        }
        if queries.is_empty() {
            return Vec::new();
        }
        let answers =
            futures::future::join_all(queries.iter().map(|(_, _, q)| self.ask(q, deadline))).await;
        let mut out: Vec<Found> = Vec::new();
        for ((l, subject, _), a) in queries.iter().zip(answers) {
            match a {
                Ok(Answer::NotListed) => {}
                Ok(Answer::Listed(addrs)) => {
                    let option = format!(
                        "{subject}:{}",
                        addrs.first().map_or_else(String::new, Ipv4Addr::to_string)
                    );
                    match out
                        .iter_mut()
                        .find(|f| matches!(f, Found::Listed { name, .. } if *name == l.name))
                    {
                        // One symbol per list; the first subject is shown.
                        Some(_) => {}
                        None => out.push(Found::Listed {
                            name: l.name.clone(),
                            option,
                        }),
                    }
                }
                Err(why) => out.push(Found::Failed(format!("{}:{why}", l.zone))),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_names() {
        assert_eq!(
            ip_query("192.0.2.9".parse().unwrap(), "zen.test"),
            "9.2.0.192.zen.test"
        );
        assert_eq!(
            ip_query("::ffff:192.0.2.9".parse().unwrap(), "zen.test"),
            "9.2.0.192.zen.test"
        );
        // RFC 5782 §2.4 example.
        assert_eq!(
            ip_query("2001:db8:1:2:3:4:567:89ab".parse().unwrap(), "bl.test"),
            "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.bl.test"
        );
    }
}

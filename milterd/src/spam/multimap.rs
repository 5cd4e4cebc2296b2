//! LOGIC + FILES: the admin's allow and block lists in Rspamd's multimap
//! map-file format (the guide's `whitelist_ip.map`, `blacklist_from.map`
//! …): one entry per line, `#` starts a comment (also after an entry),
//! blank lines are ignored, anything after the first word of a line is
//! ignored (Rspamd's optional value). IP maps take addresses and CIDR
//! networks; from maps take addresses, or domains with
//! `filter = "email:domain"`. A file is checked for changes (modification
//! time and size) at most once a second and re-read when it changed; a
//! missing or unreadable file is an empty list and a warning, as in
//! Rspamd.

use super::Envelope;
use super::content::Content;
use postwerk_core::config::milterd::Network;
use postwerk_core::config::milterd::spam::{Multimap, MultimapAction, MultimapKind};
use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};
use tracing::{info, warn};

/// How often a map file is checked for changes.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Largest map file read.
pub const MAX_MAP_SIZE: u64 = 64 * 1024 * 1024;

/// The entries of one map file.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Entries {
    /// IP maps.
    pub networks: Vec<Network>,
    /// Address or domain maps, lowercased.
    pub names: HashSet<String>,
}

/// Parses a map file's text for a rule of `kind`. Lines that are not
/// entries of that kind are returned as errors (line number, text).
pub fn parse(text: &str, kind: MultimapKind) -> (Entries, Vec<(usize, String)>) {
    let mut e = Entries::default();
    let mut bad = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(word) = line.split_whitespace().next() else {
            continue;
        };
        match kind {
            MultimapKind::Ip => match word.parse::<Network>() {
                Ok(n) => e.networks.push(n),
                Err(_) => bad.push((i + 1, word.to_owned())),
            },
            MultimapKind::From | MultimapKind::HeaderFrom => {
                e.names.insert(word.trim_matches(['<', '>']).to_lowercase());
            }
        }
    }
    (e, bad)
}

#[derive(Debug, Default)]
struct Loaded {
    checked: Option<Instant>,
    stamp: Option<(SystemTime, u64)>,
    entries: Entries,
}

/// One rule and its current map.
#[derive(Debug)]
struct Rule {
    cfg: Multimap,
    loaded: Mutex<Loaded>,
}

/// A rule that matched.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    /// The symbol.
    pub name: String,
    /// What matched (the address, IP or domain).
    pub matched: String,
    /// The rule's action.
    pub action: MultimapAction,
}

/// All configured rules.
#[derive(Debug, Default)]
pub struct Maps {
    rules: Vec<Rule>,
}

impl Rule {
    /// The entries, re-read if the file changed.
    fn entries(&self) -> Entries {
        let mut l = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if l.checked.is_some_and(|t| t.elapsed() < CHECK_INTERVAL) {
            return l.entries.clone();
        }
        l.checked = Some(Instant::now());
        let path = &self.cfg.map;
        let stamp = std::fs::metadata(path)
            .ok()
            .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
        if stamp == l.stamp {
            return l.entries.clone();
        }
        l.stamp = stamp;
        l.entries = match stamp {
            None => {
                warn!(map = %path.display(), symbol = %self.cfg.name, "map file missing; the list is empty");
                Entries::default()
            }
            Some((_, len)) if len > MAX_MAP_SIZE => {
                warn!(map = %path.display(), size = len, "map file too large; the list is empty");
                Entries::default()
            }
            Some(_) => match std::fs::read_to_string(path) {
                Ok(text) => {
                    let (e, bad) = parse(&text, self.cfg.kind);
                    for (line, word) in bad.iter().take(10) {
                        warn!(map = %path.display(), line, entry = %word, "not an IP address or network; ignored");
                    }
                    info!(map = %path.display(), symbol = %self.cfg.name, entries = e.networks.len() + e.names.len(), "map loaded");
                    e
                }
                Err(err) => {
                    warn!(map = %path.display(), error = %err, "cannot read map file; the list is empty");
                    Entries::default()
                }
            },
        };
        l.entries.clone()
    }
}

impl Maps {
    /// The rules of `[[milterd.spam.multimap]]`; maps are read when first
    /// needed.
    pub fn new(cfg: &[Multimap]) -> Maps {
        Maps {
            rules: cfg
                .iter()
                .map(|m| Rule {
                    cfg: m.clone(),
                    loaded: Mutex::new(Loaded::default()),
                })
                .collect(),
        }
    }

    /// The rules that match this message.
    pub fn matches(&self, env: &Envelope<'_>, c: &Content) -> Vec<Match> {
        let mut out = Vec::new();
        for r in &self.rules {
            let value: Option<String> = match r.cfg.kind {
                MultimapKind::Ip => env.client_ip.map(|ip| ip.to_string()),
                MultimapKind::From => Some(env.mail_from.to_lowercase())
                    .filter(|s| !s.is_empty())
                    .or_else(|| c.from_addr.clone()),
                MultimapKind::HeaderFrom => c.from_addr.clone(),
            };
            let Some(value) = value else { continue };
            let entries = r.entries();
            let matched = match r.cfg.kind {
                MultimapKind::Ip => value
                    .parse()
                    .ok()
                    .filter(|ip| entries.networks.iter().any(|n| n.contains(*ip)))
                    .map(|_| value.clone()),
                MultimapKind::From | MultimapKind::HeaderFrom => {
                    let key = if r.cfg.is_domain_filter {
                        value
                            .rsplit_once('@')
                            .map_or(value.clone(), |(_, d)| d.to_owned())
                    } else {
                        value.clone()
                    };
                    entries.names.contains(&key).then_some(key)
                }
            };
            if let Some(m) = matched {
                out.push(Match {
                    name: r.cfg.name.clone(),
                    matched: m,
                    action: r.cfg.action,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn map_file_format() {
        let (e, bad) = parse(
            "# comment\n192.0.2.0/24\n\n198.51.100.7 # one host\n2001:db8::/32 value\nnot-an-ip\n",
            MultimapKind::Ip,
        );
        assert_eq!(e.networks.len(), 3);
        assert_eq!(bad, vec![(6, "not-an-ip".to_owned())]);
        let (e, _) = parse("Spammer@Example.org\n<x@y.test>\n", MultimapKind::From);
        assert!(e.names.contains("spammer@example.org") && e.names.contains("x@y.test"));
    }

    #[test]
    fn files_are_reloaded_when_they_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bl.map");
        std::fs::write(&path, "192.0.2.0/24\n").unwrap();
        let maps = Maps::new(&[Multimap {
            name: "BL".into(),
            kind: MultimapKind::Ip,
            map: PathBuf::from(&path),
            score: 5.0,
            description: "d".into(),
            action: MultimapAction::Score,
            is_domain_filter: false,
        }]);
        let c = Content::default();
        let env = |ip: &str| Envelope {
            client_ip: Some(ip.parse().unwrap()),
            ..Envelope::default()
        };
        assert_eq!(maps.matches(&env("192.0.2.9"), &c).len(), 1);
        assert!(maps.matches(&env("198.51.100.1"), &c).is_empty());
        std::fs::write(&path, "198.51.100.0/24\n# longer now\n").unwrap();
        // Let the check interval pass.
        maps.rules[0].loaded.lock().unwrap().checked = None;
        assert_eq!(maps.matches(&env("198.51.100.1"), &c).len(), 1);
        assert!(maps.matches(&env("192.0.2.9"), &c).is_empty());
    }
}

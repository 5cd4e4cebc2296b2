//! LOGIC: the Sender Rewriting Scheme as libsrs2 and PostSRSd write it, so
//! addresses made by either are reversed by the other with the same
//! secret:
//!
//! - `SRS0=HHHH=TT=orig.domain=orig-local@srs.domain` for a sender of a
//!   foreign domain: `TT` is the day (base32, two characters, 1024-day
//!   cycle), `HHHH` the first characters of the base64 HMAC-SHA1 of the
//!   lowercased `TT`, domain and local part with the first secret;
//! - `SRS1=HHHH=first.hop==HHHH=TT=orig.domain=orig-local@srs.domain` for an
//!   SRS0 address of another forwarder (the hash covers the first hop and
//!   the rest), so a bounce goes back through that forwarder.
//!
//! Hashes are written in the standard base64 alphabet (`+`, `/`), as
//! libsrs2 and PostSRSd 1.x (Debian 12's) do, so their reversal accepts
//! them; PostSRSd 2.x writes `-`/`_` and accepts both.
//! Reversal checks the hash against every secret (rotation: the first
//! signs, all verify), compares it as libsrs2 does (case-insensitive,
//! `+`≡`-`, `/`≡`_`) and refuses SRS0 addresses older than `max_age` days.
//! No I/O: the clock is passed in.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use std::time::{SystemTime, UNIX_EPOCH};

/// The 32 characters of the day stamp.
const STAMP_CHARS: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
/// Days in one stamp cycle (two base32 characters).
const STAMP_CYCLE: u64 = 1024;
/// The separators libsrs2 accepts after `SRS0`/`SRS1`.
const SEPARATORS: &[char] = &['=', '-', '+'];

/// Why an address was not reversed (or forwarded).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SrsError {
    /// Not an SRS address at all.
    #[error("not an SRS address")]
    NotSrs,
    /// `SRS0=`/`SRS1=` but not the fields that must follow.
    #[error("malformed SRS address: {0}")]
    Malformed(&'static str),
    /// The hash does not match any secret: forged or mangled.
    #[error("invalid SRS signature (forged or altered address)")]
    BadHash,
    /// The stamp is older than `max_age` days.
    #[error("expired SRS address (older than {0} days)")]
    Expired(u32),
}

/// An SRS signer and verifier.
#[derive(Debug, Clone)]
pub struct Srs {
    domain: String,
    secrets: Vec<Vec<u8>>,
    max_age_days: u32,
    hash_len: usize,
    separator: char,
}

impl Srs {
    /// `domain` is the SRS domain (the `@…` of rewritten addresses);
    /// `secrets` must not be empty (the first signs). Hash length 4 and
    /// separator `=`, as PostSRSd's defaults.
    pub fn new(domain: &str, secrets: Vec<Vec<u8>>, max_age_days: u32) -> Self {
        Self {
            domain: domain.to_ascii_lowercase(),
            secrets,
            max_age_days,
            hash_len: 4,
            separator: '=',
        }
    }

    /// The SRS domain.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Rewrites the envelope sender `sender` (of a foreign domain; the
    /// caller decides that) for forwarding. `None` when there is nothing to
    /// rewrite: no `@`, or already an address of the SRS domain.
    pub fn forward(&self, sender: &str, now: SystemTime) -> Option<String> {
        let (user, host) = sender.rsplit_once('@')?;
        // `=` separates the fields: a host with one could not be reversed
        // (no domain name has one).
        if user.is_empty()
            || host.is_empty()
            || host.contains('=')
            || host.eq_ignore_ascii_case(&self.domain)
        {
            return None;
        }
        let sep = self.separator;
        if let Some(rest) = srs_tail(user, "SRS1") {
            // SRS1=HHHH=first.hop==rest: re-sign first hop and rest.
            let mut parts = rest.splitn(3, '=');
            let (_hash, first_hop, tail) = (parts.next()?, parts.next()?, parts.next()?);
            if first_hop.is_empty() || tail.is_empty() {
                return None;
            }
            let hash = self.hash(0, &[first_hop, tail]);
            return Some(format!(
                "SRS1{sep}{hash}={first_hop}={tail}@{}",
                self.domain
            ));
        }
        if user.len() > 4 && srs_tail(user, "SRS0").is_some() {
            // Another forwarder's SRS0: guard it with SRS1 through its host.
            let tail = &user[4..];
            let hash = self.hash(0, &[host, tail]);
            return Some(format!("SRS1{sep}{hash}={host}={tail}@{}", self.domain));
        }
        let stamp = stamp(now);
        let hash = self.hash(0, &[&stamp, host, user]);
        Some(format!(
            "SRS0{sep}{hash}={stamp}={host}={user}@{}",
            self.domain
        ))
    }

    /// Reverses an SRS address (its domain is not checked, as libsrs2):
    /// SRS0 gives the original sender, SRS1 the first forwarder's SRS0
    /// address.
    pub fn reverse(&self, addr: &str, now: SystemTime) -> Result<String, SrsError> {
        let user = addr.rsplit_once('@').map_or(addr, |(u, _)| u);
        if let Some(rest) = srs_tail(user, "SRS1") {
            let mut parts = rest.splitn(3, '=');
            let hash = parts.next().filter(|h| !h.is_empty());
            let hash = hash.ok_or(SrsError::Malformed("no hash in SRS1 address"))?;
            let host = parts
                .next()
                .filter(|h| !h.is_empty())
                .ok_or(SrsError::Malformed("no host in SRS1 address"))?;
            let tail = parts
                .next()
                .filter(|t| !t.is_empty())
                .ok_or(SrsError::Malformed("no user in SRS1 address"))?;
            self.check_hash(hash, &[host, tail])?;
            return Ok(format!("SRS0{tail}@{host}"));
        }
        let Some(rest) = srs_tail(user, "SRS0") else {
            return Err(SrsError::NotSrs);
        };
        let mut parts = rest.splitn(4, '=');
        let hash = parts
            .next()
            .filter(|h| !h.is_empty())
            .ok_or(SrsError::Malformed("no hash in SRS0 address"))?;
        let stamp = parts
            .next()
            .ok_or(SrsError::Malformed("no timestamp in SRS0 address"))?;
        let host = parts
            .next()
            .filter(|h| !h.is_empty())
            .ok_or(SrsError::Malformed("no host in SRS0 address"))?;
        let orig = parts
            .next()
            .filter(|u| !u.is_empty())
            .ok_or(SrsError::Malformed("no user in SRS0 address"))?;
        self.check_stamp(stamp, now)?;
        self.check_hash(hash, &[stamp, host, orig])?;
        Ok(format!("{orig}@{host}"))
    }

    /// Whether `addr` looks like an SRS address (`SRS0=`, `SRS1-`, …).
    pub fn is_srs(addr: &str) -> bool {
        srs_tail(addr, "SRS0").is_some() || srs_tail(addr, "SRS1").is_some()
    }

    fn hash(&self, secret: usize, data: &[&str]) -> String {
        let key = self.secrets.get(secret).map_or(&[][..], Vec::as_slice);
        // HMAC accepts keys of any length.
        let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(key) else {
            return String::new();
        };
        for d in data {
            mac.update(d.to_ascii_lowercase().as_bytes());
        }
        let digest = mac.finalize().into_bytes();
        let mut b64 = base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest);
        b64.truncate(self.hash_len);
        b64
    }

    fn check_hash(&self, given: &str, data: &[&str]) -> Result<(), SrsError> {
        // Bytes, not chars: a peer's address may have anything here.
        let Some(given) = given.as_bytes().get(..self.hash_len) else {
            return Err(SrsError::BadHash);
        };
        for i in 0..self.secrets.len() {
            if base64_equivalent(given, self.hash(i, data).as_bytes()) {
                return Ok(());
            }
        }
        Err(SrsError::BadHash)
    }

    fn check_stamp(&self, stamp: &str, now: SystemTime) -> Result<(), SrsError> {
        let mut then: u64 = 0;
        if stamp.len() != 2 {
            return Err(SrsError::Malformed("timestamp is not two characters"));
        }
        for c in stamp.bytes() {
            let c = c.to_ascii_uppercase();
            let Some(v) = STAMP_CHARS.iter().position(|x| *x == c) else {
                return Err(SrsError::Malformed("bad character in timestamp"));
            };
            then = (then << 5) | v as u64;
        }
        let mut today = days(now) % STAMP_CYCLE;
        while today < then {
            today += STAMP_CYCLE;
        }
        if today <= then + u64::from(self.max_age_days) {
            Ok(())
        } else {
            Err(SrsError::Expired(self.max_age_days))
        }
    }
}

/// The part after `SRS0`/`SRS1` and its separator, matched
/// case-insensitively, or `None`.
fn srs_tail<'a>(user: &'a str, tag: &str) -> Option<&'a str> {
    let head = user.get(..4)?;
    if !head.eq_ignore_ascii_case(tag) {
        return None;
    }
    let rest = &user[4..];
    let mut chars = rest.chars();
    match chars.next() {
        Some(c) if SEPARATORS.contains(&c) => Some(chars.as_str()),
        _ => None,
    }
}

fn days(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) / 86_400
}

/// The day stamp: two base32 characters of the day number.
fn stamp(now: SystemTime) -> String {
    let d = days(now);
    let hi = STAMP_CHARS[((d >> 5) & 31) as usize] as char;
    let lo = STAMP_CHARS[(d & 31) as usize] as char;
    format!("{hi}{lo}")
}

/// libsrs2's comparison of hashes: case-insensitive, `+` equal to `-` and
/// `/` to `_` (the standard and the URL-safe base64 alphabets).
fn base64_equivalent(a: &[u8], b: &[u8]) -> bool {
    let norm = |c: u8| match c {
        b'+' => Some(b'-'),
        b'/' => Some(b'_'),
        b'-' | b'_' | b'0'..=b'9' => Some(c),
        b'a'..=b'z' | b'A'..=b'Z' => Some(c.to_ascii_lowercase()),
        _ => None,
    };
    a.len() == b.len()
        && a.iter().zip(b).all(|(&x, &y)| match (norm(x), norm(y)) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at_day(day: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(day * 86_400 + 3600)
    }

    fn srs() -> Srs {
        Srs::new("srs.example.org", vec![b"tops3cret".to_vec()], 21)
    }

    #[test]
    fn forward_matches_postsrsd() {
        // PostSRSd 1.10 with secret "tops3cret" on day 20786 (stamp JS):
        // SRS0=Xyws=JS=foreign.example=alice@srs.example.org
        let now = at_day(20786);
        assert_eq!(stamp(now), "JS");
        assert_eq!(
            srs().forward("alice@foreign.example", now).as_deref(),
            Some("SRS0=Xyws=JS=foreign.example=alice@srs.example.org")
        );
        assert_eq!(
            srs()
                .reverse("SRS0=Xyws=JS=foreign.example=alice@srs.example.org", now)
                .unwrap(),
            "alice@foreign.example"
        );
    }

    #[test]
    fn reverse_checks_hash_case_and_age() {
        let s = srs();
        let now = at_day(20786);
        let a = s.forward("Bob@Foreign.Example", now).unwrap();
        assert_eq!(s.reverse(&a, now).unwrap(), "Bob@Foreign.Example");
        assert_eq!(
            s.reverse(&a.to_uppercase(), now).unwrap(),
            "BOB@FOREIGN.EXAMPLE"
        );
        assert_eq!(
            s.reverse(&a, at_day(20786 + 21)).unwrap(),
            "Bob@Foreign.Example"
        );
        assert_eq!(
            s.reverse(&a, at_day(20786 + 22)),
            Err(SrsError::Expired(21))
        );
        let forged = a.replacen(&a[5..9], "AAAA", 1);
        assert_eq!(s.reverse(&forged, now), Err(SrsError::BadHash));
        assert_eq!(s.reverse("bob@example.org", now), Err(SrsError::NotSrs));
        assert!(matches!(
            s.reverse("SRS0=abcd@x", now),
            Err(SrsError::Malformed(_))
        ));
        // Stamps wrap around every 1024 days.
        let late = at_day(1023);
        let b = s.forward("c@d.example", late).unwrap();
        assert_eq!(s.reverse(&b, at_day(1030)).unwrap(), "c@d.example");
    }

    #[test]
    fn rotation_and_srs1() {
        let old = srs();
        let new = Srs::new(
            "srs.example.org",
            vec![b"next".to_vec(), b"tops3cret".to_vec()],
            21,
        );
        let now = at_day(20000);
        let a = old.forward("alice@foreign.example", now).unwrap();
        assert_eq!(new.reverse(&a, now).unwrap(), "alice@foreign.example");
        // Someone else's SRS0 forwarded again becomes SRS1 via its host,
        // and reverses to it; SRS1 forwarded again keeps the first hop.
        let other = "SRS0=Abcd=JS=orig.example=al@hop.example";
        let s1 = new.forward(other, now).unwrap();
        assert!(s1.starts_with("SRS1="), "{s1}");
        assert!(
            s1.ends_with("=hop.example==Abcd=JS=orig.example=al@srs.example.org"),
            "{s1}"
        );
        assert_eq!(new.reverse(&s1, now).unwrap(), other);
        let s1b = new
            .forward(&s1.replace("@srs.example.org", "@third.example"), now)
            .unwrap();
        assert_eq!(new.reverse(&s1b, now).unwrap(), other);
        // Our own domain is never rewritten.
        assert_eq!(new.forward("x@SRS.example.org", now), None);
        assert_eq!(new.forward("no-at-sign", now), None);
    }

    #[test]
    fn non_ascii_hash_is_refused_not_a_panic() {
        // Found by the srs fuzz target: a hash cut inside a UTF-8 character.
        let now = at_day(20786);
        let addr =
            "SRS1=abc\u{a5}\u{b5}x=hop.example==Xyws=JS=foreign.example=alice@srs.example.org";
        assert_eq!(srs().reverse(addr, now), Err(SrsError::BadHash));
        assert_eq!(
            srs().reverse("SRS0=\u{e9}\u{e9}\u{e9}=JS=foreign.example=alice@x", now),
            Err(SrsError::BadHash)
        );
    }

    #[test]
    fn equivalence() {
        assert!(base64_equivalent(b"Ab+/", b"aB-_"));
        assert!(!base64_equivalent(b"Ab+/", b"aB-a"));
        assert!(!base64_equivalent(b"Ab!", b"Ab!"));
    }
}

//! LOGIC: milterd's local rules, each a plain function over [`Content`]
//! (and the verification results): GTUBE, header sanity, encoded-subject
//! abuse, forged MUA headers, HTML-only / image-only mail, URL shorteners,
//! and the SPF/DKIM/DMARC results of `verify` as symbols. A rule returns
//! [`Hit`]s; weights live in the symbol table. No I/O.

use super::content::Content;
use super::symbols::name;

/// The GTUBE test string (the guide's "Spamfilter testen"): a message that
/// contains it is rejected, as Rspamd does.
pub const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/// Recipients in To and Cc from which `TO_MANY_RCPTS` fires.
pub const MANY_RCPTS: usize = 20;

/// Well-known URL shorteners (`URL_SHORTENER`).
pub const SHORTENERS: &[&str] = &[
    "bit.ly",
    "bitly.com",
    "tinyurl.com",
    "goo.gl",
    "t.co",
    "ow.ly",
    "is.gd",
    "buff.ly",
    "rebrand.ly",
    "cutt.ly",
    "shorturl.at",
    "tiny.cc",
    "rb.gy",
    "t.ly",
    "s.id",
    "v.gd",
    "tr.im",
    "bl.ink",
    "lnkd.in",
    "qr.ae",
];

/// A rule that fired: the symbol, how strongly (multiplies the weight;
/// 1.0 for most rules) and its options (shown in results).
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// The symbol name.
    pub name: &'static str,
    /// Multiplies the weight.
    pub factor: f64,
    /// Details (`["bit.ly"]`).
    pub options: Vec<String>,
}

impl Hit {
    fn new(name: &'static str) -> Hit {
        Hit {
            name,
            factor: 1.0,
            options: Vec::new(),
        }
    }
    fn with(name: &'static str, option: impl Into<String>) -> Hit {
        Hit {
            name,
            factor: 1.0,
            options: vec![option.into()],
        }
    }
}

/// The verification results of part 1 in the words of RFC 8601.
#[derive(Debug, Clone, Default)]
pub struct AuthResults {
    /// SPF for MAIL FROM: `pass`, `fail`, `softfail`, `neutral`, `none`,
    /// `temperror`, `permerror`; `None` when not checked.
    pub spf: Option<&'static str>,
    /// One result per DKIM signature (`pass`, `fail`, `neutral`,
    /// `temperror`, `permerror`, ...); empty: no signature.
    pub dkim: Vec<&'static str>,
    /// DMARC result (`pass`, `fail`, `none`, `temperror`, `permerror`).
    pub dmarc: Option<&'static str>,
    /// The policy the From: domain publishes (`reject`, `quarantine`,
    /// `none`), when DMARC failed.
    pub dmarc_policy: Option<&'static str>,
}

/// Whether the message contains the GTUBE string, in its decoded text or
/// anywhere in the raw bytes.
pub fn gtube(c: &Content, raw: &[u8]) -> bool {
    c.text.contains(GTUBE) || raw.windows(GTUBE.len()).any(|w| w == GTUBE.as_bytes())
}

/// Header sanity: missing fields, many recipients, display-name tricks.
pub fn headers(c: &Content, out: &mut Vec<Hit>) {
    if !c.has_date {
        out.push(Hit::new(name::MISSING_DATE));
    }
    if c.message_id.is_none() {
        out.push(Hit::new(name::MISSING_MID));
    }
    if c.header("From").is_none() {
        out.push(Hit::new(name::MISSING_FROM));
    }
    if c.header("Subject").is_none() {
        out.push(Hit::new(name::MISSING_SUBJECT));
    }
    if c.to_count >= MANY_RCPTS {
        out.push(Hit::with(name::TO_MANY_RCPTS, c.to_count.to_string()));
    }
    if let (Some(display), Some(addr)) = (&c.from_name, &c.from_addr)
        && let Some(inner) = address_in(display)
    {
        let domain = |a: &str| a.rsplit_once('@').map(|(_, d)| d.to_owned());
        if inner.eq_ignore_ascii_case(addr) {
            // "bob@example.org" <bob@example.org>: harmless.
        } else if domain(&inner) != domain(addr) {
            out.push(Hit::with(name::SPOOF_DISPLAY_NAME, inner));
        } else {
            out.push(Hit::with(name::FROM_NAME_HAS_ADDR, inner));
        }
    }
}

/// The first thing that looks like an e-mail address in `s`, lowercased.
fn address_in(s: &str) -> Option<String> {
    s.split(|c: char| {
        c.is_whitespace() || matches!(c, '<' | '>' | '"' | '\'' | '(' | ')' | ',' | ';')
    })
    .find_map(|w| {
        let (local, domain) = w.split_once('@')?;
        let ok = !local.is_empty()
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.');
        ok.then(|| w.to_lowercase())
    })
}

/// Subject checks: all capitals, encoded words where none are needed,
/// several charsets.
pub fn subject(c: &Content, out: &mut Vec<Hit>) {
    if let Some(s) = &c.subject {
        let letters: Vec<char> = s.chars().filter(|ch| ch.is_alphabetic()).collect();
        if letters.len() >= 10 && letters.iter().all(|ch| ch.is_uppercase()) {
            // Rspamd weighs longer shouting more; at 40 letters in full.
            let factor = (letters.len() as f64 / 40.0).clamp(0.25, 1.0);
            out.push(Hit {
                name: name::SUBJ_ALL_CAPS,
                factor,
                options: vec![letters.len().to_string()],
            });
        }
    }
    let Some(raw) = c.header("Subject") else {
        return;
    };
    let words = encoded_words(raw);
    if words.is_empty() {
        return;
    }
    let decoded_ascii = c.subject.as_deref().is_some_and(|s| s.is_ascii());
    if decoded_ascii {
        let has_b = words.iter().any(|(_, enc)| enc.eq_ignore_ascii_case("b"));
        out.push(Hit::new(if has_b {
            name::SUBJ_EXCESS_BASE64
        } else {
            name::SUBJ_EXCESS_QP
        }));
    }
    let mut charsets: Vec<String> = words
        .iter()
        .map(|(cs, _)| cs.to_ascii_lowercase())
        .collect();
    charsets.sort();
    charsets.dedup();
    if charsets.len() > 1 {
        out.push(Hit {
            name: name::SUBJ_MIXED_CHARSETS,
            factor: 1.0,
            options: charsets,
        });
    }
}

/// (charset, encoding) of each RFC 2047 encoded word in a raw value.
fn encoded_words(raw: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = raw;
    while let Some(i) = rest.find("=?") {
        rest = &rest[i + 2..];
        let mut it = rest.splitn(3, '?');
        let (Some(cs), Some(enc), Some(tail)) = (it.next(), it.next(), it.next()) else {
            break;
        };
        let Some(end) = tail.find("?=") else { break };
        if !cs.is_empty() && (enc.eq_ignore_ascii_case("b") || enc.eq_ignore_ascii_case("q")) {
            // RFC 2231 language suffix: utf-8*en.
            let cs = cs.split('*').next().unwrap_or(cs);
            out.push((cs.to_owned(), enc.to_owned()));
        }
        rest = &tail[end + 2..];
        if out.len() > 64 {
            break;
        }
    }
    out
}

/// Forged MUA headers: a mailer name whose Message-ID does not look like
/// that mailer's.
pub fn mua(c: &Content, out: &mut Vec<Hit>) {
    let mailer = c
        .header("X-Mailer")
        .or_else(|| c.header("User-Agent"))
        .unwrap_or("");
    let mid = c.message_id.as_deref().unwrap_or("");
    let lower = mailer.to_ascii_lowercase();
    if lower.contains("microsoft outlook") && !lower.contains("express") && !is_outlook_mid(mid) {
        out.push(Hit::with(name::FORGED_MUA_OUTLOOK, mailer.to_owned()));
    }
    if lower.contains("thunderbird") && !is_thunderbird_mid(mid) {
        out.push(Hit::with(name::FORGED_MUA_THUNDERBIRD, mailer.to_owned()));
    }
}

/// Outlook's Message-IDs: `000001d9a1b2$c3d4e5f6$a7b8c9d0@host` (desktop
/// Outlook, three hex groups joined by `$`) or `...@...outlook.com`
/// (Exchange Online).
fn is_outlook_mid(mid: &str) -> bool {
    let Some((local, domain)) = mid.rsplit_once('@') else {
        return false;
    };
    if domain.to_ascii_lowercase().ends_with("outlook.com") {
        return true;
    }
    let groups: Vec<&str> = local.split('$').collect();
    groups.len() == 3
        && groups
            .iter()
            .all(|g| !g.is_empty() && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Thunderbird's Message-IDs: `<UUID@domain>` (36 characters, hex and
/// dashes 8-4-4-4-12).
fn is_thunderbird_mid(mid: &str) -> bool {
    let Some((local, _)) = mid.rsplit_once('@') else {
        return false;
    };
    let parts: Vec<&str> = local.split('-').collect();
    parts.len() == 5
        && parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
        && parts
            .iter()
            .all(|p| p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Body shape: HTML only, images with almost no text, URL shorteners, a
/// plain or alternative structure.
pub fn body(c: &Content, out: &mut Vec<Hit>) {
    if c.html_parts > 0 && c.plain_parts == 0 {
        out.push(Hit::new(name::MIME_HTML_ONLY));
    }
    if c.images > 0 && !c.has_text(20) {
        out.push(Hit::with(name::R_EMPTY_IMAGE, c.images.to_string()));
    }
    let short: Vec<String> = c
        .url_hosts
        .iter()
        .filter(|h| SHORTENERS.contains(&h.as_str()))
        .cloned()
        .collect();
    if !short.is_empty() {
        out.push(Hit {
            name: name::URL_SHORTENER,
            factor: 1.0,
            options: short,
        });
    }
    if c.plain_parts > 0 && !c.is_unparsable {
        out.push(Hit::with(name::MIME_GOOD, "text/plain"));
    }
}

/// SPF, DKIM and DMARC results as symbols (Rspamd's names).
pub fn auth(r: &AuthResults, out: &mut Vec<Hit>) {
    if let Some(spf) = r.spf {
        out.push(Hit::new(match spf {
            "pass" => name::R_SPF_ALLOW,
            "fail" => name::R_SPF_FAIL,
            "softfail" => name::R_SPF_SOFTFAIL,
            "neutral" => name::R_SPF_NEUTRAL,
            "temperror" => name::R_SPF_DNSFAIL,
            "permerror" => name::R_SPF_PERMFAIL,
            _ => name::R_SPF_NA,
        }));
    }
    if r.dkim.is_empty() {
        out.push(Hit::new(name::R_DKIM_NA));
    } else if r.dkim.contains(&"pass") {
        out.push(Hit::new(name::R_DKIM_ALLOW));
    } else if r.dkim.iter().any(|d| matches!(*d, "fail" | "neutral")) {
        out.push(Hit::new(name::R_DKIM_REJECT));
    } else if r.dkim.contains(&"temperror") {
        out.push(Hit::new(name::R_DKIM_TEMPFAIL));
    } else {
        out.push(Hit::new(name::R_DKIM_PERMFAIL));
    }
    match (r.dmarc, r.dmarc_policy) {
        (Some("pass"), _) => out.push(Hit::new(name::DMARC_POLICY_ALLOW)),
        (Some("fail"), Some("reject")) => out.push(Hit::new(name::DMARC_POLICY_REJECT)),
        (Some("fail"), Some("quarantine")) => out.push(Hit::new(name::DMARC_POLICY_QUARANTINE)),
        (Some("fail"), _) => out.push(Hit::new(name::DMARC_POLICY_SOFTFAIL)),
        (Some("temperror"), _) => out.push(Hit::new(name::DMARC_DNSFAIL)),
        (Some(_), _) => out.push(Hit::new(name::DMARC_NA)),
        (None, _) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::super::content::parse;
    use super::*;

    fn names(hits: &[Hit]) -> Vec<&'static str> {
        hits.iter().map(|h| h.name).collect()
    }

    #[test]
    fn gtube_in_raw_and_in_base64() {
        let raw = format!("Subject: t\r\n\r\n{GTUBE}\r\n");
        assert!(gtube(&parse(raw.as_bytes()), raw.as_bytes()));
        let b64 = "WEpTKkM0SkRCUUFETjEuTlNCTjMqMklETkVOKkdUVUJFLVNUQU5EQVJELUFOVEktVUJFLVRFU1QtRU1BSUwqQy4zNFg=";
        let raw = format!("Subject: t\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64}\r\n");
        assert!(gtube(&parse(raw.as_bytes()), raw.as_bytes()));
        let raw = b"Subject: t\r\n\r\nXJS*C4JDBQADN1 almost\r\n";
        assert!(!gtube(&parse(raw), raw));
    }

    #[test]
    fn header_sanity() {
        let mut h = Vec::new();
        headers(&parse(b"Subject: x\r\n\r\nbody\r\n"), &mut h);
        assert_eq!(
            names(&h),
            [name::MISSING_DATE, name::MISSING_MID, name::MISSING_FROM]
        );
        let mut h = Vec::new();
        let raw = b"From: \"service@paypal.com\" <x@evil.test>\r\nDate: Mon, 1 Jun 2026 10:00:00 +0000\r\nMessage-ID: <a@b>\r\nSubject: s\r\n\r\nb\r\n";
        headers(&parse(raw), &mut h);
        assert_eq!(names(&h), [name::SPOOF_DISPLAY_NAME]);
        assert_eq!(h[0].options, ["service@paypal.com"]);
        let mut to = String::from("To: ");
        for i in 0..25 {
            to.push_str(&format!("u{i}@x.test, "));
        }
        to.push_str("last@x.test\r\n");
        let raw = format!("From: a@x.test\r\nSubject: s\r\n{to}\r\nb\r\n");
        let mut h = Vec::new();
        headers(&parse(raw.as_bytes()), &mut h);
        assert!(names(&h).contains(&name::TO_MANY_RCPTS), "{h:?}");
    }

    #[test]
    fn subject_abuse() {
        let mut h = Vec::new();
        subject(
            &parse(b"Subject: =?utf-8?B?SGVsbG8gd29ybGQ=?=\r\n\r\nb\r\n"),
            &mut h,
        );
        assert_eq!(names(&h), [name::SUBJ_EXCESS_BASE64]);
        let mut h = Vec::new();
        subject(
            &parse(b"Subject: =?utf-8?Q?Gr=C3=BC=C3=9Fe?=\r\n\r\nb\r\n"),
            &mut h,
        );
        assert!(h.is_empty(), "{h:?}");
        let mut h = Vec::new();
        subject(
            &parse(b"Subject: =?utf-8?Q?Gr=C3=BC=C3=9Fe?= =?koi8-r?B?8NLJ18XU?=\r\n\r\nb\r\n"),
            &mut h,
        );
        assert_eq!(names(&h), [name::SUBJ_MIXED_CHARSETS]);
        let mut h = Vec::new();
        subject(
            &parse(b"Subject: CHEAP PILLS ONLINE NOW\r\n\r\nb\r\n"),
            &mut h,
        );
        assert_eq!(names(&h), [name::SUBJ_ALL_CAPS]);
    }

    #[test]
    fn forged_mua() {
        let mut h = Vec::new();
        mua(
            &parse(
                b"X-Mailer: Microsoft Outlook 16.0\r\nMessage-ID: <12345@spam.test>\r\n\r\nb\r\n",
            ),
            &mut h,
        );
        assert_eq!(names(&h), [name::FORGED_MUA_OUTLOOK]);
        let mut h = Vec::new();
        mua(&parse(b"X-Mailer: Microsoft Outlook 16.0\r\nMessage-ID: <000001d9a1b2$c3d4e5f6$a7b8c9d0@host.test>\r\n\r\nb\r\n"), &mut h);
        assert!(h.is_empty(), "{h:?}");
        let mut h = Vec::new();
        mua(&parse(b"User-Agent: Mozilla/5.0 Thunderbird/115.0\r\nMessage-ID: <8f14e45f-ceea-467a-9575-2a3b4c5d6e7f@x.test>\r\n\r\nb\r\n"), &mut h);
        assert!(h.is_empty(), "{h:?}");
        let mut h = Vec::new();
        mua(&parse(b"User-Agent: Mozilla/5.0 Thunderbird/115.0\r\nMessage-ID: <abc@x.test>\r\n\r\nb\r\n"), &mut h);
        assert_eq!(names(&h), [name::FORGED_MUA_THUNDERBIRD]);
    }

    #[test]
    fn body_shapes() {
        let mut h = Vec::new();
        body(&parse(b"Content-Type: text/html\r\n\r\n<img src=x><a href=\"https://bit.ly/abc\">go</a>\r\n"), &mut h);
        assert_eq!(
            names(&h),
            [
                name::MIME_HTML_ONLY,
                name::R_EMPTY_IMAGE,
                name::URL_SHORTENER
            ]
        );
        let mut h = Vec::new();
        body(&parse(b"Subject: s\r\n\r\nSee https://example.org/page for the minutes of the meeting.\r\n"), &mut h);
        assert_eq!(names(&h), [name::MIME_GOOD]);
    }

    #[test]
    fn auth_symbols() {
        let mut h = Vec::new();
        auth(
            &AuthResults {
                spf: Some("fail"),
                dkim: vec!["neutral"],
                dmarc: Some("fail"),
                dmarc_policy: Some("quarantine"),
            },
            &mut h,
        );
        assert_eq!(
            names(&h),
            [
                name::R_SPF_FAIL,
                name::R_DKIM_REJECT,
                name::DMARC_POLICY_QUARANTINE
            ]
        );
        let mut h = Vec::new();
        auth(
            &AuthResults {
                spf: Some("pass"),
                dkim: vec!["fail", "pass"],
                dmarc: Some("pass"),
                dmarc_policy: None,
            },
            &mut h,
        );
        assert_eq!(
            names(&h),
            [
                name::R_SPF_ALLOW,
                name::R_DKIM_ALLOW,
                name::DMARC_POLICY_ALLOW
            ]
        );
    }
}

//! LOGIC: the parts of one message the rules and Bayes look at, taken
//! once from the raw bytes with mail-parser: decoded header fields, the
//! text of every text part (quoted-printable and base64 decoded, charsets
//! converted, HTML turned into text), links, images. No I/O, no scoring
//! here; nothing from the message can make this panic or grow without
//! bound (text and link counts are capped).

use mail_parser::{MessageParser, MimeHeaders, PartType};

/// Most text kept for rules and Bayes (decoded characters).
pub const MAX_TEXT: usize = 512 * 1024;
/// Most links kept.
pub const MAX_URLS: usize = 256;

/// One header field as it arrived (name, raw value without the leading
/// space).
#[derive(Debug, Clone)]
pub struct Field {
    /// The field name.
    pub name: String,
    /// The raw value (encoded words not decoded).
    pub raw: String,
}

/// What the rules and the classifier know about a message.
#[derive(Debug, Clone, Default)]
pub struct Content {
    /// Header fields in order.
    pub fields: Vec<Field>,
    /// The decoded `Subject:`.
    pub subject: Option<String>,
    /// The `From:` display name, decoded.
    pub from_name: Option<String>,
    /// The `From:` address, lowercased.
    pub from_addr: Option<String>,
    /// Addresses in `To:` and `Cc:`.
    pub to_count: usize,
    /// The `Message-ID:` without brackets.
    pub message_id: Option<String>,
    /// Whether there is a `Date:` field.
    pub has_date: bool,
    /// Decoded text of all text and HTML parts (HTML as text), at most
    /// [`MAX_TEXT`] bytes.
    pub text: String,
    /// Number of text/plain parts.
    pub plain_parts: usize,
    /// Number of text/html parts.
    pub html_parts: usize,
    /// Number of image parts, plus `<img>` tags in HTML.
    pub images: usize,
    /// Link host names (lowercased), in order, unique, at most
    /// [`MAX_URLS`].
    pub url_hosts: Vec<String>,
    /// The body could not be parsed as MIME.
    pub is_unparsable: bool,
}

impl Content {
    /// The first raw value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
            .map(|f| f.raw.as_str())
    }

    /// Whether the message has a text part with more than `min` letters.
    pub fn has_text(&self, min: usize) -> bool {
        self.text
            .chars()
            .filter(|c| c.is_alphabetic())
            .take(min + 1)
            .count()
            > min
    }
}

fn push_text(out: &mut String, text: &str) {
    if out.len() >= MAX_TEXT {
        return;
    }
    let room = MAX_TEXT - out.len();
    let mut end = text.len().min(room);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    out.push_str(&text[..end]);
    out.push('\n');
}

/// Parses `raw` (the whole message, any line ends).
pub fn parse(raw: &[u8]) -> Content {
    let mut c = Content::default();
    let Some(msg) = MessageParser::default().parse(raw) else {
        c.is_unparsable = true;
        return c;
    };
    for (name, value) in msg.headers_raw() {
        c.fields.push(Field {
            name: name.to_owned(),
            raw: value.trim().to_owned(),
        });
    }
    c.subject = msg.subject().map(str::to_owned);
    if let Some(from) = msg.from().and_then(|a| a.first()) {
        c.from_name = from.name.as_ref().map(|n| n.trim().to_owned());
        c.from_addr = from.address.as_ref().map(|a| a.trim().to_ascii_lowercase());
    }
    c.to_count =
        msg.to().map_or(0, |a| a.iter().count()) + msg.cc().map_or(0, |a| a.iter().count());
    c.message_id = msg.message_id().map(str::to_owned);
    c.has_date = c.header("Date").is_some();

    let mut html = Vec::new();
    for part in &msg.parts {
        match &part.body {
            PartType::Text(_) => c.plain_parts += 1,
            PartType::Html(h) => {
                c.html_parts += 1;
                html.push(h.as_ref());
            }
            PartType::Binary(_) | PartType::InlineBinary(_) => {
                if part
                    .content_type()
                    .is_some_and(|ct| ct.ctype().eq_ignore_ascii_case("image"))
                {
                    c.images += 1;
                }
            }
            PartType::Message(_) | PartType::Multipart(_) => {}
        }
    }
    for i in 0..msg.text_body.len() {
        if let Some(t) = msg.body_text(i) {
            push_text(&mut c.text, &t);
        }
    }
    // HTML-only alternatives that text_body did not list.
    if msg.text_body.is_empty() {
        for i in 0..msg.html_body.len() {
            if let Some(t) = msg.body_text(i) {
                push_text(&mut c.text, &t);
            }
        }
    }
    for h in &html {
        c.images += count_ci(h, "<img");
        for url in hrefs(h) {
            add_host(&mut c.url_hosts, url);
        }
    }
    let text = c.text.clone();
    for url in plain_urls(&text) {
        add_host(&mut c.url_hosts, url);
    }
    c
}

fn count_ci(hay: &str, needle: &str) -> usize {
    let hay = hay.as_bytes();
    let n = needle.as_bytes();
    if hay.len() < n.len() {
        return 0;
    }
    (0..=hay.len() - n.len())
        .filter(|&i| hay[i..i + n.len()].eq_ignore_ascii_case(n))
        .count()
}

/// `href="..."` values of an HTML text.
fn hrefs(html: &str) -> Vec<&str> {
    let lower = html.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = lower[from..].find("href") {
        let start = from + i + 4;
        from = start;
        let rest = html[start..].trim_start();
        let Some(rest) = rest.strip_prefix('=') else {
            continue;
        };
        let rest = rest.trim_start();
        let (quote, rest) = match rest.chars().next() {
            Some(q @ ('"' | '\'')) => (Some(q), &rest[1..]),
            _ => (None, rest),
        };
        let end = rest
            .find(|ch: char| match quote {
                Some(q) => ch == q,
                None => ch.is_whitespace() || ch == '>',
            })
            .unwrap_or(rest.len());
        out.push(&rest[..end]);
        if out.len() >= MAX_URLS {
            break;
        }
    }
    out
}

/// `http://` and `https://` links in text.
fn plain_urls(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for word in text.split(|c: char| c.is_whitespace() || c == '<' || c == '>' || c == '"') {
        let lower_starts = |p: &str| {
            word.get(..p.len())
                .is_some_and(|w| w.eq_ignore_ascii_case(p))
        };
        if lower_starts("http://") || lower_starts("https://") {
            out.push(word);
            if out.len() >= MAX_URLS {
                break;
            }
        }
    }
    out
}

/// The host of a URL, lowercased, if it is an http(s) URL.
pub fn url_host(url: &str) -> Option<String> {
    let url = url.trim();
    let rest = ["http://", "https://"].iter().find_map(|p| {
        url.get(..p.len())
            .filter(|w| w.eq_ignore_ascii_case(p))
            .and_then(|_| url.get(p.len()..))
    })?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    let host = if host.starts_with('[') {
        host.split(']').next().map(|h| h.trim_start_matches('['))?
    } else {
        host.split(':').next().unwrap_or("")
    };
    let host = host.trim_end_matches('.').to_lowercase();
    let is_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '.' | '_' | ':'));
    is_ok.then_some(host)
}

fn add_host(hosts: &mut Vec<String>, url: &str) {
    if hosts.len() >= MAX_URLS {
        return;
    }
    if let Some(h) = url_host(url)
        && !hosts.contains(&h)
    {
        hosts.push(h);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_qp_base64_and_html() {
        let raw = b"From: \"Bob\" <Bob@Example.ORG>\r\nTo: a@x.test, b@x.test\r\nSubject: =?utf-8?B?R3LDvMOfZQ==?=\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nK=C3=A4se und Br=C3=B6t\r\n--b\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\nPGI+Q2hlYXA8L2I+IDxhIGhyZWY9Imh0dHBzOi8vQml0Lkx5L3giPnBpbGxzPC9hPiA8aW1nIHNyYz0ieCI+\r\n--b\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--b--\r\n";
        let c = parse(raw);
        assert_eq!(c.subject.as_deref(), Some("Grüße"));
        assert_eq!(c.from_addr.as_deref(), Some("bob@example.org"));
        assert_eq!(c.from_name.as_deref(), Some("Bob"));
        assert_eq!(c.to_count, 2);
        assert!(c.text.contains("Käse und Bröt"), "{}", c.text);
        assert!(c.text.contains("Cheap"), "{}", c.text);
        assert!(!c.text.contains("<b>"), "{}", c.text);
        assert_eq!(c.url_hosts, vec!["bit.ly"]);
        assert_eq!(c.images, 2);
        assert_eq!(c.html_parts, 1);
        assert!(!c.has_date);
    }

    #[test]
    fn url_hosts() {
        assert_eq!(
            url_host("https://user@Example.COM:8080/x?y").as_deref(),
            Some("example.com")
        );
        assert_eq!(
            url_host("http://[2001:db8::1]/").as_deref(),
            Some("2001:db8::1")
        );
        assert_eq!(url_host("mailto:a@b"), None);
        assert_eq!(url_host("https://"), None);
        assert_eq!(url_host("https://ä"), Some("ä".to_owned()));
    }

    #[test]
    fn garbage_does_not_panic() {
        for raw in [
            &b""[..],
            b"\xff\xfe",
            b"Subject: =?x?Q?\r\n\r\n<a href=",
            b"\r\n\r\nhttps://\xc3",
        ] {
            let _ = parse(raw);
        }
        let _ = plain_urls("https:/\u{e9}\u{e9}");
        let _ = hrefs("href=\u{e9}");
    }
}

//! WIRE: the HTTP/1.x subset rspamc 3.4 speaks (shared/reference/
//! rspamd-compat.md §2): one request per connection, a request line,
//! header fields, a body of `Content-Length` bytes; and the replies. No
//! I/O here. The head is limited to [`MAX_HEAD`] bytes and the body to
//! what the caller allows; the declared length is checked before anything
//! is allocated for it.

use std::fmt::Write as _;

/// Largest request head (request line and header fields).
pub const MAX_HEAD: usize = 64 * 1024;
/// Most header fields.
pub const MAX_FIELDS: usize = 100;

/// A malformed or unacceptable request; each maps to a 4xx status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The head is larger than [`MAX_HEAD`] or has too many fields.
    #[error("request head too large")]
    HeadTooLarge,
    /// The request line or a field is malformed.
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    /// The body is larger than allowed.
    #[error("request body of {0} bytes is too large")]
    BodyTooLarge(u64),
    /// Chunked bodies are not supported (rspamc never sends them).
    #[error("chunked request bodies are not supported")]
    Chunked,
}

impl HttpError {
    /// The status answered.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::HeadTooLarge => 431,
            HttpError::Malformed(_) => 400,
            HttpError::BodyTooLarge(_) => 413,
            HttpError::Chunked => 411,
        }
    }
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path without the query string.
    pub path: String,
    /// Header fields in order (names as sent).
    pub fields: Vec<(String, String)>,
    /// `Content-Length` (0 without one).
    pub content_length: u64,
}

impl Head {
    /// The first value of field `name` (case-insensitive).
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of field `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Parses the head at the start of `buf`: `Ok(Some((head, len)))` when it
/// is complete (`len` bytes including the blank line), `Ok(None)` when more
/// bytes are needed. `max_body` bounds `Content-Length`.
pub fn parse_head(buf: &[u8], max_body: u64) -> Result<Option<(Head, usize)>, HttpError> {
    let end = match find_blank_line(buf) {
        Some(e) => e,
        None if buf.len() > MAX_HEAD => return Err(HttpError::HeadTooLarge),
        None => return Ok(None),
    };
    if end > MAX_HEAD {
        return Err(HttpError::HeadTooLarge);
    }
    let text = std::str::from_utf8(&buf[..end]).map_err(|_| HttpError::Malformed("not UTF-8"))?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let request = lines
        .next()
        .ok_or(HttpError::Malformed("no request line"))?;
    let mut parts = request.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::Malformed("request line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(HttpError::Malformed("HTTP version"));
    }
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(HttpError::Malformed("method"));
    }
    if !target.starts_with('/') {
        return Err(HttpError::Malformed("request target"));
    }
    let path = target.split(['?', '#']).next().unwrap_or("/").to_owned();
    let mut fields = Vec::new();
    let mut content_length = None;
    for line in lines {
        if line.is_empty() {
            continue;
        }
        if fields.len() >= MAX_FIELDS {
            return Err(HttpError::HeadTooLarge);
        }
        let (name, value) = line
            .split_once(':')
            .ok_or(HttpError::Malformed("header field"))?;
        if name.is_empty() || name.bytes().any(|b| !b.is_ascii_graphic()) {
            return Err(HttpError::Malformed("header field name"));
        }
        let value = value.trim().to_owned();
        if name.eq_ignore_ascii_case("Content-Length") {
            let n: u64 = value
                .parse()
                .map_err(|_| HttpError::Malformed("Content-Length"))?;
            if content_length.is_some_and(|c| c != n) {
                return Err(HttpError::Malformed("two Content-Length values"));
            }
            if n > max_body {
                return Err(HttpError::BodyTooLarge(n));
            }
            content_length = Some(n);
        }
        if name.eq_ignore_ascii_case("Transfer-Encoding") && !value.eq_ignore_ascii_case("identity")
        {
            return Err(HttpError::Chunked);
        }
        fields.push((name.to_owned(), value));
    }
    Ok(Some((
        Head {
            method: method.to_owned(),
            path,
            fields,
            content_length: content_length.unwrap_or(0),
        },
        end,
    )))
}

/// The offset just after the first blank line (`\r\n\r\n` or `\n\n`).
fn find_blank_line(buf: &[u8]) -> Option<usize> {
    let limit = buf.len().min(MAX_HEAD + 4);
    (0..limit).find_map(|i| {
        if buf[i..].starts_with(b"\r\n\r\n") {
            Some(i + 4)
        } else if buf[i..].starts_with(b"\n\n") {
            Some(i + 2)
        } else {
            None
        }
    })
}

/// A reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Reason phrase (rspamc prints it for 208, so it carries the message).
    pub reason: String,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: Vec<u8>,
}

/// The standard reason phrase of the statuses we send.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        208 => "Already Reported",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    }
}

impl Response {
    /// A JSON reply.
    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        Response {
            status,
            reason: reason(status).to_owned(),
            content_type: "application/json",
            body: value.to_string().into_bytes(),
        }
    }

    /// `{"error": text}` with `status` (Rspamd's error shape).
    pub fn error(status: u16, text: &str) -> Response {
        Response::json(status, &serde_json::json!({ "error": text }))
    }

    /// A reply of another type.
    pub fn text(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            reason: reason(status).to_owned(),
            content_type,
            body: body.into(),
        }
    }

    /// The bytes on the wire (HTTP/1.1, `Connection: close`, as Rspamd).
    pub fn to_bytes(&self) -> Vec<u8> {
        let reason: String = self
            .reason
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() || c == ' ' {
                    c
                } else {
                    '?'
                }
            })
            .collect();
        let mut head = String::new();
        let _ = write!(
            head,
            "HTTP/1.1 {} {reason}\r\nConnection: close\r\nServer: postwerk-milterd\r\nContent-Type: {}\r\nCache-Control: no-store\r\nContent-Length: {}\r\n\r\n",
            self.status,
            self.content_type,
            self.body.len()
        );
        let mut out = head.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As captured from rspamc 3.4 (shared/reference/rspamd-compat.md §2).
    const LEARN: &[u8] = b"POST /learnspam HTTP/1.0\r\nContent-Length: 5\r\nConnection: close\r\nContent-Type: text/plain\r\nFilename: msg2.eml\r\nFlags: body_block\r\nUser-Agent: rspamc\r\nPassword: q1\r\n\r\nhello";

    #[test]
    fn rspamc_request_in_every_chunk_size() {
        for step in 1..LEARN.len() {
            let mut buf = Vec::new();
            let mut done = None;
            for chunk in LEARN.chunks(step) {
                buf.extend_from_slice(chunk);
                if let Some(r) = parse_head(&buf, 1000).unwrap() {
                    done = Some(r);
                    break;
                }
            }
            let (h, len) = done.expect("complete");
            assert_eq!(h.method, "POST");
            assert_eq!(h.path, "/learnspam");
            assert_eq!(h.content_length, 5);
            assert_eq!(h.field("password"), Some("q1"));
            assert_eq!(&LEARN[len..], b"hello");
        }
    }

    #[test]
    fn repeated_fields_and_query() {
        let (h, _) = parse_head(
            b"POST /checkv2?x=1 HTTP/1.0\r\nRcpt: a@x\r\nRcpt: b@x\r\n\r\n",
            10,
        )
        .unwrap()
        .unwrap();
        assert_eq!(h.path, "/checkv2");
        assert_eq!(h.all("rcpt"), ["a@x", "b@x"]);
        assert_eq!(h.content_length, 0);
    }

    #[test]
    fn bad_requests() {
        for (req, err) in [
            (
                &b"GARBAGE\r\n\r\n"[..],
                HttpError::Malformed("request line"),
            ),
            (b"get / HTTP/1.0\r\n\r\n", HttpError::Malformed("method")),
            (
                b"GET / SPDY/3\r\n\r\n",
                HttpError::Malformed("HTTP version"),
            ),
            (
                b"GET / HTTP/1.0\r\nNoColon\r\n\r\n",
                HttpError::Malformed("header field"),
            ),
            (
                b"POST / HTTP/1.0\r\nContent-Length: 99999999999\r\n\r\n",
                HttpError::BodyTooLarge(99_999_999_999),
            ),
            (
                b"POST / HTTP/1.0\r\nContent-Length: -1\r\n\r\n",
                HttpError::Malformed("Content-Length"),
            ),
            (
                b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
                HttpError::Chunked,
            ),
            (
                b"GET / HTTP/1.0\r\n\xff: x\r\n\r\n",
                HttpError::Malformed("not UTF-8"),
            ),
        ] {
            assert_eq!(
                parse_head(req, 1000).unwrap_err(),
                err,
                "{}",
                String::from_utf8_lossy(req)
            );
        }
        let big = vec![b'a'; MAX_HEAD + 10];
        assert_eq!(parse_head(&big, 10).unwrap_err(), HttpError::HeadTooLarge);
        assert_eq!(parse_head(b"GET / HTTP/1.0\r\n", 10).unwrap(), None);
    }

    #[test]
    fn response_bytes() {
        let r = Response::error(208, "<a@b> has been already learned as spam, ignore it");
        let mut r2 = r.clone();
        r2.reason = "<a@b> has been already learned as spam, ignore it\r\nX: y".into();
        let b = String::from_utf8(r2.to_bytes()).unwrap();
        assert!(
            b.starts_with(
                "HTTP/1.1 208 <a@b> has been already learned as spam, ignore it??X: y\r\n"
            ),
            "{b}"
        );
        assert!(
            b.ends_with(
                "\r\n\r\n{\"error\":\"<a@b> has been already learned as spam, ignore it\"}"
            ),
            "{b}"
        );
    }
}

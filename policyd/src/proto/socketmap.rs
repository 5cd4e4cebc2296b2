//! socketmap requests and replies (socketmap_table(5)): the payload inside
//! a netstring. No I/O, no database here.

/// A decoded request: `<name> SP <key>`, borrowed from the netstring
/// payload (no allocation per request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// The map name (the last `:` field of the map in main.cf).
    pub name: &'a str,
    /// The key; `None` when it is not valid UTF-8 (such a key cannot be in
    /// the database: the answer is "not found").
    pub key: Option<&'a str>,
}

/// Why a payload is not a socketmap request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// No space separates name and key.
    #[error("request has no space between map name and key")]
    NoSpace,
    /// The name is empty or not printable ASCII.
    #[error("bad map name")]
    BadName,
}

impl<'a> Request<'a> {
    /// Parses a netstring payload. The key may contain spaces: only the
    /// first space separates (reference/socketmap.md 1.1).
    pub fn parse(payload: &'a [u8]) -> Result<Self, RequestError> {
        let sp = payload
            .iter()
            .position(|&b| b == b' ')
            .ok_or(RequestError::NoSpace)?;
        let (name, key) = (&payload[..sp], &payload[sp + 1..]);
        if name.is_empty() || !name.iter().all(|b| b.is_ascii_graphic()) {
            return Err(RequestError::BadName);
        }
        // Printable ASCII is UTF-8.
        let name = std::str::from_utf8(name).map_err(|_| RequestError::BadName)?;
        Ok(Self {
            name,
            key: std::str::from_utf8(key).ok(),
        })
    }
}

/// A socketmap reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `OK <data>`: found. Data must not be empty (Postfix refuses it).
    Ok(String),
    /// `NOTFOUND `: not found.
    NotFound,
    /// `TEMP <reason>`: temporary failure; Postfix answers 451 4.3.0.
    Temp(String),
    /// `TIMEOUT <reason>`: our own deadline passed; treated as TEMP.
    Timeout(String),
    /// `PERM <reason>`: a request we can never answer (unknown map).
    Perm(String),
}

impl Reply {
    /// The netstring payload.
    pub fn to_payload(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_payload(&mut out);
        out
    }

    /// The netstring payload into `out` (emptied first), so a session can
    /// reuse one buffer for all its replies.
    pub fn write_payload(&self, out: &mut Vec<u8>) {
        let (status, text) = match self {
            Reply::Ok(d) => ("OK", d.as_str()),
            Reply::NotFound => ("NOTFOUND", ""),
            Reply::Temp(r) => ("TEMP", r.as_str()),
            Reply::Timeout(r) => ("TIMEOUT", r.as_str()),
            Reply::Perm(r) => ("PERM", r.as_str()),
        };
        out.clear();
        out.reserve(status.len() + 1 + text.len());
        out.extend_from_slice(status.as_bytes());
        out.push(b' ');
        out.extend_from_slice(text.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_captured_requests() {
        let r = Request::parse(b"aliases alias@example.org").unwrap();
        assert_eq!((r.name, r.key), ("aliases", Some("alias@example.org")));
        let r = Request::parse(b"domains key with space").unwrap();
        assert_eq!(r.key, Some("key with space"));
        let r = Request::parse(b"tlspolicy [127.0.0.1]:20026").unwrap();
        assert_eq!(r.key, Some("[127.0.0.1]:20026"));
        let r = Request::parse("domains ünï@exämple.org".as_bytes()).unwrap();
        assert_eq!(r.key, Some("ünï@exämple.org"));
        let r = Request::parse(b"domains \xff\xfe").unwrap();
        assert_eq!(r.key, None);
        let r = Request::parse(b"domains ").unwrap();
        assert_eq!(r.key, Some(""));
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(Request::parse(b"nospace"), Err(RequestError::NoSpace));
        assert_eq!(Request::parse(b" key"), Err(RequestError::BadName));
        assert_eq!(Request::parse(b"n\x01 key"), Err(RequestError::BadName));
    }

    #[test]
    fn replies_are_byte_exact() {
        assert_eq!(
            Reply::Ok("user@example.org".into()).to_payload(),
            b"OK user@example.org"
        );
        assert_eq!(Reply::NotFound.to_payload(), b"NOTFOUND ");
        assert_eq!(
            Reply::Temp("backend down".into()).to_payload(),
            b"TEMP backend down"
        );
        assert_eq!(Reply::Timeout("x".into()).to_payload(), b"TIMEOUT x");
        assert_eq!(
            Reply::Perm("unknown map".into()).to_payload(),
            b"PERM unknown map"
        );
    }
}

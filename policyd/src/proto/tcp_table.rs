//! tcp_table(5): `get <key>` lines and `<code> <text>` replies, with
//! Postfix's `%XX` encoding. No I/O, no database here.

use bytes::{Buf, BufMut, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// Postfix's own limit for a reply line, LF included (tcp_table(5)).
pub const MAX_REPLY_LINE: usize = 4096;

/// A decoded request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `get <key>`, key decoded; `None` if it is not UTF-8 after decoding.
    Get(Option<String>),
}

/// A reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `200 <data>`: found.
    Found(String),
    /// `500 <text>`: not found.
    NotFound,
    /// `400 <text>`: temporary failure.
    Temp(String),
}

/// A protocol error: the connection closes.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The line is longer than allowed.
    #[error("request line longer than {0} bytes")]
    TooLong(usize),
    /// Not `get <key>`.
    #[error("malformed request (expected `get <key>`)")]
    Malformed,
    /// A `%` escape is not two hex digits.
    #[error("bad %-escape in request")]
    BadEscape,
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Line codec for tcp_table.
#[derive(Debug, Clone)]
pub struct TcpTableCodec {
    max_line: usize,
}

impl TcpTableCodec {
    /// Accepts request lines up to `max_line` bytes (LF included).
    pub fn new(max_line: usize) -> Self {
        Self { max_line }
    }
}

/// Decodes `%XX` escapes.
pub fn decode(s: &[u8]) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or(CodecError::BadEscape)?;
            // Two hex digits exactly: from_str_radix alone would also take
            // a sign (`%+A` as LF).
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return Err(CodecError::BadEscape);
            }
            let h = std::str::from_utf8(hex).map_err(|_| CodecError::BadEscape)?;
            out.push(u8::from_str_radix(h, 16).map_err(|_| CodecError::BadEscape)?);
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// Encodes `%`, whitespace and non-printing bytes as `%XX`, as Postfix's
/// client does.
pub fn encode(s: &[u8], out: &mut BytesMut) {
    for &b in s {
        if b == b'%' || !b.is_ascii_graphic() {
            out.put_slice(format!("%{b:02X}").as_bytes());
        } else {
            out.put_u8(b);
        }
    }
}

impl Decoder for TcpTableCodec {
    type Item = Request;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Request>, CodecError> {
        let Some(nl) = src.iter().position(|&b| b == b'\n') else {
            if src.len() >= self.max_line {
                return Err(CodecError::TooLong(self.max_line));
            }
            return Ok(None);
        };
        if nl + 1 > self.max_line {
            return Err(CodecError::TooLong(self.max_line));
        }
        let line = src.split_to(nl + 1);
        let mut line = &line[..nl];
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        let rest = line.strip_prefix(b"get ").ok_or(CodecError::Malformed)?;
        let key = decode(rest)?;
        Ok(Some(Request::Get(String::from_utf8(key).ok())))
    }
}

impl Encoder<&Reply> for TcpTableCodec {
    type Error = CodecError;

    fn encode(&mut self, item: &Reply, dst: &mut BytesMut) -> Result<(), CodecError> {
        let (code, text) = match item {
            Reply::Found(d) => ("200 ", d.as_str()),
            Reply::NotFound => ("500 ", "not found"),
            Reply::Temp(t) => ("400 ", t.as_str()),
        };
        let mut line = BytesMut::with_capacity(code.len() + text.len() + 1);
        line.put_slice(code.as_bytes());
        encode(text.as_bytes(), &mut line);
        if line.len() + 1 > MAX_REPLY_LINE {
            // Postfix would refuse it; say so as a temporary failure.
            line.clear();
            line.put_slice(b"400 result%20too%20long");
        }
        line.put_u8(b'\n');
        dst.put_slice(&line);
        let _ = dst.remaining();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Found while writing fuzz/src/lib.rs's tcp_table check: `%+A` decoded
    // to a line feed because from_str_radix accepts a leading sign.
    #[test]
    fn escape_is_two_hex_digits_not_a_signed_number() {
        for bad in [&b"%+A"[..], b"%-1", b"%+0", b"% A", b"%A"] {
            assert!(matches!(decode(bad), Err(CodecError::BadEscape)), "{bad:?}");
        }
        assert_eq!(decode(b"a%0Ab%25").unwrap(), b"a\nb%");
    }

    #[test]
    fn captured_requests() {
        let mut c = TcpTableCodec::new(4096);
        let wire = b"get weird%20key\nget %C3%BCn%C3%AF@ex%C3%A4mple.org\n";
        for chunk in 1..wire.len() {
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for p in wire.chunks(chunk) {
                buf.extend_from_slice(p);
                while let Some(r) = c.decode(&mut buf).unwrap() {
                    got.push(r);
                }
            }
            assert_eq!(
                got,
                vec![
                    Request::Get(Some("weird key".into())),
                    Request::Get(Some("ünï@exämple.org".into()))
                ]
            );
        }
    }

    #[test]
    fn replies_encode() {
        let mut c = TcpTableCodec::new(4096);
        let mut buf = BytesMut::new();
        c.encode(&Reply::Found("value with spaces%".into()), &mut buf)
            .unwrap();
        assert_eq!(&buf[..], b"200 value%20with%20spaces%25\n");
        buf.clear();
        c.encode(&Reply::NotFound, &mut buf).unwrap();
        assert_eq!(&buf[..], b"500 not%20found\n");
        buf.clear();
        c.encode(&Reply::Temp("lookup failed".into()), &mut buf)
            .unwrap();
        assert_eq!(&buf[..], b"400 lookup%20failed\n");
        buf.clear();
        c.encode(&Reply::Found("x".repeat(5000)), &mut buf).unwrap();
        assert!(buf.starts_with(b"400 "));
    }

    #[test]
    fn malformed() {
        for bad in [&b"put a b\n"[..], b"get %zz\n", b"get %4\n", b"GET x\n"] {
            let mut buf = BytesMut::from(bad);
            assert!(
                TcpTableCodec::new(4096).decode(&mut buf).is_err(),
                "{bad:?}"
            );
        }
        let mut buf = BytesMut::from(&vec![b'a'; 5000][..]);
        assert!(matches!(
            TcpTableCodec::new(4096).decode(&mut buf),
            Err(CodecError::TooLong(_))
        ));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let mut buf = BytesMut::from(&bytes[..]);
            let mut c = TcpTableCodec::new(128);
            while let Ok(Some(_)) = c.decode(&mut buf) {}
        }

        #[test]
        fn escape_roundtrip(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..100)) {
            let mut enc = BytesMut::new();
            encode(&bytes, &mut enc);
            proptest::prop_assert!(enc.iter().all(|b| b.is_ascii_graphic()));
            proptest::prop_assert_eq!(decode(&enc).unwrap(), bytes);
        }
    }
}

//! Postfix policy delegation (SMTPD_POLICY_README): `name=value` lines
//! ended by an empty line, answered by `action=…` and an empty line. No
//! I/O, no database here.

use bytes::{BufMut, BytesMut};
use std::collections::HashMap;
use tokio_util::codec::{Decoder, Encoder};

/// Most attributes one request may have (Postfix 3.7 sends 29).
pub const MAX_ATTRIBUTES: usize = 100;

/// One request: the attributes Postfix sent (unknown ones kept, ignored).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    attrs: HashMap<String, String>,
}

impl Request {
    /// An attribute's value, `None` if absent; empty values are `Some("")`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.attrs.get(name).map(String::as_str)
    }

    /// An attribute's value, `None` if absent or empty.
    pub fn non_empty(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }

    /// Builds a request (for tests and benchmarks).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            attrs: pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        }
    }
}

/// The reply: an access(5) action such as `DUNNO`, `OK`,
/// `DEFER_IF_PERMIT text`, `450 4.7.1 text`, `REJECT text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The action line's value (no LF).
    pub action: String,
}

/// A protocol error: the connection closes.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The request is larger than allowed.
    #[error("policy request larger than {0} bytes")]
    TooLong(usize),
    /// Too many attributes.
    #[error("policy request has more than {MAX_ATTRIBUTES} attributes")]
    TooMany,
    /// A line is not `name=value` or not UTF-8.
    #[error("malformed attribute line")]
    Malformed,
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Codec for attribute blocks.
#[derive(Debug, Clone)]
pub struct PolicyCodec {
    max_request: usize,
}

impl PolicyCodec {
    /// Accepts requests up to `max_request` bytes.
    pub fn new(max_request: usize) -> Self {
        Self { max_request }
    }
}

impl Decoder for PolicyCodec {
    type Item = Request;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Request>, CodecError> {
        // The block ends at the first empty line: "\n\n" (or a leading "\n").
        let end = if src.first() == Some(&b'\n') {
            Some(0)
        } else {
            src.windows(2).position(|w| w == b"\n\n").map(|p| p + 1)
        };
        let Some(end) = end else {
            if src.len() > self.max_request {
                return Err(CodecError::TooLong(self.max_request));
            }
            return Ok(None);
        };
        if end > self.max_request {
            return Err(CodecError::TooLong(self.max_request));
        }
        let block = src.split_to(end + 1);
        let mut attrs = HashMap::new();
        for line in block[..end]
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
        {
            let line = std::str::from_utf8(line).map_err(|_| CodecError::Malformed)?;
            let line = line.strip_suffix('\r').unwrap_or(line);
            let (k, v) = line.split_once('=').ok_or(CodecError::Malformed)?;
            if k.is_empty() {
                return Err(CodecError::Malformed);
            }
            if attrs.len() >= MAX_ATTRIBUTES {
                return Err(CodecError::TooMany);
            }
            attrs.insert(k.to_owned(), v.to_owned());
        }
        Ok(Some(Request { attrs }))
    }
}

impl Encoder<&Reply> for PolicyCodec {
    type Error = CodecError;

    fn encode(&mut self, item: &Reply, dst: &mut BytesMut) -> Result<(), CodecError> {
        // An action never spans lines: Postfix would misread the reply.
        let action: String = item
            .action
            .chars()
            .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
            .collect();
        dst.put_slice(b"action=");
        dst.put_slice(action.as_bytes());
        dst.put_slice(b"\n\n");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPTURED: &str = "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\nclient_address=127.0.0.1\nclient_name=localhost\nclient_port=56224\nreverse_client_name=localhost\nserver_address=127.0.0.1\nserver_port=20025\nhelo_name=client.remote.test\nsender=user@example.org\nrecipient=alias@example.org\nrecipient_count=0\nqueue_id=\ninstance=43d9.6b0bb9ff.11d0a.0\nsize=0\netrn_domain=\nstress=\nsasl_method=PLAIN\nsasl_username=user@example.org\nsasl_sender=\nccert_subject=\nccert_issuer=\nccert_fingerprint=\nccert_pubkey_fingerprint=\nencryption_protocol=\nencryption_cipher=\nencryption_keysize=0\npolicy_context=\n\n";

    #[test]
    fn captured_request_in_every_chunk_size() {
        let wire = format!("{CAPTURED}{CAPTURED}");
        for chunk in [1, 2, 3, 7, 64, wire.len()] {
            let mut c = PolicyCodec::new(8192);
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for p in wire.as_bytes().chunks(chunk) {
                buf.extend_from_slice(p);
                while let Some(r) = c.decode(&mut buf).unwrap() {
                    got.push(r);
                }
            }
            assert_eq!(got.len(), 2);
            assert_eq!(got[0].get("sasl_username"), Some("user@example.org"));
            assert_eq!(got[0].get("queue_id"), Some(""));
            assert_eq!(got[0].non_empty("queue_id"), None);
            assert_eq!(got[1].get("protocol_state"), Some("RCPT"));
        }
    }

    #[test]
    fn reply_is_one_line_and_an_empty_line() {
        let mut buf = BytesMut::new();
        PolicyCodec::new(100)
            .encode(
                &Reply {
                    action: "DEFER_IF_PERMIT rate\nlimit".into(),
                },
                &mut buf,
            )
            .unwrap();
        assert_eq!(&buf[..], b"action=DEFER_IF_PERMIT rate limit\n\n");
    }

    #[test]
    fn malformed_and_oversize() {
        for bad in [&b"novalue\n\n"[..], b"=x\n\n", b"a=\xff\n\n"] {
            let mut buf = BytesMut::from(bad);
            assert!(PolicyCodec::new(1000).decode(&mut buf).is_err(), "{bad:?}");
        }
        let mut buf = BytesMut::from(&vec![b'a'; 2000][..]);
        assert!(matches!(
            PolicyCodec::new(1000).decode(&mut buf),
            Err(CodecError::TooLong(_))
        ));
        let many: String = (0..200).map(|i| format!("a{i}=b\n")).collect::<String>() + "\n";
        let mut buf = BytesMut::from(many.as_bytes());
        assert!(matches!(
            PolicyCodec::new(100_000).decode(&mut buf),
            Err(CodecError::TooMany)
        ));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let mut buf = BytesMut::from(&bytes[..]);
            let mut c = PolicyCodec::new(128);
            while let Ok(Some(_)) = c.decode(&mut buf) {}
        }
    }
}

//! Netstring framing (`<len>:<bytes>,`) as Postfix's socketmap client
//! speaks it (socketmap_table(5), `src/util/netstring.c`). No I/O here.

use bytes::{Buf, BufMut, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// Postfix's reply limit for socketmap (100000 bytes of payload); requests
/// are far smaller, and the server's own limit is configurable.
pub const POSTFIX_MAX_REPLY: usize = 100_000;

/// A framing error: the peer is broken and the connection must close.
#[derive(Debug, thiserror::Error)]
pub enum NetstringError {
    /// The length prefix is not decimal digits, or is missing its `:`.
    #[error("bad netstring length prefix")]
    BadLength,
    /// The declared length is over the limit (checked before allocating).
    #[error("netstring of {declared} bytes exceeds the limit of {max}")]
    TooLong {
        /// Declared length.
        declared: usize,
        /// The limit.
        max: usize,
    },
    /// The payload is not followed by `,`.
    #[error("netstring is not terminated by a comma")]
    MissingComma,
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Decodes netstrings of at most `max` payload bytes; encodes any payload.
#[derive(Debug, Clone)]
pub struct NetstringCodec {
    max: usize,
}

impl NetstringCodec {
    /// A codec accepting payloads of at most `max` bytes.
    pub fn new(max: usize) -> Self {
        Self { max }
    }
}

impl Decoder for NetstringCodec {
    type Item = BytesMut;
    type Error = NetstringError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, NetstringError> {
        let colon = match src.iter().position(|&b| b == b':') {
            Some(p) => p,
            None => {
                // Not yet a complete prefix. More digits only make the length
                // larger, so refuse as soon as the digits so far exceed the
                // limit, exactly as the complete prefix would be refused:
                // the answer must not depend on how the bytes were segmented
                // (leading zeros are allowed, as in Postfix's netstring.c).
                if src.iter().any(|b| !b.is_ascii_digit()) {
                    return Err(NetstringError::BadLength);
                }
                let so_far = std::str::from_utf8(src)
                    .ok()
                    .and_then(|s| s.parse::<usize>().ok());
                if src.len() > 19 || so_far.is_some_and(|n| n > self.max) {
                    return Err(NetstringError::TooLong {
                        declared: so_far.unwrap_or(usize::MAX),
                        max: self.max,
                    });
                }
                return Ok(None);
            }
        };
        let prefix = &src[..colon];
        if prefix.is_empty() || !prefix.iter().all(u8::is_ascii_digit) {
            return Err(NetstringError::BadLength);
        }
        if prefix.len() > 19 {
            return Err(NetstringError::TooLong {
                declared: usize::MAX,
                max: self.max,
            });
        }
        let declared: usize = std::str::from_utf8(prefix)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(NetstringError::BadLength)?;
        if declared > self.max {
            return Err(NetstringError::TooLong {
                declared,
                max: self.max,
            });
        }
        let total = colon + 1 + declared + 1;
        if src.len() < total {
            src.reserve(total - src.len());
            return Ok(None);
        }
        if src[total - 1] != b',' {
            return Err(NetstringError::MissingComma);
        }
        src.advance(colon + 1);
        let payload = src.split_to(declared);
        src.advance(1);
        Ok(Some(payload))
    }
}

impl<T: AsRef<[u8]>> Encoder<T> for NetstringCodec {
    type Error = NetstringError;

    fn encode(&mut self, item: T, dst: &mut BytesMut) -> Result<(), NetstringError> {
        let payload = item.as_ref();
        let len = payload.len().to_string();
        dst.reserve(len.len() + payload.len() + 2);
        dst.put_slice(len.as_bytes());
        dst.put_u8(b':');
        dst.put_slice(payload);
        dst.put_u8(b',');
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(
        codec: &mut NetstringCodec,
        input: &[u8],
        chunk: usize,
    ) -> Result<Vec<Vec<u8>>, NetstringError> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for piece in input.chunks(chunk) {
            buf.extend_from_slice(piece);
            while let Some(f) = codec.decode(&mut buf)? {
                out.push(f.to_vec());
            }
        }
        Ok(out)
    }

    #[test]
    fn captured_postmap_batch_in_every_chunk_size() {
        // postmap -q - sent these two on one connection [captured, reference/socketmap.md 1.3]
        let wire = b"25:aliases alias@example.org,15:aliases foo@bar,";
        for chunk in 1..=wire.len() {
            let frames = decode_all(&mut NetstringCodec::new(1000), wire, chunk).unwrap();
            assert_eq!(
                frames,
                vec![
                    b"aliases alias@example.org".to_vec(),
                    b"aliases foo@bar".to_vec()
                ]
            );
        }
    }

    // Found by fuzz/fuzz_targets/netstring.rs (input `0064:x,` in 2-byte
    // chunks): a length prefix with leading zeros was refused as too long
    // when its digits arrived before the colon, and accepted otherwise.
    #[test]
    fn leading_zeros_decode_the_same_in_every_chunk_size() {
        let wire = b"0005:a b c,0064:";
        for chunk in 1..=wire.len() {
            let frames = decode_all(&mut NetstringCodec::new(100), wire, chunk).unwrap();
            assert_eq!(frames, vec![b"a b c".to_vec()], "chunk {chunk}");
        }
        for chunk in 1..=6 {
            let e = decode_all(&mut NetstringCodec::new(100), b"000101:", chunk).unwrap_err();
            assert!(
                matches!(e, NetstringError::TooLong { declared: 101, .. }),
                "{e:?}"
            );
        }
    }

    #[test]
    fn utf8_length_counts_bytes() {
        let wire = "26:domains ünï@exämple.org,".as_bytes();
        let frames = decode_all(&mut NetstringCodec::new(1000), wire, 3).unwrap();
        assert_eq!(frames, vec!["domains ünï@exämple.org".as_bytes().to_vec()]);
    }

    #[test]
    fn encodes() {
        let mut buf = BytesMut::new();
        NetstringCodec::new(10)
            .encode(b"OK user@example.org", &mut buf)
            .unwrap();
        assert_eq!(&buf[..], b"19:OK user@example.org,");
        buf.clear();
        NetstringCodec::new(10)
            .encode(b"NOTFOUND ", &mut buf)
            .unwrap();
        assert_eq!(&buf[..], b"9:NOTFOUND ,");
    }

    #[test]
    fn oversize_declared_length_is_refused_before_reading() {
        let mut buf = BytesMut::from(&b"99999:"[..]);
        assert!(matches!(
            NetstringCodec::new(1000).decode(&mut buf),
            Err(NetstringError::TooLong {
                declared: 99999,
                ..
            })
        ));
        // an endless digit string is refused too
        let mut buf = BytesMut::from(&b"1234567890123"[..]);
        assert!(NetstringCodec::new(1000).decode(&mut buf).is_err());
    }

    #[test]
    fn garbage() {
        for bad in [
            &b"x:abc,"[..],
            b":abc,",
            b"3:abcd",
            b"-1:a,",
            b"3 :abc,",
            b"GET / HTTP/1.0\r\n",
        ] {
            let mut buf = BytesMut::from(bad);
            assert!(
                NetstringCodec::new(1000).decode(&mut buf).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn truncated_is_incomplete() {
        let mut buf = BytesMut::from(&b"25:aliases ali"[..]);
        assert!(
            NetstringCodec::new(1000)
                .decode(&mut buf)
                .unwrap()
                .is_none()
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let mut buf = BytesMut::from(&bytes[..]);
            let mut c = NetstringCodec::new(100);
            while let Ok(Some(_)) = c.decode(&mut buf) {}
        }

        #[test]
        fn roundtrip(payload in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let mut buf = BytesMut::new();
            let mut c = NetstringCodec::new(300);
            c.encode(&payload, &mut buf).unwrap();
            proptest::prop_assert_eq!(c.decode(&mut buf).unwrap().unwrap().to_vec(), payload);
            proptest::prop_assert!(buf.is_empty());
        }
    }
}

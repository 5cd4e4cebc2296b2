//! The Dovecot 2.3 dict proxy protocol (server side) as Dovecot's
//! `passdb/userdb { driver = dict }` speaks it through `uri = proxy:...`
//! (`shared/reference/dovecot-dict.md`): LF-ended lines whose first byte is
//! the command, TAB-separated, tab-escaped fields. Only the read commands
//! (`H`ello, `L`ookup, `I`terate) exist here; passdb/userdb never write.
//! No I/O and no database here.

use super::{Line, LineCodec, tab_escape, tab_unescape};
use bytes::{BufMut, BytesMut};

/// Longest request line (a key is `shared/userdb/` plus a user name; the
/// dict client's own limit is 64 KiB).
pub const MAX_LINE: usize = 16 * 1024;

/// One request line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `H<major>\t<minor>\t<value_type>\t<user>\t<dict_name>`; no reply.
    Hello {
        /// Protocol major version (2.3 sends 3).
        major: u32,
        /// Minor version (2.3.19 sends 2).
        minor: u32,
        /// The name after the last `:` of the `proxy:` URI.
        dict_name: String,
    },
    /// `L<key>[\t<username>]`: one value.
    Lookup {
        /// The key, unescaped (`shared/passdb/user@example.org`).
        key: String,
    },
    /// `I<flags>\t<max_rows>\t<path>[\t<username>]`: every key under a path.
    Iterate {
        /// Dovecot `enum dict_iterate_flags`.
        flags: u32,
        /// Most rows wanted; 0 = all.
        max_rows: u64,
        /// The path, unescaped (`shared/userdb/`).
        path: String,
    },
}

/// Iterate flag: only the keys are wanted (`DICT_ITERATE_FLAG_NO_VALUE`).
pub const ITERATE_NO_VALUE: u32 = 0x08;
/// Iterate flag: the path is a whole key (`DICT_ITERATE_FLAG_EXACT_KEY`).
pub const ITERATE_EXACT_KEY: u32 = 0x10;

/// Why a line is not a command we serve. The session logs and closes.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// More than [`MAX_LINE`] bytes without a LF.
    #[error("line longer than {MAX_LINE} bytes")]
    LineTooLong,
    /// Not UTF-8.
    #[error("line is not UTF-8")]
    NotUtf8,
    /// A command byte we do not serve (the write commands, or garbage).
    #[error("unsupported dict command {0:?}")]
    Unsupported(char),
    /// A known command with bad fields.
    #[error("malformed dict {command} command: {reason}")]
    Malformed {
        /// `hello`, `lookup`, `iterate`.
        command: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// Reading or writing the socket failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

fn malformed(command: &'static str, reason: &'static str) -> CodecError {
    CodecError::Malformed { command, reason }
}

fn number<T: std::str::FromStr>(
    f: Option<&str>,
    command: &'static str,
    reason: &'static str,
) -> Result<T, CodecError> {
    f.filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| malformed(command, reason))
}

impl Command {
    /// Parses one line (without its LF).
    pub fn parse(line: &[u8]) -> Result<Self, CodecError> {
        let line = std::str::from_utf8(line).map_err(|_| CodecError::NotUtf8)?;
        let mut chars = line.chars();
        let Some(cmd) = chars.next() else {
            return Err(malformed("(empty)", "empty line"));
        };
        let mut fields = chars.as_str().split('\t');
        match cmd {
            'H' => {
                let major = number(fields.next(), "hello", "bad major version")?;
                let minor = number(fields.next(), "hello", "bad minor version")?;
                let _value_type = fields.next();
                let _user = fields.next();
                let dict_name = tab_unescape(fields.next().unwrap_or_default()).into_owned();
                Ok(Command::Hello {
                    major,
                    minor,
                    dict_name,
                })
            }
            'L' => {
                let key = fields
                    .next()
                    .filter(|k| !k.is_empty())
                    .ok_or_else(|| malformed("lookup", "no key"))?;
                Ok(Command::Lookup {
                    key: tab_unescape(key).into_owned(),
                })
            }
            'I' => {
                let flags = number(fields.next(), "iterate", "bad flags")?;
                let max_rows = number(fields.next(), "iterate", "bad max_rows")?;
                let path = fields
                    .next()
                    .ok_or_else(|| malformed("iterate", "no path"))?;
                Ok(Command::Iterate {
                    flags,
                    max_rows,
                    path: tab_unescape(path).into_owned(),
                })
            }
            other => Err(CodecError::Unsupported(if other.is_control() {
                '?'
            } else {
                other
            })),
        }
    }
}

/// One reply line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `O<value>`: lookup found.
    Found(String),
    /// `N`: not found (passdb "unknown user", userdb "no such user").
    NotFound,
    /// `F<text>`: failure; Dovecot answers its client `code=temp_fail`.
    Fail(String),
    /// `O<key>\t<value>`: one iterate row.
    Row {
        /// The full key (`shared/userdb/user@example.org`).
        key: String,
        /// The value (may be empty when the client asked for no values).
        value: String,
    },
    /// An empty line: the iteration is complete.
    IterEnd,
}

impl Reply {
    /// Appends the reply's bytes to `out`.
    pub fn encode_into(&self, out: &mut BytesMut) {
        match self {
            Reply::Found(v) => {
                out.put_u8(b'O');
                out.put_slice(tab_escape(v).as_bytes());
            }
            Reply::NotFound => out.put_u8(b'N'),
            Reply::Fail(t) => {
                out.put_u8(b'F');
                out.put_slice(tab_escape(t).as_bytes());
            }
            Reply::Row { key, value } => {
                out.put_u8(b'O');
                out.put_slice(tab_escape(key).as_bytes());
                out.put_u8(b'\t');
                out.put_slice(tab_escape(value).as_bytes());
            }
            Reply::IterEnd => {}
        }
        out.put_u8(b'\n');
    }

    /// The reply's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = BytesMut::new();
        self.encode_into(&mut b);
        b.to_vec()
    }
}

/// The Dovecot dict protocol as a [`Line`] protocol.
#[derive(Debug)]
pub enum Dict {}

impl Line for Dict {
    type Command = Command;
    type Reply = Reply;
    type Error = CodecError;
    const MAX_LINE: usize = MAX_LINE;

    fn too_long() -> CodecError {
        CodecError::LineTooLong
    }
    fn parse(line: &[u8]) -> Result<Command, CodecError> {
        Command::parse(line)
    }
    fn encode(reply: &Reply, out: &mut BytesMut) {
        reply.encode_into(out);
    }
}

/// The line codec for [`Framed`](tokio_util::codec::Framed).
pub type Codec = LineCodec<Dict>;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tokio_util::codec::Decoder;

    /// Captured from Dovecot 2.3.19.1's auth process (reference/dovecot-dict.md §2.3).
    const CAPTURE: &[u8] = b"H3\t2\t0\t\tauthdict\nLshared/passdb/user@example.org\tuser@example.org\nI0\t0\tshared/userdb/\t*\n";

    fn decode_all(bytes: &[u8], chunk: usize) -> Vec<Command> {
        let mut codec = Codec::new();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for c in bytes.chunks(chunk) {
            buf.extend_from_slice(c);
            while let Some(cmd) = codec.decode(&mut buf).unwrap() {
                out.push(cmd);
            }
        }
        out
    }

    #[test]
    fn capture_decodes_in_every_chunk_size() {
        let want = vec![
            Command::Hello {
                major: 3,
                minor: 2,
                dict_name: "authdict".into(),
            },
            Command::Lookup {
                key: "shared/passdb/user@example.org".into(),
            },
            Command::Iterate {
                flags: 0,
                max_rows: 0,
                path: "shared/userdb/".into(),
            },
        ];
        for chunk in 1..=CAPTURE.len() {
            assert_eq!(decode_all(CAPTURE, chunk), want, "chunk {chunk}");
        }
    }

    #[test]
    fn keys_are_unescaped() {
        assert_eq!(
            Command::parse(b"Lshared/passdb/a\x01tb").unwrap(),
            Command::Lookup {
                key: "shared/passdb/a\tb".into()
            }
        );
    }

    #[test]
    fn garbage_is_refused() {
        for (line, want) in [
            (&b""[..], "empty"),
            (b"L", "no key"),
            (b"Hx\t2", "hello"),
            (b"I0", "iterate"),
            (b"I0\t0", "no path"),
            (b"Sshared/x\ty", "unsupported"),
            (b"\x01", "unsupported"),
            (b"L\xff", "UTF-8"),
        ] {
            let e = Command::parse(line).unwrap_err().to_string();
            assert!(e.contains(want), "{line:?}: {e}");
        }
    }

    #[test]
    fn oversize_is_refused() {
        let mut c = Codec::new();
        let mut buf = BytesMut::from(&vec![b'L'; MAX_LINE + 1][..]);
        assert!(matches!(c.decode(&mut buf), Err(CodecError::LineTooLong)));
    }

    #[test]
    fn replies_are_byte_exact() {
        assert_eq!(
            Reply::Found(r#"{"password":"{PLAIN}secret"}"#.into()).to_bytes(),
            b"O{\"password\":\"{PLAIN}secret\"}\n"
        );
        assert_eq!(Reply::NotFound.to_bytes(), b"N\n");
        assert_eq!(
            Reply::Fail("backend exploded".into()).to_bytes(),
            b"Fbackend exploded\n"
        );
        assert_eq!(
            Reply::Row {
                key: "shared/userdb/user@example.org".into(),
                value: "{}".into()
            }
            .to_bytes(),
            b"Oshared/userdb/user@example.org\t{}\n"
        );
        assert_eq!(Reply::IterEnd.to_bytes(), b"\n");
        assert_eq!(
            Reply::Found("a\tb\nc".into()).to_bytes(),
            b"Oa\x01tb\x01nc\n"
        );
    }

    proptest! {
        #[test]
        fn decoder_never_panics(data in proptest::collection::vec(any::<u8>(), 0..4096), chunk in 1usize..64) {
            let mut codec = Codec::new();
            let mut buf = BytesMut::new();
            'outer: for c in data.chunks(chunk) {
                buf.extend_from_slice(c);
                loop {
                    match codec.decode(&mut buf) {
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(_) => break 'outer,
                    }
                }
            }
        }
    }
}

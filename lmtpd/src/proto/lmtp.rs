//! LMTP (RFC 2033) on the wire: command lines, replies and the
//! dot-stuffed DATA reader, as one [`tokio_util::codec`] codec. No I/O, no
//! database and no Maildir here.
//!
//! The codec has two modes. In command mode it yields one [`Frame::Command`]
//! per line (a malformed line is a [`Frame::Command`] holding the
//! [`SyntaxError`], so the session answers 500/501 and goes on). After the
//! session answered `354` it calls [`LmtpCodec::start_data`]; the codec
//! then collects the message and yields one [`Frame::Data`] at the final
//! `.` line, with the dot-stuffing removed and line ends made LF (Dovecot
//! stores LF, see `shared/reference/lmtp-maildir.md` §2.1).

use bytes::{BufMut, BytesMut};
use std::fmt;
use tokio_util::codec::{Decoder, Encoder};

/// A parsed LMTP command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `LHLO <host>` (RFC 2033 §4.1).
    Lhlo(String),
    /// `HELO`/`EHLO`: SMTP greetings, which LMTP does not allow.
    SmtpGreeting,
    /// `MAIL FROM:<path> [params]`; the path is empty for bounces.
    Mail {
        /// The reverse path without brackets (`""` for `<>`).
        from: String,
        /// ESMTP parameters.
        params: MailParams,
    },
    /// `RCPT TO:<path> [params]`.
    Rcpt {
        /// The forward path without brackets.
        to: String,
        /// `ORCPT=` if given (RFC 3461), kept for Sieve.
        orcpt: Option<String>,
    },
    /// `DATA`.
    Data,
    /// `BDAT`: refused, CHUNKING is not offered.
    Bdat,
    /// `RSET`.
    Rset,
    /// `NOOP`.
    Noop,
    /// `QUIT`.
    Quit,
    /// `VRFY` / `EXPN`: refused (RFC 5321 §3.5.3 allows 252/502).
    Vrfy,
    /// `HELP`.
    Help,
}

/// MAIL FROM parameters we understand.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailParams {
    /// `SIZE=` (RFC 1870).
    pub size: Option<u64>,
    /// `BODY=8BITMIME` (RFC 6152).
    pub is_8bit: bool,
    /// `SMTPUTF8` (RFC 6531).
    pub is_smtputf8: bool,
}

/// Why a command line is not a command; each maps to one reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyntaxError {
    /// Unknown verb: `500 5.5.1`.
    #[error("unknown command")]
    Unknown,
    /// Known verb, bad arguments: `501 5.5.4`.
    #[error("{0}")]
    BadArguments(&'static str),
    /// Unsupported parameter: `555 5.5.4`.
    #[error("unsupported parameter {0}")]
    BadParameter(String),
    /// Longer than the line limit: `500 5.5.2`.
    #[error("line too long")]
    TooLong,
    /// Not UTF-8: `500 5.5.2`.
    #[error("invalid characters in command")]
    NotUtf8,
}

/// Why a message was not read into a whole [`Frame::Data`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    /// More than `max_size` bytes: `552 5.3.4`.
    #[error("message exceeds the size limit")]
    TooBig,
    /// A line longer than `max_line`: `552 5.3.4` as well (Postfix folds
    /// lines at 990, so only a broken client gets here).
    #[error("message line too long")]
    LineTooLong,
    /// More header lines than allowed: `552 5.3.4`.
    #[error("too many header lines")]
    TooManyHeaders,
}

/// A message read in DATA mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The message with LF line ends, dot-stuffing removed.
    pub body: Vec<u8>,
    /// Its size with CRLF line ends as sent (Dovecot's `W=`).
    pub wire_size: usize,
}

/// One decoded unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A command line, or why it is not one.
    Command(Result<Command, SyntaxError>),
    /// The whole message after DATA, or why it was refused. Either way the
    /// codec is back in command mode.
    Data(Result<Message, DataError>),
}

/// A reply: a three-digit code, an optional enhanced status code
/// (RFC 3463) and one or more text lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The basic code (`250`, `451`, …).
    pub code: u16,
    /// The enhanced status code (`2.1.5`), written before every line.
    pub status: Option<&'static str>,
    /// Text lines (at least one).
    pub lines: Vec<String>,
}

impl Reply {
    /// A one-line reply.
    pub fn new(code: u16, status: &'static str, text: impl Into<String>) -> Self {
        Reply {
            code,
            status: Some(status),
            lines: vec![text.into()],
        }
    }

    /// A reply without an enhanced status code (greeting, LHLO).
    pub fn plain(code: u16, lines: Vec<String>) -> Self {
        Reply {
            code,
            status: None,
            lines,
        }
    }

    /// 2xx.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 4xx.
    pub fn is_temporary(&self) -> bool {
        (400..500).contains(&self.code)
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.lines.len().max(1);
        for i in 0..n {
            let sep = if i + 1 == n { ' ' } else { '-' };
            let text = self.lines.get(i).map(String::as_str).unwrap_or("");
            // A reply line must never carry a CR or LF of its own.
            let text: String = text
                .chars()
                .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
                .collect();
            match self.status {
                Some(s) => write!(f, "{}{sep}{s} {text}\r\n", self.code)?,
                None => write!(f, "{}{sep}{text}\r\n", self.code)?,
            }
        }
        Ok(())
    }
}

/// A protocol error that ends the connection (the socket failed).
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Command,
    /// Skipping the rest of an over-long command line.
    Discard,
    Data,
}

/// The LMTP server codec.
#[derive(Debug, Clone)]
pub struct LmtpCodec {
    mode: Mode,
    max_line: usize,
    max_size: usize,
    max_header_lines: usize,
    // DATA state
    body: Vec<u8>,
    wire_size: usize,
    error: Option<DataError>,
    in_headers: bool,
    header_lines: usize,
    /// Bytes of the current (unfinished) data line seen so far.
    partial: usize,
}

impl LmtpCodec {
    /// A codec that accepts lines up to `max_line` bytes (CRLF included)
    /// and messages up to `max_size` bytes with at most `max_header_lines`
    /// header lines.
    pub fn new(max_line: usize, max_size: usize, max_header_lines: usize) -> Self {
        LmtpCodec {
            mode: Mode::Command,
            max_line,
            max_size,
            max_header_lines,
            body: Vec::new(),
            wire_size: 0,
            error: None,
            in_headers: true,
            header_lines: 0,
            partial: 0,
        }
    }

    /// Switches to DATA mode (after the session sent `354`).
    pub fn start_data(&mut self) {
        self.mode = Mode::Data;
        self.body = Vec::new();
        self.wire_size = 0;
        self.error = None;
        self.in_headers = true;
        self.header_lines = 0;
        self.partial = 0;
    }

    /// Whether the codec is reading a message.
    pub fn is_in_data(&self) -> bool {
        self.mode == Mode::Data
    }

    fn data_line(&mut self, line: &[u8]) -> Option<Frame> {
        // `line` has no line end. RFC 5321 §4.5.2: a leading dot is removed.
        if line == b"." {
            self.mode = Mode::Command;
            let body = std::mem::take(&mut self.body);
            return Some(Frame::Data(match self.error.take() {
                Some(e) => Err(e),
                None => Ok(Message {
                    body,
                    wire_size: self.wire_size,
                }),
            }));
        }
        let line = line.strip_prefix(b".").unwrap_or(line);
        if self.in_headers {
            if line.is_empty() {
                self.in_headers = false;
            } else if !matches!(line.first(), Some(b' ' | b'\t')) {
                self.header_lines += 1;
                if self.header_lines > self.max_header_lines && self.error.is_none() {
                    self.error = Some(DataError::TooManyHeaders);
                }
            }
        }
        self.wire_size += line.len() + 2;
        if self.wire_size > self.max_size && self.error.is_none() {
            self.error = Some(DataError::TooBig);
        }
        if self.error.is_none() {
            self.body.extend_from_slice(line);
            self.body.push(b'\n');
        } else {
            // Keep reading to the final dot, but store nothing more.
            self.body = Vec::new();
        }
        None
    }
}

fn strip_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

impl Decoder for LmtpCodec {
    type Item = Frame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        loop {
            let nl = src.iter().position(|&b| b == b'\n');
            match self.mode {
                Mode::Discard => match nl {
                    Some(i) => {
                        let _ = src.split_to(i + 1);
                        self.mode = Mode::Command;
                        return Ok(Some(Frame::Command(Err(SyntaxError::TooLong))));
                    }
                    None => {
                        src.clear();
                        return Ok(None);
                    }
                },
                Mode::Command => match nl {
                    Some(i) if i < self.max_line => {
                        let line = src.split_to(i + 1);
                        return Ok(Some(Frame::Command(parse_command(strip_eol(&line)))));
                    }
                    Some(i) => {
                        let _ = src.split_to(i + 1);
                        return Ok(Some(Frame::Command(Err(SyntaxError::TooLong))));
                    }
                    None if src.len() >= self.max_line => {
                        src.clear();
                        self.mode = Mode::Discard;
                        return Ok(None);
                    }
                    None => return Ok(None),
                },
                Mode::Data => match nl {
                    Some(i) => {
                        let line = src.split_to(i + 1);
                        if self.partial + line.len() > self.max_line && self.error.is_none() {
                            self.error = Some(DataError::LineTooLong);
                        }
                        if self.partial > 0 {
                            // The tail of an over-long line: never the final dot.
                            self.partial = 0;
                            self.wire_size += line.len();
                            continue;
                        }
                        if let Some(frame) = self.data_line(strip_eol(&line)) {
                            return Ok(Some(frame));
                        }
                    }
                    None if src.len() >= self.max_line => {
                        // Drop the head of an over-long line; memory stays bounded.
                        if self.error.is_none() {
                            self.error = Some(DataError::LineTooLong);
                        }
                        self.partial += src.len();
                        self.wire_size += src.len();
                        self.body = Vec::new();
                        src.clear();
                        return Ok(None);
                    }
                    None => return Ok(None),
                },
            }
        }
    }
}

impl Encoder<&Reply> for LmtpCodec {
    type Error = CodecError;

    fn encode(&mut self, item: &Reply, dst: &mut BytesMut) -> Result<(), CodecError> {
        dst.put_slice(item.to_string().as_bytes());
        Ok(())
    }
}

/// Splits `VERB rest` case-insensitively.
fn verb(line: &str) -> (String, &str) {
    match line.split_once(' ') {
        Some((v, rest)) => (v.to_ascii_uppercase(), rest),
        None => (line.to_ascii_uppercase(), ""),
    }
}

/// Parses `<path>` after `FROM:`/`TO:` (a space after the colon is
/// tolerated, as Postfix's smtpd does) and returns the path and the rest.
fn path_arg<'a>(rest: &'a str, prefix: &str) -> Result<(String, &'a str), SyntaxError> {
    let head = rest
        .get(..prefix.len())
        .ok_or(SyntaxError::BadArguments("syntax: expected <address>"))?;
    if !head.eq_ignore_ascii_case(prefix) {
        return Err(SyntaxError::BadArguments(if prefix == "FROM:" {
            "syntax: MAIL FROM:<address>"
        } else {
            "syntax: RCPT TO:<address>"
        }));
    }
    let rest = rest[prefix.len()..].trim_start();
    let inner = rest
        .strip_prefix('<')
        .ok_or(SyntaxError::BadArguments("address must be in <>"))?;
    let end = inner
        .find('>')
        .ok_or(SyntaxError::BadArguments("missing > after the address"))?;
    let path = &inner[..end];
    // Source routes (RFC 5321 §4.1.2 `@a,@b:user@c`) are accepted and dropped.
    let path = match path.rsplit_once(':') {
        Some((route, p)) if route.starts_with('@') => p,
        _ => path,
    };
    if path.chars().any(|c| c.is_control() || c == ' ' || c == '<') {
        return Err(SyntaxError::BadArguments(
            "invalid characters in the address",
        ));
    }
    let after = &inner[end + 1..];
    if !after.is_empty() && !after.starts_with(' ') {
        return Err(SyntaxError::BadArguments("garbage after the address"));
    }
    Ok((path.to_owned(), after.trim()))
}

/// Parses one command line (without its line end).
pub fn parse_command(line: &[u8]) -> Result<Command, SyntaxError> {
    let line = std::str::from_utf8(line).map_err(|_| SyntaxError::NotUtf8)?;
    let (verb, rest) = verb(line);
    let no_args = |c: Command| {
        if rest.trim().is_empty() {
            Ok(c)
        } else {
            Err(SyntaxError::BadArguments("this command takes no arguments"))
        }
    };
    match verb.as_str() {
        "LHLO" => {
            let host = rest.trim();
            if host.is_empty() || host.contains(' ') {
                Err(SyntaxError::BadArguments("syntax: LHLO hostname"))
            } else {
                Ok(Command::Lhlo(host.to_owned()))
            }
        }
        "HELO" | "EHLO" => Ok(Command::SmtpGreeting),
        "MAIL" => {
            let (from, params_text) = path_arg(rest, "FROM:")?;
            let mut params = MailParams::default();
            for p in params_text.split(' ').filter(|p| !p.is_empty()) {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                match k.to_ascii_uppercase().as_str() {
                    "SIZE" => {
                        // RFC 1870: size-value = 1*20DIGIT (parse() alone
                        // would also take a sign).
                        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                            return Err(SyntaxError::BadArguments("bad SIZE= value"));
                        }
                        params.size = Some(
                            v.parse()
                                .map_err(|_| SyntaxError::BadArguments("bad SIZE= value"))?,
                        )
                    }
                    "BODY" => match v.to_ascii_uppercase().as_str() {
                        "7BIT" => params.is_8bit = false,
                        "8BITMIME" => params.is_8bit = true,
                        _ => return Err(SyntaxError::BadParameter(p.to_owned())),
                    },
                    "SMTPUTF8" if v.is_empty() => params.is_smtputf8 = true,
                    // DSN parameters are harmless; we do not offer DSN but
                    // a client may still send them.
                    "ENVID" | "RET" => {}
                    _ => return Err(SyntaxError::BadParameter(p.to_owned())),
                }
            }
            Ok(Command::Mail { from, params })
        }
        "RCPT" => {
            let (to, params_text) = path_arg(rest, "TO:")?;
            if to.is_empty() {
                return Err(SyntaxError::BadArguments("empty recipient address"));
            }
            let mut orcpt = None;
            for p in params_text.split(' ').filter(|p| !p.is_empty()) {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                match k.to_ascii_uppercase().as_str() {
                    "ORCPT" => orcpt = Some(v.split_once(';').map_or(v, |(_, a)| a).to_owned()),
                    "NOTIFY" => {}
                    _ => return Err(SyntaxError::BadParameter(p.to_owned())),
                }
            }
            Ok(Command::Rcpt { to, orcpt })
        }
        "DATA" => no_args(Command::Data),
        "BDAT" => Ok(Command::Bdat),
        "RSET" => no_args(Command::Rset),
        "NOOP" => Ok(Command::Noop),
        "QUIT" => no_args(Command::Quit),
        "VRFY" | "EXPN" => Ok(Command::Vrfy),
        "HELP" => Ok(Command::Help),
        _ => Err(SyntaxError::Unknown),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Found while writing fuzz/src/lib.rs's lmtp target: `SIZE=+5` was
    // taken as 5 because str::parse accepts a sign.
    #[test]
    fn size_is_digits_only() {
        for bad in ["+5", "-5", "", " 5", "5x"] {
            assert_eq!(
                parse_command(format!("MAIL FROM:<a@b> SIZE={bad}").as_bytes()),
                Err(SyntaxError::BadArguments("bad SIZE= value")),
                "{bad:?}"
            );
        }
        assert!(parse_command(b"MAIL FROM:<a@b> SIZE=00042").is_ok());
    }

    fn codec() -> LmtpCodec {
        LmtpCodec::new(1000, 10_000, 100)
    }

    /// Decodes `wire` fed in chunks of `chunk` bytes; switches to data mode
    /// after every DATA command, as the session does.
    fn run(wire: &[u8], chunk: usize, mut c: LmtpCodec) -> Vec<Frame> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for piece in wire.chunks(chunk) {
            buf.extend_from_slice(piece);
            while let Some(f) = c.decode(&mut buf).unwrap() {
                if f == Frame::Command(Ok(Command::Data)) {
                    c.start_data();
                }
                out.push(f);
            }
        }
        out
    }

    /// What Postfix 3.7's lmtp client sends, in its pipelined writes
    /// (shared/reference/lmtp-maildir.md §1.1).
    const POSTFIX: &[u8] = b"LHLO mx.test.local\r\n\
MAIL FROM:<user@example.org> SIZE=440 BODY=8BITMIME\r\n\
RCPT TO:<added@example.org> ORCPT=rfc822;added@example.org\r\n\
RCPT TO:<user@example.org>\r\n\
DATA\r\n\
Received: by mx.test.local (Postfix)\r\n\
\tid 4Xyz; Sun, 29 Nov 2026 05:37:03 +0000\r\n\
Subject: hi\r\n\
\r\n\
..leading dot\r\n\
.\r\n\
QUIT\r\n";

    #[test]
    fn postfix_sequence_in_every_chunk_size() {
        let want = vec![
            Frame::Command(Ok(Command::Lhlo("mx.test.local".into()))),
            Frame::Command(Ok(Command::Mail {
                from: "user@example.org".into(),
                params: MailParams {
                    size: Some(440),
                    is_8bit: true,
                    is_smtputf8: false,
                },
            })),
            Frame::Command(Ok(Command::Rcpt {
                to: "added@example.org".into(),
                orcpt: Some("added@example.org".into()),
            })),
            Frame::Command(Ok(Command::Rcpt {
                to: "user@example.org".into(),
                orcpt: None,
            })),
            Frame::Command(Ok(Command::Data)),
            Frame::Data(Ok(Message {
                body: b"Received: by mx.test.local (Postfix)\n\tid 4Xyz; Sun, 29 Nov 2026 05:37:03 +0000\nSubject: hi\n\n.leading dot\n".to_vec(),
                wire_size: 38 + 43 + 13 + 2 + 14,
            })),
            Frame::Command(Ok(Command::Quit)),
        ];
        for chunk in 1..=POSTFIX.len() {
            assert_eq!(run(POSTFIX, chunk, codec()), want, "chunk {chunk}");
        }
    }

    #[test]
    fn bare_lf_and_empty_message() {
        let got = run(b"DATA\n.\nNOOP\n", 1, codec());
        assert_eq!(
            got[1],
            Frame::Data(Ok(Message {
                body: vec![],
                wire_size: 0
            }))
        );
        assert_eq!(got[2], Frame::Command(Ok(Command::Noop)));
    }

    #[test]
    fn oversize_message_is_read_to_the_end_then_refused() {
        let mut wire = b"DATA\r\nSubject: big\r\n\r\n".to_vec();
        for _ in 0..200 {
            wire.extend_from_slice(&[b'x'; 98]);
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b".\r\nRSET\r\n");
        for chunk in [1, 7, 4096] {
            let got = run(&wire, chunk, codec());
            assert_eq!(got[1], Frame::Data(Err(DataError::TooBig)));
            assert_eq!(got[2], Frame::Command(Ok(Command::Rset)));
        }
    }

    #[test]
    fn long_data_line_is_refused_but_the_session_goes_on() {
        let mut wire = b"DATA\r\nSubject: x\r\n\r\n".to_vec();
        wire.extend_from_slice(&[b'y'; 5000]);
        wire.extend_from_slice(b"\r\n.\r\nNOOP\r\n");
        for chunk in [1, 3, 999, 1000, 1001, 8192] {
            let got = run(&wire, chunk, LmtpCodec::new(1000, 1_000_000, 100));
            assert_eq!(
                got[1],
                Frame::Data(Err(DataError::LineTooLong)),
                "chunk {chunk}"
            );
            assert_eq!(got[2], Frame::Command(Ok(Command::Noop)));
        }
    }

    #[test]
    fn too_many_headers() {
        let mut wire = b"DATA\r\n".to_vec();
        for i in 0..150 {
            wire.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
        }
        wire.extend_from_slice(b"\r\nbody\r\n.\r\n");
        assert_eq!(
            run(&wire, 64, codec())[1],
            Frame::Data(Err(DataError::TooManyHeaders))
        );
    }

    #[test]
    fn long_command_line_is_one_error_then_the_next_command() {
        let mut wire = b"NOOP ".to_vec();
        wire.extend_from_slice(&[b'z'; 3000]);
        wire.extend_from_slice(b"\r\nQUIT\r\n");
        for chunk in [1, 2, 500, 4000] {
            let got = run(&wire, chunk, codec());
            assert_eq!(
                got,
                vec![
                    Frame::Command(Err(SyntaxError::TooLong)),
                    Frame::Command(Ok(Command::Quit))
                ],
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn commands() {
        let ok = |l: &str| parse_command(l.as_bytes()).unwrap();
        let err = |l: &[u8]| parse_command(l).unwrap_err();
        assert_eq!(
            ok("mail from:<>"),
            Command::Mail {
                from: String::new(),
                params: MailParams::default()
            }
        );
        assert_eq!(
            ok("RCPT TO: <@relay.example:u@example.org>"),
            Command::Rcpt {
                to: "u@example.org".into(),
                orcpt: None
            }
        );
        assert_eq!(ok("EHLO x"), Command::SmtpGreeting);
        assert_eq!(ok("VRFY postmaster"), Command::Vrfy);
        assert_eq!(err(b"FOO"), SyntaxError::Unknown);
        assert_eq!(err(b""), SyntaxError::Unknown);
        assert!(matches!(err(b"LHLO"), SyntaxError::BadArguments(_)));
        assert!(matches!(
            err(b"MAIL TO:<a@b>"),
            SyntaxError::BadArguments(_)
        ));
        assert!(matches!(
            err(b"MAIL FROM:a@b"),
            SyntaxError::BadArguments(_)
        ));
        assert!(matches!(err(b"RCPT TO:<>"), SyntaxError::BadArguments(_)));
        assert!(matches!(
            err(b"RCPT TO:<a@b>x"),
            SyntaxError::BadArguments(_)
        ));
        assert!(matches!(
            err(b"MAIL FROM:<a@b> FOO=1"),
            SyntaxError::BadParameter(_)
        ));
        assert!(matches!(
            err(b"MAIL FROM:<a@b> SIZE=x"),
            SyntaxError::BadArguments(_)
        ));
        assert!(matches!(err(b"DATA now"), SyntaxError::BadArguments(_)));
        assert_eq!(err(b"\xff\xfe"), SyntaxError::NotUtf8);
    }

    #[test]
    fn replies() {
        assert_eq!(
            Reply::new(250, "2.1.5", "OK").to_string(),
            "250 2.1.5 OK\r\n"
        );
        assert_eq!(
            Reply::plain(250, vec!["vm".into(), "PIPELINING".into()]).to_string(),
            "250-vm\r\n250 PIPELINING\r\n"
        );
        assert_eq!(
            Reply::new(550, "5.1.1", "a\r\nb").to_string(),
            "550 5.1.1 a  b\r\n"
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2000), chunk in 1usize..64) {
            let _ = run(&bytes, chunk, LmtpCodec::new(1000, 500, 5));
        }

        #[test]
        fn never_panics_in_data(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2000)) {
            let mut wire = b"DATA\r\n".to_vec();
            wire.extend_from_slice(&bytes);
            let _ = run(&wire, 13, LmtpCodec::new(1000, 500, 5));
        }

        #[test]
        fn dot_stuffing_roundtrip(lines in proptest::collection::vec("[.a-z ]{0,20}", 0..30)) {
            let mut wire = b"DATA\r\n".to_vec();
            let mut want = Vec::new();
            for l in &lines {
                if l.starts_with('.') {
                    wire.push(b'.');
                }
                wire.extend_from_slice(l.as_bytes());
                wire.extend_from_slice(b"\r\n");
                want.extend_from_slice(l.as_bytes());
                want.push(b'\n');
            }
            wire.extend_from_slice(b".\r\n");
            let got = run(&wire, 5, LmtpCodec::new(1000, 1_000_000, 1000));
            let body = match &got[1] {
                Frame::Data(Ok(m)) => m.body.clone(),
                other => panic!("{other:?}"),
            };
            proptest::prop_assert_eq!(body, want);
        }
    }
}

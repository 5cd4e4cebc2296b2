//! Wire codecs, one module per protocol, plus Dovecot's tab-escaping that
//! both share. No I/O and no database here.

pub mod auth_client;
pub mod dict;

/// Dovecot `str_append_tabescaped()` (src/lib/strescape.c): `\001` → `\001 1`,
/// TAB → `\001 t`, LF → `\001 n`, CR → `\001 r`, NUL → `\001 0`.
pub fn tab_escape(s: &str) -> std::borrow::Cow<'_, str> {
    if !s
        .bytes()
        .any(|b| matches!(b, 0 | 1 | b'\t' | b'\n' | b'\r'))
    {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\u{1}' => out.push_str("\u{1}1"),
            '\t' => out.push_str("\u{1}t"),
            '\n' => out.push_str("\u{1}n"),
            '\r' => out.push_str("\u{1}r"),
            '\0' => out.push_str("\u{1}0"),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Dovecot `str_tabunescape()`: the inverse of [`tab_escape`]. An unknown
/// escape keeps the character after `\001`, as Dovecot does.
pub fn tab_unescape(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains('\u{1}') {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\u{1}' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('1') => out.push('\u{1}'),
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('0') => out.push('\0'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Finds the next LF-terminated line in `buf`, starting the search at
/// `*scanned` (so a slowly arriving line is not rescanned from the start).
/// Returns the line's length without the LF, `Ok(None)` if incomplete, or
/// `Err(())` when more than `max` bytes arrived without an LF.
pub(crate) fn find_line(buf: &[u8], scanned: &mut usize, max: usize) -> Result<Option<usize>, ()> {
    let start = (*scanned).min(buf.len());
    match buf[start..].iter().position(|&b| b == b'\n') {
        Some(i) => {
            let len = start + i;
            *scanned = 0;
            if len > max { Err(()) } else { Ok(Some(len)) }
        }
        None => {
            *scanned = buf.len();
            if buf.len() > max { Err(()) } else { Ok(None) }
        }
    }
}

/// A line-based protocol (one command per LF-terminated line) served
/// through [`LineCodec`].
pub trait Line {
    /// A decoded client line.
    type Command;
    /// What we answer.
    type Reply;
    /// A framing or parse error; the connection closes.
    type Error: From<std::io::Error>;
    /// Longest accepted line, LF excluded.
    const MAX_LINE: usize;
    /// The error for a line longer than [`Line::MAX_LINE`].
    fn too_long() -> Self::Error;
    /// Parses one line (without its LF).
    fn parse(line: &[u8]) -> Result<Self::Command, Self::Error>;
    /// Appends a reply's bytes.
    fn encode(reply: &Self::Reply, out: &mut bytes::BytesMut);
}

/// The [`Framed`](tokio_util::codec::Framed) codec of a [`Line`] protocol:
/// remembers how far it has scanned so a slowly arriving line is not
/// rescanned, and refuses over-long lines before buffering more.
pub struct LineCodec<P> {
    scanned: usize,
    protocol: std::marker::PhantomData<fn() -> P>,
}

impl<P> LineCodec<P> {
    /// A fresh codec.
    pub fn new() -> Self {
        Self {
            scanned: 0,
            protocol: std::marker::PhantomData,
        }
    }
}

impl<P> Default for LineCodec<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P> std::fmt::Debug for LineCodec<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineCodec")
            .field("scanned", &self.scanned)
            .finish()
    }
}

impl<P: Line> tokio_util::codec::Decoder for LineCodec<P> {
    type Item = P::Command;
    type Error = P::Error;

    fn decode(&mut self, buf: &mut bytes::BytesMut) -> Result<Option<P::Command>, P::Error> {
        match find_line(buf, &mut self.scanned, P::MAX_LINE) {
            Err(()) => Err(P::too_long()),
            Ok(None) => Ok(None),
            Ok(Some(len)) => {
                let line = buf.split_to(len + 1);
                P::parse(&line[..len]).map(Some)
            }
        }
    }
}

impl<P: Line> tokio_util::codec::Encoder<&P::Reply> for LineCodec<P> {
    type Error = P::Error;

    fn encode(&mut self, reply: &P::Reply, out: &mut bytes::BytesMut) -> Result<(), P::Error> {
        P::encode(reply, out);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_round_trip() {
        let s = "a\tb\nc\rd\u{1}e\0f";
        let e = tab_escape(s);
        assert_eq!(e, "a\u{1}tb\u{1}nc\u{1}rd\u{1}1e\u{1}0f");
        assert_eq!(tab_unescape(&e), s);
        assert!(matches!(tab_escape("plain"), std::borrow::Cow::Borrowed(_)));
        assert_eq!(tab_unescape("x\u{1}"), "x");
    }

    #[test]
    fn line_limits() {
        let mut sc = 0;
        assert_eq!(find_line(b"abc", &mut sc, 10), Ok(None));
        assert_eq!(sc, 3);
        assert_eq!(find_line(b"abcd\nx", &mut sc, 10), Ok(Some(4)));
        assert_eq!(find_line(b"0123456789AB", &mut sc, 10), Err(()));
        let mut sc = 0;
        assert_eq!(find_line(b"0123456789AB\n", &mut sc, 10), Err(()));
    }
}

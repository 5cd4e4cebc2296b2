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

//! Mail addresses as Postfix sends them and Dovecot's `%Lu` sees them:
//! parsing, normalisation (lowercase, IDNA ↔ punycode), recipient delimiters.
//! No database and no I/O here.

use std::fmt;

/// Longest local part the guide's schema stores (`username varchar(64)`,
/// also RFC 5321 §4.5.3.1.1).
pub const MAX_LOCAL_LEN: usize = 64;
/// Longest domain the guide's schema stores (`domain varchar(255)`).
pub const MAX_DOMAIN_LEN: usize = 255;
/// Postfix's and the guide's default `recipient_delimiter`.
pub const DEFAULT_RECIPIENT_DELIMITER: &str = "+";

/// Why a string is not a usable address or domain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// No `@` separates local part and domain.
    #[error("`{0}` is not an address: expected user@domain")]
    MissingAt(String),
    /// The local part is empty.
    #[error("`{0}` has an empty local part (before the @)")]
    EmptyLocal(String),
    /// The local part is longer than the schema stores.
    #[error("local part of `{0}` is longer than {MAX_LOCAL_LEN} bytes")]
    LocalTooLong(String),
    /// The local part contains whitespace, control characters or quotes.
    #[error("local part of `{0}` contains a space, control character, quote or bracket")]
    BadLocalChar(String),
    /// The domain is empty, too long, or not a valid (IDNA) host name.
    #[error("`{domain}` is not a valid domain name: {reason}")]
    BadDomain {
        /// The domain as given.
        domain: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// A normalised address: local part lowercased (Dovecot `%Lu`, the guide's
/// `auth_username_format`), domain lowercased and in its ASCII (punycode)
/// form, which is what the guide's tables hold.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    local: String,
    domain: String,
}

impl Address {
    /// Parses `user@domain`, splitting at the last `@`, and normalises both
    /// parts. Unicode domains become punycode; Unicode local parts
    /// (SMTPUTF8) are lowercased with Unicode rules.
    pub fn parse(s: &str) -> Result<Self, AddressError> {
        let s = s.trim();
        let (local, domain) = s
            .rsplit_once('@')
            .ok_or_else(|| AddressError::MissingAt(s.to_owned()))?;
        let local = normalize_local(local).map_err(|e| match e {
            LocalProblem::Empty => AddressError::EmptyLocal(s.to_owned()),
            LocalProblem::TooLong => AddressError::LocalTooLong(s.to_owned()),
            LocalProblem::BadChar => AddressError::BadLocalChar(s.to_owned()),
        })?;
        let domain = normalize_domain(domain)?;
        Ok(Self { local, domain })
    }

    /// Builds an address from a local part and domain as stored in the
    /// database, normalising both.
    pub fn from_parts(local: &str, domain: &str) -> Result<Self, AddressError> {
        Self::parse(&format!("{local}@{domain}"))
    }

    /// The normalised local part (`%n` in Dovecot, `%u` in Postfix maps).
    pub fn local(&self) -> &str {
        &self.local
    }

    /// The normalised ASCII domain (`%d`).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The domain in Unicode form, for display.
    pub fn domain_unicode(&self) -> String {
        domain_to_unicode(&self.domain)
    }

    /// Splits off the address extension at the first recipient delimiter
    /// character, as Postfix does for `recipient_delimiter` (every character
    /// of `delimiters` is a delimiter). Returns the base address and the
    /// extension, if any. A delimiter in the first position does not split
    /// (Postfix never yields an empty base local part).
    pub fn split_detail(&self, delimiters: &str) -> (Address, Option<String>) {
        match split_local(&self.local, delimiters) {
            (base, Some(detail)) => (
                Address {
                    local: base.to_owned(),
                    domain: self.domain.clone(),
                },
                Some(detail.to_owned()),
            ),
            (_, None) => (self.clone(), None),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

impl std::str::FromStr for Address {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Dovecot's default `auth_username_chars`: a login or userdb name with
/// any other character is refused by Dovecot's auth process.
pub const DOVECOT_USERNAME_CHARS: &str =
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ01234567890.-_@";

/// Whether Dovecot (with `auth_username_chars` = `allowed`) can use
/// `address` as a user name: log it in and look up its mailbox. The
/// guide's Postfix accepts mail for accounts such as `o'brien@…` that
/// Dovecot's LMTP then cannot deliver and IMAP cannot open; postwerk
/// treats such accounts as unusable everywhere, and the CLI refuses to
/// create them.
pub fn usable_user_name(address: &Address, allowed: &str) -> bool {
    address
        .local()
        .chars()
        .chain(address.domain().chars())
        .all(|c| allowed.contains(c))
}

/// Splits a local part at the first character found in `delimiters`.
/// Returns `(base, Some(extension))`, or `(local, None)` when there is no
/// delimiter or it stands first.
pub fn split_local<'a>(local: &'a str, delimiters: &str) -> (&'a str, Option<&'a str>) {
    if delimiters.is_empty() {
        return (local, None);
    }
    match local.char_indices().find(|(_, c)| delimiters.contains(*c)) {
        Some((0, _)) | None => (local, None),
        Some((i, c)) => (&local[..i], Some(&local[i + c.len_utf8()..])),
    }
}

enum LocalProblem {
    Empty,
    TooLong,
    BadChar,
}

fn normalize_local(local: &str) -> Result<String, LocalProblem> {
    if local.is_empty() {
        return Err(LocalProblem::Empty);
    }
    if local
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '<' | '>' | '\\'))
    {
        return Err(LocalProblem::BadChar);
    }
    let lower = local.to_lowercase();
    if lower.len() > MAX_LOCAL_LEN {
        return Err(LocalProblem::TooLong);
    }
    Ok(lower)
}

/// Normalises a domain to the lowercase ASCII (punycode) form the guide's
/// tables hold: `Müller.Example.` → `xn--mller-kva.example`. Accepts either
/// form. A single trailing dot is removed.
pub fn normalize_domain(domain: &str) -> Result<String, AddressError> {
    let bad = |reason| AddressError::BadDomain {
        domain: domain.to_owned(),
        reason,
    };
    let d = domain.trim().strip_suffix('.').unwrap_or(domain.trim());
    if d.is_empty() {
        return Err(bad("it is empty"));
    }
    if d.starts_with('[') {
        return Err(bad("address literals are not mail domains here"));
    }
    let ascii =
        idna::domain_to_ascii_strict(d).map_err(|_| bad("it is not a valid IDNA host name"))?;
    if ascii.is_empty() {
        return Err(bad("it is empty"));
    }
    if ascii.len() > MAX_DOMAIN_LEN {
        return Err(bad("it is longer than 255 bytes"));
    }
    if ascii
        .split('.')
        .any(|label| label.is_empty() || label.len() > 63)
    {
        return Err(bad("a label is empty or longer than 63 bytes"));
    }
    if !ascii
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err(bad("only letters, digits, hyphens and dots are allowed"));
    }
    Ok(ascii)
}

/// The Unicode form of an ASCII domain (`xn--mller-kva.example` →
/// `müller.example`); returns the input if it cannot be decoded.
pub fn domain_to_unicode(ascii: &str) -> String {
    let (u, res) = idna::domain_to_unicode(ascii);
    if res.is_ok() { u } else { ascii.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_lowercases_like_dovecot_lu() {
        let a = Address::parse("User1@Example.ORG").unwrap();
        assert_eq!(a.local(), "user1");
        assert_eq!(a.domain(), "example.org");
        assert_eq!(a.to_string(), "user1@example.org");
    }

    #[test]
    fn unicode_domain_becomes_punycode_and_back() {
        let a = Address::parse("anna@Müller.example").unwrap();
        assert_eq!(a.domain(), "xn--mller-kva.example");
        assert_eq!(a.domain_unicode(), "müller.example");
        let b = Address::parse("anna@xn--mller-kva.example").unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn smtputf8_local_part_is_lowercased() {
        let a = Address::parse("Jörg@example.org").unwrap();
        assert_eq!(a.local(), "jörg");
    }

    #[test]
    fn splits_at_last_at() {
        let a = Address::parse("a@b@example.org");
        // `a@b` contains no forbidden character but is odd; it parses and
        // keeps the whole local part.
        assert_eq!(a.unwrap().local(), "a@b");
    }

    #[test]
    fn bad_inputs_are_clear_errors() {
        assert!(matches!(
            Address::parse("nobody"),
            Err(AddressError::MissingAt(_))
        ));
        assert!(matches!(
            Address::parse("@example.org"),
            Err(AddressError::EmptyLocal(_))
        ));
        assert!(matches!(
            Address::parse("a b@example.org"),
            Err(AddressError::BadLocalChar(_))
        ));
        assert!(matches!(
            Address::parse("a@"),
            Err(AddressError::BadDomain { .. })
        ));
        assert!(matches!(
            Address::parse("a@exa mple.org"),
            Err(AddressError::BadDomain { .. })
        ));
        assert!(matches!(
            Address::parse("a@[127.0.0.1]"),
            Err(AddressError::BadDomain { .. })
        ));
        assert!(matches!(
            Address::parse("a@foo..org"),
            Err(AddressError::BadDomain { .. })
        ));
        let long = "x".repeat(65);
        assert!(matches!(
            Address::parse(&format!("{long}@example.org")),
            Err(AddressError::LocalTooLong(_))
        ));
        let msg = Address::parse("nobody").unwrap_err().to_string();
        assert!(msg.contains("user@domain"), "{msg}");
    }

    #[test]
    fn recipient_delimiter_like_postfix() {
        let a = Address::parse("user+tag@example.org").unwrap();
        let (base, detail) = a.split_detail("+");
        assert_eq!(base.to_string(), "user@example.org");
        assert_eq!(detail.as_deref(), Some("tag"));
        // several delimiter characters: the first one found splits
        assert_eq!(split_local("a-b+c", "+-"), ("a", Some("b+c")));
        // leading delimiter and no delimiter: no split
        assert_eq!(split_local("+tag", "+"), ("+tag", None));
        assert_eq!(split_local("plain", "+"), ("plain", None));
        assert_eq!(split_local("a+b", ""), ("a+b", None));
        // empty extension is still a split
        assert_eq!(split_local("a+", "+"), ("a", Some("")));
    }

    #[test]
    fn trailing_dot_is_dropped() {
        assert_eq!(normalize_domain("Example.org.").unwrap(), "example.org");
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC*") {
            let _ = Address::parse(&s);
        }

        #[test]
        fn normalisation_is_idempotent(local in "[a-zA-Z0-9._+-]{1,20}", domain in "[a-zA-Z0-9-]{1,20}\\.[a-z]{2,6}") {
            if let Ok(a) = Address::parse(&format!("{local}@{domain}")) {
                let b = Address::parse(&a.to_string()).unwrap();
                prop_assert_eq!(a, b);
            }
        }
    }
}

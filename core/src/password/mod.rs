//! Dovecot-compatible password schemes: parse `{SCHEME}hash` strings, verify
//! a password against them and make new ones, exactly as Dovecot 2.3
//! (`doveadm pw`, `src/auth/password-scheme*.c`) does.
//!
//! This module owns the scheme names, the `{SCHEME.ENCODING}` prefix and the
//! error type; each family lives in its own file. No I/O, no database and no
//! logging here: the caller decides what to log, and the password never
//! appears in an error (neither does the stored hash, which may be a
//! plaintext password stored under the wrong scheme).
//!
//! How a stored string is read (Dovecot `password_get_scheme()` and
//! `password_decode()` in `src/auth/password-scheme.c`):
//!
//! - `{NAME}rest`: `NAME` is looked up case-insensitively. `NAME.B64`,
//!   `NAME.BASE64` and `NAME.HEX` override the scheme's encoding; any other
//!   suffix is an unknown scheme.
//! - A string starting with `$1$` and having a second `$` is `MD5-CRYPT`
//!   whatever the default scheme, and anything after a third `$` is ignored.
//! - Anything else is verified with the caller's default scheme
//!   (`default_pass_scheme` in dovecot.conf).
//!
//! Where Dovecot would answer "password mismatch" for a stored string that can
//! never match (truncated hash, bad salt, rounds out of range, undecodable
//! base64), [`verify`] returns [`PasswordError::Malformed`] instead, so that
//! the daemon tempfails and logs the bad row rather than telling the user
//! their password is wrong.
//!
//! LIMITATION: Dovecot sees passwords as C strings, so it truncates them at
//! the first NUL byte; [`verify`] hashes every byte it is given, and [`hash`]
//! refuses a password containing NUL (Dovecot could never verify it).

mod argon;
mod blowfish;
mod crypt;
mod des;
mod digest;
mod encoding;

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use crate::error::{Transience, Transient};

use digest::Algo;
use encoding::Encoding;

/// A Dovecot password scheme: the `NAME` in a stored `{NAME}hash` string.
///
/// [`Display`](fmt::Display) and [`Scheme::name`] give Dovecot's canonical
/// name; [`FromStr`] accepts it case-insensitively, plus Dovecot's aliases
/// `SHA1` (= `SHA`) and `CLEAR` (= `CLEARTEXT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `{SHA512-CRYPT}$6$salt$hash`: glibc/libxcrypt SHA-512 crypt, 5000
    /// rounds unless `rounds=N$` is given. The guide's default.
    Sha512Crypt,
    /// `{SHA256-CRYPT}$5$salt$hash`: SHA-256 crypt.
    Sha256Crypt,
    /// `{BLF-CRYPT}$2y$05$salt+hash`: bcrypt (`$2a$`, `$2b$`, `$2x$`, `$2y$`).
    BlfCrypt,
    /// `{ARGON2I}$argon2i$v=19$m=..,t=..,p=..$salt$hash` (libsodium).
    Argon2i,
    /// `{ARGON2ID}$argon2id$v=19$m=..,t=..,p=..$salt$hash` (libsodium).
    Argon2id,
    /// `{MD5-CRYPT}$1$salt$hash`: the FreeBSD/phk MD5 crypt.
    Md5Crypt,
    /// `{SSHA512}`: base64 of SHA-512(password || salt) || salt.
    Ssha512,
    /// `{SSHA256}`: base64 of SHA-256(password || salt) || salt.
    Ssha256,
    /// `{SSHA}`: base64 of SHA-1(password || salt) || salt.
    Ssha,
    /// `{SHA512}`: base64 (or hex) of SHA-512(password).
    Sha512,
    /// `{SHA256}`: base64 (or hex) of SHA-256(password).
    Sha256,
    /// `{SHA}` (alias `{SHA1}`): base64 (or hex) of SHA-1(password).
    Sha,
    /// `{PLAIN}password`.
    Plain,
    /// `{CLEARTEXT}password` (alias `{CLEAR}`); the same as `PLAIN`.
    Cleartext,
    /// `{CRYPT}`: libc crypt(3), dispatched on the hash's prefix (`$1$`,
    /// `$5$`, `$6$`, `$2?$`, or traditional 13-character DES). New hashes
    /// are bcrypt `$2y$05$`, as doveadm makes them. `{DES-CRYPT}` is read as
    /// this scheme (Dovecot verifies both with the same function); postwerk
    /// never makes DES hashes.
    Crypt,
}

/// The scheme for new hashes and for stored hashes without a `{SCHEME}`
/// prefix, as in the guide's `default_pass_scheme = SHA512-CRYPT`.
pub const DEFAULT_SCHEME: Scheme = Scheme::Sha512Crypt;

/// Upper bound on the length of a stored hash we look at. The longest real
/// one (`SSHA512.HEX` with a long salt, or a PHC string) is a few hundred
/// bytes; anything longer is a broken row.
const MAX_STORED_LEN: usize = 4096;

impl Scheme {
    /// Every supported scheme, in the order `postwerk pw` lists them.
    pub const ALL: &'static [Scheme] = &[
        Scheme::Sha512Crypt,
        Scheme::Sha256Crypt,
        Scheme::BlfCrypt,
        Scheme::Argon2i,
        Scheme::Argon2id,
        Scheme::Md5Crypt,
        Scheme::Ssha512,
        Scheme::Ssha256,
        Scheme::Ssha,
        Scheme::Sha512,
        Scheme::Sha256,
        Scheme::Sha,
        Scheme::Plain,
        Scheme::Cleartext,
        Scheme::Crypt,
    ];

    /// Dovecot's canonical name, as written between the braces.
    pub fn name(&self) -> &'static str {
        match self {
            Scheme::Sha512Crypt => "SHA512-CRYPT",
            Scheme::Sha256Crypt => "SHA256-CRYPT",
            Scheme::BlfCrypt => "BLF-CRYPT",
            Scheme::Argon2i => "ARGON2I",
            Scheme::Argon2id => "ARGON2ID",
            Scheme::Md5Crypt => "MD5-CRYPT",
            Scheme::Ssha512 => "SSHA512",
            Scheme::Ssha256 => "SSHA256",
            Scheme::Ssha => "SSHA",
            Scheme::Sha512 => "SHA512",
            Scheme::Sha256 => "SHA256",
            Scheme::Sha => "SHA",
            Scheme::Plain => "PLAIN",
            Scheme::Cleartext => "CLEARTEXT",
            Scheme::Crypt => "CRYPT",
        }
    }

    /// Looks a name up the way [`FromStr`] does, without building an error.
    fn lookup(name: &str) -> Option<Scheme> {
        if let Some(scheme) = Scheme::ALL
            .iter()
            .find(|s| s.name().eq_ignore_ascii_case(name))
        {
            return Some(*scheme);
        }
        // Dovecot registers these as schemes of their own that behave
        // exactly like the canonical one (password-scheme.c builtin_schemes).
        if name.eq_ignore_ascii_case("SHA1") {
            Some(Scheme::Sha)
        } else if name.eq_ignore_ascii_case("CLEAR") {
            Some(Scheme::Cleartext)
        } else {
            None
        }
    }

    /// Looks up the name in a stored `{NAME}` prefix. Adds `DES-CRYPT`, which
    /// Dovecot verifies exactly like `CRYPT` but which we cannot generate.
    fn lookup_stored(name: &str) -> Option<Scheme> {
        Scheme::lookup(name).or_else(|| {
            name.eq_ignore_ascii_case("DES-CRYPT")
                .then_some(Scheme::Crypt)
        })
    }

    /// The encoding Dovecot assumes when the prefix names none, and the
    /// length of the decoded value when it is fixed (which lets Dovecot guess
    /// hex versus base64 by length).
    fn default_encoding(self) -> (Encoding, Option<usize>) {
        match self {
            Scheme::Sha512 => (Encoding::Base64, Some(Algo::Sha512.len())),
            Scheme::Sha256 => (Encoding::Base64, Some(Algo::Sha256.len())),
            Scheme::Sha => (Encoding::Base64, Some(Algo::Sha1.len())),
            Scheme::Ssha512 | Scheme::Ssha256 | Scheme::Ssha => (Encoding::Base64, None),
            Scheme::Sha512Crypt
            | Scheme::Sha256Crypt
            | Scheme::BlfCrypt
            | Scheme::Argon2i
            | Scheme::Argon2id
            | Scheme::Md5Crypt
            | Scheme::Plain
            | Scheme::Cleartext
            | Scheme::Crypt => (Encoding::None, None),
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scheme {
    type Err = PasswordError;

    /// Parses a scheme name such as `SHA512-CRYPT` (case-insensitive, no
    /// braces, no encoding suffix).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scheme::lookup(s).ok_or_else(|| PasswordError::UnknownScheme(printable_name(s)))
    }
}

/// Why a password could not be hashed or checked. Never carries the password
/// or the stored hash.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// The `{NAME}` prefix (or a configured scheme name) is not one we know.
    #[error("unknown password scheme \"{0}\" (supported: {list})", list = scheme_list())]
    UnknownScheme(String),
    /// The stored hash can never match any password: wrong length, bad
    /// salt, bad encoding, parameters out of range.
    #[error("malformed {scheme} hash: {reason}")]
    Malformed {
        /// The scheme the stored hash was read as.
        scheme: Scheme,
        /// What is wrong, without quoting the hash.
        reason: String,
    },
    /// The password contains a NUL byte; Dovecot truncates passwords there,
    /// so it could never verify such a hash.
    #[error("password contains a NUL byte, which Dovecot cannot verify")]
    NulInPassword,
    /// Hashing failed: no randomness from the OS, or the library refused.
    #[error("cannot make a {scheme} hash: {reason}")]
    Hashing {
        /// The scheme asked for.
        scheme: Scheme,
        /// What failed.
        reason: String,
    },
    /// The blocking task of [`verify_blocking`] panicked or was cancelled.
    #[error("password verification task failed: {0}")]
    Task(String),
}

impl Transient for PasswordError {
    fn transience(&self) -> Transience {
        // A bad row or a bad config is our problem, never the user's
        // (STYLE.md §3): the peer retries while the admin fixes it.
        match self {
            PasswordError::UnknownScheme(_)
            | PasswordError::Malformed { .. }
            | PasswordError::NulInPassword
            | PasswordError::Hashing { .. }
            | PasswordError::Task(_) => Transience::Temporary,
        }
    }
}

/// `A, B, C` of every canonical scheme name, for error messages.
fn scheme_list() -> String {
    Scheme::ALL
        .iter()
        .map(Scheme::name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A scheme name fit for an error message: at most 32 characters of
/// `[A-Za-z0-9._-]`. A stored `{...}` prefix could be anything, even a
/// password someone pasted into the wrong column.
fn printable_name(name: &str) -> String {
    const MAX: usize = 32;
    let mut out: String = name
        .chars()
        .take(MAX)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '?'
            }
        })
        .collect();
    if name.chars().count() > MAX {
        out.push_str("...");
    }
    out
}

fn malformed(scheme: Scheme, reason: impl Into<String>) -> PasswordError {
    PasswordError::Malformed {
        scheme,
        reason: reason.into(),
    }
}

/// Hashes `password` with `scheme`, a fresh random salt and doveadm's default
/// cost, and returns the `{SCHEME}hash` string `doveadm pw -s SCHEME` would
/// print:
///
/// - `SHA512-CRYPT`/`SHA256-CRYPT`: 16 salt characters, 5000 rounds (no
///   `rounds=` field);
/// - `BLF-CRYPT` and `CRYPT`: `$2y$05$`;
/// - `ARGON2I`: `m=32768,t=4,p=1`; `ARGON2ID`: `m=65536,t=3,p=1` (libsodium
///   "interactive" limits, with Dovecot's `t >= 3` for argon2id);
/// - `MD5-CRYPT`: 8 salt characters; `SSHA*`: 4 salt bytes.
///
/// `PLAIN`/`CLEARTEXT` store the password as is when it is UTF-8 without
/// control characters, and as `{PLAIN.B64}`/`{CLEARTEXT.B64}` otherwise (a
/// `String` cannot hold other bytes, and a newline would break the row).
pub fn hash(password: &[u8], scheme: Scheme) -> Result<String, PasswordError> {
    if password.contains(&0) {
        return Err(PasswordError::NulInPassword);
    }
    let body = match scheme {
        Scheme::Sha512Crypt => crypt::hash_sha512(password)?,
        Scheme::Sha256Crypt => crypt::hash_sha256(password)?,
        Scheme::Md5Crypt => crypt::hash_md5(password)?,
        Scheme::BlfCrypt | Scheme::Crypt => blowfish::hash(password, scheme)?,
        Scheme::Argon2i | Scheme::Argon2id => argon::hash(password, scheme)?,
        Scheme::Ssha512 => digest::hash_salted(password, scheme, Algo::Sha512)?,
        Scheme::Ssha256 => digest::hash_salted(password, scheme, Algo::Sha256)?,
        Scheme::Ssha => digest::hash_salted(password, scheme, Algo::Sha1)?,
        Scheme::Sha512 => digest::hash_plain(password, Algo::Sha512),
        Scheme::Sha256 => digest::hash_plain(password, Algo::Sha256),
        Scheme::Sha => digest::hash_plain(password, Algo::Sha1),
        Scheme::Plain | Scheme::Cleartext => match std::str::from_utf8(password) {
            Ok(text) if !text.chars().any(char::is_control) => text.to_owned(),
            _ => {
                return Ok(format!(
                    "{{{scheme}.B64}}{}",
                    encoding::base64_encode(password)
                ));
            }
        },
    };
    Ok(format!("{{{scheme}}}{body}"))
}

/// Checks `password` against a stored hash: `Ok(true)` if it matches,
/// `Ok(false)` if it does not, `Err` if the stored string is unusable
/// (unknown scheme, malformed hash). A stored string without a `{SCHEME}`
/// prefix is read with `default_scheme`, as Dovecot's `default_pass_scheme`.
///
/// Digests are compared in constant time. Expensive schemes take tens of
/// milliseconds: from async code use [`verify_blocking`].
pub fn verify(
    password: &[u8],
    stored: &str,
    default_scheme: Scheme,
) -> Result<bool, PasswordError> {
    let (scheme, explicit, body) = split_stored(stored, default_scheme)?;
    if body.len() > MAX_STORED_LEN {
        return Err(malformed(
            scheme,
            format!("longer than {MAX_STORED_LEN} bytes"),
        ));
    }
    let raw = decode(scheme, explicit, body)?;
    verify_raw(password, scheme, &raw)
}

/// [`verify`] on tokio's blocking pool, so that bcrypt, argon2 and
/// sha512-crypt never stall an async worker thread.
///
/// This does not limit how many run at once: callers bound that with a
/// semaphore sized from their config (STYLE.md §2).
pub async fn verify_blocking(
    password: Vec<u8>,
    stored: String,
    default_scheme: Scheme,
) -> Result<bool, PasswordError> {
    tokio::task::spawn_blocking(move || verify(&password, &stored, default_scheme))
        .await
        .map_err(|e| PasswordError::Task(e.to_string()))?
}

/// Splits a stored string into scheme, explicit encoding (if the prefix
/// named one) and the part after the prefix.
fn split_stored(
    stored: &str,
    default_scheme: Scheme,
) -> Result<(Scheme, Option<Encoding>, &str), PasswordError> {
    // Dovecot password_get_scheme(): "$1$<salt>$<hash>[$<ignored>]" is
    // MD5-CRYPT whatever the default scheme is.
    if let Some(rest) = stored.strip_prefix("$1$")
        && let Some(salt_end) = rest.find('$')
    {
        let hash_start = 3 + salt_end + 1;
        let end = stored[hash_start..]
            .find('$')
            .map_or(stored.len(), |i| hash_start + i);
        return Ok((Scheme::Md5Crypt, None, &stored[..end]));
    }
    let Some(after_brace) = stored.strip_prefix('{') else {
        return Ok((default_scheme, None, stored));
    };
    let Some(close) = after_brace.find('}') else {
        // Dovecot falls back to the default scheme for the whole string.
        return Ok((default_scheme, None, stored));
    };
    let prefix = &after_brace[..close];
    let body = &after_brace[close + 1..];
    let (name, suffix) = match prefix.split_once('.') {
        Some((name, suffix)) => (name, Some(suffix)),
        None => (prefix, None),
    };
    let unknown = || PasswordError::UnknownScheme(printable_name(prefix));
    let scheme = Scheme::lookup_stored(name).ok_or_else(unknown)?;
    let explicit = match suffix {
        None => None,
        // An unknown encoding makes the whole scheme unknown, as in Dovecot.
        Some(suffix) => Some(Encoding::from_suffix(suffix).ok_or_else(unknown)?),
    };
    Ok((scheme, explicit, body))
}

/// Dovecot `password_decode()`: turns the text after the prefix into the
/// bytes the scheme compares against.
fn decode<'a>(
    scheme: Scheme,
    explicit: Option<Encoding>,
    body: &'a str,
) -> Result<Cow<'a, [u8]>, PasswordError> {
    let (default, fixed_len) = scheme.default_encoding();
    let raw: Cow<'a, [u8]> = match (explicit, fixed_len) {
        (Some(encoding), _) => encoding
            .decode(body)
            .map_err(|reason| malformed(scheme, reason))?,
        // No suffix and a fixed length: Dovecot guesses hex when the text is
        // exactly twice the length, falling back to base64 if it is not hex.
        (None, Some(len)) if body.len() == 2 * len => match Encoding::Hex.decode(body) {
            Ok(raw) => raw,
            Err(_) => Encoding::Base64
                .decode(body)
                .map_err(|reason| malformed(scheme, reason))?,
        },
        (None, _) => default
            .decode(body)
            .map_err(|reason| malformed(scheme, reason))?,
    };
    if let Some(len) = fixed_len
        && raw.len() != len
    {
        return Err(malformed(
            scheme,
            format!("decodes to {} bytes instead of {len}", raw.len()),
        ));
    }
    Ok(raw)
}

/// Verifies against the decoded stored value.
fn verify_raw(password: &[u8], scheme: Scheme, raw: &[u8]) -> Result<bool, PasswordError> {
    match scheme {
        Scheme::Plain | Scheme::Cleartext => Ok(digest::ct_eq(password, raw)),
        Scheme::Sha512 => Ok(digest::verify_plain(password, Algo::Sha512, raw)),
        Scheme::Sha256 => Ok(digest::verify_plain(password, Algo::Sha256, raw)),
        Scheme::Sha => Ok(digest::verify_plain(password, Algo::Sha1, raw)),
        Scheme::Ssha512 => digest::verify_salted(password, scheme, Algo::Sha512, raw),
        Scheme::Ssha256 => digest::verify_salted(password, scheme, Algo::Sha256, raw),
        Scheme::Ssha => digest::verify_salted(password, scheme, Algo::Sha1, raw),
        Scheme::BlfCrypt => blowfish::verify(password, scheme, crypt_text(scheme, raw)?),
        Scheme::Argon2i | Scheme::Argon2id => {
            argon::verify(password, scheme, crypt_text(scheme, raw)?)
        }
        Scheme::Md5Crypt => crypt::verify_md5(password, scheme, crypt_text(scheme, raw)?),
        // Dovecot crypt_verify(): libc crypt(3) picks the algorithm from the
        // hash's prefix, whatever the scheme's name says.
        Scheme::Sha512Crypt | Scheme::Sha256Crypt | Scheme::Crypt => {
            crypt::verify_any(password, scheme, crypt_text(scheme, raw)?)
        }
    }
}

/// The stored value of a crypt-style scheme as text.
fn crypt_text(scheme: Scheme, raw: &[u8]) -> Result<&str, PasswordError> {
    let text = std::str::from_utf8(raw).map_err(|_| malformed(scheme, "not ASCII text"))?;
    if text.is_empty() {
        // Dovecot answers "mismatch" here; an empty hash is a broken row.
        return Err(malformed(scheme, "empty hash"));
    }
    Ok(text)
}

/// `N` random bytes from the OS.
fn random_bytes<const N: usize>(scheme: Scheme) -> Result<[u8; N], PasswordError> {
    use rand::RngCore;
    let mut bytes = [0u8; N];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| PasswordError::Hashing {
            scheme,
            reason: format!("no randomness from the OS: {e}"),
        })?;
    Ok(bytes)
}

#[cfg(test)]
mod tests;

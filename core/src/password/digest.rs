//! The plain-digest schemes `{SHA}`, `{SHA256}`, `{SHA512}` and their salted
//! forms `{SSHA}`, `{SSHA256}`, `{SSHA512}` (Dovecot `password-scheme.c`:
//! `sha*_generate`, `ssha*_generate`, `ssha*_verify`), plus the
//! constant-time comparison every scheme uses. Works on decoded bytes; the
//! `.B64`/`.HEX` text is handled by the caller.

use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

use super::{PasswordError, Scheme, encoding, malformed, random_bytes};

/// Length of a SHA-1 digest.
const SHA1_LEN: usize = 20;
/// Length of a SHA-256 digest.
const SHA256_LEN: usize = 32;
/// Length of a SHA-512 digest.
const SHA512_LEN: usize = 64;

/// Salt length of new `SSHA*` hashes (Dovecot `SSHA*_SALT_LEN`).
const SALT_LEN: usize = 4;

/// `a == b` without an early exit on the first differing byte (the lengths
/// are not secret and are compared first).
pub(super) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// The hash function behind a digest scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Algo {
    /// `{SHA}`, `{SSHA}`.
    Sha1,
    /// `{SHA256}`, `{SSHA256}`.
    Sha256,
    /// `{SHA512}`, `{SSHA512}`.
    Sha512,
}

impl Algo {
    /// Digest length in bytes.
    pub(super) fn len(self) -> usize {
        match self {
            Algo::Sha1 => SHA1_LEN,
            Algo::Sha256 => SHA256_LEN,
            Algo::Sha512 => SHA512_LEN,
        }
    }

    /// The digest of `parts` concatenated.
    fn digest(self, parts: &[&[u8]]) -> Vec<u8> {
        fn run<D: Digest>(parts: &[&[u8]]) -> Vec<u8> {
            let mut d = D::new();
            for part in parts {
                d.update(part);
            }
            d.finalize().to_vec()
        }
        match self {
            Algo::Sha1 => run::<Sha1>(parts),
            Algo::Sha256 => run::<Sha256>(parts),
            Algo::Sha512 => run::<Sha512>(parts),
        }
    }
}

/// `{SHA*}`: base64 of the digest.
pub(super) fn hash_plain(password: &[u8], algo: Algo) -> String {
    encoding::base64_encode(&algo.digest(&[password]))
}

/// `{SSHA*}`: base64 of digest(password || salt) || salt, 4 random salt bytes.
pub(super) fn hash_salted(
    password: &[u8],
    scheme: Scheme,
    algo: Algo,
) -> Result<String, PasswordError> {
    let salt: [u8; SALT_LEN] = random_bytes(scheme)?;
    let mut raw = algo.digest(&[password, &salt]);
    raw.extend_from_slice(&salt);
    Ok(encoding::base64_encode(&raw))
}

/// `{SHA*}`: `raw` is the digest (its length was checked by the decoder).
pub(super) fn verify_plain(password: &[u8], algo: Algo, raw: &[u8]) -> bool {
    ct_eq(&algo.digest(&[password]), raw)
}

/// `{SSHA*}`: `raw` is digest || salt; the salt may have any length but
/// must not be empty (Dovecot: "SSHA password is too short").
pub(super) fn verify_salted(
    password: &[u8],
    scheme: Scheme,
    algo: Algo,
    raw: &[u8],
) -> Result<bool, PasswordError> {
    let len = algo.len();
    if raw.len() <= len {
        return Err(malformed(
            scheme,
            format!("{} bytes, need more than the {len}-byte digest", raw.len()),
        ));
    }
    let (expected, salt) = raw.split_at(len);
    Ok(ct_eq(&algo.digest(&[password, salt]), expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ct_eq_compares_length_and_content() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(ct_eq(b"", b""));
    }

    #[test]
    fn salted_with_empty_salt_is_malformed() {
        let raw = Algo::Sha1.digest(&[b"pw"]);
        assert!(verify_salted(b"pw", Scheme::Ssha, Algo::Sha1, &raw).is_err());
    }
}

//! `{BLF-CRYPT}` (and `{CRYPT}` hashes starting with `$2?$`): bcrypt as
//! Dovecot's bundled OpenWall `crypt_blowfish` computes it
//! (`crypt_verify_blowfish()` in `src/auth/password-scheme-crypt.c`).
//!
//! Dovecot recomputes the full `$2y$NN$salt+digest` string from the first 29
//! characters of the stored one and compares the two strings; we do the same.
//!
//! LIMITATION: `$2x$` (the emulated 2011 sign-extension bug) and the `$2a$`
//! countermeasure for that bug are computed like `$2b$`/`$2y$`, so a `$2x$`
//! or `$2a$` hash of a password with bytes >= 0x80 may not verify. Dovecot
//! and PHP have generated `$2y$` since 2011.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use bcrypt::Version;

use super::{PasswordError, Scheme, digest::ct_eq, malformed, random_bytes};

/// Cost of new hashes (Dovecot `CRYPT_BLF_ROUNDS_DEFAULT`).
const DEFAULT_COST: u32 = 5;
/// Lowest cost crypt_blowfish accepts.
const MIN_COST: u32 = 4;
/// Highest cost crypt_blowfish accepts.
const MAX_COST: u32 = 31;
/// Length of a complete bcrypt string: `$2y$05$` + 22 salt + 31 digest.
const HASH_LEN: usize = 60;
/// Where the salt starts and ends.
const SALT: std::ops::Range<usize> = 7..29;

/// bcrypt's base64: its own alphabet, no padding; the 2 unused bits of the
/// last salt character are ignored, as `BF_decode()` ignores them.
const BCRYPT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::BCRYPT,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(true),
);

/// `$2y$05$` + 16 random salt bytes + digest.
pub(super) fn hash(password: &[u8], scheme: Scheme) -> Result<String, PasswordError> {
    let salt: [u8; 16] = random_bytes(scheme)?;
    compute(password, scheme, DEFAULT_COST, salt, Version::TwoY)
}

/// Verifies a complete `$2?$NN$salt+digest` string.
pub(super) fn verify(password: &[u8], scheme: Scheme, text: &str) -> Result<bool, PasswordError> {
    let bytes = text.as_bytes();
    if !text.is_ascii() {
        return Err(malformed(scheme, "bcrypt hash is not ASCII"));
    }
    if bytes.len() != HASH_LEN {
        return Err(malformed(
            scheme,
            format!(
                "bcrypt hash has {} characters instead of {HASH_LEN}",
                bytes.len()
            ),
        ));
    }
    if !text.starts_with("$2") || bytes[3] != b'$' || bytes[6] != b'$' {
        return Err(malformed(scheme, "not a $2?$NN$ bcrypt hash"));
    }
    let version = match bytes[2] {
        b'a' => Version::TwoA,
        b'b' => Version::TwoB,
        b'x' => Version::TwoX,
        b'y' => Version::TwoY,
        _ => return Err(malformed(scheme, "unknown bcrypt variant")),
    };
    // crypt_blowfish wants exactly two digits.
    let cost = match (bytes[4], bytes[5]) {
        (tens @ b'0'..=b'9', ones @ b'0'..=b'9') => {
            u32::from(tens - b'0') * 10 + u32::from(ones - b'0')
        }
        _ => return Err(malformed(scheme, "bcrypt cost is not two digits")),
    };
    if !(MIN_COST..=MAX_COST).contains(&cost) {
        return Err(malformed(
            scheme,
            format!("bcrypt cost {cost} is not in {MIN_COST}..={MAX_COST}"),
        ));
    }
    let salt: [u8; 16] = BCRYPT_BASE64
        .decode(&text[SALT])
        .ok()
        .and_then(|salt| <[u8; 16]>::try_from(salt).ok())
        .ok_or_else(|| malformed(scheme, "bcrypt salt is not 22 characters of bcrypt base64"))?;
    if !text[SALT.end..]
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/')
    {
        return Err(malformed(
            scheme,
            "bcrypt digest has characters outside its alphabet",
        ));
    }
    let computed = compute(password, scheme, cost, salt, version)?;
    Ok(ct_eq(computed.as_bytes(), bytes))
}

/// The full bcrypt string for these parameters.
fn compute(
    password: &[u8],
    scheme: Scheme,
    cost: u32,
    salt: [u8; 16],
    version: Version,
) -> Result<String, PasswordError> {
    bcrypt::hash_with_salt(password, cost, salt)
        .map(|parts| parts.format_for_version(version))
        .map_err(|e| PasswordError::Hashing {
            scheme,
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_libxcrypt_vectors() {
        // python3 -c 'import crypt; print(crypt.crypt("pw", "$2y$04$......................"))'
        assert!(
            verify(
                b"pw",
                Scheme::BlfCrypt,
                "$2y$04$......................CZJXs39HZ6odvxM3EvHl/Fh/PsT/WM6"
            )
            .unwrap()
        );
        // crypt.crypt("pw", "$2a$05$abcdefghijklmnopqrstu.")
        assert!(
            verify(
                b"pw",
                Scheme::BlfCrypt,
                "$2a$05$abcdefghijklmnopqrstu.3WExVZ1PNqkiw3Yn8b.mkeLte/I97/."
            )
            .unwrap()
        );
        assert!(
            !verify(
                b"pW",
                Scheme::BlfCrypt,
                "$2a$05$abcdefghijklmnopqrstu.3WExVZ1PNqkiw3Yn8b.mkeLte/I97/."
            )
            .unwrap()
        );
    }

    #[test]
    fn non_canonical_salt_never_matches() {
        // "u/" decodes like "u." but crypt_blowfish re-encodes it as "u.",
        // so Dovecot's string comparison fails.
        assert!(
            !verify(
                b"pw",
                Scheme::BlfCrypt,
                "$2a$05$abcdefghijklmnopqrstu/3WExVZ1PNqkiw3Yn8b.mkeLte/I97/."
            )
            .unwrap()
        );
    }

    #[test]
    fn malformed_strings_are_errors() {
        let good = "$2y$04$......................CZJXs39HZ6odvxM3EvHl/Fh/PsT/WM6";
        let cases = [
            "$2y$04$......................CZJXs39HZ6odvxM3EvHl/Fh/PsT/WM",
            "$2q$04$......................CZJXs39HZ6odvxM3EvHl/Fh/PsT/WM6",
            "$2y$03$......................CZJXs39HZ6odvxM3EvHl/Fh/PsT/WM6",
            "$2y$32$......................CZJXs39HZ6odvxM3EvHl/Fh/PsT/WM6",
            "$2y$+4$......................CZJXs39HZ6odvxM3EvHl/Fh/PsT/WM6",
            "$2y$04$.....................*CZJXs39HZ6odvxM3EvHl/Fh/PsT/WM6",
            "$2y$04$......................CZJXs39HZ6odvxM3EvHl/Fh/PsT/WM*",
            "$2y$04x......................CZJXs39HZ6odvxM3EvHl/Fh/PsT/WM6",
        ];
        assert!(verify(b"pw", Scheme::BlfCrypt, good).unwrap());
        for case in cases {
            assert!(verify(b"pw", Scheme::BlfCrypt, case).is_err(), "{case}");
        }
    }
}

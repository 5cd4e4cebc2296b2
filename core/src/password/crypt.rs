//! The crypt(3) family: `{SHA512-CRYPT}` (`$6$`), `{SHA256-CRYPT}` (`$5$`),
//! `{MD5-CRYPT}` (`$1$`) and `{CRYPT}`, which dispatches on the hash's
//! prefix as libc's crypt(3) does. bcrypt (`$2?$`) lives in `blowfish.rs`,
//! traditional DES in `des.rs`.
//!
//! Dovecot verifies these schemes by running crypt(3) (libxcrypt on Debian
//! 12) with the stored string as the setting and comparing the result with
//! the stored string (`crypt_verify()` in `src/auth/password-scheme.c`); the
//! MD5 crypt is its own `password_generate_md5_crypt()`. We parse the stored
//! string with libxcrypt's rules instead and report anything crypt(3) would
//! refuse, or that could never compare equal, as malformed.

use md5::{Digest, Md5};
use sha_crypt::{Sha256Params, Sha512Params, sha256_crypt_b64, sha512_crypt_b64};

use super::{PasswordError, Scheme, blowfish, des, digest::ct_eq, malformed, random_bytes};

/// The crypt(3) base64 alphabet (also Dovecot's `salt_chars`).
const CRYPT_ALPHABET: &[u8; 64] =
    b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Salt characters of new SHA-crypt hashes (Dovecot `CRYPT_SHA2_SALT_LEN`),
/// also the most crypt(3) uses.
const SHA_SALT_LEN: usize = 16;
/// SHA-crypt rounds when the hash has no `rounds=` (and Dovecot's default).
const SHA_ROUNDS_DEFAULT: usize = 5000;
/// libxcrypt refuses fewer rounds than this.
const SHA_ROUNDS_MIN: usize = 1000;
/// libxcrypt refuses more rounds than this.
const SHA_ROUNDS_MAX: usize = 999_999_999;
/// Encoded length of the SHA-512 crypt digest.
const SHA512_HASH_LEN: usize = 86;
/// Encoded length of the SHA-256 crypt digest.
const SHA256_HASH_LEN: usize = 43;

/// Salt characters of new MD5-crypt hashes, and the most it uses.
const MD5_SALT_LEN: usize = 8;
/// Encoded length of the MD5 crypt digest.
const MD5_HASH_LEN: usize = 22;
/// MD5 crypt rounds (fixed by the algorithm).
const MD5_ROUNDS: usize = 1000;

/// `$6$` + 16 random salt characters + `$` + digest, 5000 rounds.
pub(super) fn hash_sha512(password: &[u8]) -> Result<String, PasswordError> {
    let salt = random_salt::<SHA_SALT_LEN>(Scheme::Sha512Crypt)?;
    let digest = sha512(password, Scheme::Sha512Crypt, &salt, SHA_ROUNDS_DEFAULT)?;
    Ok(format!("$6${salt}${digest}"))
}

/// `$5$` + 16 random salt characters + `$` + digest, 5000 rounds.
pub(super) fn hash_sha256(password: &[u8]) -> Result<String, PasswordError> {
    let salt = random_salt::<SHA_SALT_LEN>(Scheme::Sha256Crypt)?;
    let digest = sha256(password, Scheme::Sha256Crypt, &salt, SHA_ROUNDS_DEFAULT)?;
    Ok(format!("$5${salt}${digest}"))
}

/// `$1$` + 8 random salt characters + `$` + digest.
pub(super) fn hash_md5(password: &[u8]) -> Result<String, PasswordError> {
    let salt = random_salt::<MD5_SALT_LEN>(Scheme::Md5Crypt)?;
    Ok(format!(
        "$1${salt}${}",
        md5_crypt(password, salt.as_bytes())
    ))
}

/// `{SHA512-CRYPT}`, `{SHA256-CRYPT}`, `{CRYPT}`: the algorithm is chosen by
/// the stored string's prefix, not by the scheme's name.
pub(super) fn verify_any(
    password: &[u8],
    scheme: Scheme,
    text: &str,
) -> Result<bool, PasswordError> {
    let bytes = text.as_bytes();
    // Dovecot crypt_verify() sends "$2?$..." to its own bcrypt.
    if bytes.len() > 4 && bytes[0] == b'$' && bytes[1] == b'2' && bytes[3] == b'$' {
        return blowfish::verify(password, scheme, text);
    }
    if let Some(rest) = text.strip_prefix("$6$") {
        verify_sha(password, scheme, rest, SHA512_HASH_LEN, sha512)
    } else if let Some(rest) = text.strip_prefix("$5$") {
        verify_sha(password, scheme, rest, SHA256_HASH_LEN, sha256)
    } else if text.starts_with("$1$") {
        verify_md5(password, scheme, text)
    } else if let Some(rest) = text.strip_prefix('$') {
        // LIMITATION: libxcrypt also knows yescrypt ($y$), scrypt ($7$) and
        // others; postwerk implements what Dovecot itself generates.
        let id = rest.split('$').next().unwrap_or_default();
        Err(malformed(
            scheme,
            format!("unsupported crypt(3) algorithm ${}$", printable(id)),
        ))
    } else if text.starts_with('_') {
        // LIMITATION: BSDi extended DES is not implemented.
        Err(malformed(
            scheme,
            "BSDi extended DES crypt is not supported",
        ))
    } else if des::looks_like_des(text) {
        let bytes = text.as_bytes();
        let computed = des::des_crypt(password, [bytes[0], bytes[1]])
            .ok_or_else(|| malformed(scheme, "DES salt outside the crypt alphabet"))?;
        Ok(ct_eq(computed.as_bytes(), bytes))
    } else {
        Err(malformed(
            scheme,
            "not a crypt(3) hash ($1$, $2y$, $5$, $6$ or 13-character DES)",
        ))
    }
}

/// `{MD5-CRYPT}`: `$1$salt$digest`, Dovecot's own implementation.
pub(super) fn verify_md5(
    password: &[u8],
    scheme: Scheme,
    text: &str,
) -> Result<bool, PasswordError> {
    let rest = text
        .strip_prefix("$1$")
        .ok_or_else(|| malformed(scheme, "does not start with $1$"))?;
    let (salt, hash) = rest
        .split_once('$')
        .ok_or_else(|| malformed(scheme, "no $ after the salt"))?;
    // Dovecot takes at most 8 salt characters; a longer one can never
    // compare equal.
    if salt.len() > MD5_SALT_LEN {
        return Err(malformed(
            scheme,
            format!("salt longer than {MD5_SALT_LEN} characters"),
        ));
    }
    check_crypt_digest(scheme, hash, MD5_HASH_LEN)?;
    Ok(ct_eq(
        md5_crypt(password, salt.as_bytes()).as_bytes(),
        hash.as_bytes(),
    ))
}

/// SHA-crypt after the `$6$`/`$5$`: `[rounds=N$]salt$digest`, parsed with
/// libxcrypt's rules (crypt-sha512.c): rounds without leading zeros and in
/// 1000..=999999999, salt without `$:;*!\` or blanks, at most 16 characters.
fn verify_sha(
    password: &[u8],
    scheme: Scheme,
    rest: &str,
    digest_len: usize,
    compute: fn(&[u8], Scheme, &str, usize) -> Result<String, PasswordError>,
) -> Result<bool, PasswordError> {
    let (rounds, rest) = match rest.strip_prefix("rounds=") {
        None => (SHA_ROUNDS_DEFAULT, rest),
        Some(rest) => {
            let (number, rest) = rest
                .split_once('$')
                .ok_or_else(|| malformed(scheme, "no $ after rounds="))?;
            let valid = number.bytes().all(|b| b.is_ascii_digit()) && !number.starts_with('0');
            let rounds = number
                .parse::<usize>()
                .ok()
                .filter(|r| valid && (SHA_ROUNDS_MIN..=SHA_ROUNDS_MAX).contains(r))
                .ok_or_else(|| {
                    malformed(
                        scheme,
                        format!("rounds must be {SHA_ROUNDS_MIN}..={SHA_ROUNDS_MAX} without leading zeros"),
                    )
                })?;
            (rounds, rest)
        }
    };
    let (salt, hash) = rest
        .split_once('$')
        .ok_or_else(|| malformed(scheme, "no $ after the salt"))?;
    if salt.len() > SHA_SALT_LEN {
        // crypt(3) would use only the first 16 characters, so the result
        // can never equal the stored string.
        return Err(malformed(
            scheme,
            format!("salt longer than {SHA_SALT_LEN} characters"),
        ));
    }
    if !salt
        .bytes()
        .all(|b| b.is_ascii_graphic() && !b"$:;*!\\".contains(&b))
    {
        return Err(malformed(scheme, "salt has characters crypt(3) refuses"));
    }
    check_crypt_digest(scheme, hash, digest_len)?;
    let computed = compute(password, scheme, salt, rounds)?;
    Ok(ct_eq(computed.as_bytes(), hash.as_bytes()))
}

/// The digest part must have exactly `len` characters of the crypt alphabet.
fn check_crypt_digest(scheme: Scheme, hash: &str, len: usize) -> Result<(), PasswordError> {
    if hash.len() != len {
        return Err(malformed(
            scheme,
            format!("digest has {} characters instead of {len}", hash.len()),
        ));
    }
    if !hash.bytes().all(|b| CRYPT_ALPHABET.contains(&b)) {
        return Err(malformed(
            scheme,
            "digest has characters outside the crypt alphabet",
        ));
    }
    Ok(())
}

/// The encoded SHA-512 crypt digest of `password` with `salt` and `rounds`.
fn sha512(
    password: &[u8],
    scheme: Scheme,
    salt: &str,
    rounds: usize,
) -> Result<String, PasswordError> {
    let params = Sha512Params::new(rounds).map_err(|_| malformed(scheme, "rounds out of range"))?;
    sha512_crypt_b64(password, salt.as_bytes(), &params).map_err(|e| PasswordError::Hashing {
        scheme,
        reason: format!("{e:?}"),
    })
}

/// The encoded SHA-256 crypt digest of `password` with `salt` and `rounds`.
fn sha256(
    password: &[u8],
    scheme: Scheme,
    salt: &str,
    rounds: usize,
) -> Result<String, PasswordError> {
    let params = Sha256Params::new(rounds).map_err(|_| malformed(scheme, "rounds out of range"))?;
    sha256_crypt_b64(password, salt.as_bytes(), &params).map_err(|e| PasswordError::Hashing {
        scheme,
        reason: format!("{e:?}"),
    })
}

/// The MD5 crypt digest (22 characters) of `password` with `salt` (at most
/// 8 bytes, no `$`), as Poul-Henning Kamp's original and Dovecot's
/// `password-scheme-md5crypt.c` compute it.
fn md5_crypt(password: &[u8], salt: &[u8]) -> String {
    const MAGIC: &[u8] = b"$1$";
    let salt = &salt[..salt.len().min(MD5_SALT_LEN)];

    let alternate = Md5::new()
        .chain_update(password)
        .chain_update(salt)
        .chain_update(password)
        .finalize();

    let mut ctx = Md5::new()
        .chain_update(password)
        .chain_update(MAGIC)
        .chain_update(salt);
    let mut remaining = password.len();
    while remaining > 0 {
        let n = remaining.min(16);
        ctx.update(&alternate[..n]);
        remaining -= n;
    }
    // The original's odd bit loop: a zero byte for each set bit of the
    // length, the password's first byte for each clear one.
    let mut bits = password.len();
    while bits > 0 {
        if bits & 1 == 1 {
            ctx.update([0u8]);
        } else {
            ctx.update(&password[..1]);
        }
        bits >>= 1;
    }
    let mut digest = ctx.finalize();

    for round in 0..MD5_ROUNDS {
        let mut ctx = Md5::new();
        if round & 1 == 1 {
            ctx.update(password);
        } else {
            ctx.update(digest);
        }
        if round % 3 != 0 {
            ctx.update(salt);
        }
        if round % 7 != 0 {
            ctx.update(password);
        }
        if round & 1 == 1 {
            ctx.update(digest);
        } else {
            ctx.update(password);
        }
        digest = ctx.finalize();
    }

    let d = digest;
    let mut out = String::with_capacity(MD5_HASH_LEN);
    for (a, b, c) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        to64(
            &mut out,
            u32::from(d[a]) << 16 | u32::from(d[b]) << 8 | u32::from(d[c]),
            4,
        );
    }
    to64(&mut out, u32::from(d[11]), 2);
    out
}

/// Appends the low `6 * n` bits of `value` in the crypt alphabet, least
/// significant first.
fn to64(out: &mut String, mut value: u32, n: usize) {
    for _ in 0..n {
        out.push(char::from(CRYPT_ALPHABET[(value & 0x3f) as usize]));
        value >>= 6;
    }
}

/// `N` random characters of the crypt alphabet (Dovecot
/// `password_generate_salt()`).
fn random_salt<const N: usize>(scheme: Scheme) -> Result<String, PasswordError> {
    let bytes: [u8; N] = random_bytes(scheme)?;
    // 64 characters: masking to 6 bits keeps the choice uniform.
    Ok(bytes
        .iter()
        .map(|b| char::from(CRYPT_ALPHABET[usize::from(b & 0x3f)]))
        .collect())
}

/// A crypt algorithm id fit for an error message.
fn printable(id: &str) -> String {
    id.chars()
        .take(8)
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '?' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_crypt_matches_libxcrypt() {
        // python3 -c 'import crypt; print(crypt.crypt("pw", "$1$$"))'
        assert_eq!(md5_crypt(b"pw", b""), "F0Fc2lbYpzr3KKdKkM0Wj.");
        // crypt.crypt("pw", "$1$abcdefghijk$zz"): the salt stops at 8.
        assert_eq!(md5_crypt(b"pw", b"abcdefghijk"), "IQtUouv7y7Q9dRWkQEPCc.");
    }

    #[test]
    fn sha_crypt_matches_dovecot_self_test() {
        // Dovecot password-scheme-crypt.c sample[]
        assert!(verify_any(
            b"08/15!test~4711",
            Scheme::Crypt,
            "$6$rounds=1000$0123456789abcdef$ZIAd5WqfyLkpvsVCVUU1GrvqaZTqvhJoouxdSqJO71l9Ld3tVrfOatEjarhghvEYADkq//LpDnTeO90tcbtHR1"
        )
        .unwrap());
        assert!(
            verify_any(
                b"08/15!test~4711",
                Scheme::Crypt,
                "$5$rounds=1000$0123456789abcdef$K/DksR0DT01hGc8g/kt9McEgrbFMKi9qrb1jehe7hn4"
            )
            .unwrap()
        );
    }

    #[test]
    fn sha_crypt_rounds_follow_libxcrypt() {
        // crypt.crypt("pw", "$6$rounds=5000$abc"): an explicit default is fine.
        let ok = "$6$rounds=5000$abc$MtSdWSZbhct2oe.SOqOUM2M/GA/uj5.vyVtJgRHgKi9uqXuWuJqOYE7H/YlsYGVg/YYzDV0xt3fEIwYt580.5.";
        assert!(verify_any(b"pw", Scheme::Sha512Crypt, ok).unwrap());
        let digest = &ok["$6$rounds=5000$abc$".len()..];
        for rounds in ["999", "01000", "+1000", "1000000000", "", "x"] {
            let stored = format!("$6$rounds={rounds}$abc${digest}");
            assert!(
                verify_any(b"pw", Scheme::Sha512Crypt, &stored).is_err(),
                "{rounds}"
            );
        }
    }

    #[test]
    fn sha_crypt_salt_rules() {
        // crypt.crypt("pw", "$6$a-b$") works; "$6$$" (empty salt) too.
        assert!(verify_any(b"pw", Scheme::Sha512Crypt, "$6$a-b$UGcgDlcBaauzBX2K75NzCXg9IaxDWmWcElDD0zNa04jSFmjekqExEaRoZL7xnG/7ialutAadkTfycThRyCOel0").unwrap());
        assert!(verify_any(b"pw", Scheme::Sha512Crypt, "$6$$Z7WSO9A8tKGD2oGB9t2ViKdYTIHgnjMZIbdOJElGnO.QoZE5zDsfnF1WHM.IL2KPxhNG4/v/zU9LBcGhxg5Uy.").unwrap());
        let digest = "Z7WSO9A8tKGD2oGB9t2ViKdYTIHgnjMZIbdOJElGnO.QoZE5zDsfnF1WHM.IL2KPxhNG4/v/zU9LBcGhxg5Uy.";
        for salt in ["a b", "a*b", "a:b", "abcdefghijklmnopq", "ä"] {
            let stored = format!("$6${salt}${digest}");
            assert!(
                verify_any(b"pw", Scheme::Sha512Crypt, &stored).is_err(),
                "{salt}"
            );
        }
    }

    #[test]
    fn des_crypt_matches_libxcrypt() {
        // python3 -c 'import crypt; print(crypt.crypt(PW, SALT))'; the
        // non-UTF-8 one through ctypes and libcrypt.so.1 directly.
        let vectors: [(&[u8], &str); 8] = [
            (b"", "..X8NBuQ4l6uQ"),
            (b"a", "zzJZ5PtvFqi9o"),
            (b"password", "abJnggxhB/yWI"),
            (b"passwordLONGER", "abJnggxhB/yWI"),
            (b"\xff\xfe\x80abc", "9/1KInTVG6Mt."),
            (b"correct horse battery staple", "XylJt/8b2k7dE"),
            (b"12345678", "./qw5JW./79Vg"),
            // doveadm pw -s DES-CRYPT -p 'correct horse battery staple'
            (b"correct horse battery staple", "DGlEu5KG1lMG2"),
        ];
        for (password, stored) in vectors {
            assert!(
                verify_any(password, Scheme::Crypt, stored).unwrap(),
                "{stored}"
            );
            assert!(
                !verify_any(b"Password", Scheme::Crypt, stored).unwrap(),
                "{stored}"
            );
        }
    }

    #[test]
    fn unsupported_prefixes_are_errors() {
        for stored in [
            "$y$j9T$abc$def",
            "_J9..abcdTZ/33djMPto",
            "JB03d7YaNJGA",
            "JB03d7YaNJGAU*",
            "$6$abc",
            "$6$abc$short",
        ] {
            assert!(
                verify_any(b"pw", Scheme::Crypt, stored).is_err(),
                "{stored}"
            );
        }
    }
}

//! `{ARGON2I}` and `{ARGON2ID}`: PHC strings as libsodium's
//! `crypto_pwhash_argon2i_str()`/`crypto_pwhash_argon2id_str()` make them for
//! Dovecot (`src/auth/password-scheme-sodium.c`):
//! `$argon2id$v=19$m=65536,t=3,p=1$<16-byte salt>$<32-byte digest>`, both in
//! unpadded base64.
//!
//! Dovecot verifies either scheme with `crypto_pwhash_str_verify()`, which
//! takes the variant and the costs from the string, so `{ARGON2I}` accepts an
//! argon2id string and the other way round; we do the same. libsodium's
//! decoder is strict: `v=19` and exactly `m=..,t=..,p=..` in that order,
//! else "mismatch"; we report such strings as malformed.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use super::{PasswordError, Scheme, malformed, random_bytes};

/// Memory of new `{ARGON2I}` hashes in KiB (libsodium
/// `crypto_pwhash_argon2i_MEMLIMIT_INTERACTIVE`, 32 MiB).
const ARGON2I_M_KIB: u32 = 32 * 1024;
/// Passes of new `{ARGON2I}` hashes (`crypto_pwhash_argon2i_OPSLIMIT_INTERACTIVE`).
const ARGON2I_T: u32 = 4;
/// Memory of new `{ARGON2ID}` hashes in KiB
/// (`crypto_pwhash_argon2id_MEMLIMIT_INTERACTIVE`, 64 MiB).
const ARGON2ID_M_KIB: u32 = 64 * 1024;
/// Passes of new `{ARGON2ID}` hashes: the interactive limit is 2, but
/// Dovecot raises it to 3 ("Bug in sodium-1.0.13, it expects rounds to be 3").
const ARGON2ID_T: u32 = 3;
/// libsodium uses one lane.
const LANES: u32 = 1;
/// libsodium's digest length (`crypto_pwhash_STRBYTES` layout).
const OUTPUT_LEN: usize = 32;
/// libsodium's salt length (`crypto_pwhash_SALTBYTES`).
const SALT_LEN: usize = 16;

/// The most memory a stored hash may ask for: 1 GiB, libsodium's
/// "sensitive" limit and the largest Dovecot generates. A row asking for
/// more is refused rather than letting every concurrent login allocate it.
const MAX_M_KIB: u32 = 1024 * 1024;

/// The libsodium variant of a scheme and its Dovecot defaults.
fn default_params(scheme: Scheme) -> (Algorithm, u32, u32) {
    if scheme == Scheme::Argon2i {
        (Algorithm::Argon2i, ARGON2I_M_KIB, ARGON2I_T)
    } else {
        (Algorithm::Argon2id, ARGON2ID_M_KIB, ARGON2ID_T)
    }
}

/// A new hash with doveadm's default costs and a random 16-byte salt.
pub(super) fn hash(password: &[u8], scheme: Scheme) -> Result<String, PasswordError> {
    let (algorithm, m_kib, t) = default_params(scheme);
    let failed = |e: argon2::password_hash::Error| PasswordError::Hashing {
        scheme,
        reason: e.to_string(),
    };
    let params = Params::new(m_kib, t, LANES, Some(OUTPUT_LEN)).map_err(|e| failed(e.into()))?;
    let salt_bytes: [u8; SALT_LEN] = random_bytes(scheme)?;
    let salt = SaltString::encode_b64(&salt_bytes).map_err(failed)?;
    Argon2::new(algorithm, Version::V0x13, params)
        .hash_password(password, &salt)
        .map(|phc| phc.to_string())
        .map_err(failed)
}

/// Verifies a PHC string; the costs come from the string.
pub(super) fn verify(password: &[u8], scheme: Scheme, text: &str) -> Result<bool, PasswordError> {
    let phc =
        PasswordHash::new(text).map_err(|e| malformed(scheme, format!("not a PHC string: {e}")))?;
    let algorithm = match phc.algorithm.as_str() {
        "argon2i" => Algorithm::Argon2i,
        "argon2id" => Algorithm::Argon2id,
        // libsodium knows only these two.
        _ => return Err(malformed(scheme, "not an $argon2i$ or $argon2id$ string")),
    };
    if phc.version != Some(Version::V0x13.into()) {
        return Err(malformed(scheme, "argon2 version is not v=19"));
    }
    // libsodium's decoder wants exactly "m=..,t=..,p=.." in this order.
    let names: Vec<&str> = phc.params.iter().map(|(name, _)| name.as_str()).collect();
    if names != ["m", "t", "p"] {
        return Err(malformed(
            scheme,
            "parameters are not m=,t=,p= in libsodium's order",
        ));
    }
    if phc.salt.is_none() || phc.hash.is_none() {
        return Err(malformed(scheme, "no salt or no digest"));
    }
    let params =
        Params::try_from(&phc).map_err(|e| malformed(scheme, format!("bad parameters: {e}")))?;
    if params.m_cost() > MAX_M_KIB {
        return Err(malformed(
            scheme,
            format!(
                "asks for {} KiB of memory, more than the {MAX_M_KIB} KiB we allow",
                params.m_cost()
            ),
        ));
    }
    match Argon2::new(algorithm, Version::V0x13, params).verify_password(password, &phc) {
        Ok(()) => Ok(true),
        Err(argon2::password_hash::Error::Password) => Ok(false),
        Err(e) => Err(malformed(scheme, e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_memory_is_refused_before_allocating() {
        let stored = "$argon2id$v=19$m=4194304,t=3,p=1$OpxSg9ZbxR1Ol9nBdbqc1Q$7zJqcGPHx5EuyYX0DSd9A8zMIuYGy7XroO0P0drU9JQ";
        assert!(verify(b"test", Scheme::Argon2id, stored).is_err());
    }

    #[test]
    fn small_costs_verify_like_libsodium() {
        // Made with the argon2 crate; `doveadm pw -t '{ARGON2I}...' -p pw`
        // says "(verified)".
        let stored = "$argon2i$v=19$m=1024,t=2,p=1$MDEyMzQ1Njc4OWFiY2RlZg$N1LQgPYZ1eiU9I3vYrCXdIVJyMqnsdxhWlG5sOE7PiI";
        assert!(verify(b"pw", Scheme::Argon2i, stored).unwrap());
        assert!(!verify(b"pW", Scheme::Argon2i, stored).unwrap());
        // doveadm says "Password mismatch" for these: libsodium refuses
        // other parameter orders, v=16 and a missing version.
        for stored in [
            "$argon2i$v=19$t=2,m=1024,p=1$MDEyMzQ1Njc4OWFiY2RlZg$N1LQgPYZ1eiU9I3vYrCXdIVJyMqnsdxhWlG5sOE7PiI",
            "$argon2i$v=16$m=1024,t=2,p=1$MDEyMzQ1Njc4OWFiY2RlZg$AxCf2HOpjFsddj3aSrElvMI+TtAaPUw8iw425TyaqsU",
            "$argon2i$m=1024,t=2,p=1$MDEyMzQ1Njc4OWFiY2RlZg$AxCf2HOpjFsddj3aSrElvMI+TtAaPUw8iw425TyaqsU",
        ] {
            assert!(verify(b"pw", Scheme::Argon2i, stored).is_err(), "{stored}");
        }
    }

    #[test]
    fn argon2d_and_old_versions_are_errors() {
        for stored in [
            "$argon2d$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$7zJqcGPHx5EuyYX0DSd9A8zMIuYGy7XroO0P0drU9JQ",
            "$argon2i$v=16$m=8,t=1,p=1$c2FsdHNhbHQ$7zJqcGPHx5EuyYX0DSd9A8zMIuYGy7XroO0P0drU9JQ",
            "$argon2i$m=8,t=1,p=1$c2FsdHNhbHQ$7zJqcGPHx5EuyYX0DSd9A8zMIuYGy7XroO0P0drU9JQ",
            "$argon2i$v=19$m=8,t=1,p=1$c2FsdHNhbHQ",
        ] {
            assert!(
                verify(b"test", Scheme::Argon2i, stored).is_err(),
                "{stored}"
            );
        }
    }
}

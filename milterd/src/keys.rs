//! DKIM key files: the formats milterd reads (the ones Rspamd and
//! OpenDKIM write), key generation for `postwerk dkim keygen`, and the DNS
//! TXT record of a key. Paths come from the `$domain`/`$selector` pattern
//! of `[milterd.dkim].path`. No milter protocol and no database here.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use std::path::{Path, PathBuf};

/// Largest key file read (a 4096-bit RSA key in PEM is about 3.3 KB).
pub const MAX_KEY_FILE: u64 = 64 * 1024;

/// The longest string in one TXT record character-string (RFC 1035
/// §3.3.14).
pub const TXT_CHUNK: usize = 255;

/// Which signature algorithm a key makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algo {
    /// `a=rsa-sha256`, `k=rsa`.
    Rsa,
    /// `a=ed25519-sha256`, `k=ed25519` (RFC 8463).
    Ed25519,
}

impl Algo {
    /// The DNS `k=` value.
    pub fn name(self) -> &'static str {
        match self {
            Algo::Rsa => "rsa",
            Algo::Ed25519 => "ed25519",
        }
    }
}

/// Why a key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file does not exist: the domain has no key with this selector.
    #[error("no key file {0}")]
    Missing(PathBuf),
    /// The file exists but cannot be read (permissions, I/O).
    #[error("cannot read key file {path}: {source}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a key we understand.
    #[error("key file {path} is not a usable DKIM key: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Key generation failed.
    #[error("cannot generate a key: {0}")]
    Generate(String),
}

/// The private half of a key, in the library that signs with it: RSA in
/// OpenSSL 3, whose assembly computes an RSA-2048 signature in about half
/// ring's time (`bench/run`, "raw signatures/s"); Ed25519 in ring (faster
/// than OpenSSL there).
pub enum Secret {
    /// An RSA key.
    Rsa(PKey<Private>),
    /// An Ed25519 key.
    Ed25519(Ed25519Key),
}

/// A loaded private key with what the DNS record needs.
pub struct Key {
    /// The signing key.
    pub secret: Secret,
    /// The public key as published in `p=`: SubjectPublicKeyInfo DER for
    /// RSA (what opendkim-genkey and Rspamd publish), the raw 32 bytes for
    /// Ed25519 (RFC 8463 §4.2).
    pub public: Vec<u8>,
    /// RSA modulus size in bits (0 for Ed25519).
    pub bits: usize,
}

impl Key {
    /// Its algorithm.
    pub fn algo(&self) -> Algo {
        match self.secret {
            Secret::Rsa(_) => Algo::Rsa,
            Secret::Ed25519(_) => Algo::Ed25519,
        }
    }

    /// Signs `data` (the DKIM/ARC signing input, hashed here with
    /// SHA-256): RSASSA-PKCS1-v1_5 for RSA keys, Ed25519 of the SHA-256
    /// digest for Ed25519 keys (RFC 8463).
    pub fn sign(&self, data: &[u8]) -> Result<Vec<u8>, String> {
        use mail_auth::common::crypto::SigningKey;
        match &self.secret {
            Secret::Rsa(pkey) => {
                let mut signer = openssl::sign::Signer::new(MessageDigest::sha256(), pkey)
                    .map_err(|e| e.to_string())?;
                signer.update(data).map_err(|e| e.to_string())?;
                signer.sign_to_vec().map_err(|e| e.to_string())
            }
            Secret::Ed25519(k) => k.sign(data).map_err(|e| e.to_string()),
        }
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("algo", &self.algo())
            .field("bits", &self.bits)
            .finish_non_exhaustive()
    }
}

/// Expands an Rspamd-style path pattern (`$domain`, `$selector`).
pub fn expand_path(pattern: &str, domain: &str, selector: &str) -> PathBuf {
    PathBuf::from(
        pattern
            .replace("$domain", domain)
            .replace("$selector", selector),
    )
}

/// Reads and parses a key file.
pub fn load(path: &Path) -> Result<Key, KeyError> {
    use std::io::Read;
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(KeyError::Missing(path.to_path_buf()));
        }
        Err(source) => {
            return Err(KeyError::Unreadable {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let mut data = Vec::new();
    file.take(MAX_KEY_FILE + 1)
        .read_to_end(&mut data)
        .map_err(|source| KeyError::Unreadable {
            path: path.to_path_buf(),
            source,
        })?;
    if data.len() as u64 > MAX_KEY_FILE {
        return Err(KeyError::Invalid {
            path: path.to_path_buf(),
            reason: format!("larger than {MAX_KEY_FILE} bytes"),
        });
    }
    parse(&data).map_err(|reason| KeyError::Invalid {
        path: path.to_path_buf(),
        reason,
    })
}

/// Parses key file contents: PEM PKCS#1 (`RSA PRIVATE KEY`), PEM PKCS#8
/// (`PRIVATE KEY`, RSA or Ed25519), or Rspamd's Ed25519 format (one base64
/// line of the 32-byte seed or the 64-byte seed and public key).
pub fn parse(data: &[u8]) -> Result<Key, String> {
    let text = std::str::from_utf8(data).map_err(|_| "not text (PEM or base64)".to_owned())?;
    if text.contains("-----BEGIN") {
        let der = PrivateKeyDer::from_pem_slice(data).map_err(|e| format!("bad PEM: {e}"))?;
        return match der {
            PrivateKeyDer::Pkcs1(_) => rsa_key(der),
            PrivateKeyDer::Pkcs8(p8) => {
                let bytes = p8.secret_pkcs8_der().to_vec();
                match ed25519_pkcs8(&bytes) {
                    Ok(k) => Ok(k),
                    Err(_) => rsa_key(PrivateKeyDer::Pkcs8(bytes.into())),
                }
            }
            _ => Err("only RSA (PKCS#1 or PKCS#8) and Ed25519 (PKCS#8) keys are supported".into()),
        };
    }
    let raw = B64
        .decode(text.trim())
        .map_err(|_| "neither PEM nor a base64 Ed25519 key".to_owned())?;
    let seed = match raw.len() {
        32 | 64 => &raw[..32],
        n => {
            return Err(format!(
                "a base64 Ed25519 key has 32 or 64 bytes, this one {n}"
            ));
        }
    };
    let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(seed)
        .map_err(|e| format!("bad Ed25519 seed: {e}"))?;
    use ring::signature::KeyPair;
    let public = pair.public_key().as_ref().to_vec();
    if raw.len() == 64 && raw[32..] != public[..] {
        return Err("the public half does not match the seed".into());
    }
    let key = Ed25519Key::from_seed_and_public_key(seed, &public).map_err(|e| e.to_string())?;
    Ok(Key {
        secret: Secret::Ed25519(key),
        public,
        bits: 0,
    })
}

fn ed25519_pkcs8(der: &[u8]) -> Result<Key, String> {
    let key = Ed25519Key::from_pkcs8_maybe_unchecked_der(der).map_err(|e| e.to_string())?;
    let public = key.public_key();
    Ok(Key {
        secret: Secret::Ed25519(key),
        public,
        bits: 0,
    })
}

fn rsa_key(der: PrivateKeyDer<'_>) -> Result<Key, String> {
    let openssl = match &der {
        PrivateKeyDer::Pkcs1(k) => {
            openssl::rsa::Rsa::private_key_from_der(k.secret_pkcs1_der()).and_then(PKey::from_rsa)
        }
        PrivateKeyDer::Pkcs8(k) => PKey::private_key_from_der(k.secret_pkcs8_der()),
        _ => return Err("not an RSA key".into()),
    }
    .map_err(|e| format!("OpenSSL cannot read the RSA key: {e}"))?;
    // ring checks the key (and gives its public half); OpenSSL signs.
    let key = RsaKey::<Sha256>::from_key_der(der).map_err(|e| e.to_string())?;
    let pkcs1 = key.public_key();
    let bits = rsa_modulus_bits(&pkcs1).unwrap_or(0);
    if bits != 0 && bits < 1024 {
        // RFC 8301 §3.2: verifiers must not accept keys below 1024 bits.
        return Err(format!(
            "an RSA key of {bits} bits is too short (at least 1024, 2048 advised)"
        ));
    }
    Ok(Key {
        secret: Secret::Rsa(openssl),
        public: spki_from_pkcs1(&pkcs1),
        bits,
    })
}

/// DER length octets.
fn der_len(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
}

/// Wraps a PKCS#1 RSAPublicKey into SubjectPublicKeyInfo (RFC 5280
/// §4.1.2.7 with the rsaEncryption AlgorithmIdentifier of RFC 3279).
pub fn spki_from_pkcs1(pkcs1: &[u8]) -> Vec<u8> {
    // SEQUENCE { OID 1.2.840.113549.1.1.1, NULL }
    const ALG: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut bitstring = vec![0x03];
    der_len(pkcs1.len() + 1, &mut bitstring);
    bitstring.push(0);
    bitstring.extend_from_slice(pkcs1);
    let mut out = vec![0x30];
    der_len(ALG.len() + bitstring.len(), &mut out);
    out.extend_from_slice(ALG);
    out.extend(bitstring);
    out
}

/// The modulus size of a PKCS#1 RSAPublicKey (SEQUENCE { INTEGER n, … }).
fn rsa_modulus_bits(pkcs1: &[u8]) -> Option<usize> {
    fn read_len(b: &[u8]) -> Option<(usize, usize)> {
        let first = *b.first()?;
        if first < 0x80 {
            return Some((first as usize, 1));
        }
        let n = (first & 0x7f) as usize;
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *b.get(1 + i)? as usize;
        }
        Some((len, 1 + n))
    }
    let rest = pkcs1.strip_prefix(&[0x30])?;
    let (_, l) = read_len(rest)?;
    let rest = rest.get(l..)?.strip_prefix(&[0x02])?;
    let (len, l) = read_len(rest)?;
    let n = rest.get(l..l + len)?;
    let n = match n.iter().position(|b| *b != 0) {
        Some(i) => &n[i..],
        None => return Some(0),
    };
    Some(n.len() * 8 - n[0].leading_zeros() as usize)
}

/// A new private key in PEM (PKCS#8), as `postwerk dkim keygen` writes it.
pub fn generate(algo: Algo, bits: usize) -> Result<String, KeyError> {
    match algo {
        Algo::Rsa => {
            use rsa::pkcs8::{EncodePrivateKey, LineEnding};
            if !(1024..=8192).contains(&bits) {
                return Err(KeyError::Generate(format!(
                    "{bits} bits is out of range; use 2048 (1024 to 8192 allowed)"
                )));
            }
            let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, bits)
                .map_err(|e| KeyError::Generate(e.to_string()))?;
            let pem = key
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| KeyError::Generate(e.to_string()))?;
            Ok(pem.to_string())
        }
        Algo::Ed25519 => {
            let der =
                Ed25519Key::generate_pkcs8().map_err(|e| KeyError::Generate(e.to_string()))?;
            Ok(pem("PRIVATE KEY", &der))
        }
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = B64.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The TXT record value: `v=DKIM1; k=rsa; p=…`.
pub fn txt_value(key: &Key) -> String {
    format!(
        "v=DKIM1; k={}; p={}",
        key.algo().name(),
        B64.encode(&key.public)
    )
}

/// The record name: `SELECTOR._domainkey.DOMAIN.`
pub fn record_name(selector: &str, domain: &str) -> String {
    format!("{selector}._domainkey.{domain}.")
}

/// A zone-file line with the value split into strings of at most 255
/// bytes (RFC 1035 §3.3.14; resolvers join them, RFC 6376 §3.6.2.2).
pub fn zone_line(selector: &str, domain: &str, key: &Key) -> String {
    let value = txt_value(key);
    let parts: Vec<String> = value
        .as_bytes()
        .chunks(TXT_CHUNK)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect();
    if parts.len() == 1 {
        format!("{} IN TXT {}", record_name(selector, domain), parts[0])
    } else {
        format!(
            "{} IN TXT ( {} )",
            record_name(selector, domain),
            parts.join("\n\t")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ed25519_round_trip_and_record() {
        let pem = generate(Algo::Ed25519, 0).unwrap();
        let k = parse(pem.as_bytes()).unwrap();
        assert_eq!(k.algo(), Algo::Ed25519);
        assert_eq!(k.public.len(), 32);
        assert!(txt_value(&k).starts_with("v=DKIM1; k=ed25519; p="));
        // Rspamd's format: base64 of the seed.
        let seed = B64.encode([7u8; 32]);
        let r = parse(seed.as_bytes()).unwrap();
        assert_eq!(r.algo(), Algo::Ed25519);
    }

    #[test]
    fn rsa_round_trip_and_split_record() {
        let pem = generate(Algo::Rsa, 2048).unwrap();
        let k = parse(pem.as_bytes()).unwrap();
        assert_eq!((k.algo(), k.bits), (Algo::Rsa, 2048));
        // SPKI of a 2048-bit key is 294 bytes; base64 392 chars.
        assert_eq!(k.public.len(), 294);
        let line = zone_line("2020", "example.org", &k);
        assert!(line.starts_with("2020._domainkey.example.org. IN TXT ( \"v=DKIM1; k=rsa; p="));
        for part in line.split('"').skip(1).step_by(2) {
            assert!(part.len() <= 255);
        }
    }

    #[test]
    fn garbage_is_refused() {
        assert!(parse(b"hello").is_err());
        assert!(parse(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").is_err());
        assert!(matches!(
            load(Path::new("/nonexistent/dkim.key")),
            Err(KeyError::Missing(_))
        ));
        assert_eq!(
            expand_path("/k/$domain.$selector.key", "example.org", "2020"),
            PathBuf::from("/k/example.org.2020.key")
        );
    }
}

//! Dovecot's password encodings: the `.B64`/`.HEX` of `{SHA256.HEX}`, read
//! as Dovecot's `base64_decode()` and `hex_to_binary()` read them. Pure
//! functions, no knowledge of schemes.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// How the text after `{SCHEME}` is turned into bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Encoding {
    /// Used as is (crypt strings, PHC strings, plaintext).
    None,
    /// RFC 4648 base64 with padding (`.B64`, `.BASE64`).
    Base64,
    /// Hex digits, either case (`.HEX`).
    Hex,
}

/// Standard base64, padding required as in Dovecot's `base64_decode()` with
/// no flags; the unused low bits of the last character are not checked.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical)
        .with_decode_allow_trailing_bits(true),
);

impl Encoding {
    /// The encoding named by a scheme suffix (`SHA256.HEX`), case-insensitive.
    pub(super) fn from_suffix(suffix: &str) -> Option<Encoding> {
        if suffix.eq_ignore_ascii_case("b64") || suffix.eq_ignore_ascii_case("base64") {
            Some(Encoding::Base64)
        } else if suffix.eq_ignore_ascii_case("hex") {
            Some(Encoding::Hex)
        } else {
            None
        }
    }

    /// Decodes `text`; the error says what is wrong without quoting it.
    pub(super) fn decode(self, text: &str) -> Result<Cow<'_, [u8]>, &'static str> {
        match self {
            Encoding::None => Ok(Cow::Borrowed(text.as_bytes())),
            Encoding::Base64 => {
                // Dovecot's decoder skips whitespace (a stray newline or
                // space in a database column).
                let compact: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
                BASE64
                    .decode(compact)
                    .map(Cow::Owned)
                    .map_err(|_| "not valid base64")
            }
            Encoding::Hex => hex_decode(text).map(Cow::Owned),
        }
    }
}

/// Dovecot `hex_to_binary()`: pairs of hex digits, either case.
fn hex_decode(text: &str) -> Result<Vec<u8>, &'static str> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return Err("odd number of hex digits");
    }
    bytes
        .chunks_exact(2)
        .map(|pair| match (nibble(pair[0]), nibble(pair[1])) {
            (Some(hi), Some(lo)) => Ok(hi << 4 | lo),
            _ => Err("not valid hex"),
        })
        .collect()
}

/// Standard padded base64, as Dovecot writes it.
pub(super) fn base64_encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_accepts_both_cases() {
        assert_eq!(
            Encoding::Hex.decode("00fFa9").unwrap().as_ref(),
            &[0x00, 0xff, 0xa9]
        );
    }

    #[test]
    fn hex_rejects_odd_length_and_garbage() {
        assert!(Encoding::Hex.decode("abc").is_err());
        assert!(Encoding::Hex.decode("zz").is_err());
    }

    #[test]
    fn base64_requires_padding_and_skips_whitespace() {
        assert_eq!(
            Encoding::Base64.decode("dGVzdA==").unwrap().as_ref(),
            b"test"
        );
        assert_eq!(
            Encoding::Base64.decode(" dGVz\r\ndA==\n").unwrap().as_ref(),
            b"test"
        );
        assert!(Encoding::Base64.decode("dGVzdA").is_err());
        assert!(Encoding::Base64.decode("dGV*dA==").is_err());
    }

    #[test]
    fn suffixes_are_case_insensitive() {
        assert_eq!(Encoding::from_suffix("b64"), Some(Encoding::Base64));
        assert_eq!(Encoding::from_suffix("BASE64"), Some(Encoding::Base64));
        assert_eq!(Encoding::from_suffix("Hex"), Some(Encoding::Hex));
        assert_eq!(Encoding::from_suffix("b32"), None);
    }
}

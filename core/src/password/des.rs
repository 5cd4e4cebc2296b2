//! Traditional DES crypt(3): 13 characters, 2 of salt (`{CRYPT}` and
//! `{DES-CRYPT}` hashes without a `$id$` prefix), as libxcrypt computes it.
//! Verification only: postwerk never makes these, they are crackable.
//!
//! The algorithm is the Seventh Edition's: the key is the first 8 password
//! bytes shifted left by one (the top bit is lost), the 12 salt bits swap
//! pairs of E-box outputs, and a zero block is encrypted 25 times. Bit-by-bit
//! DES with the FIPS 46-3 tables; speed does not matter for a legacy format.

/// Initial permutation (FIPS 46-3, 1-based bit numbers, bit 1 = MSB).
const IP: [u8; 64] = [
    58, 50, 42, 34, 26, 18, 10, 2, 60, 52, 44, 36, 28, 20, 12, 4, //
    62, 54, 46, 38, 30, 22, 14, 6, 64, 56, 48, 40, 32, 24, 16, 8, //
    57, 49, 41, 33, 25, 17, 9, 1, 59, 51, 43, 35, 27, 19, 11, 3, //
    61, 53, 45, 37, 29, 21, 13, 5, 63, 55, 47, 39, 31, 23, 15, 7,
];

/// Final permutation, the inverse of [`IP`].
const FP: [u8; 64] = [
    40, 8, 48, 16, 56, 24, 64, 32, 39, 7, 47, 15, 55, 23, 63, 31, //
    38, 6, 46, 14, 54, 22, 62, 30, 37, 5, 45, 13, 53, 21, 61, 29, //
    36, 4, 44, 12, 52, 20, 60, 28, 35, 3, 43, 11, 51, 19, 59, 27, //
    34, 2, 42, 10, 50, 18, 58, 26, 33, 1, 41, 9, 49, 17, 57, 25,
];

/// Expansion of the 32-bit half block to 48 bits.
const E: [u8; 48] = [
    32, 1, 2, 3, 4, 5, 4, 5, 6, 7, 8, 9, //
    8, 9, 10, 11, 12, 13, 12, 13, 14, 15, 16, 17, //
    16, 17, 18, 19, 20, 21, 20, 21, 22, 23, 24, 25, //
    24, 25, 26, 27, 28, 29, 28, 29, 30, 31, 32, 1,
];

/// Permutation of the S-box outputs.
const P: [u8; 32] = [
    16, 7, 20, 21, 29, 12, 28, 17, 1, 15, 23, 26, 5, 18, 31, 10, //
    2, 8, 24, 14, 32, 27, 3, 9, 19, 13, 30, 6, 22, 11, 4, 25,
];

/// Permuted choice 1: 64-bit key to 56 bits.
const PC1: [u8; 56] = [
    57, 49, 41, 33, 25, 17, 9, 1, 58, 50, 42, 34, 26, 18, //
    10, 2, 59, 51, 43, 35, 27, 19, 11, 3, 60, 52, 44, 36, //
    63, 55, 47, 39, 31, 23, 15, 7, 62, 54, 46, 38, 30, 22, //
    14, 6, 61, 53, 45, 37, 29, 21, 13, 5, 28, 20, 12, 4,
];

/// Permuted choice 2: 56 bits to a 48-bit round key.
const PC2: [u8; 48] = [
    14, 17, 11, 24, 1, 5, 3, 28, 15, 6, 21, 10, //
    23, 19, 12, 4, 26, 8, 16, 7, 27, 20, 13, 2, //
    41, 52, 31, 37, 47, 55, 30, 40, 51, 45, 33, 48, //
    44, 49, 39, 56, 34, 53, 46, 42, 50, 36, 29, 32,
];

/// Left rotations of the key halves per round.
const SHIFTS: [u32; 16] = [1, 1, 2, 2, 2, 2, 2, 2, 1, 2, 2, 2, 2, 2, 2, 1];

/// The eight S-boxes, each 4 rows of 16.
const S: [[u8; 64]; 8] = [
    [
        14, 4, 13, 1, 2, 15, 11, 8, 3, 10, 6, 12, 5, 9, 0, 7, //
        0, 15, 7, 4, 14, 2, 13, 1, 10, 6, 12, 11, 9, 5, 3, 8, //
        4, 1, 14, 8, 13, 6, 2, 11, 15, 12, 9, 7, 3, 10, 5, 0, //
        15, 12, 8, 2, 4, 9, 1, 7, 5, 11, 3, 14, 10, 0, 6, 13,
    ],
    [
        15, 1, 8, 14, 6, 11, 3, 4, 9, 7, 2, 13, 12, 0, 5, 10, //
        3, 13, 4, 7, 15, 2, 8, 14, 12, 0, 1, 10, 6, 9, 11, 5, //
        0, 14, 7, 11, 10, 4, 13, 1, 5, 8, 12, 6, 9, 3, 2, 15, //
        13, 8, 10, 1, 3, 15, 4, 2, 11, 6, 7, 12, 0, 5, 14, 9,
    ],
    [
        10, 0, 9, 14, 6, 3, 15, 5, 1, 13, 12, 7, 11, 4, 2, 8, //
        13, 7, 0, 9, 3, 4, 6, 10, 2, 8, 5, 14, 12, 11, 15, 1, //
        13, 6, 4, 9, 8, 15, 3, 0, 11, 1, 2, 12, 5, 10, 14, 7, //
        1, 10, 13, 0, 6, 9, 8, 7, 4, 15, 14, 3, 11, 5, 2, 12,
    ],
    [
        7, 13, 14, 3, 0, 6, 9, 10, 1, 2, 8, 5, 11, 12, 4, 15, //
        13, 8, 11, 5, 6, 15, 0, 3, 4, 7, 2, 12, 1, 10, 14, 9, //
        10, 6, 9, 0, 12, 11, 7, 13, 15, 1, 3, 14, 5, 2, 8, 4, //
        3, 15, 0, 6, 10, 1, 13, 8, 9, 4, 5, 11, 12, 7, 2, 14,
    ],
    [
        2, 12, 4, 1, 7, 10, 11, 6, 8, 5, 3, 15, 13, 0, 14, 9, //
        14, 11, 2, 12, 4, 7, 13, 1, 5, 0, 15, 10, 3, 9, 8, 6, //
        4, 2, 1, 11, 10, 13, 7, 8, 15, 9, 12, 5, 6, 3, 0, 14, //
        11, 8, 12, 7, 1, 14, 2, 13, 6, 15, 0, 9, 10, 4, 5, 3,
    ],
    [
        12, 1, 10, 15, 9, 2, 6, 8, 0, 13, 3, 4, 14, 7, 5, 11, //
        10, 15, 4, 2, 7, 12, 9, 5, 6, 1, 13, 14, 0, 11, 3, 8, //
        9, 14, 15, 5, 2, 8, 12, 3, 7, 0, 4, 10, 1, 13, 11, 6, //
        4, 3, 2, 12, 9, 5, 15, 10, 11, 14, 1, 7, 6, 0, 8, 13,
    ],
    [
        4, 11, 2, 14, 15, 0, 8, 13, 3, 12, 9, 7, 5, 10, 6, 1, //
        13, 0, 11, 7, 4, 9, 1, 10, 14, 3, 5, 12, 2, 15, 8, 6, //
        1, 4, 11, 13, 12, 3, 7, 14, 10, 15, 6, 8, 0, 5, 9, 2, //
        6, 11, 13, 8, 1, 4, 10, 7, 9, 5, 0, 15, 14, 2, 3, 12,
    ],
    [
        13, 2, 8, 4, 6, 15, 11, 1, 10, 9, 3, 14, 5, 0, 12, 7, //
        1, 15, 13, 8, 10, 3, 7, 4, 12, 5, 6, 11, 0, 14, 9, 2, //
        7, 11, 4, 1, 9, 12, 14, 2, 0, 6, 10, 13, 15, 3, 5, 8, //
        2, 1, 14, 7, 4, 10, 8, 13, 15, 12, 9, 0, 3, 5, 6, 11,
    ],
];

/// The crypt(3) alphabet; a character's index is its 6-bit value.
const ALPHABET: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Length of a traditional DES crypt string.
const HASH_LEN: usize = 13;

/// Picks bits out of the `width`-bit `input` (bit 1 = most significant) in
/// the order `table` names them; the result has `table.len()` bits.
fn permute(input: u64, width: u32, table: &[u8]) -> u64 {
    table.iter().fold(0, |out, &bit| {
        (out << 1) | ((input >> (width - u32::from(bit))) & 1)
    })
}

/// The 16 round keys of a 64-bit key.
fn key_schedule(key: u64) -> [u64; 16] {
    const MASK28: u64 = (1 << 28) - 1;
    let cd = permute(key, 64, &PC1);
    let (mut c, mut d) = (cd >> 28, cd & MASK28);
    let mut keys = [0u64; 16];
    for (round_key, &shift) in keys.iter_mut().zip(SHIFTS.iter()) {
        c = ((c << shift) | (c >> (28 - shift))) & MASK28;
        d = ((d << shift) | (d >> (28 - shift))) & MASK28;
        *round_key = permute((c << 28) | d, 56, &PC2);
    }
    keys
}

/// One DES encryption of `block`; each set bit `i` of the 12-bit `salt`
/// swaps bits `i` and `i + 24` (from the left) of the E-box output.
fn encrypt(block: u64, keys: &[u64; 16], salt: u32) -> u64 {
    let ip = permute(block, 64, &IP);
    let (mut l, mut r) = (ip >> 32, ip & 0xffff_ffff);
    for round_key in keys {
        let mut e = permute(r, 32, &E);
        for i in 0..12 {
            if salt >> i & 1 == 1 {
                let (hi, lo) = (47 - i, 47 - (i + 24));
                let differ = ((e >> hi) ^ (e >> lo)) & 1;
                e ^= (differ << hi) | (differ << lo);
            }
        }
        let x = e ^ round_key;
        let mut sboxed = 0u64;
        for (n, sbox) in S.iter().enumerate() {
            let six = (x >> (42 - 6 * n)) & 0x3f;
            let row = ((six >> 4) & 2) | (six & 1);
            let col = (six >> 1) & 0xf;
            sboxed = (sboxed << 4) | u64::from(sbox[(row * 16 + col) as usize]);
        }
        let f = permute(sboxed, 32, &P);
        (l, r) = (r, l ^ f);
    }
    permute((r << 32) | l, 64, &FP)
}

/// The 6-bit value of a crypt alphabet character.
fn value(c: u8) -> Option<u32> {
    ALPHABET
        .iter()
        .position(|&a| a == c)
        .and_then(|i| u32::try_from(i).ok())
}

/// The full 13-character DES crypt of `password` with the 2-character
/// `salt`, or `None` if the salt is not in the crypt alphabet (libxcrypt
/// refuses it).
pub(super) fn des_crypt(password: &[u8], salt: [u8; 2]) -> Option<String> {
    let salt_bits = value(salt[0])? | value(salt[1])? << 6;
    // The first 8 bytes, each shifted left by one; the rest is ignored.
    let key = password
        .iter()
        .take(8)
        .chain(std::iter::repeat(&0))
        .take(8)
        .fold(0u64, |key, &b| (key << 8) | u64::from(b << 1));
    let keys = key_schedule(key);
    let block = (0..25).fold(0u64, |block, _| encrypt(block, &keys, salt_bits));

    let mut out = String::with_capacity(HASH_LEN);
    out.push(char::from(salt[0]));
    out.push(char::from(salt[1]));
    // 64 bits plus two zero bits, six at a time, most significant first.
    let bits = u128::from(block) << 2;
    for i in (0..11).rev() {
        out.push(char::from(ALPHABET[((bits >> (6 * i)) & 0x3f) as usize]));
    }
    Some(out)
}

/// Whether `text` has the shape of a DES crypt string.
pub(super) fn looks_like_des(text: &str) -> bool {
    text.len() == HASH_LEN && text.bytes().all(|b| ALPHABET.contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_des_matches_fips_vector() {
        // The classic worked example: key 133457799BBCDFF1,
        // plaintext 0123456789ABCDEF, ciphertext 85E813540F0AB405.
        let keys = key_schedule(0x1334_5779_9BBC_DFF1);
        assert_eq!(
            encrypt(0x0123_4567_89AB_CDEF, &keys, 0),
            0x85E8_1354_0F0A_B405
        );
    }

    #[test]
    fn des_crypt_matches_libxcrypt() {
        // Dovecot password-scheme-crypt.c sample[], and
        // python3 -c 'import crypt; print(crypt.crypt("pw", "JB"))'.
        assert_eq!(
            des_crypt(b"08/15!test~4711", *b"JB").as_deref(),
            Some("JBOZ0DgmtucwE")
        );
        assert_eq!(des_crypt(b"pw", *b"JB").as_deref(), Some("JB03d7YaNJGAU"));
        assert_eq!(des_crypt(b"pw", *b"J*"), None);
    }
}

//! LOGIC: Rspamd's controller password hashes (`rspamadm pw`, the guide's
//! `worker-controller.inc`): `$2$<salt>$<key>`, Catena-Butterfly-Full
//! (Blake2b-512, λ = 4, garlic 10, associated data `rspamd`, 32-byte key,
//! 20-byte salt), salt and key in Rspamd's base32 (z-base-32 alphabet,
//! least significant bits first). Written from the Catena v3.1
//! specification (Forler, Lucks, Wenzel) as Rspamd instantiates it, and
//! checked against hashes made by `rspamadm pw` 3.4. CPU-heavy: call from
//! a blocking thread. No I/O.

use blake2::{Blake2b512, Digest};

const H_LEN: usize = 64;
/// Rspamd's `pbkdf_list` entry for id 2.
const GARLIC: u8 = 10;
const LAMBDA: u8 = 4;
const KEY_LEN: usize = 32;
const SALT_LEN: usize = 20;
const ASSOCIATED_DATA: &[u8] = b"rspamd";
const VERSION_ID: &[u8] = b"Butterfly-Full";

type Block = [u8; H_LEN];

fn h(parts: &[&[u8]]) -> Block {
    let mut d = Blake2b512::new();
    for p in parts {
        d.update(p);
    }
    d.finalize().into()
}

fn xor(a: &Block, b: &Block) -> Block {
    let mut o = [0u8; H_LEN];
    for i in 0..H_LEN {
        o[i] = a[i] ^ b[i];
    }
    o
}

/// The xorshift1024* generator of Catena's γ function.
struct XorShift {
    s: [u64; 16],
    p: usize,
}

impl XorShift {
    fn new(a: &Block, b: &Block) -> XorShift {
        let mut s = [0u64; 16];
        for i in 0..8 {
            let mut x = [0u8; 8];
            x.copy_from_slice(&a[i * 8..i * 8 + 8]);
            s[i] = u64::from_le_bytes(x);
            x.copy_from_slice(&b[i * 8..i * 8 + 8]);
            s[i + 8] = u64::from_le_bytes(x);
        }
        XorShift { s, p: 0 }
    }

    fn next(&mut self) -> u64 {
        let s0 = self.s[self.p];
        self.p = (self.p + 1) & 15;
        let mut s1 = self.s[self.p];
        s1 ^= s1 << 31;
        s1 ^= s1 >> 11;
        let s0 = s0 ^ (s0 >> 30);
        self.s[self.p] = s0 ^ s1;
        self.s[self.p].wrapping_mul(1_181_783_497_276_652_981)
    }
}

/// The butterfly graph's edge: flip one bit of `j`.
fn sigma(g: u8, i: u64, j: u64) -> u64 {
    let g = u64::from(g);
    if i < g {
        j ^ (1 << (g - 1 - i))
    } else {
        j ^ (1 << (i - (g - 1)))
    }
}

/// Where row `i` (shifted by `co`), column `j` lives in the 1.5 · 2^g
/// blocks of memory.
fn idx(i: u64, j: u64, co: u64, c: u64, m: u64) -> usize {
    let i = i + co;
    let v = match i % 3 {
        0 => j,
        1 if j < m => j + c,
        1 => j - m,
        _ => j + m,
    };
    v as usize
}

/// Catena's `Flap` with the Double-Butterfly graph.
fn flap(x: &Block, lambda: u8, garlic: u8, salt: &[u8]) -> Block {
    let c = 1u64 << garlic;
    let m = 1u64 << (garlic - 1);
    let l = 2 * u64::from(garlic);
    let mut r: Vec<Block> = vec![[0u8; H_LEN]; (c + m) as usize];
    // Top row.
    let vm1 = h(&[&[0u8], x]);
    let vm2 = h(&[&[1u8], x]);
    r[0] = h(&[&vm1, &vm2]);
    r[1] = h(&[&r[0], &vm1]);
    for i in 2..c as usize {
        r[i] = h(&[&r[i - 1], &r[i - 2]]);
    }
    // γ: salt-dependent updates.
    let q = 1u64 << (3 * u64::from(garlic)).div_ceil(4);
    let t1 = h(&[salt]);
    let t2 = h(&[&t1]);
    let mut rng = XorShift::new(&t1, &t2);
    for _ in 0..q {
        let j = (rng.next() >> (64 - u64::from(garlic))) as usize;
        let j2 = (rng.next() >> (64 - u64::from(garlic))) as usize;
        r[j] = h(&[&r[j], &r[j2]]);
    }
    // λ layers of the double butterfly.
    let mut co = 0u64;
    for _ in 0..lambda {
        for i in 1..l {
            let tmp = xor(&r[idx(i - 1, c - 1, co, c, m)], &r[idx(i - 1, 0, co, c, m)]);
            let first = h(&[&tmp, &r[idx(i - 1, sigma(garlic, i - 1, 0), co, c, m)]]);
            r[idx(i, 0, co, c, m)] = h(&[&[0u8], &first]);
            for j in 1..c {
                let tmp = xor(&r[idx(i, j - 1, co, c, m)], &r[idx(i - 1, j, co, c, m)]);
                r[idx(i, j, co, c, m)] =
                    h(&[&tmp, &r[idx(i - 1, sigma(garlic, i - 1, j), co, c, m)]]);
            }
        }
        co = (co + (l - 1)) % 3;
    }
    r[idx(0, c - 1, co, c, m)]
}

/// Catena-Butterfly-Full in password hashing mode.
pub fn catena(
    password: &[u8],
    salt: &[u8],
    data: &[u8],
    lambda: u8,
    min_garlic: u8,
    garlic: u8,
    hash_len: usize,
) -> Vec<u8> {
    let hv = h(&[VERSION_ID]);
    let tweak = [0u8, lambda, hash_len as u8, salt.len() as u8];
    let ad = h(&[data]);
    let mut x = h(&[&hv, &tweak, &ad, password, salt]);
    x = flap(&x, lambda, min_garlic.div_ceil(2), salt);
    for g in min_garlic..=garlic {
        x = flap(&x, lambda, g, salt);
        x = h(&[&[g], &x]);
        for b in x.iter_mut().skip(hash_len) {
            *b = 0;
        }
    }
    x[..hash_len].to_vec()
}

/// Rspamd's base32: z-base-32 letters, least significant bits first.
pub fn decode_base32(s: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8; 32] = b"ybndrfg8ejkmcpqxot1uwisza345h769";
    let mut out = Vec::with_capacity(s.len() * 5 / 8 + 1);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for c in s.bytes() {
        let v = ALPHABET.iter().position(|a| *a == c.to_ascii_lowercase())? as u32;
        acc |= v << bits;
        bits += 5;
        while bits >= 8 {
            out.push((acc & 0xff) as u8);
            acc >>= 8;
            bits -= 8;
        }
    }
    Some(out)
}

/// Whether `stored` is an Rspamd `$2$` hash.
pub fn is_rspamd_hash(stored: &str) -> bool {
    stored.starts_with("$2$")
}

/// Checks `password` against an Rspamd `$2$salt$key` hash; `None` when
/// the stored string is not a well-formed one.
pub fn verify(password: &[u8], stored: &str) -> Option<bool> {
    let rest = stored.strip_prefix("$2$")?;
    let (salt, key) = rest.split_once('$')?;
    let salt = decode_base32(salt)?;
    let key = decode_base32(key)?;
    if salt.len() < SALT_LEN || key.len() < KEY_LEN {
        return None;
    }
    let (salt, key) = (&salt[..SALT_LEN], &key[..KEY_LEN]);
    let got = catena(
        password,
        salt,
        ASSOCIATED_DATA,
        LAMBDA,
        GARLIC,
        GARLIC,
        KEY_LEN,
    );
    // Constant time.
    Some(got.iter().zip(key).fold(0u8, |a, (x, y)| a | (x ^ y)) == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made with `rspamadm pw -p q1` (Rspamd 3.4).
    #[test]
    fn rspamadm_pw_hashes() {
        let stored = "$2$axdqd5y1u9dnmfed11tsgwasuqamzieg$cnjy7jm9hpg6tk9oq5mua1bfd1axwgisp6crhq83drnbqe1eowqy";
        assert_eq!(verify(b"q1", stored), Some(true));
        assert_eq!(verify(b"q2", stored), Some(false));
        assert_eq!(verify(b"q1", "$2$short$cnjy"), None);
        assert_eq!(verify(b"q1", "$2$!!!$cnjy"), None);
        // `rspamadm pw -p 'correct horse battery staple'` and a non-ASCII
        // password.
        let stored = "$2$i7bteyu49dbjsw41rwbkcx4bgqfxwz18$kq43kr7az8qq5rsfr6saos4hesxy1bi48gxphdsfhjry1e7p5juy";
        assert_eq!(verify(b"correct horse battery staple", stored), Some(true));
        assert_eq!(verify(b"correct horse battery stapl", stored), Some(false));
        let stored = "$2$a17akanq3hhjicjjxiifb6sgsz4zirox$rxor93g5gdyu97594nuqkbakc34wcycy8r3ntzz73ea1itg1if4y";
        assert_eq!(verify("Grüße!".as_bytes(), stored), Some(true));
    }
}

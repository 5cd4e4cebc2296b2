//! `cargo bench -p postwerk-core --bench password`: verifications per second
//! for every scheme, next to the single-core cost of the primitive behind it
//! computed directly through its crate, and the ratio: the overhead
//! postwerk adds (prefix parsing, decoding, string building) over the floor.
//!
//! Prints a Markdown table. Each cell runs for about half a second; nothing
//! asserts on time.

use std::hint::black_box;
use std::time::{Duration, Instant};

use argon2::{Algorithm, Argon2, Params, Version};
use md5::Md5;
use postwerk_core::password::{self, DEFAULT_SCHEME, Scheme};
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

/// How long each measurement runs (at least one iteration).
const TARGET: Duration = Duration::from_millis(500);

const PASSWORD: &[u8] = b"correct horse battery staple";
const SALT16: [u8; 16] = *b"0123456789abcdef";
const SALT4: [u8; 4] = *b"salt";

/// Calls per second of `f`, run for about [`TARGET`].
fn rate(mut f: impl FnMut()) -> f64 {
    f(); // warm up: page in tables, allocate
    let start = Instant::now();
    let mut iterations: u64 = 0;
    let mut batch: u64 = 1;
    loop {
        for _ in 0..batch {
            f();
        }
        iterations += batch;
        let elapsed = start.elapsed();
        if elapsed >= TARGET {
            return iterations as f64 / elapsed.as_secs_f64();
        }
        // Grow the batch, but not past what fits in the time left.
        let per_call = elapsed.as_secs_f64() / iterations as f64;
        let left = (TARGET - elapsed).as_secs_f64();
        let fits = (left / per_call.max(1e-9)).ceil() as u64;
        batch = (batch * 2).min(fits.max(1));
    }
}

fn argon2(algorithm: Algorithm, m_kib: u32, t: u32) -> impl FnMut() {
    move || {
        let params =
            Params::new(m_kib, t, 1, Some(32)).expect("doveadm's argon2 parameters are valid");
        let mut out = [0u8; 32];
        Argon2::new(algorithm, Version::V0x13, params)
            .hash_password_into(black_box(PASSWORD), &SALT16, &mut out)
            .expect("argon2 with fixed inputs cannot fail");
        black_box(out);
    }
}

fn digest<D: Digest>(parts: &'static [&'static [u8]]) -> impl FnMut() {
    move || {
        let mut d = D::new();
        for part in parts {
            d.update(black_box(part));
        }
        black_box(d.finalize());
    }
}

/// What md5-crypt computes: 2 + 1000 MD5 digests of the password, salt and
/// previous digest.
fn md5_crypt_rounds() -> impl FnMut() {
    || {
        let mut digest = Md5::new()
            .chain_update(PASSWORD)
            .chain_update(b"$1$saltsalt")
            .finalize();
        digest = Md5::new()
            .chain_update(PASSWORD)
            .chain_update(digest)
            .finalize();
        for round in 0..1000 {
            let mut ctx = Md5::new();
            ctx.update(if round & 1 == 1 {
                PASSWORD
            } else {
                &digest[..]
            });
            if round % 3 != 0 {
                ctx.update(b"saltsalt");
            }
            if round % 7 != 0 {
                ctx.update(PASSWORD);
            }
            ctx.update(if round & 1 == 1 {
                &digest[..]
            } else {
                PASSWORD
            });
            digest = ctx.finalize();
        }
        black_box(digest);
    }
}

/// The primitive behind each scheme at doveadm's default cost, and its name.
fn primitive(scheme: Scheme) -> (&'static str, Box<dyn FnMut()>) {
    match scheme {
        Scheme::Sha512Crypt => (
            "sha_crypt::sha512_crypt, 5000 rounds",
            Box::new(|| {
                let params = sha_crypt::Sha512Params::new(5000).expect("5000 rounds is valid");
                black_box(sha_crypt::sha512_crypt(black_box(PASSWORD), &SALT16, &params).ok());
            }),
        ),
        Scheme::Sha256Crypt => (
            "sha_crypt::sha256_crypt, 5000 rounds",
            Box::new(|| {
                let params = sha_crypt::Sha256Params::new(5000).expect("5000 rounds is valid");
                black_box(sha_crypt::sha256_crypt(black_box(PASSWORD), &SALT16, &params).ok());
            }),
        ),
        Scheme::BlfCrypt | Scheme::Crypt => (
            "bcrypt::hash_with_salt, cost 5",
            Box::new(|| {
                black_box(bcrypt::hash_with_salt(black_box(PASSWORD), 5, SALT16).ok());
            }),
        ),
        Scheme::Argon2i => (
            "argon2i m=32768 t=4 p=1",
            Box::new(argon2(Algorithm::Argon2i, 32 * 1024, 4)),
        ),
        Scheme::Argon2id => (
            "argon2id m=65536 t=3 p=1",
            Box::new(argon2(Algorithm::Argon2id, 64 * 1024, 3)),
        ),
        Scheme::Md5Crypt => ("1002 MD5 digests", Box::new(md5_crypt_rounds())),
        Scheme::Ssha512 => (
            "SHA-512(pw+salt)",
            Box::new(digest::<Sha512>(&[PASSWORD, &SALT4])),
        ),
        Scheme::Ssha256 => (
            "SHA-256(pw+salt)",
            Box::new(digest::<Sha256>(&[PASSWORD, &SALT4])),
        ),
        Scheme::Ssha => (
            "SHA-1(pw+salt)",
            Box::new(digest::<Sha1>(&[PASSWORD, &SALT4])),
        ),
        Scheme::Sha512 => ("SHA-512(pw)", Box::new(digest::<Sha512>(&[PASSWORD]))),
        Scheme::Sha256 => ("SHA-256(pw)", Box::new(digest::<Sha256>(&[PASSWORD]))),
        Scheme::Sha => ("SHA-1(pw)", Box::new(digest::<Sha1>(&[PASSWORD]))),
        Scheme::Plain | Scheme::Cleartext => (
            "constant-time compare",
            Box::new(|| {
                black_box(bool::from(black_box(PASSWORD).ct_eq(black_box(PASSWORD))));
            }),
        ),
    }
}

/// `12345` or `1.23` or `123k`, for the table.
fn human(rate: f64) -> String {
    if rate >= 10_000_000.0 {
        format!("{:.1}M", rate / 1e6)
    } else if rate >= 100_000.0 {
        format!("{:.0}k", rate / 1e3)
    } else if rate >= 100.0 {
        format!("{rate:.0}")
    } else {
        format!("{rate:.2}")
    }
}

fn main() {
    println!("Password verification, one core (`cargo bench -p postwerk-core --bench password`)");
    println!();
    println!(
        "| scheme | postwerk verify/s | primitive | primitive/s | verify cost ÷ primitive cost |"
    );
    println!("|---|---:|---|---:|---:|");
    for scheme in Scheme::ALL {
        let stored = password::hash(PASSWORD, *scheme).expect("hashing a fixed password works");
        assert!(
            password::verify(PASSWORD, &stored, DEFAULT_SCHEME).unwrap_or(false),
            "{stored} must verify before it is benchmarked"
        );
        let verify_rate = rate(|| {
            black_box(
                password::verify(black_box(PASSWORD), black_box(&stored), DEFAULT_SCHEME).ok(),
            );
        });
        let (what, mut raw) = primitive(*scheme);
        let raw_rate = rate(&mut *raw);
        println!(
            "| {scheme} | {} | {what} | {} | {:.2} |",
            human(verify_rate),
            human(raw_rate),
            raw_rate / verify_rate
        );
    }
}

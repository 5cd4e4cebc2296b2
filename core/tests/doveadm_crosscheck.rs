//! Cross-checks `postwerk_core::password` against the real Dovecot: every
//! scheme's `doveadm pw -s SCHEME` output verifies in postwerk (and a wrong
//! password does not), and every hash postwerk makes passes
//! `doveadm pw -t HASH` (and fails with a wrong password).
//!
//! Needs `doveadm` (Debian package dovecot-core, installed by
//! scripts/install-deps). A missing doveadm fails the tests; it never skips.
//! doveadm runs with `-c` pointing at an empty config in a temp dir, so the
//! machine's /etc/dovecot is never read.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::{Command, Output};

use postwerk_core::password::{self, DEFAULT_SCHEME, Scheme};

/// A private, empty Dovecot config for doveadm.
struct Doveadm {
    binary: PathBuf,
    _dir: tempfile::TempDir,
    config: PathBuf,
}

impl Doveadm {
    fn new() -> Self {
        let binary = find_doveadm();
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("dovecot.conf");
        std::fs::write(&config, "# empty: doveadm pw needs no settings\n")
            .expect("write dovecot.conf");
        Self {
            binary,
            _dir: dir,
            config,
        }
    }

    fn run(&self, args: &[&OsStr]) -> Output {
        Command::new(&self.binary)
            .arg("-c")
            .arg(&self.config)
            .arg("pw")
            .args(args)
            .output()
            .expect("run doveadm")
    }

    /// `doveadm pw -s SCHEME -p PASSWORD`: the `{SCHEME}hash` line, or
    /// `None` when it is not UTF-8 (`{PLAIN}` of a password that is not).
    ///
    /// postwerk reads stored hashes as `&str`, so such a password has to be
    /// stored as `{PLAIN.B64}`, which `postwerk_core::password::hash` does and
    /// [`doveadm_encodings_and_aliases_verify_in_postwerk`] checks.
    fn hash(&self, scheme: &str, password: &[u8]) -> Option<String> {
        let out = self.run(&[
            OsStr::new("-s"),
            OsStr::new(scheme),
            OsStr::new("-p"),
            OsStr::from_bytes(password),
        ]);
        assert!(
            out.status.success(),
            "doveadm pw -s {scheme} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout);
        let is_plain = ["PLAIN", "CLEAR", "CLEARTEXT"]
            .iter()
            .any(|plain| scheme.eq_ignore_ascii_case(plain));
        match stdout {
            Ok(stdout) => Some(stdout.trim_end().to_owned()),
            Err(_) if is_plain && std::str::from_utf8(password).is_err() => None,
            Err(e) => panic!("doveadm pw -s {scheme} printed something that is not UTF-8: {e}"),
        }
    }

    /// `doveadm pw -t HASH -p PASSWORD`: true when doveadm exits 0 and
    /// prints `HASH (verified)`, false when it exits non-zero ("Fatal:
    /// reverse password verification check failed: Password mismatch",
    /// status 75).
    fn verifies(&self, stored: &str, password: &[u8]) -> bool {
        let out = self.run(&[
            OsStr::new("-t"),
            OsStr::new(stored),
            OsStr::new("-p"),
            OsStr::from_bytes(password),
        ]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        if out.status.success() {
            assert_eq!(stdout.trim_end(), format!("{stored} (verified)"));
            true
        } else {
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.contains("Password mismatch"),
                "doveadm pw -t {stored} failed for another reason: {stderr}"
            );
            assert!(!stdout.contains("(verified)"));
            false
        }
    }
}

/// The doveadm on PATH (or in /usr/bin); panics with what to do if none.
fn find_doveadm() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("doveadm"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "doveadm not found on PATH: these tests compare postwerk with the real Dovecot; \
                 run scripts/install-deps (Debian package dovecot-core)"
            )
        })
}

/// Passwords for the cheap schemes: ASCII with spaces, UTF-8, bytes that are
/// not UTF-8, empty, and one longer than bcrypt's 72 bytes.
const PASSWORDS: &[&[u8]] = &[
    b"correct horse battery staple",
    "pässwörd €".as_bytes(),
    b"\xff\xfe\x80abc",
    b"",
    &[b'p'; 100],
];

/// Argon2 costs seconds per hash in an unoptimised test build: fewer cases.
fn passwords_for(scheme: Scheme) -> &'static [&'static [u8]] {
    match scheme {
        Scheme::Argon2i | Scheme::Argon2id => &PASSWORDS[1..3],
        _ => PASSWORDS,
    }
}

fn wrong(password: &[u8]) -> Vec<u8> {
    // At the front: bcrypt ignores bytes after the 72nd.
    let mut wrong = b"x".to_vec();
    wrong.extend_from_slice(password);
    wrong
}

#[test]
fn doveadm_hashes_verify_in_postwerk() {
    let doveadm = Doveadm::new();
    for scheme in Scheme::ALL {
        for password in passwords_for(*scheme) {
            let Some(stored) = doveadm.hash(scheme.name(), password) else {
                continue;
            };
            assert!(stored.starts_with(&format!("{{{scheme}}}")), "{stored}");
            assert!(
                password::verify(password, &stored, DEFAULT_SCHEME).unwrap(),
                "doveadm's {stored} does not verify in postwerk (password {password:?})"
            );
            assert!(
                !password::verify(&wrong(password), &stored, DEFAULT_SCHEME).unwrap(),
                "doveadm's {stored} verifies a wrong password in postwerk"
            );
        }
    }
}

#[test]
fn postwerk_hashes_verify_in_doveadm() {
    let doveadm = Doveadm::new();
    for scheme in Scheme::ALL {
        for password in passwords_for(*scheme) {
            let stored = password::hash(password, *scheme).unwrap();
            assert!(
                doveadm.verifies(&stored, password),
                "postwerk's {stored} does not verify in doveadm (password {password:?})"
            );
            assert!(
                !doveadm.verifies(&stored, &wrong(password)),
                "postwerk's {stored} verifies a wrong password in doveadm"
            );
        }
    }
}

#[test]
fn doveadm_encodings_and_aliases_verify_in_postwerk() {
    let doveadm = Doveadm::new();
    let names = [
        "SHA512.HEX",
        "SHA256.HEX",
        "SHA.HEX",
        "SHA1",
        "SHA256.B64",
        "SHA512.BASE64",
        "SSHA512.HEX",
        "SSHA256.HEX",
        "SSHA.HEX",
        "PLAIN.B64",
        "PLAIN.HEX",
        "CLEAR",
        "CLEARTEXT.HEX",
        "SHA512-CRYPT.B64",
        "BLF-CRYPT.HEX",
        "DES-CRYPT",
        "ssha256",
    ];
    for name in names {
        for password in PASSWORDS {
            let Some(stored) = doveadm.hash(name, password) else {
                continue;
            };
            assert!(
                password::verify(password, &stored, DEFAULT_SCHEME).unwrap(),
                "doveadm's {stored} does not verify in postwerk"
            );
            assert!(
                !password::verify(&wrong(password), &stored, DEFAULT_SCHEME).unwrap(),
                "doveadm's {stored} verifies a wrong password in postwerk"
            );
        }
    }
}

#[test]
fn doveadm_rounds_verify_in_postwerk() {
    let doveadm = Doveadm::new();
    for (name, rounds) in [
        ("SHA512-CRYPT", "1000"),
        ("SHA256-CRYPT", "12345"),
        ("BLF-CRYPT", "4"),
    ] {
        let out = doveadm.run(&[
            OsStr::new("-s"),
            OsStr::new(name),
            OsStr::new("-r"),
            OsStr::new(rounds),
            OsStr::new("-p"),
            OsStr::new("rounds"),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stored = String::from_utf8(out.stdout).unwrap();
        let stored = stored.trim_end();
        assert!(
            password::verify(b"rounds", stored, DEFAULT_SCHEME).unwrap(),
            "{stored}"
        );
        assert!(
            !password::verify(b"Rounds", stored, DEFAULT_SCHEME).unwrap(),
            "{stored}"
        );
    }
}

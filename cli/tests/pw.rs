//! `postwerk pw` run as a binary, checked against the real `doveadm pw -t`
//! (Debian package dovecot-core, installed by scripts/install-deps; a
//! missing doveadm fails the test, it never skips).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// Runs `postwerk ARGS` with `stdin` piped in.
fn postwerk(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_postwerk"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start postwerk");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(stdin)
        .expect("write password");
    child.wait_with_output().expect("wait for postwerk")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `doveadm -c EMPTY pw -t HASH -p PASSWORD`.
fn doveadm_test(stored: &str, password: &str) -> Output {
    let doveadm = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("doveadm"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "doveadm not found on PATH: run scripts/install-deps (Debian package dovecot-core)"
            )
        });
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("dovecot.conf");
    std::fs::write(&config, "# empty\n").expect("write dovecot.conf");
    Command::new(doveadm)
        .arg("-c")
        .arg(&config)
        .args(["pw", "-t", stored, "-p", password])
        .output()
        .expect("run doveadm")
}

#[test]
fn password_stdin_hash_verifies_in_doveadm() {
    let out = postwerk(
        &["pw", "-s", "SHA512-CRYPT", "--password-stdin"],
        b"s3cret pass\r\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let stored = stdout(&out);
    let stored = stored.trim_end();
    assert!(stored.starts_with("{SHA512-CRYPT}$6$"), "{stored}");
    assert_eq!(stored.lines().count(), 1);

    let ok = doveadm_test(stored, "s3cret pass");
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert_eq!(stdout(&ok).trim_end(), format!("{stored} (verified)"));

    let wrong = doveadm_test(stored, "s3cret pass\r");
    assert!(!wrong.status.success());
}

#[test]
fn piped_stdin_is_read_without_the_flag() {
    let out = postwerk(&["pw", "-s", "blf-crypt"], b"piped\n");
    assert!(out.status.success(), "{}", stderr(&out));
    let stored = stdout(&out);
    assert!(stored.starts_with("{BLF-CRYPT}$2y$05$"), "{stored}");
    assert!(doveadm_test(stored.trim_end(), "piped").status.success());
}

#[test]
fn default_scheme_is_sha512_crypt() {
    let out = postwerk(&["pw", "-p", "x"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("{SHA512-CRYPT}$6$"));
}

#[test]
fn test_mode_prints_verified_like_doveadm() {
    let stored = "{SHA256}xLvLH77JnWW/WdhcjLYu4tuWPw/hBvSD2a+nO9Tjmoo=";
    let out = postwerk(
        &["pw", "-t", stored, "--password-stdin"],
        b"correct horse battery staple\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("{stored} (verified)\n"));

    let out = postwerk(&["pw", "-t", stored, "--password-stdin"], b"wrong\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).is_empty());
    assert!(stderr(&out).contains("mismatch"), "{}", stderr(&out));
}

#[test]
fn test_mode_uses_scheme_for_unprefixed_hash() {
    let out = postwerk(
        &[
            "pw",
            "-s",
            "SHA256",
            "-t",
            "xLvLH77JnWW/WdhcjLYu4tuWPw/hBvSD2a+nO9Tjmoo=",
        ],
        b"correct horse battery staple\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn unknown_scheme_lists_the_allowed_ones() {
    let out = postwerk(&["pw", "-s", "SHA3", "-p", "x"], b"");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("SHA3") && err.contains("SHA512-CRYPT") && err.contains("ARGON2ID"),
        "{err}"
    );
}

#[test]
fn broken_hash_is_an_error_not_a_mismatch() {
    let out = postwerk(&["pw", "-t", "{SHA512-CRYPT}$6$abc$short", "-p", "x"], b"");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("malformed"), "{err}");
    assert!(!err.contains("short"), "the hash must not be echoed: {err}");
}

#[test]
fn empty_stdin_is_an_error() {
    let out = postwerk(&["pw", "--password-stdin"], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).is_empty());
}

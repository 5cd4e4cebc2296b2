//! postwerk-authd against the real Postfix (issue 4): swaks `AUTH LOGIN`
//! (the guide scenario covers `AUTH PLAIN`) on the guide's submission (587,
//! STARTTLS) and smtps (465) services of a private Postfix whose
//! `smtpd_sasl_path` points at authd's auth-client socket: success,
//! wrong password, send-only account submits, disabled account refused;
//! without TLS Postfix offers no AUTH at all (`smtpd_tls_auth_only`).
//! authd's log shows that the LOGIN mechanism reached it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use postwerk_tests::cli::Postwerk;
use postwerk_tests::guide::{Stack, Swap};
use postwerk_tests::smtp::{Client, Message, Security, Transcript};
use postwerk_tests::{Database, Sqlite, TestDir};

const PASSWORD: &str = "s3cret pass";
const USER: &str = "login@example.org";
const SENDONLY: &str = "noreply@example.org";
const DISABLED: &str = "gone@example.org";

/// SQLite with a mailbox account, a send-only one and a disabled one;
/// Postfix's SMTP AUTH and Dovecot's passdb/userdb through authd.
fn start(name: &str) -> (TestDir, Stack) {
    let dir = TestDir::new(name);
    let db = Sqlite::fresh(&dir);
    let pw = Postwerk::new(&db.url());
    let stdin = format!("{PASSWORD}\n");
    pw.run(&["db", "init"], None);
    db.grant_readers();
    pw.run(&["domain", "add", "example.org"], None);
    pw.run(
        &["account", "add", USER, "--quota", "2G", "--password-stdin"],
        Some(&stdin),
    );
    pw.run(
        &["account", "add", SENDONLY, "--sendonly", "--password-stdin"],
        Some(&stdin),
    );
    pw.run(
        &["account", "add", DISABLED, "--disabled", "--password-stdin"],
        Some(&stdin),
    );
    let stack = Stack::start_with(
        &dir,
        &db,
        Swap {
            authd: true,
            ..Swap::GUIDE
        },
    );
    (dir, stack)
}

/// An AUTH LOGIN client for `port` with `security`.
fn login_client(port: u16, security: Security, user: &str, password: &str) -> Client {
    let mut c = Client::plain(port);
    c.security = security;
    c.auth = Some((user.to_owned(), password.to_owned()));
    c.auth_mechanism = "LOGIN";
    c
}

#[track_caller]
fn assert_accepted(t: &Transcript, what: &str) {
    assert!(t.is_accepted(), "{what}: not accepted:\n{t}");
    assert!(
        t.text.contains("AUTH LOGIN"),
        "{what}: swaks did not use LOGIN:\n{t}"
    );
    assert!(!t.replies("235").is_empty(), "{what}: no 235:\n{t}");
}

#[track_caller]
fn assert_refused(t: &Transcript, what: &str) {
    assert!(!t.is_accepted(), "{what}: accepted:\n{t}");
    assert!(
        t.text.contains("AUTH LOGIN"),
        "{what}: swaks did not use LOGIN:\n{t}"
    );
    assert!(!t.replies("535").is_empty(), "{what}: no 535:\n{t}");
}

#[test]
fn auth_login_on_submission_and_smtps_through_authd() {
    let (_dir, stack) = start("authd-auth-login");
    let ca = stack.tls.ca_file.clone();
    let ports = [
        (
            "587 STARTTLS",
            stack.postfix.submission_port,
            Security::StartTls(ca.clone()),
        ),
        (
            "465 smtps",
            stack.postfix.smtps_port,
            Security::Implicit(ca.clone()),
        ),
    ];
    for (what, port, security) in &ports {
        let send = |user: &str, password: &str| {
            login_client(*port, security.clone(), user, password).send(&Message::new(
                user,
                &[USER],
                &format!("AUTH LOGIN via {what}"),
            ))
        };
        assert_accepted(&send(USER, PASSWORD), &format!("{what}: {USER}"));
        assert_accepted(
            &send("LOGIN@Example.ORG", PASSWORD),
            &format!("{what}: upper-case user name"),
        );
        assert_refused(&send(USER, "wrong"), &format!("{what}: wrong password"));
        assert_accepted(
            &send(SENDONLY, PASSWORD),
            &format!("{what}: send-only account"),
        );
        assert_refused(
            &send(DISABLED, PASSWORD),
            &format!("{what}: disabled account"),
        );
    }

    // Without TLS Postfix does not even offer AUTH (smtpd_tls_auth_only),
    // so no password crosses the wire in clear.
    let t = login_client(
        stack.postfix.submission_port,
        Security::Plain,
        USER,
        PASSWORD,
    )
    .send(&Message::new(USER, &[USER], "no TLS"));
    assert!(!t.is_accepted(), "plaintext AUTH accepted:\n{t}");
    assert!(t.replies("235").is_empty(), "{t}");

    // Every decision came from authd, which saw the LOGIN mechanism.
    let log = stack.authd.as_ref().expect("Swap { authd: true }").log();
    let logins = log
        .lines()
        .filter(|l| l.contains("LOGIN") && l.contains("authenticated"))
        .count();
    assert!(logins >= 6, "authd logged {logins} LOGIN successes:\n{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("LOGIN") && l.contains("authentication failed")),
        "{log}"
    );
}

/// Dovecot's IMAP logins and doveadm's quota through authd's dict
/// passdb/userdb: the account logs in (also spelled in upper case, `%Lu`),
/// a disabled account does not, a send-only account does not (no userdb
/// entry, as in the guide), a wrong password does not; `doveadm quota get`
/// shows the quota from the database.
#[test]
fn imap_logins_and_quota_through_authd() {
    let (_dir, stack) = start("authd-imap");
    stack
        .imap
        .login(USER, PASSWORD)
        .unwrap_or_else(|e| panic!("IMAP login of {USER} refused: {e}"));
    stack
        .imap
        .login("Login@Example.ORG", PASSWORD)
        .unwrap_or_else(|e| panic!("IMAP login in upper case refused: {e}"));

    let mut cmd = std::process::Command::new(postwerk_tests::exec::require("doveadm"));
    cmd.arg("-c").arg(stack.dovecot.config_file()).args([
        "-o",
        "mail_plugins=quota",
        "quota",
        "get",
        "-u",
        USER,
    ]);
    let out = postwerk_tests::exec::run(&mut cmd, None, std::time::Duration::from_secs(30));
    assert!(out.is_success(), "doveadm quota get failed:\n{out}");
    assert!(
        out.stdout
            .lines()
            .any(|l| l.contains("STORAGE") && l.contains("2097152")),
        "the 2G quota of the database did not reach Dovecot through authd:\n{out}"
    );

    // Refusals last: Dovecot slows further logins from an address that failed.
    assert!(
        stack.imap.login(DISABLED, PASSWORD).is_err(),
        "a disabled account logged in"
    );
    assert!(
        stack.imap.login(SENDONLY, PASSWORD).is_err(),
        "a send-only account (no mailbox) logged in to IMAP"
    );
    assert!(
        stack.imap.login(USER, "wrong").is_err(),
        "a wrong password logged in"
    );
}

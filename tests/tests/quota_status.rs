//! policyd's quota check at RCPT (issue 8), as Dovecot's quota-status
//! service does it: with `check_policy_service` pointing at policyd, the
//! real Postfix refuses a message whose announced SIZE does not fit the
//! recipient's Maildir (maildir++ `maildirsize`, as Dovecot and lmtpd keep
//! it) during the SMTP session, instead of accepting it and bouncing later;
//! aliases are followed to their mailboxes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use postwerk_tests::cli::Postwerk;
use postwerk_tests::guide::{Stack, start_policyd};
use postwerk_tests::postfix::{self, Maps};
use postwerk_tests::smtp::{Message, send_smtplib};
use postwerk_tests::{Database, Sqlite, TestDir};

/// What `maildirsize` says `small@` uses of its 1 MiB: 1,000,000 bytes.
const SMALL_USED: u64 = 1_000_000;

#[test]
fn postfix_refuses_what_does_not_fit_at_rcpt() {
    let dir = TestDir::new("quota-status");
    let db = Sqlite::fresh(&dir);
    let pw = Postwerk::new(&db.url());
    let stdin = "pw\n";
    pw.run(&["db", "init"], None);
    pw.run(&["domain", "add", "example.org"], None);
    for (a, q) in [("small@example.org", "1M"), ("big@example.org", "0")] {
        pw.run(
            &["account", "add", a, "--quota", q, "--password-stdin"],
            Some(stdin),
        );
    }
    pw.run(
        &["alias", "add", "tosmall@example.org", "small@example.org"],
        None,
    );
    pw.run(
        &[
            "alias",
            "add",
            "list@example.org",
            "small@example.org",
            "big@example.org",
        ],
        None,
    );
    db.grant_readers();

    // The Maildir as Dovecot leaves it: 1,000,000 of 1,048,576 bytes used.
    let vmail = dir.join("vmail");
    let root = vmail.join("mailboxes/example.org/small/mail");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(
        root.join("maildirsize"),
        format!("1048576S\n{SMALL_USED} 10\n"),
    )
    .unwrap();

    let policy_socket = dir.join("policyd-policy.sock");
    let (daemon, socket) = start_policyd(
        &dir,
        &db,
        &format!(
            "policy_listen = [\"unix:{}\"]\n\n[lmtpd]\nmail_home = \"{}/mailboxes/%d/%n\"\n",
            policy_socket.display(),
            vmail.display()
        ),
    );
    let mut config = postfix::Config::guide(Maps::socketmap(&format!("unix:{}", socket.display())));
    config.extra_main_cf = vec![format!(
        "smtpd_recipient_restrictions = check_policy_service unix:{}, check_recipient_access socketmap:unix:{}:recipient_access",
        policy_socket.display(),
        socket.display()
    )];
    let stack = Stack::start_with_config(&dir, &db, config, Some(daemon));
    let port = stack.postfix.smtp_port;

    let message = |to: &str, body_bytes: usize| {
        let mut m = Message::new("someone@elsewhere.test", &[to], "quota");
        m.body.push_str(&"x".repeat(body_bytes));
        m
    };
    let refused = |to: &str, size: usize| {
        let (accepted, text) = send_smtplib(port, &message(to, size));
        assert!(!accepted, "{size} bytes to {to} must not fit:\n{text}");
        assert!(text.contains("552") && text.contains("5.2.2"), "{text}");
        assert!(text.contains("Mailbox is full"), "{text}");
    };
    let accepted = |to: &str, size: usize| {
        let (accepted, text) = send_smtplib(port, &message(to, size));
        assert!(accepted, "{size} bytes to {to} must fit:\n{text}");
    };

    // 100 KB does not fit into the 48,576 bytes left; 10 KB does.
    refused("small@example.org", 100_000);
    accepted("small@example.org", 10_000);
    // user+tag is the account's mailbox.
    refused("small+news@example.org", 100_000);
    // An alias leads to the full mailbox.
    refused("tosmall@example.org", 100_000);
    // A list with a mailbox that has room takes it.
    accepted("list@example.org", 100_000);
    // Unlimited.
    accepted("big@example.org", 100_000);

    let log = stack.policyd.as_ref().unwrap().log();
    assert!(log.contains("mailbox cannot take the message"), "{log}");
}

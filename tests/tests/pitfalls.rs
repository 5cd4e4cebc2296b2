//! "Safer than the guide" (issue 12): the guide's stack as written, on a
//! database with the rows that trip it, loses or misroutes mail or refuses
//! a legitimate user; the same stack with postwerk's policyd, authd and
//! lmtpd swapped in does not. Both run here against the real Postfix and
//! Dovecot, and each point is one field of [`Outcome`]: the guide's test
//! asserts the pitfall is really there (so the postwerk test is about
//! something), the postwerk tests assert it is fixed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use postwerk_tests::cli::Postwerk;
use postwerk_tests::guide::{Stack, Swap};
use postwerk_tests::imap::Fetch;
use postwerk_tests::smtp::{self, Message, Transcript};
use postwerk_tests::{Database, MariaDb, Postgres, Sqlite, TestDir};

const PASSWORD: &str = "pitfall pass 1";
const USER1: &str = "user1@example.org";
const CATCHALL: &str = "catchall@example.org";
const BOB: &str = "bob@example.net";
/// Stored as `Grace` (mixed case) directly in the table.
const GRACE: &str = "grace@example.org";
/// Stored in punycode: `hans@xn--mller-kva.example`.
const HANS_ASCII: &str = "hans@xn--mller-kva.example";
const HANS_UNICODE: &str = "hans@müller.example";
/// How long to wait for a message that must arrive.
const ARRIVAL: Duration = Duration::from_secs(30);
/// How long to keep looking for a copy that must not arrive, after the
/// copies that must arrive are there (same queue run).
const ABSENCE: Duration = Duration::from_secs(4);

/// What happened to each of the points.
#[derive(Debug, Default, PartialEq, Eq)]
struct Outcome {
    /// 1. Mail to `grace@` is read by the user logged in as `Grace@`.
    mixed_case_user_reads_her_mail: bool,
    /// 2. Mail to the Unicode form of a punycode domain is accepted and
    ///    delivered.
    idn_mail_delivered: bool,
    /// 2. SMTP AUTH with the Unicode form of the domain succeeds.
    idn_login: bool,
    /// 3. A named alias in a catch-all domain also copies the catch-all.
    named_alias_copies_catch_all: bool,
    /// 4. `bob+tag@` reaches the account `bob@`, not the catch-all.
    tag_reaches_account: bool,
    /// 5. Mail to an alias of a disabled account is refused at RCPT.
    disabled_refused_at_rcpt: bool,
    /// 6. Mail to an account whose name Dovecot cannot use is refused at
    ///    RCPT.
    unusable_name_refused_at_rcpt: bool,
    /// 7. Each copy of a two-recipient message has its own `Delivered-To:`.
    delivered_to_per_copy: bool,
}

/// The guide's behaviour on these rows.
const GUIDE: Outcome = Outcome {
    mixed_case_user_reads_her_mail: false,
    idn_mail_delivered: false,
    idn_login: false,
    named_alias_copies_catch_all: true,
    tag_reaches_account: false,
    disabled_refused_at_rcpt: false,
    unusable_name_refused_at_rcpt: false,
    delivered_to_per_copy: false,
};

/// postwerk's.
const POSTWERK: Outcome = Outcome {
    mixed_case_user_reads_her_mail: true,
    idn_mail_delivered: true,
    idn_login: true,
    named_alias_copies_catch_all: false,
    tag_reaches_account: true,
    disabled_refused_at_rcpt: true,
    unusable_name_refused_at_rcpt: true,
    delivered_to_per_copy: true,
};

/// The daemons that take over: lookups, logins and delivery.
const SWAP: Swap = Swap {
    policyd: true,
    lmtpd: true,
    authd: true,
    milterd: false,
};

/// The guide's example rows plus the tricky ones, some written with SQL
/// because `postwerk` refuses or normalises them.
fn provision(db: &dyn Database) {
    let pw = Postwerk::new(&db.url());
    let stdin = format!("{PASSWORD}\n");
    let add = |args: &[&str]| {
        pw.run(args, Some(&stdin));
    };
    add(&["db", "init"]);
    for d in ["example.org", "example.net", "müller.example"] {
        add(&["domain", "add", d]);
    }
    for a in [
        USER1,
        CATCHALL,
        BOB,
        GRACE,
        HANS_UNICODE,
        "obrien@example.org",
    ] {
        add(&["account", "add", a, "--password-stdin"]);
    }
    add(&[
        "account",
        "add",
        "gone@example.org",
        "--disabled",
        "--password-stdin",
    ]);
    add(&["alias", "add", "@example.net", CATCHALL]);
    add(&["alias", "add", "sales@example.net", USER1]);
    add(&["alias", "add", "old@example.org", "gone@example.org"]);
    // What an admin's hand-written INSERTs leave behind.
    db.query("UPDATE accounts SET username = 'Grace' WHERE username = 'grace'");
    db.query("UPDATE accounts SET username = 'o''brien' WHERE username = 'obrien'");
    db.grant_readers();
}

/// Waits until `msg` is in the INBOX of one of `users` (logging in as
/// written) and returns which one, or `None` after `timeout`.
fn arrived_at(stack: &Stack, users: &[&str], msg: &Message, timeout: Duration) -> Option<usize> {
    let start = Instant::now();
    loop {
        for (i, user) in users.iter().enumerate() {
            if let Fetch::Found { .. } = stack.imap.fetch(
                user,
                PASSWORD,
                "INBOX",
                &msg.message_id,
                Duration::from_millis(500),
            ) {
                return Some(i);
            }
        }
        if start.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The stored text of `msg` in `user`'s INBOX.
fn stored(stack: &Stack, user: &str, msg: &Message) -> Option<String> {
    match stack
        .imap
        .fetch(user, PASSWORD, "INBOX", &msg.message_id, ARRIVAL)
    {
        Fetch::Found { message, .. } => Some(message),
        _ => None,
    }
}

fn refused_at_rcpt(t: &Transcript) -> bool {
    !t.is_accepted() && !t.replies("550").is_empty()
}

/// Runs every point on `db` with `swap` and reports what happened.
fn outcome(name: &str, db: &dyn Database, swap: Swap) -> (Outcome, String) {
    let dir = TestDir::new(name);
    provision(db);
    // Postfix takes non-ASCII addresses only with SMTPUTF8, which the
    // guide's main.cf leaves off (no compatibility_level): both stacks
    // turn it on, as contrib/postfix/main.cf.policyd says.
    let stack = Stack::start_with_main_cf(&dir, db, swap, &["smtputf8_enable = yes"]);
    let mut log = String::new();
    let mut o = Outcome::default();
    let from = "someone@elsewhere.test";

    // 1. Grace.
    let m = Message::new(from, &[GRACE], "mixed case");
    let t = stack.inbound().send(&m);
    log += &format!("1. to {GRACE}: accepted={}\n", t.is_accepted());
    o.mixed_case_user_reads_her_mail =
        t.is_accepted() && arrived_at(&stack, &["Grace@example.org"], &m, ARRIVAL).is_some();

    // 2. IDN: the Unicode form on the wire, read back as stored.
    let m = Message::new(from, &[HANS_UNICODE], "idn");
    let (accepted, text) = smtp::send_smtplib(stack.postfix.smtp_port, &m);
    log += &format!("2. to {HANS_UNICODE}: {text}");
    o.idn_mail_delivered = accepted && arrived_at(&stack, &[HANS_ASCII], &m, ARRIVAL).is_some();
    let t = stack.submission(HANS_UNICODE, PASSWORD).send(&Message::new(
        HANS_ASCII,
        &[USER1],
        "idn login",
    ));
    log += &format!("2. AUTH as {HANS_UNICODE}: accepted={}\n", t.is_accepted());
    o.idn_login = t.is_accepted();

    // 3. A named alias in the catch-all domain.
    let m = Message::new(from, &["sales@example.net"], "named alias");
    let t = stack.inbound().send(&m);
    assert!(t.is_accepted(), "mail to sales@example.net:\n{t}");
    assert!(
        arrived_at(&stack, &[USER1], &m, ARRIVAL).is_some(),
        "the named alias's own destination must get it"
    );
    o.named_alias_copies_catch_all = arrived_at(&stack, &[CATCHALL], &m, ABSENCE).is_some();
    log += &format!(
        "3. catch-all got a copy: {}\n",
        o.named_alias_copies_catch_all
    );

    // 4. user+tag in the catch-all domain.
    let m = Message::new(from, &["bob+tag@example.net"], "tagged");
    let t = stack.inbound().send(&m);
    assert!(t.is_accepted(), "mail to bob+tag@example.net:\n{t}");
    let at = arrived_at(&stack, &[BOB, CATCHALL], &m, ARRIVAL);
    log += &format!("4. bob+tag went to {at:?} (0 = bob, 1 = catch-all)\n");
    o.tag_reaches_account = at == Some(0);

    // 5. An alias of a disabled account.
    let t = stack
        .inbound()
        .send(&Message::new(from, &["old@example.org"], "disabled"));
    log += &format!("5. to old@example.org:\n{t}\n");
    o.disabled_refused_at_rcpt = refused_at_rcpt(&t);

    // 6. A name Dovecot cannot use.
    let t = stack
        .inbound()
        .send(&Message::new(from, &["o'brien@example.org"], "quote"));
    log += &format!("6. to o'brien@example.org:\n{t}\n");
    o.unusable_name_refused_at_rcpt = refused_at_rcpt(&t);

    // 7. Two recipients, one LMTP transaction.
    let m = Message::new(from, &[USER1, CATCHALL], "two recipients");
    let t = stack.inbound().send(&m);
    assert!(t.is_accepted(), "two-recipient mail:\n{t}");
    let a = stored(&stack, USER1, &m).expect("user1's copy");
    let b = stored(&stack, CATCHALL, &m).expect("catchall's copy");
    o.delivered_to_per_copy = a.contains(&format!("Delivered-To: {USER1}"))
        && b.contains(&format!("Delivered-To: {CATCHALL}"));
    log += &format!(
        "7. Delivered-To lines: {:?} / {:?}\n",
        a.lines()
            .filter(|l| l.starts_with("Delivered-To"))
            .collect::<Vec<_>>(),
        b.lines()
            .filter(|l| l.starts_with("Delivered-To"))
            .collect::<Vec<_>>()
    );
    (o, log)
}

#[track_caller]
fn check(name: &str, db: &dyn Database, swap: Swap, expected: &Outcome) {
    let (got, log) = outcome(name, db, swap);
    assert_eq!(&got, expected, "{name}: what happened:\n{log}");
}

#[test]
fn the_guide_as_written_falls_into_each_pitfall() {
    check("pitfalls-guide", &MariaDb::fresh(), Swap::GUIDE, &GUIDE);
}

#[test]
fn postwerk_avoids_each_pitfall_on_mariadb() {
    let db = MariaDb::fresh();
    check("pitfalls-postwerk-mariadb", &db, SWAP, &POSTWERK);
    // And `postwerk db check` names the rows that caused them.
    let out = Postwerk::new(&db.url()).try_run(&["db", "check"], None);
    assert!(
        !out.is_success(),
        "db check must fail on these rows:\n{out}"
    );
    for needle in [
        "account `Grace@example.org` is not stored as `grace@example.org`",
        "account `o'brien@example.org` has characters",
    ] {
        assert!(
            out.stdout.contains(needle),
            "db check misses {needle:?}:\n{out}"
        );
    }
}

#[test]
fn postwerk_avoids_each_pitfall_on_postgres() {
    check(
        "pitfalls-postwerk-postgres",
        &Postgres::fresh(),
        SWAP,
        &POSTWERK,
    );
}

#[test]
fn postwerk_avoids_each_pitfall_on_sqlite() {
    let dir = TestDir::new("pitfalls-sqlite-db");
    check(
        "pitfalls-postwerk-sqlite",
        &Sqlite::fresh(&dir),
        SWAP,
        &POSTWERK,
    );
}

#[test]
fn the_cli_refuses_names_dovecot_cannot_use() {
    let dir = TestDir::new("pitfalls-cli");
    let db = Sqlite::fresh(&dir);
    let pw = Postwerk::new(&db.url());
    pw.run(&["db", "init"], None);
    pw.run(&["domain", "add", "example.org"], None);
    let out = pw.try_run(
        &["account", "add", "o'brien@example.org", "--password-stdin"],
        Some("pw\n"),
    );
    assert!(!out.is_success(), "{out}");
    assert!(out.stderr.contains("auth_username_chars"), "{out}");
    // Upper case and Unicode are stored in the one form every daemon uses.
    pw.run(
        &["account", "add", "Grace@Example.ORG", "--password-stdin"],
        Some("pw\n"),
    );
    pw.run(&["domain", "add", "müller.example"], None);
    let list = pw.run(&["account", "list"], None);
    assert!(list.contains("grace@example.org"), "{list}");
    let domains = pw.run(&["domain", "list"], None);
    assert!(domains.contains("xn--mller-kva.example"), "{domains}");
    let check = pw.run(&["db", "check"], None);
    assert!(check.contains("reachable"), "{check}");
}

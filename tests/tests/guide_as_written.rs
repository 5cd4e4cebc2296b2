//! "The guide as written": the guide's Postfix and Dovecot configuration,
//! run for real (private instances), on a database provisioned only with the
//! `postwerk` command. For each database the guide's SQL can live in, it
//! proves that:
//!
//! - `postwerk db init`, `domain add`, `account add --quota 2G
//!   --password-stdin` and `alias add` (an alias and a catch-all) write rows
//!   that the guide's unchanged queries (sql/*.cf, dovecot-sql.conf) read
//!   correctly: Dovecot verifies the password hash, Postfix finds domains,
//!   mailboxes, aliases and the catch-all;
//! - a client can send with STARTTLS + AUTH PLAIN on the submission port,
//!   another server can deliver on the smtp port to the alias and to the
//!   catch-all, and all of it can be read back over IMAP (STARTTLS, LOGIN),
//!   each message identified by its own Message-ID and body token;
//! - the guide's global Sieve script files `X-Spam-Flag: YES` into Spam, its
//!   submission_header_cleanup strips X-Mailer, the quota column reaches
//!   IMAP GETQUOTAROOT, and IMAP refuses LOGIN before STARTTLS;
//! - a wrong password is refused at submission (535) and at IMAP, AUTH
//!   without TLS is refused, and mail to an unknown user of a known domain is
//!   rejected with 550 5.1.1.
//!
//! With every postwerk daemon swapped in (`guide_with_postwerk_daemons_*`,
//! and the demo) it is the whole guide of issue 9, postwerk doing each
//! job, on each database: on top of the above, a distribution list reaches
//! both members; milterd signs submitted mail (verified by dkimpy against
//! the record `postwerk dkim show` prints), scores a phishing message into
//! Spam and rejects GTUBE; moving the spam back to INBOX over IMAP trains
//! Bayes through the guide's unchanged imapsieve `rspamc` pipes; policyd
//! refuses mail over a 1 MB quota at RCPT (552 5.2.2) and defers the
//! message over a sending rate limit (450 4.7.1) while another account
//! sends; authd blocks an address after a few wrong passwords, even with
//! the right one, while the same login works from elsewhere.
//! `scripts/test-deb` runs the SQLite one against the installed packages.
//!
//! The scenario itself is `postwerk_tests::guide::as_written`, shared with
//! the `postwerk-demo` binary. Needs root, scripts/install-deps, and
//! `cargo build --workspace` (for the `postwerk` binary).

use postwerk_tests::guide::{Narrator, Swap, as_written, scenario};
use postwerk_tests::{MariaDb, Postgres, Sqlite, TestDir};

#[test]
fn guide_as_written_on_sqlite() {
    let dir = TestDir::new("guide-sqlite");
    let db = Sqlite::fresh(&dir);
    as_written(&dir, &db, &Narrator::default());
}

#[test]
fn guide_as_written_on_mariadb() {
    let dir = TestDir::new("guide-mariadb");
    let db = MariaDb::fresh();
    as_written(&dir, &db, &Narrator::default());
}

#[test]
fn guide_as_written_on_postgres() {
    let dir = TestDir::new("guide-postgres");
    let db = Postgres::fresh();
    as_written(&dir, &db, &Narrator::default());
}

// The same scenario with postwerk-policyd answering all six Postfix lookups
// instead of the guide's SQL maps (issue 3), and with postwerk-lmtpd
// delivering instead of Dovecot's LMTP (issue 5), and with postwerk-authd
// checking SMTP AUTH and Dovecot's logins (issue 4).

#[test]
fn guide_with_policyd_on_sqlite() {
    let dir = TestDir::new("policyd-sqlite");
    let db = Sqlite::fresh(&dir);
    scenario(
        &dir,
        &db,
        &Narrator::default(),
        Swap {
            policyd: true,
            ..Swap::GUIDE
        },
    );
}

#[test]
fn guide_with_lmtpd_on_sqlite() {
    let dir = TestDir::new("lmtpd-sqlite");
    let db = Sqlite::fresh(&dir);
    scenario(
        &dir,
        &db,
        &Narrator::default(),
        Swap {
            lmtpd: true,
            ..Swap::GUIDE
        },
    );
}

#[test]
fn guide_with_authd_on_sqlite() {
    let dir = TestDir::new("authd-sqlite");
    let db = Sqlite::fresh(&dir);
    scenario(
        &dir,
        &db,
        &Narrator::default(),
        Swap {
            authd: true,
            ..Swap::GUIDE
        },
    );
}

#[test]
fn guide_with_postwerk_daemons_on_sqlite() {
    let dir = TestDir::new("postwerk-sqlite");
    let db = Sqlite::fresh(&dir);
    scenario(&dir, &db, &Narrator::default(), Swap::ALL);
}

#[test]
fn guide_with_postwerk_daemons_on_mariadb() {
    let dir = TestDir::new("policyd-mariadb");
    let db = MariaDb::fresh();
    scenario(&dir, &db, &Narrator::default(), Swap::ALL);
}

#[test]
fn guide_with_postwerk_daemons_on_postgres() {
    let dir = TestDir::new("policyd-postgres");
    let db = Postgres::fresh();
    scenario(&dir, &db, &Narrator::default(), Swap::ALL);
}

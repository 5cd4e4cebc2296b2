//! postwerk-tests: the real-peer test harness (STYLE.md §7, layer 6).
//!
//! It runs the mail server of the guide for real, privately, per test:
//!
//! - [`TestDir`]: one directory in /tmp per test, kept (and its path
//!   printed) when the test fails, removed when it passes;
//! - [`dns::Dns`]: an authoritative DNS server on loopback for test zones;
//! - [`db`]: a fresh SQLite file, or a fresh database plus a read-only user
//!   (the guide's `grant select`) on the local MariaDB or PostgreSQL;
//! - [`tls::TestCa`]: a test CA and server certificate (the `openssl` CLI);
//! - [`postfix::Postfix`]: `postfix -c DIR start` from the guide's main.cf and
//!   master.cf (tests/templates/postfix/), maps as parameters;
//! - [`dovecot::Dovecot`]: `dovecot -F -c FILE` from the guide's dovecot.conf
//!   and dovecot-sql.conf (tests/templates/dovecot/);
//! - [`smtp`] (swaks) and [`imap`] (python3 imaplib) to send and read mail
//!   as clients do;
//! - [`trixie`]: Dovecot 2.4 and Postfix 3.10 from the Debian 13 root of
//!   scripts/trixie-root, chrooted in a private mount namespace;
//! - [`cli::Postwerk`]: the workspace's `postwerk` admin command;
//! - [`daemon::Daemon`]: a postwerk daemon of the workspace with its config;
//! - [`guide`]: the whole scenario "the guide as written", shared by
//!   tests/tests/guide_as_written.rs and the `postwerk-demo` binary.
//!
//! Rules it keeps: readiness is polled with a deadline, never slept for; the
//! peers' logs are printed when a test fails; a missing peer program fails the
//! test with "run scripts/install-deps", it never skips; everything (ports,
//! directories, databases, Dovecot instance names) is unique per test, so
//! tests run in parallel. Its functions panic with a full explanation instead
//! of returning errors: the unwinding is what marks the test directory to be
//! kept and the logs to be printed.
//!
//! Needs root (Postfix and Dovecot are started as root, as in the guide) and
//! the Debian packages of scripts/install-deps.

pub mod bench;
pub mod cli;
pub mod corpus;
pub mod daemon;
pub mod db;
pub mod dkim;
pub mod dns;
pub mod dovecot;
pub mod exec;
pub mod guide;
pub mod imap;
pub mod load;
pub mod net;
pub mod postfix;
pub mod redis;
pub mod rspamd;
pub mod smtp;
pub mod template;
pub mod testdir;
pub mod tls;
pub mod trixie;

pub use db::{Database, MariaDb, Postgres, Sqlite};
pub use testdir::TestDir;

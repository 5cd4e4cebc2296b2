//! postwerk-core: what every postwerk daemon and the `postwerk` command share.
//!
//! - [`config`]: the one TOML file (`/etc/postwerk/postwerk.toml`), checked in
//!   two stages; every error names its key.
//! - [`db`]: the guide's `vmail` schema on SQLite, MariaDB/MySQL or
//!   PostgreSQL, and every SQL statement postwerk runs, named after the
//!   guide's semantics.
//! - [`address`]: parsing and normalising mail addresses as Postfix and
//!   Dovecot (`%Lu`) do, IDNA, recipient delimiters.
//! - [`password`]: Dovecot-compatible password schemes (`{SHA512-CRYPT}` …).
//! - [`service`]: listeners (UNIX, TCP, systemd socket activation), graceful
//!   shutdown, readiness notification.
//! - [`maildirsize`]: Dovecot's maildir++ quota file, read-only.
//! - [`log`]: the tracing subscriber every daemon installs.
//! - [`error`]: temporary versus permanent, decided once per error class.

pub mod address;
pub mod config;
pub mod db;
pub mod error;
pub mod log;
pub mod maildirsize;
pub mod password;
pub mod service;

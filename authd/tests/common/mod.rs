//! Shared fixture: a SQLite vmail database with the accounts every test
//! uses. Passwords are real SHA512-CRYPT hashes, as the guide stores them.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use postwerk_core::config::{DatabaseConfig, Secret};
use postwerk_core::db::{Account, Db};
use postwerk_core::password::{Scheme, hash};
use std::path::Path;

/// The password of every fixture account.
pub const PASSWORD: &str = "secret";

/// Creates `dir/vmail.db` and returns its URL. Accounts (all in
/// example.org): `user` (2048 MB quota), `disabled` (enabled = false),
/// `sendonly` (send-only), `plain` (a `{PLAIN}` hash, quota 0).
pub async fn vmail_db(dir: &Path) -> String {
    let url = format!("sqlite://{}/vmail.db", dir.display());
    let db = Db::connect_lazy(&DatabaseConfig::from_url(&url).unwrap(), true).unwrap();
    db.init_schema().await.unwrap();
    db.domain_add("example.org").await.unwrap();
    let crypt = hash(PASSWORD.as_bytes(), Scheme::Sha512Crypt).unwrap();
    let acct = |u: &str, pw: &str, quota_mb: i64, enabled: bool, sendonly: bool| Account {
        username: u.into(),
        domain: "example.org".into(),
        password: Secret::new(pw),
        quota_mb,
        enabled,
        sendonly,
    };
    db.account_add(&acct("user", &crypt, 2048, true, false))
        .await
        .unwrap();
    db.account_add(&acct("disabled", &crypt, 1024, false, false))
        .await
        .unwrap();
    db.account_add(&acct("sendonly", &crypt, 0, true, true))
        .await
        .unwrap();
    db.account_add(&acct("plain", "{PLAIN}secret", 0, true, false))
        .await
        .unwrap();
    db.close().await;
    url
}

/// A database URL that is always down (nothing listens on port 1).
pub const DOWN_URL: &str = "mysql://vmail@127.0.0.1:1/vmail";

/// base64 of a PLAIN response with empty authzid.
pub fn plain(user: &str, password: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"))
}

/// base64.
pub fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

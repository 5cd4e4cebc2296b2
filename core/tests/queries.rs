//! The guide's queries on a real database: SQLite always, and the same cases
//! on the running MariaDB and PostgreSQL (each test makes its own database
//! and drops it). SQL is never mocked.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use postwerk_core::config::{DatabaseConfig, Secret};
use postwerk_core::db::*;
use postwerk_core::error::Transient;
use sqlx::Connection;
use std::sync::atomic::{AtomicU32, Ordering};

static N: AtomicU32 = AtomicU32::new(0);

fn unique_name() -> String {
    format!(
        "postwerk_q_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// A fresh database on one backend; dropped by [`Fresh::drop_db`].
struct Fresh {
    db: Db,
    admin: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl Fresh {
    async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/vmail.db", dir.path().display());
        let db = Db::connect_lazy(&DatabaseConfig::from_url(&url).unwrap(), true).unwrap();
        Self {
            db,
            admin: None,
            _dir: Some(dir),
        }
    }

    async fn mysql() -> Self {
        let name = unique_name();
        let admin = "mysql://root@127.0.0.1:3306/mysql".to_owned();
        let mut c = sqlx::MySqlConnection::connect(&admin).await.expect(
            "MariaDB must run on 127.0.0.1:3306 (root, no password): run scripts/install-deps",
        );
        sqlx::query(&format!("CREATE DATABASE {name} CHARACTER SET 'utf8'"))
            .execute(&mut c)
            .await
            .unwrap();
        let url = format!("mysql://root@127.0.0.1:3306/{name}");
        let db = Db::connect_lazy(&DatabaseConfig::from_url(&url).unwrap(), false).unwrap();
        Self {
            db,
            admin: Some((admin, format!("DROP DATABASE {name}"))),
            _dir: None,
        }
    }

    async fn postgres() -> Self {
        let name = unique_name();
        let admin = "postgres://postgres@127.0.0.1:5432/postgres".to_owned();
        let mut c = sqlx::PgConnection::connect(&admin)
            .await
            .expect("PostgreSQL must run on 127.0.0.1:5432 (trust auth): run scripts/install-deps");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut c)
            .await
            .unwrap();
        let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
        let db = Db::connect_lazy(&DatabaseConfig::from_url(&url).unwrap(), false).unwrap();
        Self {
            db,
            // FORCE: the backends of a just-closed pool may linger a moment.
            admin: Some((admin, format!("DROP DATABASE {name} WITH (FORCE)"))),
            _dir: None,
        }
    }

    async fn drop_db(self) {
        self.db.close().await;
        if let Some((admin, drop)) = self.admin {
            if admin.starts_with("mysql") {
                let mut c = sqlx::MySqlConnection::connect(&admin).await.unwrap();
                sqlx::query(&drop).execute(&mut c).await.unwrap();
            } else {
                let mut c = sqlx::PgConnection::connect(&admin).await.unwrap();
                sqlx::query(&drop).execute(&mut c).await.unwrap();
            }
        }
    }
}

fn account(user: &str, domain: &str, quota: i64, enabled: bool, sendonly: bool) -> Account {
    Account {
        username: user.into(),
        domain: domain.into(),
        password: Secret::new("{PLAIN}secret"),
        quota_mb: quota,
        enabled,
        sendonly,
    }
}

fn alias(src: Option<&str>, sd: &str, du: &str, dd: &str, enabled: bool) -> Alias {
    Alias {
        source_username: src.map(Into::into),
        source_domain: sd.into(),
        destination_username: du.into(),
        destination_domain: dd.into(),
        enabled,
    }
}

/// The fixture: the guide's examples/admin.sql plus the edge cases its
/// queries decide (send-only, disabled, distribution list, catch-all,
/// alias shadowed by an account).
async fn fixture(db: &Db) {
    db.init_schema().await.unwrap();
    // init is idempotent
    db.init_schema().await.unwrap();
    db.check_schema().await.unwrap();
    for d in ["example.org", "example.net", "other.org"] {
        db.domain_add(d).await.unwrap();
    }
    db.account_add(&account("user1", "example.org", 2048, true, false))
        .await
        .unwrap();
    db.account_add(&account("user2", "example.org", 0, true, false))
        .await
        .unwrap();
    db.account_add(&account("noreply", "example.org", 0, true, true))
        .await
        .unwrap();
    db.account_add(&account("gone", "example.org", 100, false, false))
        .await
        .unwrap();
    db.alias_add(&alias(
        Some("alias"),
        "example.org",
        "user1",
        "example.org",
        true,
    ))
    .await
    .unwrap();
    db.alias_add(&alias(
        Some("list"),
        "example.org",
        "user1",
        "example.org",
        true,
    ))
    .await
    .unwrap();
    db.alias_add(&alias(
        Some("list"),
        "example.org",
        "user2",
        "example.org",
        true,
    ))
    .await
    .unwrap();
    db.alias_add(&alias(
        Some("off"),
        "example.org",
        "user1",
        "example.org",
        false,
    ))
    .await
    .unwrap();
    db.alias_add(&alias(
        Some("user2"),
        "example.org",
        "user1",
        "example.org",
        true,
    ))
    .await
    .unwrap();
    db.alias_add(&alias(
        Some("gone"),
        "example.org",
        "user1",
        "example.org",
        true,
    ))
    .await
    .unwrap();
    db.alias_add(&alias(None, "example.net", "catchall", "example.org", true))
        .await
        .unwrap();
    db.alias_add(&alias(
        Some("info"),
        "example.net",
        "user2",
        "example.org",
        true,
    ))
    .await
    .unwrap();
    db.alias_add(&alias(
        Some("noreply"),
        "other.org",
        "someone",
        "elsewhere.example",
        true,
    ))
    .await
    .unwrap();
    db.tlspolicy_add(&TlsPolicy {
        domain: "gmx.de".into(),
        policy: Policy::Secure,
        params: Some("match=.gmx.net".into()),
    })
    .await
    .unwrap();
    db.tlspolicy_add(&TlsPolicy {
        domain: "mailbox.org".into(),
        policy: Policy::DaneOnly,
        params: None,
    })
    .await
    .unwrap();
}

async fn guide_semantics(db: &Db) {
    fixture(db).await;

    // domains.cf
    assert!(db.domain_exists("example.org").await.unwrap());
    assert!(!db.domain_exists("example.com").await.unwrap());

    // accounts.cf: enabled accounts, send-only included
    assert!(
        db.enabled_account("user1", "example.org")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        db.enabled_account("noreply", "example.org")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        db.enabled_account("gone", "example.org")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        db.enabled_account("nobody", "example.org")
            .await
            .unwrap()
            .is_none()
    );
    let a = db
        .enabled_account("user1", "example.org")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((a.quota_mb, a.enabled, a.sendonly), (2048, true, false));

    // aliases.cf exactly as the guide's query
    let d = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        db.guide_alias_destinations("alias", "example.org")
            .await
            .unwrap(),
        d(&["user1@example.org"])
    );
    assert_eq!(
        db.guide_alias_destinations("list", "example.org")
            .await
            .unwrap(),
        d(&["user1@example.org", "user2@example.org"])
    );
    assert!(
        db.guide_alias_destinations("off", "example.org")
            .await
            .unwrap()
            .is_empty(),
        "disabled alias"
    );
    assert!(
        db.guide_alias_destinations("user2", "example.org")
            .await
            .unwrap()
            .is_empty(),
        "an account shadows an alias of the same name"
    );
    assert!(
        db.guide_alias_destinations("gone", "example.org")
            .await
            .unwrap()
            .is_empty(),
        "a disabled account still shadows its alias"
    );
    assert_eq!(
        db.guide_alias_destinations("anything", "example.net")
            .await
            .unwrap(),
        d(&["catchall@example.org"]),
        "catch-all"
    );
    assert_eq!(
        db.guide_alias_destinations("info", "example.net")
            .await
            .unwrap(),
        d(&["catchall@example.org", "user2@example.org"]),
        "the guide's query returns the alias and the catch-all together"
    );
    assert!(
        db.guide_alias_destinations("nobody", "example.org")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        db.alias_destinations("info", "example.net").await.unwrap(),
        d(&["user2@example.org"])
    );
    assert_eq!(
        db.catch_all_destinations("example.net").await.unwrap(),
        d(&["catchall@example.org"])
    );
    assert!(
        db.catch_all_destinations("example.org")
            .await
            .unwrap()
            .is_empty()
    );

    // recipient-access.cf
    assert_eq!(
        db.recipient_access("user1", "example.org").await.unwrap(),
        Some(RecipientAccess::Ok)
    );
    assert_eq!(
        db.recipient_access("noreply", "example.org").await.unwrap(),
        Some(RecipientAccess::Reject)
    );
    assert_eq!(
        db.recipient_access("gone", "example.org").await.unwrap(),
        None
    );
    assert_eq!(
        db.recipient_access("alias", "example.org").await.unwrap(),
        None
    );

    // sender-login-maps.cf
    assert_eq!(
        db.sender_login_owners("user1", "example.org")
            .await
            .unwrap(),
        d(&["user1@example.org"])
    );
    assert_eq!(
        db.sender_login_owners("alias", "example.org")
            .await
            .unwrap(),
        d(&["user1@example.org"])
    );
    assert_eq!(
        db.sender_login_owners("list", "example.org").await.unwrap(),
        d(&["user1@example.org", "user2@example.org"])
    );
    assert!(
        db.sender_login_owners("gone", "example.org").await.unwrap() == d(&["user1@example.org"])
    );
    assert!(
        db.sender_login_owners("off", "example.org")
            .await
            .unwrap()
            .is_empty()
    );

    // tls-policy.cf
    let p = db.tls_policy("gmx.de").await.unwrap().unwrap();
    assert_eq!(
        (p.policy, p.params.as_deref()),
        (Policy::Secure, Some("match=.gmx.net"))
    );
    let p = db.tls_policy("mailbox.org").await.unwrap().unwrap();
    assert_eq!((p.policy, p.params), (Policy::DaneOnly, None));
    assert!(db.tls_policy("web.de").await.unwrap().is_none());

    // dovecot-sql.conf
    let e = db
        .passdb_lookup("user1", "example.org")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (e.user.as_str(), e.domain.as_str(), e.password.expose()),
        ("user1", "example.org", "{PLAIN}secret")
    );
    assert!(
        db.passdb_lookup("noreply", "example.org")
            .await
            .unwrap()
            .is_some(),
        "send-only may log in"
    );
    assert!(
        db.passdb_lookup("gone", "example.org")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        db.userdb_lookup("user1", "example.org")
            .await
            .unwrap()
            .unwrap()
            .quota_rule(),
        "*:storage=2048M"
    );
    assert_eq!(
        db.userdb_lookup("user2", "example.org")
            .await
            .unwrap()
            .unwrap()
            .quota_rule(),
        "*:storage=0M"
    );
    assert!(
        db.userdb_lookup("noreply", "example.org")
            .await
            .unwrap()
            .is_none(),
        "send-only has no mailbox"
    );
    assert_eq!(
        db.userdb_iterate().await.unwrap(),
        d(&["gone@example.org", "user1@example.org", "user2@example.org"])
    );
}

async fn admin_semantics(db: &Db) {
    fixture(db).await;
    // duplicates are definite answers
    let e = db.domain_add("example.org").await.unwrap_err();
    assert!(matches!(e, DbError::Duplicate { .. }), "{e:?}");
    assert!(!e.is_temporary());
    assert!(matches!(
        db.account_add(&account("user1", "example.org", 0, true, false))
            .await
            .unwrap_err(),
        DbError::Duplicate { .. }
    ));
    // foreign keys: no account in a missing domain, no delete of a used domain
    assert!(matches!(
        db.account_add(&account("x", "missing.example", 0, true, false))
            .await
            .unwrap_err(),
        DbError::ForeignKey { .. }
    ));
    assert!(matches!(
        db.domain_del("example.org", false).await.unwrap_err(),
        DbError::ForeignKey { .. }
    ));
    // catch-all duplicates are invisible to the UNIQUE key; alias_exists sees them
    let ca = alias(None, "example.net", "catchall", "example.org", true);
    assert!(db.alias_exists(&ca).await.unwrap());
    assert!(
        !db.alias_exists(&alias(None, "example.org", "catchall", "example.org", true))
            .await
            .unwrap()
    );

    // lists
    let domains = db.domain_list().await.unwrap();
    let org = domains.iter().find(|d| d.domain == "example.org").unwrap();
    assert_eq!((org.accounts, org.aliases), (4, 6));
    assert_eq!(db.account_list(Some("example.org")).await.unwrap().len(), 4);
    assert_eq!(db.account_list(None).await.unwrap().len(), 4);
    assert_eq!(db.alias_list(Some("example.net")).await.unwrap().len(), 2);
    assert_eq!(db.tlspolicy_list().await.unwrap().len(), 2);

    // updates
    assert!(
        db.account_set_quota("user2", "example.org", 512)
            .await
            .unwrap()
    );
    assert_eq!(
        db.account_get("user2", "example.org")
            .await
            .unwrap()
            .unwrap()
            .quota_mb,
        512
    );
    assert!(
        db.account_set_enabled("user2", "example.org", false)
            .await
            .unwrap()
    );
    assert!(
        db.enabled_account("user2", "example.org")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        db.account_set_password("user2", "example.org", &Secret::new("{PLAIN}new"))
            .await
            .unwrap()
    );
    assert_eq!(
        db.account_get("user2", "example.org")
            .await
            .unwrap()
            .unwrap()
            .password
            .expose(),
        "{PLAIN}new"
    );
    assert!(
        !db.account_set_quota("nobody", "example.org", 1)
            .await
            .unwrap()
    );

    // deletes
    assert_eq!(
        db.alias_del(Some("list"), "example.org", Some(("user2", "example.org")))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        db.alias_del(Some("list"), "example.org", None)
            .await
            .unwrap(),
        1
    );
    assert_eq!(db.alias_del(None, "example.net", None).await.unwrap(), 1);
    assert!(
        db.catch_all_destinations("example.net")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(db.tlspolicy_del("gmx.de").await.unwrap());
    assert!(!db.tlspolicy_del("gmx.de").await.unwrap());
    assert!(db.account_del("gone", "example.org").await.unwrap());
    assert!(db.domain_del("example.org", true).await.unwrap());
    assert!(!db.domain_exists("example.org").await.unwrap());
    assert!(
        db.account_list(Some("example.org"))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(!db.domain_del("example.org", true).await.unwrap());
}

#[tokio::test]
async fn unreachable_database_is_temporary() {
    let mut cfg = DatabaseConfig::from_url("mysql://root@127.0.0.1:9/vmail").unwrap();
    cfg.acquire_timeout = std::time::Duration::from_millis(500);
    let db = Db::connect_lazy(&cfg, false).unwrap();
    let e = db.domain_exists("example.org").await.unwrap_err();
    assert!(e.is_temporary(), "{e:?}");
    assert!(matches!(e, DbError::Unavailable(_)), "{e:?}");

    let mut cfg = DatabaseConfig::from_url("postgres://root@127.0.0.1:9/vmail").unwrap();
    cfg.acquire_timeout = std::time::Duration::from_millis(500);
    let db = Db::connect_lazy(&cfg, false).unwrap();
    assert!(db.passdb_lookup("a", "b").await.unwrap_err().is_temporary());
}

#[tokio::test]
async fn missing_tables_are_reported() {
    let f = Fresh::sqlite().await;
    let e = f.db.check_schema().await.unwrap_err();
    assert!(e.to_string().contains("db init"), "{e}");
    assert!(e.is_temporary());
    f.drop_db().await;
}

async fn change_probe_sees_every_write(db: &Db) {
    fixture(db).await;
    let mut probe = ChangeProbe::new(db.clone());
    let m0 = probe.marker().await.unwrap();
    assert_eq!(probe.marker().await.unwrap(), m0, "no write, same marker");
    db.account_set_enabled("user1", "example.org", false)
        .await
        .unwrap();
    let m1 = probe.marker().await.unwrap();
    assert_ne!(m1, m0, "an UPDATE changes the marker");
    db.alias_add(&alias(
        Some("new"),
        "example.org",
        "user1",
        "example.org",
        true,
    ))
    .await
    .unwrap();
    let m2 = probe.marker().await.unwrap();
    assert_ne!(m2, m1, "an INSERT changes the marker");
    db.tlspolicy_del("gmx.de").await.unwrap();
    assert_ne!(
        probe.marker().await.unwrap(),
        m2,
        "a DELETE changes the marker"
    );
}

/// A transaction holding one uncommitted write, on any backend.
enum OpenWrite {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    MySql(sqlx::Transaction<'static, sqlx::MySql>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl OpenWrite {
    async fn begin(db: &Db, sql: &'static str) -> OpenWrite {
        match db {
            Db::Sqlite(p) => {
                let mut tx = p.begin().await.unwrap();
                sqlx::query(sql).execute(&mut *tx).await.unwrap();
                OpenWrite::Sqlite(tx)
            }
            Db::MySql(p) => {
                let mut tx = p.begin().await.unwrap();
                sqlx::query(sql).execute(&mut *tx).await.unwrap();
                OpenWrite::MySql(tx)
            }
            Db::Postgres(p) => {
                let mut tx = p.begin().await.unwrap();
                sqlx::query(sql).execute(&mut *tx).await.unwrap();
                OpenWrite::Postgres(tx)
            }
        }
    }

    async fn commit(self) {
        match self {
            OpenWrite::Sqlite(tx) => tx.commit().await.unwrap(),
            OpenWrite::MySql(tx) => tx.commit().await.unwrap(),
            OpenWrite::Postgres(tx) => tx.commit().await.unwrap(),
        }
    }
}

/// The probe skips its checksum while the server's write position (InnoDB
/// log sequence number, PostgreSQL snapshot) stands still; it must still
/// see a write after such a skip, and a commit that comes long after its
/// write. Settle time zero: the skip applies from the second call on.
async fn change_probe_sees_writes_after_skipping(db: &Db) {
    fixture(db).await;
    let mut probe = ChangeProbe::new(db.clone()).with_settle(std::time::Duration::ZERO);
    let m0 = probe.marker().await.unwrap();
    for _ in 0..3 {
        assert_eq!(probe.marker().await.unwrap(), m0, "no write, same marker");
    }
    db.account_set_enabled("user1", "example.org", false)
        .await
        .unwrap();
    let m1 = probe.marker().await.unwrap();
    assert_ne!(m1, m0, "an UPDATE after skipped checks changes the marker");
    let open = OpenWrite::begin(
        db,
        "UPDATE accounts SET sendonly = true WHERE username = 'user2'",
    )
    .await;
    for _ in 0..3 {
        assert_eq!(
            probe.marker().await.unwrap(),
            m1,
            "an uncommitted write is no change yet"
        );
    }
    open.commit().await;
    let m2 = probe.marker().await.unwrap();
    assert_ne!(m2, m1, "the commit of an earlier write changes the marker");
    assert_eq!(probe.marker().await.unwrap(), m2);
}

/// One test per backend for each scenario: `scenario` on a fresh SQLite,
/// MariaDB and PostgreSQL database.
macro_rules! on_every_backend {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $scenario() {
                let f = super::Fresh::sqlite().await;
                super::$scenario(&f.db).await;
                f.drop_db().await;
            })*
        }
        mod mariadb {
            $(#[tokio::test]
            async fn $scenario() {
                let f = super::Fresh::mysql().await;
                super::$scenario(&f.db).await;
                f.drop_db().await;
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $scenario() {
                let f = super::Fresh::postgres().await;
                super::$scenario(&f.db).await;
                f.drop_db().await;
            })*
        }
    };
}

on_every_backend!(
    guide_semantics,
    admin_semantics,
    change_probe_sees_every_write,
    change_probe_sees_writes_after_skipping
);

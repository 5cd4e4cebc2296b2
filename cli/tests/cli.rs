//! The `postwerk` command end to end, on SQLite, MariaDB and PostgreSQL:
//! every subcommand round-trips, bad input gets a clear message and a
//! non-zero exit. MariaDB/PostgreSQL must be running (scripts/install-deps
//! starts them); each test makes and drops its own database.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

static N: AtomicU32 = AtomicU32::new(0);

type Query = Box<dyn Fn(&str) -> String>;

struct Db {
    url: String,
    drop: Option<Box<dyn Fn()>>,
    /// Runs a SELECT and returns its rows as tab-separated text.
    query: Query,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Some(d) = &self.drop {
            d();
        }
    }
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} — run scripts/install-deps"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn name() -> String {
    format!(
        "postwerk_cli_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

fn sqlite() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/vmail.db");
    let p2 = path.clone();
    Db {
        url: format!("sqlite://{}", path.display()),
        drop: None,
        query: Box::new(move |q| {
            run_ok(
                Command::new("sqlite3")
                    .arg("-separator")
                    .arg("\t")
                    .arg(&p2)
                    .arg(q),
            )
        }),
        _dir: Some(dir),
    }
}

fn mariadb() -> Db {
    let n = name();
    run_ok(Command::new("mariadb").args([
        "-uroot",
        "-e",
        &format!("CREATE DATABASE {n} CHARACTER SET 'utf8'"),
    ]));
    let (n2, n3) = (n.clone(), n.clone());
    Db {
        url: format!("mysql://root@localhost/{n}?socket=/run/mysqld/mysqld.sock"),
        drop: Some(Box::new(move || {
            let _ = Command::new("mariadb")
                .args(["-uroot", "-e", &format!("DROP DATABASE {n2}")])
                .output();
        })),
        query: Box::new(move |q| {
            run_ok(Command::new("mariadb").args(["-uroot", "-N", "-B", &n3, "-e", q]))
        }),
        _dir: None,
    }
}

fn postgres() -> Db {
    let n = name();
    run_ok(Command::new("psql").args([
        "-h",
        "127.0.0.1",
        "-U",
        "postgres",
        "-q",
        "-c",
        &format!("CREATE DATABASE {n}"),
    ]));
    let (n2, n3) = (n.clone(), n.clone());
    Db {
        url: format!("postgres://postgres@127.0.0.1/{n}"),
        drop: Some(Box::new(move || {
            let _ = Command::new("psql")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-U",
                    "postgres",
                    "-q",
                    "-c",
                    &format!("DROP DATABASE {n2} WITH (FORCE)"),
                ])
                .output();
        })),
        query: Box::new(move |q| {
            run_ok(Command::new("psql").args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                &n3,
                "-At",
                "-F",
                "\t",
                "-c",
                q,
            ]))
        }),
        _dir: None,
    }
}

fn postwerk(db: &Db, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_postwerk"));
    cmd.args(["--config", "/dev/null", "--database", &db.url])
        .args(args)
        .env_remove("POSTWERK_DATABASE_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(s) = stdin {
        // A command that fails before reading its input (unknown domain,
        // refused name) may be gone already: that is not the test's error.
        match child.stdin.take().unwrap().write_all(s.as_bytes()) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            other => other.unwrap(),
        }
    } else {
        drop(child.stdin.take());
    }
    child.wait_with_output().unwrap()
}

#[track_caller]
fn ok(db: &Db, args: &[&str], stdin: Option<&str>) -> String {
    let out = postwerk(db, args, stdin);
    assert!(
        out.status.success(),
        "postwerk {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts failure with a message containing `needle`.
#[track_caller]
fn fails(db: &Db, args: &[&str], stdin: Option<&str>, needle: &str) {
    let out = postwerk(db, args, stdin);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "postwerk {args:?} should fail");
    assert!(
        err.contains(needle),
        "postwerk {args:?}: expected `{needle}` in: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

fn json(db: &Db, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    serde_json::from_str(&ok(db, &a, None)).unwrap()
}

fn count(v: &serde_json::Value) -> usize {
    v.as_array().map(Vec::len).unwrap_or(0)
}

fn roundtrip(db: Db) {
    if db.url.starts_with("sqlite") {
        fails(&db, &["domain", "list"], None, "postwerk db init");
    } else {
        fails(&db, &["domain", "list"], None, "db init");
    }
    ok(&db, &["db", "init"], None);
    ok(&db, &["db", "init"], None); // idempotent
    ok(&db, &["db", "check"], None);

    // domains
    ok(&db, &["domain", "add", "Example.ORG"], None);
    ok(&db, &["domain", "add", "müller.example"], None);
    ok(&db, &["domain", "add", "example.net"], None);
    fails(
        &db,
        &["domain", "add", "example.org"],
        None,
        "already exists",
    );
    fails(
        &db,
        &["domain", "add", "not a domain"],
        None,
        "not a valid domain",
    );
    let domains = json(&db, &["domain", "list"]);
    let names: Vec<_> = domains
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["domain"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["example.net", "example.org", "xn--mller-kva.example"]
    );
    assert!(ok(&db, &["domain", "list"], None).contains("müller.example"));

    // accounts, with every password scheme
    let schemes = [
        "SHA512-CRYPT",
        "SHA256-CRYPT",
        "BLF-CRYPT",
        "ARGON2I",
        "ARGON2ID",
        "MD5-CRYPT",
        "SSHA512",
        "SSHA256",
        "SSHA",
        "SHA512",
        "SHA256",
        "SHA",
        "PLAIN",
        "CLEARTEXT",
    ];
    for (i, s) in schemes.iter().enumerate() {
        let addr = format!("u{i}@example.org");
        ok(
            &db,
            &["account", "add", &addr, "--scheme", s, "--password-stdin"],
            Some(&format!("pw-{s}\n")),
        );
        let stored = (db.query)(&format!(
            "SELECT password FROM accounts WHERE username = 'u{i}'"
        ));
        let stored = stored.trim();
        assert!(stored.starts_with(&format!("{{{s}}}")), "{s}: {stored}");
        assert!(
            postwerk_core::password::verify(
                format!("pw-{s}").as_bytes(),
                stored,
                postwerk_core::password::DEFAULT_SCHEME
            )
            .unwrap(),
            "{s}: {stored}"
        );
        assert!(
            !postwerk_core::password::verify(
                b"wrong",
                stored,
                postwerk_core::password::DEFAULT_SCHEME
            )
            .unwrap()
        );
    }
    ok(
        &db,
        &[
            "account",
            "add",
            "User1@Example.org",
            "--quota",
            "2G",
            "--password-stdin",
        ],
        Some("secret\n"),
    );
    ok(
        &db,
        &[
            "account",
            "add",
            "noreply@example.org",
            "--sendonly",
            "--password-stdin",
        ],
        Some("secret\n"),
    );
    ok(
        &db,
        &[
            "account",
            "add",
            "anna@müller.example",
            "--disabled",
            "--quota",
            "512M",
            "--password-stdin",
        ],
        Some("x\n"),
    );
    fails(
        &db,
        &["account", "add", "user1@example.org", "--password-stdin"],
        Some("s\n"),
        "already exists",
    );
    fails(
        &db,
        &["account", "add", "x@nowhere.example", "--password-stdin"],
        Some("s\n"),
        "postwerk domain add nowhere.example",
    );
    fails(
        &db,
        &[
            "account",
            "add",
            "x@example.org",
            "--quota",
            "2X",
            "--password-stdin",
        ],
        Some("s\n"),
        "--quota",
    );
    fails(
        &db,
        &[
            "account",
            "add",
            "x@example.org",
            "--scheme",
            "ROT13",
            "--password-stdin",
        ],
        Some("s\n"),
        "ROT13",
    );
    fails(
        &db,
        &["account", "add", "x@example.org", "--password-stdin"],
        Some("\n"),
        "empty",
    );
    fails(
        &db,
        &["account", "add", "nobody", "--password-stdin"],
        Some("s\n"),
        "user@domain",
    );
    let row = (db.query)(
        "SELECT username, domain, quota, enabled, sendonly FROM accounts WHERE username = 'user1'",
    );
    let cols: Vec<_> = row.trim().split('\t').collect();
    assert_eq!(
        cols[..3],
        ["user1", "example.org", "2048"],
        "stored lowercase with quota in MB"
    );
    let accounts = json(&db, &["account", "list", "example.org"]);
    let find = |addr: &str| {
        accounts
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["address"] == addr)
            .cloned()
            .unwrap()
    };
    let user1 = find("user1@example.org");
    assert_eq!(user1["quota_mb"], 2048);
    assert_eq!(user1["sendonly"], false);
    assert!(user1.get("password").is_none(), "hashes are never printed");
    assert_eq!(find("noreply@example.org")["sendonly"], true);
    let anna = &json(&db, &["account", "list", "müller.example"])[0];
    assert_eq!(
        (anna["enabled"].as_bool(), anna["quota"].as_str()),
        (Some(false), Some("512M"))
    );
    ok(
        &db,
        &["account", "enable", "anna@xn--mller-kva.example"],
        None,
    );
    assert_eq!(
        json(&db, &["account", "list", "müller.example"])[0]["enabled"],
        true
    );
    ok(&db, &["account", "disable", "anna@müller.example"], None);
    assert_eq!(
        json(&db, &["account", "list", "müller.example"])[0]["enabled"],
        false
    );
    ok(
        &db,
        &["account", "quota", "user1@example.org", "unlimited"],
        None,
    );
    assert_eq!(
        (db.query)("SELECT quota FROM accounts WHERE username = 'user1'").trim(),
        "0"
    );
    let before = (db.query)("SELECT password FROM accounts WHERE username = 'user1'");
    ok(
        &db,
        &[
            "account",
            "passwd",
            "user1@example.org",
            "--scheme",
            "SSHA512",
            "--password-stdin",
        ],
        Some("new\n"),
    );
    let after = (db.query)("SELECT password FROM accounts WHERE username = 'user1'");
    assert_ne!(before, after);
    assert!(
        postwerk_core::password::verify(
            b"new",
            after.trim(),
            postwerk_core::password::DEFAULT_SCHEME
        )
        .unwrap()
    );
    fails(
        &db,
        &["account", "passwd", "ghost@example.org", "--password-stdin"],
        Some("x\n"),
        "does not exist",
    );
    fails(
        &db,
        &["account", "quota", "ghost@example.org", "1G"],
        None,
        "does not exist",
    );
    fails(
        &db,
        &["account", "enable", "ghost@example.org"],
        None,
        "does not exist",
    );

    // aliases: plain, distribution list, catch-all, foreign destination
    ok(
        &db,
        &["alias", "add", "alias@example.org", "user1@example.org"],
        None,
    );
    ok(
        &db,
        &[
            "alias",
            "add",
            "team@example.org",
            "user1@example.org",
            "noreply@example.org",
            "friend@foreign.example",
        ],
        None,
    );
    ok(
        &db,
        &["alias", "add", "@example.net", "user1@example.org"],
        None,
    );
    fails(
        &db,
        &["alias", "add", "@example.net", "user1@example.org"],
        None,
        "already exists",
    );
    fails(
        &db,
        &["alias", "add", "x@nowhere.example", "user1@example.org"],
        None,
        "does not exist",
    );
    fails(
        &db,
        &["alias", "add", "x@example.org", "not-an-address"],
        None,
        "user@domain",
    );
    let note = ok(
        &db,
        &["alias", "add", "user1@example.org", "u0@example.org"],
        None,
    );
    assert!(note.contains("also an account"), "{note}");
    let aliases = json(&db, &["alias", "list"]);
    assert_eq!(count(&aliases), 6);
    let ca: Vec<_> = aliases
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["catch_all"] == true)
        .collect();
    assert_eq!(ca.len(), 1);
    assert_eq!(ca[0]["source"], "@example.net");
    let ca_rows = (db.query)(
        "SELECT destination_username FROM aliases WHERE source_username IS NULL AND source_domain = 'example.net'",
    );
    assert_eq!(
        ca_rows.trim(),
        "user1",
        "catch-all stored with source_username NULL"
    );
    ok(
        &db,
        &["alias", "del", "team@example.org", "friend@foreign.example"],
        None,
    );
    assert_eq!(count(&json(&db, &["alias", "list", "example.org"])), 4);
    ok(&db, &["alias", "del", "team@example.org"], None);
    fails(&db, &["alias", "del", "team@example.org"], None, "no alias");
    ok(&db, &["alias", "del", "@example.net"], None);
    assert_eq!(count(&json(&db, &["alias", "list", "example.net"])), 0);

    // TLS policies: the guide's examples and all eight policies
    ok(
        &db,
        &["tlspolicy", "add", "gmx.de", "secure", "match=.gmx.net"],
        None,
    );
    ok(&db, &["tlspolicy", "add", "mailbox.org", "dane-only"], None);
    for (i, p) in ["none", "may", "encrypt", "dane", "verify"]
        .iter()
        .enumerate()
    {
        ok(
            &db,
            &["tlspolicy", "add", &format!("d{i}.example"), p],
            None,
        );
    }
    ok(
        &db,
        &[
            "tlspolicy",
            "add",
            "fp.example",
            "fingerprint",
            "match=AB:CD:EF",
        ],
        None,
    );
    fails(
        &db,
        &["tlspolicy", "add", "fp2.example", "fingerprint"],
        None,
        "needs params",
    );
    fails(
        &db,
        &["tlspolicy", "add", "x.example", "bogus"],
        None,
        "allowed: none, may",
    );
    fails(
        &db,
        &["tlspolicy", "add", "gmx.de", "may"],
        None,
        "already exists",
    );
    let pols = json(&db, &["tlspolicy", "list"]);
    assert_eq!(count(&pols), 8);
    let gmx = pols
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["domain"] == "gmx.de")
        .unwrap();
    assert_eq!(
        (gmx["policy"].as_str(), gmx["params"].as_str()),
        (Some("secure"), Some("match=.gmx.net"))
    );
    let stored = (db.query)("SELECT policy, params FROM tlspolicies WHERE domain = 'gmx.de'");
    assert_eq!(stored.trim(), "secure\tmatch=.gmx.net");
    ok(&db, &["tlspolicy", "del", "gmx.de"], None);
    fails(&db, &["tlspolicy", "del", "gmx.de"], None, "no TLS policy");

    // deleting a domain that still has accounts needs --force
    fails(&db, &["domain", "del", "example.org"], None, "--force");
    ok(&db, &["account", "del", "anna@müller.example"], None);
    fails(
        &db,
        &["account", "del", "anna@müller.example"],
        None,
        "does not exist",
    );
    ok(&db, &["domain", "del", "müller.example"], None);
    ok(&db, &["domain", "del", "example.org", "--force"], None);
    fails(
        &db,
        &["domain", "del", "example.org"],
        None,
        "does not exist",
    );
    assert_eq!((db.query)("SELECT COUNT(*) FROM accounts").trim(), "0");
    assert!(ok(&db, &["config", "check"], None).contains("reachable"));
}

#[test]
fn roundtrip_sqlite() {
    roundtrip(sqlite());
}

#[test]
fn roundtrip_mariadb() {
    roundtrip(mariadb());
}

#[test]
fn roundtrip_postgres() {
    roundtrip(postgres());
}

#[test]
fn bad_config_exits_78_naming_the_keys() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("postwerk.toml");
    std::fs::write(
        &cfg,
        "[database]\nurl = \"oracle://x/y\"\nacquire_timeout = \"soon\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_postwerk"))
        .args(["--config", cfg.to_str().unwrap(), "domain", "list"])
        .env_remove("POSTWERK_DATABASE_URL")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("[database].url") && err.contains("[database].acquire_timeout"),
        "{err}"
    );
}

#[test]
fn config_check_hides_secrets_and_reports_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("dbpw");
    std::fs::write(&pw, "vmaildbpass\n").unwrap();
    let cfg = dir.path().join("postwerk.toml");
    std::fs::write(
        &cfg,
        format!(
            "[database]\nurl = \"mysql://vmail@127.0.0.1:9/vmail\"\npassword_file = \"{}\"\nacquire_timeout = \"1s\"\n",
            pw.display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_postwerk"))
        .args(["--config", cfg.to_str().unwrap(), "config", "check"])
        .env_remove("POSTWERK_DATABASE_URL")
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains("vmaildbpass"), "{all}");
    assert!(all.contains("***"), "{all}");
    assert!(all.contains("cannot reach the database"), "{all}");
    assert!(
        !out.status.success(),
        "an unreachable database fails the check"
    );
}

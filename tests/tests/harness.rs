//! The harness keeps its promises: failed tests keep their directory,
//! missing peers fail loudly, databases and Redis keys do not outlive their
//! test, ports are unique, waits end at their deadline.

use std::collections::HashSet;
use std::net::TcpListener;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use postwerk_tests::exec::{require, run};
use postwerk_tests::net::{free_port, wait_for_port, wait_for_unix_socket};
use postwerk_tests::redis::RedisPrefix;
use postwerk_tests::{Database, MariaDb, Postgres, TestDir};

#[test]
fn test_dir_is_removed_when_the_test_passes() {
    let dir = TestDir::new("harness-pass");
    let path = dir.path().to_owned();
    dir.write("a/b.txt", "x", 0o644);
    drop(dir);
    assert!(!path.exists(), "{} was not removed", path.display());
}

#[test]
fn test_dir_is_kept_when_the_test_panics() {
    let mut kept: Option<PathBuf> = None;
    let result = catch_unwind(AssertUnwindSafe(|| {
        let dir = TestDir::new("harness-fail");
        kept = Some(dir.path().to_owned());
        panic!("a failing test");
    }));
    assert!(result.is_err());
    let path = kept.expect("the closure ran");
    assert!(
        path.is_dir(),
        "{} was removed although the test failed",
        path.display()
    );
    std::fs::remove_dir_all(&path).expect("clean up the kept directory");
}

#[test]
fn a_missing_peer_fails_loudly_with_the_fix() {
    let result = catch_unwind(|| require("postwerk-no-such-peer"));
    let message = match result {
        Ok(path) => panic!("found a program that cannot exist: {}", path.display()),
        Err(payload) => payload
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default(),
    };
    assert!(message.contains("postwerk-no-such-peer"), "{message}");
    assert!(message.contains("scripts/install-deps"), "{message}");
}

#[test]
fn the_peers_are_installed() {
    for peer in [
        "postfix",
        "postmap",
        "postqueue",
        "dovecot",
        "doveadm",
        "swaks",
        "openssl",
        "sqlite3",
        "mariadb",
        "psql",
        "redis-cli",
        "/usr/bin/python3",
    ] {
        require(peer);
    }
    // swaks needs Perl's Net::SSLeay for --tls.
    let out = run(
        Command::new("perl").args(["-MNet::SSLeay", "-e", "1"]),
        None,
        Duration::from_secs(10),
    );
    assert!(
        out.is_success(),
        "perl cannot load Net::SSLeay (libnet-ssleay-perl): run scripts/install-deps\n{out}"
    );
}

#[test]
fn free_ports_are_distinct_and_bindable() {
    let ports: Vec<u16> = (0..20).map(|_| free_port()).collect();
    let unique: HashSet<u16> = ports.iter().copied().collect();
    assert_eq!(unique.len(), ports.len(), "{ports:?}");
    for port in ports {
        TcpListener::bind(("127.0.0.1", port)).unwrap_or_else(|e| panic!("port {port}: {e}"));
    }
}

#[test]
fn waits_end_at_their_deadline() {
    let port = free_port();
    let started = Instant::now();
    assert!(wait_for_port(port, Duration::from_millis(300)).is_err());
    assert!(
        wait_for_unix_socket(
            &PathBuf::from("/nonexistent/sock"),
            Duration::from_millis(300)
        )
        .is_err()
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the free port");
    wait_for_port(port, Duration::from_secs(5)).expect("a listening port is ready");
    drop(listener);
}

#[test]
fn mariadb_database_and_user_are_dropped_with_the_test() {
    let db = MariaDb::fresh();
    let name = db.name().to_owned();
    db.query("CREATE TABLE t (x int); INSERT INTO t VALUES (1)");
    assert_eq!(db.query("SELECT x FROM t").trim(), "1");
    drop(db);
    let probe = MariaDb::fresh();
    let left = probe.query(&format!(
        "SELECT (SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = '{name}'), \
                (SELECT COUNT(*) FROM mysql.user WHERE user = '{name}')"
    ));
    assert_eq!(left.trim(), "0\t0", "{name} outlived its test");
}

#[test]
fn postgres_database_and_role_are_dropped_with_the_test() {
    let db = Postgres::fresh();
    let name = db.name().to_owned();
    db.query("CREATE TABLE t (x int); INSERT INTO t VALUES (1)");
    assert_eq!(db.query("SELECT x FROM t").trim(), "1");
    drop(db);
    let probe = Postgres::fresh();
    let left = probe.query(&format!(
        "SELECT (SELECT COUNT(*) FROM pg_database WHERE datname = '{name}'), \
                (SELECT COUNT(*) FROM pg_roles WHERE rolname = '{name}')"
    ));
    assert_eq!(left.trim(), "0\t0", "{name} outlived its test");
}

#[test]
fn redis_keys_are_removed_with_the_test() {
    let prefix = RedisPrefix::fresh();
    let key = prefix.key("probe");
    let set = run(
        Command::new(require("redis-cli")).args(["-h", "127.0.0.1", "SET", &key, "1"]),
        None,
        Duration::from_secs(10),
    );
    assert!(set.is_success(), "{set}");
    assert_eq!(prefix.keys(), vec![key.clone()]);
    let other = RedisPrefix::fresh();
    assert_ne!(prefix.prefix(), other.prefix());
    drop(prefix);
    let get = run(
        Command::new(require("redis-cli")).args(["-h", "127.0.0.1", "EXISTS", &key]),
        None,
        Duration::from_secs(10),
    );
    assert_eq!(get.stdout.trim(), "0", "{key} outlived its test");
}

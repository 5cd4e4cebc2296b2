//! Bench (not a test): successful SHA512-CRYPT authentications per second
//! over the Dovecot auth-client protocol (what Postfix speaks), with 1, 4
//! and 16 concurrent connections, against
//!
//! * `postwerk-authd` with the login cache off (every login verifies the
//!   hash: a first login),
//! * `postwerk-authd` with the login cache on (repeat logins: a mail client
//!   reconnecting with the same password),
//! * a private Dovecot 2.3 auth service with the guide's SQL passdb
//!   (`dovecot-sql.conf`'s password_query on MariaDB, no auth cache, as in
//!   the guide) — the anchor — and with a `passwd-file` passdb (no
//!   database at all, the fastest Dovecot can be),
//!
//! with authd on the same MariaDB database as the anchor (and on SQLite),
//! next to the raw SHA512-CRYPT verification rate on 1 and 2 threads.
//! Prints a table; asserts nothing about time (STYLE.md §7.8).
//!
//! `cargo bench -p postwerk-authd --bench auth_client` (BENCH_SECS=N per
//! cell, default 3).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "../tests/common/mod.rs"]
mod common;

use common::{PASSWORD, plain};
use postwerk_core::password::{Scheme, hash, verify};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

const CONNECTIONS: [usize; 3] = [1, 4, 16];
/// Distinct accounts the clients cycle through (the cache is per account).
const USERS: usize = 16;

fn secs() -> Duration {
    Duration::from_secs(
        std::env::var("BENCH_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3),
    )
}

/// One auth-client connection after the handshake.
struct Conn {
    r: BufReader<tokio::net::unix::OwnedReadHalf>,
    w: tokio::net::unix::OwnedWriteHalf,
}

impl Conn {
    async fn open(sock: &Path) -> Conn {
        let s = UnixStream::connect(sock)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", sock.display()));
        let (r, mut w) = s.into_split();
        w.write_all(format!("VERSION\t1\t2\nCPID\t{}\n", std::process::id()).as_bytes())
            .await
            .unwrap();
        let mut r = BufReader::new(r);
        let mut line = String::new();
        loop {
            line.clear();
            assert!(
                r.read_line(&mut line).await.unwrap() > 0,
                "closed in handshake"
            );
            if line == "DONE\n" {
                break;
            }
        }
        Conn { r, w }
    }

    /// AUTH PLAIN; true on OK.
    async fn auth(&mut self, id: u64, user: &str) -> bool {
        let line = format!(
            "AUTH\t{id}\tPLAIN\tservice=smtp\tsecured\tnologin\tlip=127.0.0.1\trip=127.0.0.1\tresp={}\n",
            plain(user, PASSWORD)
        );
        self.w.write_all(line.as_bytes()).await.unwrap();
        let mut reply = String::new();
        assert!(self.r.read_line(&mut reply).await.unwrap() > 0, "closed");
        reply.starts_with("OK\t")
    }
}

/// Successful auths/s with `n` connections for `secs()`.
async fn rate(sock: &Path, n: usize) -> f64 {
    let deadline = Instant::now() + secs();
    let mut tasks = Vec::new();
    for c in 0..n {
        let sock = sock.to_path_buf();
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(&sock).await;
            let mut ok = 0u64;
            let mut id = 0u64;
            while Instant::now() < deadline {
                id += 1;
                let user = format!("u{}@example.org", (c + id as usize) % USERS);
                if conn.auth(id, &user).await {
                    ok += 1;
                } else {
                    panic!("auth for {user} failed");
                }
            }
            ok
        }));
    }
    let started = Instant::now();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total as f64 / started.elapsed().as_secs_f64()
}

fn raw_verify_rate(threads: usize, stored: &str) -> f64 {
    let deadline = Instant::now() + secs();
    let started = Instant::now();
    let total: u64 = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        assert!(verify(PASSWORD.as_bytes(), stored, Scheme::Sha512Crypt).unwrap());
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    total as f64 / started.elapsed().as_secs_f64()
}

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(sock: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(sock).is_err() {
        assert!(Instant::now() < deadline, "{} not ready", sock.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn authd(dir: &Path, name: &str, url: &str, cache_ttl: &str) -> (Proc, PathBuf) {
    let sock = dir.join(format!("{name}.sock"));
    let toml = dir.join(format!("{name}.toml"));
    std::fs::write(
        &toml,
        format!(
            "[database]\nurl = \"{url}\"\n[log]\nlevel = \"warn\"\n[authd]\nauth_listen = [\"unix:{}\"]\n\
socket_mode = \"0600\"\nlogin_cache_ttl = \"{cache_ttl}\"\n",
            sock.display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_postwerk-authd"))
        .env("POSTWERK_ALLOW_ROOT", "1")
        .arg("--config")
        .arg(&toml)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start postwerk-authd");
    let p = Proc(child);
    wait_for(&sock);
    (p, sock)
}

/// A fresh MariaDB database with the vmail schema and `USERS` accounts;
/// returns (database name, postwerk URL). Dropped by [`drop_mariadb`].
async fn mariadb(stored: &str) -> (String, String) {
    let name = format!("postwerk_authbench_{}", std::process::id());
    let out = Command::new("mariadb")
        .args(["-uroot", "-e"])
        .arg(format!(
            "DROP DATABASE IF EXISTS {name}; CREATE DATABASE {name}"
        ))
        .output()
        .expect("run mariadb (is mariadb-client installed and the server running?)");
    assert!(out.status.success(), "{out:?}");
    let url = format!("mysql://root@127.0.0.1:3306/{name}");
    add_accounts(&url, stored, true).await;
    (name, url)
}

fn drop_mariadb(name: &str) {
    let _ = Command::new("mariadb")
        .args(["-uroot", "-e"])
        .arg(format!("DROP DATABASE IF EXISTS {name}"))
        .output();
}

/// `USERS` accounts `u<i>@example.org` with the hash `stored`.
async fn add_accounts(url: &str, stored: &str, init: bool) {
    use postwerk_core::config::{DatabaseConfig, Secret};
    use postwerk_core::db::{Account, Db};
    let db = Db::connect_lazy(&DatabaseConfig::from_url(url).unwrap(), true).unwrap();
    if init {
        db.init_schema().await.unwrap();
        db.domain_add("example.org").await.unwrap();
    }
    for i in 0..USERS {
        db.account_add(&Account {
            username: format!("u{i}"),
            domain: "example.org".into(),
            password: Secret::new(stored),
            quota_mb: 0,
            enabled: true,
            sendonly: false,
        })
        .await
        .unwrap();
    }
    db.close().await;
}

/// Dovecot's passdb block for the guide's SQL on MariaDB database `name`.
fn guide_sql_passdb(dir: &Path, name: &str) -> String {
    let conf = dir.join("dovecot-sql.conf");
    std::fs::write(
        &conf,
        format!(
            "driver = mysql
connect = \"host=127.0.0.1 port=3306 dbname={name} user=root\"
default_pass_scheme = SHA512-CRYPT
password_query = SELECT username AS user, domain, password FROM accounts WHERE username = '%Ln' AND domain = '%Ld' and enabled = true;
"
        ),
    )
    .unwrap();
    format!(
        "passdb {{\n  driver = sql\n  args = {}\n}}\n",
        conf.display()
    )
}

fn dovecot_passwd_file(dir: &Path, stored: &str) -> String {
    let stored = if stored.starts_with('{') {
        stored.to_owned()
    } else {
        format!("{{SHA512-CRYPT}}{stored}")
    };
    let passwd: String = (0..USERS)
        .map(|i| format!("u{i}@example.org:{stored}\n"))
        .collect();
    std::fs::write(dir.join("passwd"), passwd).unwrap();
    format!(
        "passdb {{\n  driver = passwd-file\n  args = {}/passwd\n}}\n",
        dir.display()
    )
}

/// A private Dovecot auth service in `dir` with `passdb` (a config block).
fn dovecot(dir: &Path, passdb: &str) -> (Proc, PathBuf) {
    std::fs::create_dir_all(dir.join("run")).unwrap();
    let conf = dir.join("dovecot.conf");
    let p = dir.display();
    std::fs::write(
        &conf,
        format!(
            "base_dir = {p}/run\ninstance_name = postwerk-authd-bench-{pid}-{tag}\nstate_dir = {p}/run\n\
log_path = {p}/dovecot.log\nprotocols =\nssl = no\ndisable_plaintext_auth = no\n\
auth_mechanisms = plain login\nauth_username_format = %Lu\n\
{passdb}\
userdb {{\n  driver = static\n  args = uid=nobody gid=nogroup home=/nonexistent\n}}\n",
            pid = std::process::id(),
            tag = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
        ),
    )
    .unwrap();
    let child = Command::new("dovecot")
        .arg("-F")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run dovecot (is dovecot-core installed?)");
    let proc = Proc(child);
    let sock = dir.join("run/auth-client");
    wait_for(&sock);
    (proc, sock)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    // `cargo bench` passes --bench; nothing else is understood.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let url = common::vmail_db(path).await;
    let stored = hash(PASSWORD.as_bytes(), Scheme::Sha512Crypt).unwrap();
    add_accounts(&url, &stored, false).await;
    let (maria_name, maria_url) = mariadb(&stored).await;
    let (_first, first_sock) = authd(path, "authd-first", &maria_url, "0s");
    let (_repeat, repeat_sock) = authd(path, "authd-repeat", &maria_url, "60s");
    let (_sqlite, sqlite_sock) = authd(path, "authd-sqlite", &url, "0s");
    let sql_dir = path.join("dovecot-sql");
    let file_dir = path.join("dovecot-file");
    std::fs::create_dir_all(&sql_dir).unwrap();
    std::fs::create_dir_all(&file_dir).unwrap();
    let (_dc_sql, sql_sock) = dovecot(&sql_dir, &guide_sql_passdb(&sql_dir, &maria_name));
    let (_dc_file, file_sock) = dovecot(&file_dir, &dovecot_passwd_file(&file_dir, &stored));

    println!(
        "SHA512-CRYPT raw verify: {:.0}/s on 1 thread, {:.0}/s on 2 threads ({} cores)",
        raw_verify_rate(1, &stored),
        raw_verify_rate(2, &stored),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "successful logins/s over the auth-client protocol; first = every login verifies the hash, repeat = login cache on"
    );
    println!(
        "{:>5} | {:>18} | {:>18} | {:>16} | {:>18} | {:>16} | {:>9} | {:>9}",
        "conns",
        "authd MariaDB first",
        "authd MariaDB repeat",
        "authd SQLite first",
        "Dovecot SQL MariaDB",
        "Dovecot passwd-file",
        "first/sql",
        "repeat/sql"
    );
    for n in CONNECTIONS {
        let first = rate(&first_sock, n).await;
        let repeat = rate(&repeat_sock, n).await;
        let sqlite = rate(&sqlite_sock, n).await;
        let dc_sql = rate(&sql_sock, n).await;
        let dc_file = rate(&file_sock, n).await;
        println!(
            "{n:>5} | {first:>18.0} | {repeat:>18.0} | {sqlite:>16.0} | {dc_sql:>18.0} | {dc_file:>16.0} | {:>9.2} | {:>9.1}",
            first / dc_sql,
            repeat / dc_sql
        );
    }
    drop_mariadb(&maria_name);
}

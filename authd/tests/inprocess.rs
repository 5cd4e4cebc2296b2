//! authd in-process on a temp SQLite database, driven by raw auth-client
//! and dict clients over UNIX sockets: every reply byte for byte.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{DOWN_URL, PASSWORD, b64, plain};
use postwerk_core::config::Config;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

struct Daemon {
    _dir: tempfile::TempDir,
    auth: PathBuf,
    dict: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Daemon {
    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
    }
}

/// Starts authd with `[authd]` lines `extra` (failure delay 0 unless set),
/// on the fixture database or `database_url`.
async fn start(extra: &str, database_url: Option<&str>) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let url = common::vmail_db(dir.path()).await;
    let auth = dir.path().join("auth.sock");
    let dict = dir.path().join("dict.sock");
    let delay = if extra.contains("auth_failure_delay") {
        ""
    } else {
        "auth_failure_delay = \"0\"\n"
    };
    let text = format!(
        "[database]\nurl = \"{}\"\nacquire_timeout = \"1s\"\n[authd]\nauth_listen = [\"unix:{}\"]\ndict_listen = [\"unix:{}\"]\nuid = 5000\ngid = 5001\n{delay}{extra}",
        database_url.unwrap_or(&url),
        auth.display(),
        dict.display(),
    );
    let cfg = Config::parse(&text).unwrap();
    let listeners = postwerk_authd::bind(&cfg).await.unwrap();
    let shared = postwerk_authd::shared(&cfg).unwrap();
    let (tx, rx) = tokio::sync::watch::channel(shared);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let limits = cfg.authd.service.limits;
    let task = tokio::spawn(async move {
        let _keep = tx;
        postwerk_authd::run(limits, listeners, rx, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    Daemon {
        _dir: dir,
        auth,
        dict,
        stop: Some(stop),
        task: Some(task),
    }
}

struct Client {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
}

impl Client {
    async fn raw(path: &PathBuf) -> Self {
        let (r, w) = UnixStream::connect(path).await.unwrap().into_split();
        Self {
            r: BufReader::new(r),
            w,
        }
    }

    /// Connects and completes the handshake as Postfix does.
    async fn auth(path: &PathBuf) -> Self {
        let mut c = Self::raw(path).await;
        let hs = c.lines_until("DONE").await;
        assert_eq!(hs[0], "VERSION\t1\t2");
        assert_eq!(hs[1], "MECH\tPLAIN\tplaintext");
        assert_eq!(hs[2], "MECH\tLOGIN\tplaintext");
        assert!(
            hs[3].starts_with("SPID\t") && hs[4].starts_with("CUID\t"),
            "{hs:?}"
        );
        assert!(
            hs[5].starts_with("COOKIE\t") && hs[5].len() == 7 + 32,
            "{hs:?}"
        );
        c.send("VERSION\t1\t0\nCPID\t4242\n").await;
        c
    }

    async fn send(&mut self, s: &str) {
        self.w.write_all(s.as_bytes()).await.unwrap();
    }

    /// The next line with its LF, or "" at EOF.
    async fn line(&mut self) -> String {
        let mut s = String::new();
        tokio::time::timeout(Duration::from_secs(20), self.r.read_line(&mut s))
            .await
            .expect("reply in time")
            .unwrap();
        s
    }

    async fn lines_until(&mut self, last: &str) -> Vec<String> {
        let mut v = Vec::new();
        loop {
            let l = self.line().await;
            assert!(!l.is_empty(), "EOF before {last}: {v:?}");
            let l = l.trim_end_matches('\n').to_owned();
            let done = l == last;
            v.push(l);
            if done {
                return v;
            }
        }
    }

    async fn ask(&mut self, line: &str) -> String {
        self.send(line).await;
        self.line().await
    }
}

fn auth_plain(id: u32, user: &str, pw: &str, secured: bool) -> String {
    format!(
        "AUTH\t{id}\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip=192.0.2.7{}\tresp={}\n",
        if secured { "\tsecured" } else { "" },
        plain(user, pw)
    )
}

#[tokio::test]
async fn plain_login_good_wrong_disabled_sendonly_uppercase() {
    let d = start("", None).await;
    let mut c = Client::auth(&d.auth).await;
    assert_eq!(
        c.ask(&auth_plain(1, "user@example.org", PASSWORD, true))
            .await,
        "OK\t1\tuser=user@example.org\t\n"
    );
    assert_eq!(
        c.ask(&auth_plain(2, "user@example.org", "wrong", true))
            .await,
        "FAIL\t2\tuser=user@example.org\n"
    );
    assert_eq!(
        c.ask(&auth_plain(3, "disabled@example.org", PASSWORD, true))
            .await,
        "FAIL\t3\tuser=disabled@example.org\n"
    );
    assert_eq!(
        c.ask(&auth_plain(4, "nobody@example.org", PASSWORD, true))
            .await,
        "FAIL\t4\tuser=nobody@example.org\n"
    );
    // Send-only accounts may submit mail (guide: passdb has no sendonly check).
    assert_eq!(
        c.ask(&auth_plain(5, "sendonly@example.org", PASSWORD, true))
            .await,
        "OK\t5\tuser=sendonly@example.org\t\n"
    );
    // %Lu: the canonical name is lowercase.
    assert_eq!(
        c.ask(&auth_plain(6, "User@EXAMPLE.org", PASSWORD, true))
            .await,
        "OK\t6\tuser=user@example.org\t\n"
    );
    assert_eq!(
        c.ask(&auth_plain(7, "plain@example.org", PASSWORD, true))
            .await,
        "OK\t7\tuser=plain@example.org\t\n"
    );
    assert_eq!(
        c.ask(&auth_plain(8, "not-an-address", PASSWORD, true))
            .await,
        "FAIL\t8\tuser=not-an-address\n"
    );
    // doveadm's form: authzid = authcid.
    let resp = b64(&format!("user@example.org\0user@example.org\0{PASSWORD}"));
    assert_eq!(
        c.ask(&format!(
            "AUTH\t9\tPLAIN\tservice=smtp\tdebug\tsecured\tresp={resp}\n"
        ))
        .await,
        "OK\t9\tuser=user@example.org\t\n"
    );
    let resp = b64(&format!("boss@example.org\0user@example.org\0{PASSWORD}"));
    assert_eq!(
        c.ask(&format!(
            "AUTH\t10\tPLAIN\tservice=smtp\tsecured\tresp={resp}\n"
        ))
        .await,
        "FAIL\t10\tuser=user@example.org\tcode=authz_fail\n"
    );
    d.stop().await;
}

#[tokio::test]
async fn login_and_plain_without_initial_response() {
    let d = start("", None).await;
    let mut c = Client::auth(&d.auth).await;
    assert_eq!(
        c.ask("AUTH\t1\tLOGIN\tservice=smtp\tnologin\tsecured\n")
            .await,
        "CONT\t1\tVXNlcm5hbWU6\n"
    );
    assert_eq!(
        c.ask(&format!("CONT\t1\t{}\n", b64("user@example.org")))
            .await,
        "CONT\t1\tUGFzc3dvcmQ6\n"
    );
    assert_eq!(
        c.ask(&format!("CONT\t1\t{}\n", b64(PASSWORD))).await,
        "OK\t1\tuser=user@example.org\t\n"
    );
    // AUTH LOGIN <b64 user>: Postfix passes it as resp=.
    assert_eq!(
        c.ask(&format!(
            "AUTH\t2\tLOGIN\tservice=smtp\tsecured\tresp={}\n",
            b64("user@example.org")
        ))
        .await,
        "CONT\t2\tUGFzc3dvcmQ6\n"
    );
    assert_eq!(
        c.ask(&format!("CONT\t2\t{}\n", b64("nope"))).await,
        "FAIL\t2\tuser=user@example.org\n"
    );
    assert_eq!(
        c.ask("AUTH\t3\tPLAIN\tservice=smtp\tsecured\n").await,
        "CONT\t3\t\n"
    );
    assert_eq!(
        c.ask(&format!(
            "CONT\t3\t{}\n",
            plain("user@example.org", PASSWORD)
        ))
        .await,
        "OK\t3\tuser=user@example.org\t\n"
    );
    // Dovecot's immediate replies (testdata/dovecot-2.3.19-auth-client.txt).
    assert_eq!(
        c.ask("CONT\t9\tAAAA\n").await,
        "FAIL\t9\treason=Authentication request timed out\n"
    );
    assert_eq!(
        c.ask("AUTH\t4\tPLAIN\tservice=smtp\tsecured\tresp=!!!\n")
            .await,
        "FAIL\t4\tcode=invalid_base64\treason=Invalid base64 data in initial response\n"
    );
    assert_eq!(
        c.ask("AUTH\t5\tLOGIN\tservice=smtp\tsecured\n").await,
        "CONT\t5\tVXNlcm5hbWU6\n"
    );
    assert_eq!(
        c.ask("CONT\t5\t%%%\n").await,
        "FAIL\t5\tcode=invalid_base64\treason=Invalid base64 data in continued response\n"
    );
    // Garbage PLAIN payload: an ordinary (delayed) failure.
    assert_eq!(
        c.ask(&format!(
            "AUTH\t6\tPLAIN\tservice=smtp\tsecured\tresp={}\n",
            b64("garbage")
        ))
        .await,
        "FAIL\t6\n"
    );
    // The connection still works.
    assert_eq!(
        c.ask(&auth_plain(7, "user@example.org", PASSWORD, true))
            .await,
        "OK\t7\tuser=user@example.org\t\n"
    );
    d.stop().await;
}

#[tokio::test]
async fn plaintext_needs_secured_unless_configured() {
    let d = start("", None).await;
    let mut c = Client::auth(&d.auth).await;
    assert_eq!(
        c.ask(&auth_plain(1, "user@example.org", PASSWORD, false))
            .await,
        "FAIL\t1\treason=Plaintext authentication disallowed on non-secure (SSL/TLS) connections.\n"
    );
    d.stop().await;
    let d = start("plaintext_on_insecure = true", None).await;
    let mut c = Client::auth(&d.auth).await;
    assert_eq!(
        c.ask(&auth_plain(1, "user@example.org", PASSWORD, false))
            .await,
        "OK\t1\tuser=user@example.org\t\n"
    );
    d.stop().await;
}

#[tokio::test]
async fn client_bugs_close_the_connection() {
    let d = start("", None).await;
    for bad in [
        "HELLO\n".to_owned(),
        "VERSION\t2\t0\n".to_owned(),
        "VERSION\t1\t0\nAUTH\t1\tCRAM-MD5\tservice=smtp\n".to_owned(),
        "VERSION\t1\t0\nAUTH\t1\tPLAIN\tnologin\n".to_owned(),
        format!("VERSION\t1\t0\nAUTH\t1\tPLAIN\tservice=smtp\tresp={}\n", "A".repeat(10_000)),
        "VERSION\t1\t0\n\u{0}\u{1}\n".to_owned(),
        "VERSION\t1\t0\nAUTH\t1\tLOGIN\tservice=smtp\tsecured\nAUTH\t1\tLOGIN\tservice=smtp\tsecured\n".to_owned(),
    ] {
        let mut c = Client::raw(&d.auth).await;
        c.lines_until("DONE").await;
        c.send(&bad).await;
        // At most a CONT for the first of a duplicate pair, then EOF.
        let mut l = c.line().await;
        if l.starts_with("CONT") {
            l = c.line().await;
        }
        assert_eq!(l, "", "{bad:?}");
    }
    d.stop().await;
}

#[tokio::test]
async fn database_down_is_temp_fail_and_never_counts_as_a_failure() {
    let d = start(
        "bruteforce_ip_failures = 1\nbruteforce_account_failures = 1",
        Some(DOWN_URL),
    )
    .await;
    let mut c = Client::auth(&d.auth).await;
    for id in 1..=3 {
        assert_eq!(
            c.ask(&auth_plain(id, "User@example.org", PASSWORD, true))
                .await,
            format!(
                "FAIL\t{id}\tuser=user@example.org\tcode=temp_fail\treason=Temporary authentication failure, try again later\n"
            )
        );
    }
    let mut dict = Client::raw(&d.dict).await;
    dict.send("H3\t2\t0\t\tauthdict\n").await;
    assert_eq!(
        dict.ask("Lshared/passdb/user@example.org\tuser@example.org\n")
            .await,
        "Fauthd: temporary lookup failure\n"
    );
    assert_eq!(
        dict.ask("I0\t0\tshared/userdb/\t*\n").await,
        "Fauthd: temporary lookup failure\n"
    );
    d.stop().await;
}

#[tokio::test]
async fn brute_force_blocks_the_ip_without_checking_the_password() {
    let d = start(
        "bruteforce_ip_failures = 3\nbruteforce_backoff = \"1h\"\nbruteforce_backoff_max = \"1h\"",
        None,
    )
    .await;
    let mut c = Client::auth(&d.auth).await;
    for id in 1..=3 {
        assert_eq!(
            c.ask(&auth_plain(id, "user@example.org", "wrong", true))
                .await,
            format!("FAIL\t{id}\tuser=user@example.org\n")
        );
    }
    assert_eq!(
        c.ask(&auth_plain(4, "user@example.org", PASSWORD, true))
            .await,
        "FAIL\t4\tuser=user@example.org\treason=Too many failed logins, try again later\n"
    );
    // Another IP is not affected.
    let other = auth_plain(5, "user@example.org", PASSWORD, true)
        .replace("rip=192.0.2.7", "rip=198.51.100.1");
    assert_eq!(c.ask(&other).await, "OK\t5\tuser=user@example.org\t\n");
    d.stop().await;
}

#[tokio::test]
async fn requests_on_one_connection_run_concurrently() {
    let d = start("auth_failure_delay = \"3s\"", None).await;
    let mut c = Client::auth(&d.auth).await;
    // A failure waits 3 s; a success sent after it must not wait for it.
    c.send(&auth_plain(1, "user@example.org", "wrong", true))
        .await;
    let started = std::time::Instant::now();
    assert_eq!(
        c.ask(&auth_plain(2, "user@example.org", PASSWORD, true))
            .await,
        "OK\t2\tuser=user@example.org\t\n"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(c.line().await, "FAIL\t1\tuser=user@example.org\n");
    d.stop().await;
}

#[tokio::test]
async fn failures_wait_auth_failure_delay() {
    let d = start("auth_failure_delay = \"2s\"", None).await;
    let mut c = Client::auth(&d.auth).await;
    // No database or hashing on this path (not an address), so the paused
    // clock only advances through our own timers.
    tokio::time::pause();
    let t0 = tokio::time::Instant::now();
    assert_eq!(
        c.ask(&auth_plain(1, "nobody", "x", true)).await,
        "FAIL\t1\tuser=nobody\n"
    );
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_millis(2100),
        "{waited:?}"
    );
    // Protocol-level refusals are immediate, as in Dovecot.
    let t0 = tokio::time::Instant::now();
    assert!(c.ask("CONT\t9\tAAAA\n").await.starts_with("FAIL\t9"));
    assert!(t0.elapsed() < Duration::from_millis(100));
    d.stop().await;
}

#[tokio::test]
async fn dict_passdb_userdb_iterate() {
    let d = start("home = \"/srv/mail/%d/%n\"", None).await;
    let mut c = Client::raw(&d.dict).await;
    c.send("H3\t2\t0\t\tauthdict\n").await;
    let pw = c
        .ask("Lshared/passdb/user@example.org\tuser@example.org\n")
        .await;
    assert!(pw.starts_with("O{\"password\":\"{SHA512-CRYPT}$6$"), "{pw}");
    assert_eq!(
        c.ask("Lshared/passdb/plain@example.org\tplain@example.org\n")
            .await,
        "O{\"password\":\"{PLAIN}secret\"}\n"
    );
    assert_eq!(
        c.ask("Lshared/passdb/disabled@example.org\tdisabled@example.org\n")
            .await,
        "N\n"
    );
    assert_eq!(c.ask("Lshared/passdb/nobody@example.org\n").await, "N\n");
    assert_eq!(
        c.ask("Lshared/userdb/User@Example.org\tUser@Example.org\n")
            .await,
        "O{\"gid\":5001,\"home\":\"/srv/mail/example.org/user\",\"quota_rule\":\"*:storage=2048M\",\"uid\":5000}\n"
    );
    assert_eq!(
        c.ask("Lshared/userdb/sendonly@example.org\tsendonly@example.org\n")
            .await,
        "N\n"
    );
    c.send("I0\t0\tshared/userdb/\t*\n").await;
    let rows = c.lines_until("").await;
    assert_eq!(
        rows,
        [
            "Oshared/userdb/disabled@example.org\t",
            "Oshared/userdb/plain@example.org\t",
            "Oshared/userdb/user@example.org\t",
            ""
        ]
    );
    // A key the contrib config never asks: our or the admin's mistake.
    assert_eq!(
        c.ask("Lshared/quota/user@example.org\n").await,
        "Fauthd: temporary lookup failure\n"
    );
    // Write commands are not ours: closed.
    c.send("Sshared/x\ty\n").await;
    assert_eq!(c.line().await, "");
    d.stop().await;
}

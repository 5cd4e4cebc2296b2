//! policyd in-process on a temp SQLite database: raw protocol clients and
//! the real `postmap` as peers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use postwerk_core::config::{Config, Secret};
use postwerk_core::db::{Account, Alias, Db, Policy, TlsPolicy};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

struct Daemon {
    dir: tempfile::TempDir,
    socket: PathBuf,
    tcp_aliases: u16,
    policy: u16,
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn fixture(db: &Db) {
    db.init_schema().await.unwrap();
    for d in ["example.org", "example.net", "xn--mller-kva.example"] {
        db.domain_add(d).await.unwrap();
    }
    let acct = |u: &str, d: &str, enabled: bool, sendonly: bool| Account {
        username: u.into(),
        domain: d.into(),
        password: Secret::new("{PLAIN}secret"),
        quota_mb: 0,
        enabled,
        sendonly,
    };
    db.account_add(&acct("user1", "example.org", true, false))
        .await
        .unwrap();
    db.account_add(&acct("user2", "example.org", true, false))
        .await
        .unwrap();
    db.account_add(&acct("noreply", "example.org", true, true))
        .await
        .unwrap();
    db.account_add(&acct("gone", "example.org", false, false))
        .await
        .unwrap();
    db.account_add(&acct("anna", "xn--mller-kva.example", true, false))
        .await
        .unwrap();
    let alias = |s: Option<&str>, sd: &str, du: &str, dd: &str| Alias {
        source_username: s.map(Into::into),
        source_domain: sd.into(),
        destination_username: du.into(),
        destination_domain: dd.into(),
        enabled: true,
    };
    db.alias_add(&alias(Some("alias"), "example.org", "user1", "example.org"))
        .await
        .unwrap();
    db.alias_add(&alias(Some("team"), "example.org", "user1", "example.org"))
        .await
        .unwrap();
    db.alias_add(&alias(
        Some("team"),
        "example.org",
        "friend",
        "foreign.example",
    ))
    .await
    .unwrap();
    db.alias_add(&alias(None, "example.net", "user2", "example.org"))
        .await
        .unwrap();
    db.tlspolicy_add(&TlsPolicy {
        domain: "gmx.de".into(),
        policy: Policy::Secure,
        params: Some("match=.gmx.net".into()),
    })
    .await
    .unwrap();
}

async fn start(extra: &str, database_url: Option<&str>) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}/vmail.db", dir.path().display());
    let setup = Db::connect_lazy(
        &postwerk_core::config::DatabaseConfig::from_url(&db_url).unwrap(),
        true,
    )
    .unwrap();
    fixture(&setup).await;
    setup.close().await;
    let socket = dir.path().join("policyd.sock");
    let (tcp_aliases, policy) = (free_port(), free_port());
    let text = format!(
        "[database]\nurl = \"{}\"\nacquire_timeout = \"1s\"\n[policyd]\nsocketmap_listen = [\"unix:{}\"]\ntcp_table_listen = [\"aliases=inet:127.0.0.1:{tcp_aliases}\"]\npolicy_listen = [\"inet:127.0.0.1:{policy}\"]\n{extra}",
        database_url.unwrap_or(&db_url),
        socket.display(),
    );
    let cfg = Config::parse(&text).unwrap();
    let listeners = postwerk_policyd::bind(&cfg).await.unwrap();
    let shared = postwerk_policyd::shared(&cfg).unwrap();
    let (_tx, rx) = tokio::sync::watch::channel(shared);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let limits = cfg.policyd.service.limits;
    let task = tokio::spawn(async move {
        let _keep = _tx;
        postwerk_policyd::run(limits, listeners, rx, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    Daemon {
        dir,
        socket,
        tcp_aliases,
        policy,
        stop: Some(stop),
        task: Some(task),
    }
}

async fn netstring_request(s: &mut UnixStream, payload: &str) -> String {
    s.write_all(format!("{}:{payload},", payload.len()).as_bytes())
        .await
        .unwrap();
    read_netstring(s).await.expect("a reply")
}

async fn read_netstring(s: &mut UnixStream) -> Option<String> {
    let mut len = Vec::new();
    loop {
        let mut b = [0u8; 1];
        if s.read(&mut b).await.unwrap() == 0 {
            return None;
        }
        if b[0] == b':' {
            break;
        }
        len.push(b[0]);
    }
    let n: usize = String::from_utf8(len).unwrap().parse().unwrap();
    let mut buf = vec![0u8; n + 1];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(buf.pop(), Some(b','));
    Some(String::from_utf8(buf).unwrap())
}

#[tokio::test]
async fn socketmap_answers_every_map_on_one_connection() {
    let d = start("", None).await;
    let mut s = UnixStream::connect(&d.socket).await.unwrap();
    let cases = [
        ("domains example.org", "OK example.org"),
        ("domains example.com", "NOTFOUND "),
        ("domains müller.example", "OK xn--mller-kva.example"),
        ("mailboxes user1@example.org", "OK 1"),
        ("mailboxes User1+Tag@Example.ORG", "OK 1"),
        ("mailboxes gone@example.org", "NOTFOUND "),
        ("mailboxes noreply@example.org", "OK 1"),
        ("accounts anna@müller.example", "OK 1"),
        ("aliases alias@example.org", "OK user1@example.org"),
        (
            "aliases alias+news@example.org",
            "OK user1+news@example.org",
        ),
        (
            "aliases team@example.org",
            "OK friend@foreign.example,user1@example.org",
        ),
        ("aliases anyone@example.net", "OK user2@example.org"),
        ("aliases user1@example.org", "NOTFOUND "),
        ("aliases example.org", "NOTFOUND "),
        ("recipient_access user1@example.org", "OK OK"),
        (
            "recipient_access noreply@example.org",
            "OK REJECT this account only sends mail and does not receive any",
        ),
        ("recipient-access nobody@example.org", "NOTFOUND "),
        ("sender_login alias@example.org", "OK user1@example.org"),
        (
            "sender-login-maps user1+x@example.org",
            "OK user1@example.org",
        ),
        ("tls_policy gmx.de", "OK secure match=.gmx.net"),
        ("tls-policy web.de", "NOTFOUND "),
        ("bogus x", "PERM unknown map name bogus"),
        ("domains key with space", "NOTFOUND "),
    ];
    for (req, want) in cases {
        assert_eq!(netstring_request(&mut s, req).await, want, "{req}");
    }
    d.stop().await;
}

#[tokio::test]
async fn socketmap_survives_one_byte_writes_and_closes_on_garbage() {
    let d = start("", None).await;
    let mut s = UnixStream::connect(&d.socket).await.unwrap();
    for b in b"25:aliases alias@example.org," {
        s.write_all(&[*b]).await.unwrap();
        s.flush().await.unwrap();
    }
    assert_eq!(
        read_netstring(&mut s).await.unwrap(),
        "OK user1@example.org"
    );
    // a request without a space gets PERM and the connection closes
    s.write_all(b"7:nospace,").await.unwrap();
    assert_eq!(
        read_netstring(&mut s).await.unwrap(),
        "PERM malformed request"
    );
    assert_eq!(read_netstring(&mut s).await, None);
    // an oversize declared length closes at once, before any payload
    let mut s = UnixStream::connect(&d.socket).await.unwrap();
    s.write_all(b"99999999:").await.unwrap();
    assert_eq!(read_netstring(&mut s).await, None);
    // and the daemon still serves
    let mut s = UnixStream::connect(&d.socket).await.unwrap();
    assert_eq!(
        netstring_request(&mut s, "domains example.org").await,
        "OK example.org"
    );
    d.stop().await;
}

#[tokio::test]
async fn database_down_answers_temp_never_notfound() {
    let d = start("", Some("mysql://root@127.0.0.1:9/vmail")).await;
    let mut s = UnixStream::connect(&d.socket).await.unwrap();
    assert_eq!(
        netstring_request(&mut s, "aliases alias@example.org").await,
        "TEMP temporary lookup failure"
    );
    assert_eq!(
        netstring_request(&mut s, "domains example.org").await,
        "TEMP temporary lookup failure"
    );
    let mut t = TcpStream::connect(("127.0.0.1", d.tcp_aliases))
        .await
        .unwrap();
    t.write_all(b"get alias@example.org\n").await.unwrap();
    let mut buf = vec![0u8; 100];
    let n = t.read(&mut buf).await.unwrap();
    assert!(
        buf[..n].starts_with(b"400 "),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    let reply = policy_request(
        d.policy,
        &[
            ("sender", "user1@example.org"),
            ("sasl_username", "user1@example.org"),
        ],
    )
    .await;
    assert_eq!(reply, "action=451 4.3.0 Temporary lookup failure");
    d.stop().await;
}

#[tokio::test]
async fn tcp_table_decodes_and_encodes() {
    let d = start("", None).await;
    let mut t = TcpStream::connect(("127.0.0.1", d.tcp_aliases))
        .await
        .unwrap();
    t.write_all(b"get team@example.org\nget nobody@example.org\nget x%40m%C3%BCller.example\n")
        .await
        .unwrap();
    let mut got = String::new();
    let mut buf = vec![0u8; 1000];
    while got.matches('\n').count() < 3 {
        let n = t.read(&mut buf).await.unwrap();
        assert!(n > 0);
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert_eq!(
        got,
        "200 friend@foreign.example,user1@example.org\n500 not%20found\n500 not%20found\n"
    );
    d.stop().await;
}

async fn policy_request(port: u16, attrs: &[(&str, &str)]) -> String {
    let mut t = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut req = String::from("request=smtpd_access_policy\nprotocol_state=RCPT\n");
    for (k, v) in attrs {
        req.push_str(&format!("{k}={v}\n"));
    }
    req.push('\n');
    t.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while !got.ends_with(b"\n\n") {
        let n = t.read(&mut buf).await.unwrap();
        assert!(n > 0, "connection closed");
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(got).unwrap().trim_end().to_owned()
}

#[tokio::test]
async fn policy_sender_login_and_rate_limit() {
    let d = start(
        "sender_login_check = \"all\"\n[policyd.ratelimit]\nmessages_per_hour = 2\n[[policyd.ratelimit.override]]\nmatch = \"user2@example.org\"\nmessages_per_hour = 100\n",
        None,
    )
    .await;
    let p = d.policy;
    // own address and alias: allowed; someone else's: rejected
    assert_eq!(
        policy_request(
            p,
            &[
                ("sender", "user1@example.org"),
                ("sasl_username", "user1@example.org"),
                ("instance", "a")
            ]
        )
        .await,
        "action=DUNNO"
    );
    assert_eq!(
        policy_request(
            p,
            &[
                ("sender", "Alias@Example.org"),
                ("sasl_username", "User1@example.org"),
                ("instance", "b")
            ]
        )
        .await,
        "action=DUNNO"
    );
    assert_eq!(
        policy_request(
            p,
            &[
                ("sender", "user2@example.org"),
                ("sasl_username", "user1@example.org"),
                ("instance", "c")
            ]
        )
        .await,
        "action=REJECT Sender address user2@example.org is not owned by user user1@example.org"
    );
    // unauthenticated use of an owned address is refused with "all"
    assert_eq!(
        policy_request(p, &[("sender", "user1@example.org"), ("instance", "d")]).await,
        "action=REJECT Sender address user1@example.org requires authentication"
    );
    // foreign senders and bounces pass
    assert_eq!(
        policy_request(p, &[("sender", "x@foreign.example"), ("instance", "e")]).await,
        "action=DUNNO"
    );
    assert_eq!(
        policy_request(p, &[("sender", ""), ("instance", "f")]).await,
        "action=DUNNO"
    );
    // user1 has sent two messages (a, b): the third is deferred
    let r = policy_request(
        p,
        &[
            ("sender", "user1@example.org"),
            ("sasl_username", "user1@example.org"),
            ("instance", "g"),
        ],
    )
    .await;
    assert!(r.starts_with("action=DEFER_IF_PERMIT Rate limit exceeded: user1@example.org may send at most 2 messages per hour"), "{r}");
    // the override lets user2 send more
    for i in 0..5 {
        let r = policy_request(
            p,
            &[
                ("sender", "user2@example.org"),
                ("sasl_username", "user2@example.org"),
                ("instance", &format!("u{i}")),
            ],
        )
        .await;
        assert_eq!(r, "action=DUNNO");
    }
    // other request types are ignored
    let mut t = TcpStream::connect(("127.0.0.1", p)).await.unwrap();
    t.write_all(b"request=junk\n\n").await.unwrap();
    let mut buf = [0u8; 64];
    let n = t.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"action=DUNNO\n\n");
    d.stop().await;
}

fn postmap_config(dir: &Path) -> PathBuf {
    let cfg = dir.join("postfix-etc");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::write(cfg.join("main.cf"), "compatibility_level = 3.6\n").unwrap();
    cfg
}

#[tokio::test]
async fn real_postmap_queries_every_map() {
    let d = start("", None).await;
    let cfg = postmap_config(d.dir.path());
    let sock = d.socket.display().to_string();
    let d = Arc::new(d);
    let cases: Vec<(&str, &str, Option<&str>)> = vec![
        ("domains", "example.org", Some("example.org")),
        ("domains", "example.com", None),
        ("mailboxes", "user1+tag@example.org", Some("1")),
        (
            "aliases",
            "team@example.org",
            Some("friend@foreign.example,user1@example.org"),
        ),
        ("aliases", "x@example.net", Some("user2@example.org")),
        ("aliases", "example.net", None),
        (
            "recipient_access",
            "noreply@example.org",
            Some("REJECT this account only sends mail and does not receive any"),
        ),
        (
            "sender_login",
            "alias@example.org",
            Some("user1@example.org"),
        ),
        ("tls_policy", "gmx.de", Some("secure match=.gmx.net")),
    ];
    for (map, key, want) in cases {
        let (cfg, sock) = (cfg.clone(), sock.clone());
        let out = tokio::task::spawn_blocking(move || {
            Command::new("postmap")
                .arg("-c")
                .arg(&cfg)
                .args(["-q", key, &format!("socketmap:unix:{sock}:{map}")])
                .output()
                .expect("postmap must be installed: run scripts/install-deps")
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        match want {
            Some(w) => {
                assert!(
                    out.status.success(),
                    "{map} {key}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                assert_eq!(stdout, w, "{map} {key}");
            }
            None => {
                assert_eq!(out.status.code(), Some(1), "{map} {key}");
                assert!(stdout.is_empty());
                assert!(
                    !String::from_utf8_lossy(&out.stderr).contains("fatal"),
                    "{map} {key}"
                );
            }
        }
    }
    // batch mode: one connection, several keys
    let out = tokio::task::spawn_blocking({
        let (cfg, sock) = (cfg.clone(), sock.clone());
        move || {
            let mut child = Command::new("postmap")
                .arg("-c")
                .arg(&cfg)
                .args(["-q", "-", &format!("socketmap:unix:{sock}:aliases")])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(b"alias@example.org\nnobody@example.org\nalias+x@example.org\n")
                .unwrap();
            child.wait_with_output().unwrap()
        }
    })
    .await
    .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "alias@example.org\tuser1@example.org\nalias+x@example.org\tuser1+x@example.org\n"
    );
    let _ = &d.tcp_aliases;
    if let Ok(d) = Arc::try_unwrap(d) {
        d.stop().await;
    }
}

#[tokio::test]
async fn cached_answers_follow_database_changes() {
    // The cache is on by default; a change is seen within the check interval.
    let d = start("cache_check_interval = \"100ms\"\n", None).await;
    let mut s = UnixStream::connect(&d.socket).await.unwrap();
    assert_eq!(
        netstring_request(&mut s, "mailboxes late@example.org").await,
        "NOTFOUND "
    );
    assert_eq!(
        netstring_request(&mut s, "aliases alias@example.org").await,
        "OK user1@example.org"
    );
    let url = format!("sqlite://{}/vmail.db", d.dir.path().display());
    let admin = Db::connect_lazy(
        &postwerk_core::config::DatabaseConfig::from_url(&url).unwrap(),
        false,
    )
    .unwrap();
    admin
        .account_add(&Account {
            username: "late".into(),
            domain: "example.org".into(),
            password: Secret::new("{PLAIN}x"),
            quota_mb: 0,
            enabled: true,
            sendonly: false,
        })
        .await
        .unwrap();
    admin
        .alias_del(Some("alias"), "example.org", None)
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let m = netstring_request(&mut s, "mailboxes late@example.org").await;
        let a = netstring_request(&mut s, "aliases alias@example.org").await;
        if m == "OK 1" && a == "NOTFOUND " {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "changes not seen: {m:?} {a:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    admin.close().await;
    d.stop().await;
}

//! Shared test fixture: a temp tree with a SQLite vmail database, the
//! guide's global Sieve script, and lmtpd running in-process.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use postwerk_core::config::{Config, DatabaseConfig, Secret};
use postwerk_core::db::{Account, Db};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

pub const SPAM_GLOBAL: &str = include_str!("../../testdata/spam-global.sieve");

pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub db_url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Daemon {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The Maildir root of `user@domain`.
    pub fn maildir(&self, user: &str, domain: &str) -> PathBuf {
        self.path()
            .join("mailboxes")
            .join(domain)
            .join(user)
            .join("mail")
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
    }

    /// Keeps the temp dir (printed) so a failing test can be inspected.
    pub fn keep(self) -> PathBuf {
        let p = self.dir.keep();
        eprintln!("kept temp dir {}", p.display());
        p
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Accounts: user1 (unlimited), user2, small (1 MB), noreply (send-only),
/// gone (disabled).
pub async fn fixture(db: &Db) {
    db.init_schema().await.unwrap();
    db.domain_add("example.org").await.unwrap();
    let hash =
        postwerk_core::password::hash(b"secret", postwerk_core::password::DEFAULT_SCHEME).unwrap();
    let acct = |u: &str, quota_mb: i64, enabled: bool, sendonly: bool| Account {
        username: u.into(),
        domain: "example.org".into(),
        password: Secret::new(hash.clone()),
        quota_mb,
        enabled,
        sendonly,
    };
    for a in [
        acct("user1", 0, true, false),
        acct("user2", 0, true, false),
        acct("small", 1, true, false),
        acct("noreply", 0, true, true),
        acct("gone", 0, false, false),
    ] {
        db.account_add(&a).await.unwrap();
    }
}

/// Starts lmtpd on 127.0.0.1 with `extra` appended to `[lmtpd]`.
pub async fn start(extra: &str, database_url: Option<&str>, mail_user: &str) -> Daemon {
    // The daemon's warnings (e.g. why a delivery got 451) go to stderr,
    // which the test runner shows when a test fails.
    let _ = postwerk_core::log::init("warn");
    let dir = tempfile::tempdir().unwrap();
    // Dovecot's imap process runs as vmail and must reach the mailboxes.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let db_url = format!("sqlite://{}/vmail.db", dir.path().display());
    let setup = Db::connect_lazy(&DatabaseConfig::from_url(&db_url).unwrap(), true).unwrap();
    fixture(&setup).await;
    setup.close().await;
    let global = dir.path().join("sieve/global");
    std::fs::create_dir_all(&global).unwrap();
    std::fs::write(global.join("spam-global.sieve"), SPAM_GLOBAL).unwrap();
    let port = free_port();
    let d = dir.path().display();
    let text = format!(
        "[database]\nurl = \"{}\"\nacquire_timeout = \"1s\"\n[lmtpd]\nlisten = [\"inet:127.0.0.1:{port}\"]\n\
         hostname = \"lmtpd.test\"\nmail_home = \"{d}/mailboxes/%d/%n\"\nmail_user = \"{mail_user}\"\n\
         sieve_before = [\"{d}/sieve/global/spam-global.sieve\"]\nsieve_script = \"{d}/sieve/%d/%n/active-script.sieve\"\n{extra}",
        database_url.unwrap_or(&db_url),
    );
    let cfg = Config::parse(&text).unwrap();
    let listeners = postwerk_lmtpd::bind(&cfg).await.unwrap();
    let shared = postwerk_lmtpd::shared(&cfg).unwrap();
    let (tx, rx) = tokio::sync::watch::channel(shared);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let limits = cfg.lmtpd.service.limits;
    let task = tokio::spawn(async move {
        let _keep = tx;
        postwerk_lmtpd::run(limits, listeners, rx, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    Daemon {
        dir,
        port,
        db_url,
        stop: Some(stop),
        task: Some(task),
    }
}

/// A raw LMTP client.
pub struct Client {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
}

impl Client {
    pub async fn connect(port: u16) -> Self {
        let s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (r, w) = s.into_split();
        let mut c = Client {
            r: BufReader::new(r),
            w,
        };
        let greeting = c.reply().await;
        assert!(greeting.starts_with("220 "), "{greeting}");
        c
    }

    /// Reads one (possibly multi-line) reply, lines joined with `\n`.
    pub async fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(20), self.r.read_line(&mut line))
                .await
                .expect("reply in time")
                .unwrap();
            assert!(n > 0, "connection closed; got so far: {all}");
            assert!(line.ends_with("\r\n"), "{line:?}");
            let line = line.trim_end().to_owned();
            let last = line.as_bytes().get(3) != Some(&b'-');
            all.push_str(&line);
            if last {
                return all;
            }
            all.push('\n');
        }
    }

    pub async fn send(&mut self, raw: &[u8]) {
        self.w.write_all(raw).await.unwrap();
    }

    pub async fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }

    /// LHLO, MAIL, the RCPTs (their replies returned), DATA, the message
    /// and the per-recipient replies.
    pub async fn transaction(
        &mut self,
        from: &str,
        rcpts: &[&str],
        msg: &str,
    ) -> (Vec<String>, Vec<String>) {
        let r = self.cmd(&format!("MAIL FROM:<{from}>")).await;
        assert!(r.starts_with("250 "), "{r}");
        let mut rcpt_replies = Vec::new();
        for to in rcpts {
            rcpt_replies.push(self.cmd(&format!("RCPT TO:<{to}>")).await);
        }
        let accepted = rcpt_replies.iter().filter(|r| r.starts_with("250")).count();
        let r = self.cmd("DATA").await;
        if accepted == 0 {
            assert!(r.starts_with("503"), "{r}");
            return (rcpt_replies, vec![]);
        }
        assert!(r.starts_with("354"), "{r}");
        let mut data = String::new();
        for line in msg.lines() {
            if line.starts_with('.') {
                data.push('.');
            }
            data.push_str(line);
            data.push_str("\r\n");
        }
        data.push_str(".\r\n");
        self.send(data.as_bytes()).await;
        let mut replies = Vec::new();
        for _ in 0..accepted {
            replies.push(self.reply().await);
        }
        (rcpt_replies, replies)
    }
}

/// Files in `<maildir>/new` and `<maildir>/cur`.
pub fn messages(maildir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        if let Ok(rd) = std::fs::read_dir(maildir.join(sub)) {
            out.extend(rd.map(|e| e.unwrap().path()));
        }
    }
    out.sort();
    out
}

/// Polls `connect` on a TCP port until it works or `deadline` passes.
pub fn wait_for_port(port: u16, deadline: Duration) -> bool {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

//! Fault injection (issue 11): what the guide's user cares about when the
//! database, Redis, the disk, DNS or a daemon itself fails under a real
//! Postfix. Each test asserts the promise: the peer is told "try again"
//! (never a bounce), and once the fault is gone every message accepted
//! arrives, exactly once.
//!
//! Outages are simulated per test, never by stopping the shared servers:
//! a [`TcpProxy`] between the daemons and MariaDB/Redis is cut, a private
//! tmpfs is filled, a test DNS port never answers, a daemon gets SIGKILL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use postwerk_tests::cli::Postwerk;
use postwerk_tests::daemon::{Daemon, Ready};
use postwerk_tests::db::TcpReader;
use postwerk_tests::exec::{poll_until, require, run};
use postwerk_tests::guide::Stack;
use postwerk_tests::load::{self, LmtpSession, SmtpSession};
use postwerk_tests::net::TcpProxy;
use postwerk_tests::postfix::{self, Maps};
use postwerk_tests::redis::RedisPrefix;
use postwerk_tests::smtp::{Client, Message};
use postwerk_tests::{Database, MariaDb, Postgres, Sqlite, TestDir};

const PASSWORD: &str = "fault-injection pass 7";

/// Domain example.org with mailboxes user1 and user2.
fn provision(db: &dyn Database) {
    let pw = Postwerk::new(&db.url());
    let stdin = format!("{PASSWORD}\n");
    pw.run(&["db", "init"], None);
    db.grant_readers();
    pw.run(&["domain", "add", "example.org"], None);
    for user in ["user1@example.org", "user2@example.org"] {
        pw.run(&["account", "add", user, "--password-stdin"], Some(&stdin));
    }
}

/// Our daemons (policyd for the maps, authd for SMTP AUTH and Dovecot's
/// passdb/userdb, lmtpd for delivery, optionally milterd), wired into a
/// private Postfix and Dovecot as the guide's replacements.
struct Mail {
    stack: Stack,
    policyd_config: String,
    authd_config: String,
    lmtpd_config: String,
    sockets: [PathBuf; 4],
    /// milterd's config and port, when it runs.
    milterd: Option<(String, u16)>,
}

/// Starts them: policyd and authd on `url`, lmtpd on `lmtpd_url` (the
/// same database, perhaps through another proxy), milterd when `milter_dns`
/// is given; `extra_main_cf` lines go to Postfix's main.cf.
fn start_mail(
    dir: &TestDir,
    db: &dyn Database,
    url: &str,
    lmtpd_url: &str,
    extra_main_cf: &[&str],
    milter_dns: Option<std::net::SocketAddr>,
) -> Mail {
    let policyd_sock = dir.join("policyd.sock");
    let (auth_sock, dict_sock) = (dir.join("authd-auth.sock"), dir.join("authd-dict.sock"));
    let lmtpd_sock = dir.join("lmtpd.sock");
    // Short database deadlines, so an outage answers within seconds.
    let database = format!("[database]\nurl = \"{url}\"\nacquire_timeout = \"2s\"\n");
    let policyd_config = format!(
        "{database}[policyd]\nsocketmap_listen = [\"unix:{}\"]\nsocket_mode = \"0666\"\nlookup_timeout = \"3s\"\n",
        policyd_sock.display()
    );
    let policyd = Daemon::start(
        dir,
        "postwerk-policyd",
        &policyd_config,
        &[Ready::Unix(policyd_sock.clone())],
    );
    let vmail = dir.join("vmail");
    let authd_config = format!(
        "{database}[authd]\nauth_listen = [\"unix:{}\"]\ndict_listen = [\"unix:{}\"]\nsocket_mode = \"0666\"\nhome = \"{}/mailboxes/%d/%n\"\n",
        auth_sock.display(),
        dict_sock.display(),
        vmail.display()
    );
    let authd = Daemon::start(
        dir,
        "postwerk-authd",
        &authd_config,
        &[
            Ready::Unix(auth_sock.clone()),
            Ready::Unix(dict_sock.clone()),
        ],
    );
    let mut config =
        postfix::Config::guide(Maps::socketmap(&format!("unix:{}", policyd_sock.display())));
    config.virtual_transport = format!("lmtp:unix:{}", lmtpd_sock.display());
    config.sasl_path = auth_sock.display().to_string();
    // One connection per smtpd process: smtpd caches address resolutions
    // (failures too) per process, and a client's retry must be asked anew.
    config.extra_main_cf = std::iter::once("max_use = 1")
        .chain(extra_main_cf.iter().copied())
        .map(str::to_owned)
        .collect();
    // milterd (verifying and signing) when a DNS server is given for it.
    let milterd = milter_dns.map(|dns| {
        let port = postwerk_tests::net::free_port();
        let text = format!(
            "[database]\nurl = \"{url}\"\n[milterd]\nlisten = [\"inet:127.0.0.1:{port}\"]\ndns_servers = [\"{dns}\"]\n"
        );
        config.milters = Some(format!("inet:127.0.0.1:{port}"));
        let d = Daemon::start(dir, "postwerk-milterd", &text, &[Ready::Tcp(port)]);
        (d, text, port)
    });
    let mut stack = Stack::start_full(dir, db, config, Some(dict_sock.clone()), Some(policyd));
    stack.authd = Some(authd);
    let milterd = milterd.map(|(d, text, port)| {
        stack.milterd = Some(d);
        (text, port)
    });
    assert_eq!(stack.dovecot.vmail_dir(), vmail);
    let database = format!("[database]\nurl = \"{lmtpd_url}\"\nacquire_timeout = \"2s\"\n");
    let lmtpd_config = format!(
        "{database}[lmtpd]\nlisten = [\"unix:{}\"]\nsocket_mode = \"0666\"\nhostname = \"mail.example.org\"\nmail_home = \"{}/mailboxes/%d/%n\"\n",
        lmtpd_sock.display(),
        vmail.display()
    );
    stack.lmtpd = Some(Daemon::start(
        dir,
        "postwerk-lmtpd",
        &lmtpd_config,
        &[Ready::Unix(lmtpd_sock.clone())],
    ));
    Mail {
        stack,
        policyd_config,
        authd_config,
        lmtpd_config,
        sockets: [policyd_sock, auth_sock, dict_sock, lmtpd_sock],
        milterd,
    }
}

impl Mail {
    fn mailboxes(&self) -> PathBuf {
        self.stack.dovecot.vmail_dir().join("mailboxes")
    }

    /// Flushes Postfix's queue until every id in `sent` is in a Maildir or
    /// `timeout` passes; then asserts each is there exactly once and
    /// nothing else is.
    #[track_caller]
    fn assert_delivered_exactly_once(&self, sent: &[String], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut found = load::message_ids(&self.mailboxes());
        while Instant::now() < deadline && !sent.iter().all(|id| found.contains_key(id)) {
            self.stack.postfix.flush();
            std::thread::sleep(Duration::from_secs(2));
            found = load::message_ids(&self.mailboxes());
        }
        let missing: Vec<_> = sent.iter().filter(|id| !found.contains_key(*id)).collect();
        assert!(
            missing.is_empty(),
            "{} of {} messages never arrived: {missing:?}\nqueue:\n{}",
            missing.len(),
            sent.len(),
            self.stack.postfix.queue_listing()
        );
        let twice: Vec<_> = found.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "delivered more than once: {twice:?}");
        let stray: Vec<_> = found.keys().filter(|id| !sent.contains(id)).collect();
        assert!(stray.is_empty(), "unexpected messages: {stray:?}");
    }

    /// Postfix bounced nothing and its queue is empty.
    #[track_caller]
    fn assert_nothing_bounced(&self) {
        let log = self.stack.postfix.maillog();
        let bounced: Vec<_> = log
            .lines()
            .filter(|l| l.contains("status=bounced") || l.contains("status=expired"))
            .collect();
        assert!(
            bounced.is_empty(),
            "Postfix bounced mail:\n{}",
            bounced.join("\n")
        );
        let ok = poll_until(Duration::from_secs(30), || {
            self.stack
                .postfix
                .queue_listing()
                .contains("Mail queue is empty")
        });
        assert!(
            ok,
            "queue not empty:\n{}",
            self.stack.postfix.queue_listing()
        );
    }
}

/// Sends `msg` on a new port-25 connection; `Ok` is the final reply.
fn send_inbound(port: u16, msg: &Message) -> Result<load::Reply, String> {
    let mut s = SmtpSession::connect(port, "client.example.net")?;
    let r = s.send(msg);
    s.quit();
    r
}

/// Sends until accepted (a client's retries), failing on any 5xx.
#[track_caller]
fn send_until_accepted(port: u16, msg: &Message, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        match send_inbound(port, msg) {
            Ok(r) if r.is_positive() => return,
            Ok(r) => {
                assert!(r.code < 500, "{}: permanent refusal {r}", msg.message_id);
                assert!(Instant::now() < deadline, "{}: still {r}", msg.message_id);
            }
            Err(e) => assert!(Instant::now() < deadline, "{}: {e}", msg.message_id),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Clears `defer_transports` and reloads Postfix, then flushes: the mail
/// held so far goes to lmtpd now.
fn release_deferred_transports(stack: &Stack) {
    let dir = stack.postfix.config_dir();
    for args in [&["-e", "defer_transports ="][..], &["reload"][..]] {
        let bin = if args[0] == "reload" {
            "postfix"
        } else {
            "postconf"
        };
        let out = run(
            std::process::Command::new(require(bin))
                .arg("-c")
                .arg(dir)
                .args(args),
            None,
            Duration::from_secs(30),
        );
        assert!(out.is_success(), "{out}");
    }
    stack.postfix.flush();
}

fn submission(stack: &Stack, user: &str) -> Client {
    stack.submission(user, PASSWORD)
}

/// The database goes away mid-traffic: the maps answer TEMP (Postfix says
/// 451 at RCPT), SMTP AUTH and IMAP logins fail temporarily, lmtpd answers
/// 451 for mail already queued (Postfix defers it). After the database
/// returns, every message arrives exactly once; nothing bounced.
#[test]
fn database_cut_mid_traffic_defers_and_every_message_arrives_once() {
    let dir = TestDir::new("faults-db-cut");
    let db = MariaDb::fresh();
    provision(&db);
    let reader = TcpReader::create(&db);
    database_cut(&dir, &db, "127.0.0.1:3306", &|p| reader.url_via(p));
}

/// The same on PostgreSQL (its errors are classified by other code).
#[test]
fn postgres_cut_mid_traffic_defers_and_every_message_arrives_once() {
    let dir = TestDir::new("faults-pg-cut");
    let db = Postgres::fresh();
    provision(&db);
    let vars: BTreeMap<_, _> = db.template_vars().into_iter().collect();
    let url = |p: &TcpProxy| {
        format!(
            "postgres://{}:{}@127.0.0.1:{}/{}",
            vars["db_user"], vars["db_password"], p.port, vars["db_name"]
        )
    };
    database_cut(&dir, &db, "127.0.0.1:5432", &url);
}

fn database_cut(
    dir: &TestDir,
    db: &dyn Database,
    server: &str,
    url_via: &dyn Fn(&TcpProxy) -> String,
) {
    // One proxy for the maps and SMTP AUTH, one for lmtpd: the outage is
    // the same, but with both cut Postfix cannot even resolve the queued
    // mail's domain and never reaches lmtpd; lmtpd's side comes back last
    // so that its own 451 is seen.
    let mut proxy = TcpProxy::start(server.parse().unwrap());
    let mut lmtpd_proxy = TcpProxy::start(server.parse().unwrap());
    // defer_transports holds queued mail, so that the test decides when
    // Postfix talks to lmtpd.
    let mail = start_mail(
        dir,
        db,
        &url_via(&proxy),
        &url_via(&lmtpd_proxy),
        &["defer_transports = lmtp"],
        None,
    );
    let port = mail.stack.postfix.smtp_port;
    let mut sent = Vec::new();

    // Before: accepted and queued.
    for i in 0..4 {
        let m = Message::new(
            "a@elsewhere.test",
            &["user1@example.org"],
            &format!("before {i}"),
        );
        let r = send_inbound(port, &m).unwrap();
        assert!(r.is_positive(), "before the cut: {r}");
        sent.push(m.message_id);
    }
    // Nothing before the cut involves user2: policyd and authd cache
    // answers, and the cut must hit lookups nobody has cached.
    let m = Message::new(
        "user1@example.org",
        &["user1@example.org"],
        "submitted before",
    );
    let t = submission(&mail.stack, "user1@example.org").send(&m);
    assert!(t.is_accepted(), "{t}");
    sent.push(m.message_id);
    assert!(load::message_ids(&mail.mailboxes()).is_empty());

    proxy.cut();
    lmtpd_proxy.cut();
    // Inbound: 451 at RCPT, never 5xx.
    let mut refused = Vec::new();
    for i in 0..2 {
        let m = Message::new(
            "b@elsewhere.test",
            &["user2@example.org"],
            &format!("during {i}"),
        );
        let r = send_inbound(port, &m).unwrap();
        assert_eq!(r.code, 451, "during the cut: {r}");
        refused.push(m);
    }
    // SMTP AUTH: authd answers FAIL with code=temp_fail. Postfix 3.7
    // ignores that code and says 535 (shared/reference/dovecot-auth-client.md),
    // so what the user sees is the neutral temporary reason, never the
    // answer to a wrong password.
    let m = Message::new(
        "user2@example.org",
        &["user1@example.org"],
        "submitted during",
    );
    let t = submission(&mail.stack, "user2@example.org").send(&m);
    assert!(!t.is_accepted(), "{t}");
    let temp = t.replies("454 4.7.0").len()
        + t.replies("535")
            .iter()
            .filter(|l| l.contains("Temporary authentication failure"))
            .count();
    assert!(
        temp > 0,
        "expected a temporary authentication failure:\n{t}"
    );
    let authd_log = mail.stack.authd.as_ref().unwrap().log();
    assert!(
        authd_log.contains("temp"),
        "authd did not log a temporary failure:\n{authd_log}"
    );
    // IMAP: Dovecot's passdb (authd's dict) fails temporarily, and Dovecot
    // says so ([UNAVAILABLE]) instead of "authentication failed".
    match mail.stack.imap.login("user2@example.org", PASSWORD) {
        Ok(_) => panic!("IMAP login succeeded with the database away"),
        Err(text) => assert!(
            text.contains("UNAVAILABLE") || text.contains("Temporary"),
            "IMAP login during the cut: {text}"
        ),
    }
    // Queued mail, the maps back but lmtpd's database still away: lmtpd
    // answers 451 for each recipient and Postfix defers.
    proxy.resume();
    release_deferred_transports(&mail.stack);
    let deferred = poll_until(Duration::from_secs(60), || {
        mail.stack
            .postfix
            .maillog()
            .lines()
            .filter(|l| {
                l.contains("postfix/lmtp[") && l.contains("status=deferred") && l.contains(" 451 ")
            })
            .count()
            >= 5
    });
    assert!(
        deferred,
        "no 451 deferrals from lmtpd:\n{}",
        mail.stack.postfix.maillog()
    );
    assert!(
        load::message_ids(&mail.mailboxes()).is_empty(),
        "delivered during the cut"
    );

    lmtpd_proxy.resume();
    for m in &refused {
        send_until_accepted(port, m, Duration::from_secs(60));
        sent.push(m.message_id.clone());
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let t = submission(&mail.stack, "user2@example.org").send(&Message {
            subject: "submitted after".into(),
            ..m.clone()
        });
        if t.is_accepted() {
            sent.push(m.message_id.clone());
            break;
        }
        assert!(
            t.replies("535")
                .iter()
                .all(|l| l.contains("Temporary authentication failure")),
            "a wrong-password answer after the outage:\n{t}"
        );
        assert!(
            Instant::now() < deadline,
            "submission does not recover:\n{t}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    mail.assert_delivered_exactly_once(&sent, Duration::from_secs(90));
    mail.assert_nothing_bounced();
    let lmtpd_log = mail.stack.lmtpd.as_ref().unwrap().log();
    assert!(
        lmtpd_log.contains("451"),
        "lmtpd did not log its 451:\n{lmtpd_log}"
    );
}

/// Redis goes away: the rate limit counts in policyd's process (as
/// documented in policyd/src/ratelimit.rs) and mail flows; the limit still
/// holds.
#[test]
fn redis_cut_rate_limit_counts_in_process_and_mail_flows() {
    let dir = TestDir::new("faults-redis-cut");
    let db = Sqlite::fresh(&dir);
    provision(&db);
    let redis = RedisPrefix::fresh();
    let mut proxy = TcpProxy::start("127.0.0.1:6379".parse().unwrap());
    let policy_socket = dir.join("policyd-policy.sock");
    let (daemon, socket) = postwerk_tests::guide::start_policyd(
        &dir,
        &db,
        &format!(
            "policy_listen = [\"unix:{}\"]\n[policyd.ratelimit]\nmessages_per_hour = 3\nredis_url = \"redis://127.0.0.1:{}\"\nredis_prefix = \"{}\"\n",
            policy_socket.display(),
            proxy.port,
            redis.prefix()
        ),
    );
    let mut config = postfix::Config::guide(Maps::socketmap(&format!("unix:{}", socket.display())));
    config.extra_main_cf = vec![
        "mynetworks = 127.0.0.1/32".to_owned(),
        format!(
            "smtpd_recipient_restrictions = check_policy_service unix:{}, check_recipient_access socketmap:unix:{}:recipient_access",
            policy_socket.display(),
            socket.display()
        ),
    ];
    let stack = Stack::start_with_config(&dir, &db, config, Some(daemon));
    let client = |user: &str| {
        let mut c = stack.submission(user, PASSWORD);
        c.source = Some("127.0.0.2".into());
        c
    };
    let send = |user: &str, subject: &str| {
        client(user).send(&Message::new(user, &["user2@example.org"], subject))
    };
    // With Redis: one message counted there.
    let t = send("user1@example.org", "with redis");
    assert!(t.is_accepted(), "{t}");
    assert!(!redis.keys().is_empty(), "nothing counted in Redis");

    proxy.cut();
    // Without Redis mail still flows...
    for i in 0..3 {
        let t = send("user1@example.org", &format!("without redis {i}"));
        assert!(t.is_accepted(), "message {i} without Redis:\n{t}");
    }
    // ...and the limit (3 per hour) holds in the process: deferred, never
    // rejected.
    let t = send("user1@example.org", "over the limit");
    assert!(!t.is_accepted(), "{t}");
    assert!(!t.replies("450 4.7.1").is_empty(), "{t}");
    let t = send("user2@example.org", "another sender");
    assert!(t.is_accepted(), "{t}");
    let log = stack.policyd.as_ref().unwrap().log();
    assert!(
        log.contains("counting in this process"),
        "no degradation logged:\n{log}"
    );

    proxy.resume();
    let t = send("user2@example.org", "redis back");
    assert!(t.is_accepted(), "{t}");
}

/// Mounts a tmpfs of `size` at `path`; unmounted on Drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let out = run(
            std::process::Command::new(require("mount"))
                .args([
                    "-t",
                    "tmpfs",
                    "-o",
                    &format!("size={size},mode=0755"),
                    "tmpfs",
                ])
                .arg(path),
            None,
            Duration::from_secs(10),
        );
        assert!(
            out.is_success(),
            "cannot mount a tmpfs (tests run as root):\n{out}"
        );
        Tmpfs(path.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = run(
            std::process::Command::new(require("umount"))
                .arg("-l")
                .arg(&self.0),
            None,
            Duration::from_secs(10),
        );
    }
}

/// Fills the filesystem at `path` to the last byte with one file.
fn fill(path: &Path) -> PathBuf {
    use std::io::Write;
    let f = path.join("filler");
    let mut file = std::fs::File::create(&f).unwrap();
    let block = vec![0u8; 64 * 1024];
    while file.write_all(&block).is_ok() {}
    let small = [0u8; 512];
    while file.write_all(&small).is_ok() {}
    while file.write_all(&[0]).is_ok() {}
    f
}

/// The mailboxes' filesystem is full: lmtpd answers 452 for the recipient,
/// leaves no partial file in new/, cur/ or tmp/, and delivers again once
/// there is space.
#[test]
fn disk_full_is_452_nothing_partial_and_delivery_resumes() {
    let dir = TestDir::new("faults-disk-full");
    let db = Sqlite::fresh(&dir);
    provision(&db);
    let mail_root = dir.join("mailroot");
    let _fs = Tmpfs::mount(&mail_root, "2m");
    let socket = dir.join("lmtpd.sock");
    let _lmtpd = Daemon::start(
        &dir,
        "postwerk-lmtpd",
        &format!(
            "[database]\nurl = \"{}\"\n[lmtpd]\nlisten = [\"unix:{}\"]\nhostname = \"mail.example.org\"\nmail_home = \"{}/%d/%n\"\n",
            db.reader_url(),
            socket.display(),
            mail_root.display()
        ),
        &[Ready::Unix(socket.clone())],
    );
    let mut lmtp = LmtpSession::connect(&socket).unwrap();
    let first = Message::new("a@elsewhere.test", &["user1@example.org"], "with space");
    let (rcpt, data) = lmtp.deliver(&first).unwrap();
    assert!(
        rcpt[0].is_positive() && data[0].is_positive(),
        "{rcpt:?} {data:?}"
    );
    let before = load::maildir_files(&mail_root);
    assert_eq!(before.len(), 1);

    let filler = fill(&mail_root);
    let mut big = Message::new("a@elsewhere.test", &["user1@example.org"], "disk full");
    big.body = format!("{}\n{}\n", "x".repeat(70), big.token).repeat(200);
    let (rcpt, data) = lmtp.deliver(&big).unwrap();
    assert!(rcpt[0].is_positive(), "{rcpt:?}");
    assert_eq!(data[0].code, 452, "disk full: {}", data[0]);
    assert!(data[0].lines[0].contains("4.3.1"), "{}", data[0]);
    assert_eq!(
        load::maildir_files(&mail_root),
        before,
        "a partial file is visible"
    );
    assert!(
        load::maildir_tmp_files(&mail_root).is_empty(),
        "left in tmp/: {:?}",
        load::maildir_tmp_files(&mail_root)
    );

    std::fs::remove_file(filler).unwrap();
    let (rcpt, data) = lmtp.deliver(&big).unwrap();
    assert!(
        rcpt[0].is_positive() && data[0].is_positive(),
        "{rcpt:?} {data:?}"
    );
    let ids = load::message_ids(&mail_root);
    assert_eq!(ids.get(&first.message_id), Some(&1));
    assert_eq!(ids.get(&big.message_id), Some(&1));
    let stored = load::maildir_files(&mail_root)
        .into_iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .find(|t| t.contains("Subject: disk full"))
        .unwrap();
    assert_eq!(
        stored.matches(&big.token).count(),
        200,
        "stored message is incomplete"
    );
}

/// Restarts a killed daemon on the same config and (stale) socket paths.
fn restart(dir: &TestDir, binary: &str, config: &str, sockets: &[&PathBuf]) -> Daemon {
    for s in sockets {
        assert!(s.exists(), "{} vanished", s.display());
    }
    let ready: Vec<_> = sockets.iter().map(|s| Ready::Unix((*s).clone())).collect();
    Daemon::start(dir, binary, config, &ready)
}

/// Each daemon gets SIGKILL while mail flows; Postfix retries, the daemon
/// restarts on its stale socket, and every accepted message arrives.
#[test]
fn kill_9_of_each_daemon_under_load_loses_nothing() {
    use nix::sys::signal::Signal;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let dir = TestDir::new("faults-kill9");
    let db = Sqlite::fresh(&dir);
    provision(&db);
    let dns = postwerk_tests::dns::Dns::start();
    let url = db.reader_url();
    let mut mail = start_mail(&dir, &db, &url, &url, &[], Some(dns.addr));
    let port = mail.stack.postfix.smtp_port;
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(Mutex::new(Vec::<String>::new()));
    let temp_refusals = Arc::new(Mutex::new(0usize));
    let sender = {
        let (stop, accepted, temp_refusals) =
            (stop.clone(), accepted.clone(), temp_refusals.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let to = if n % 2 == 0 {
                    "user1@example.org"
                } else {
                    "user2@example.org"
                };
                let m = Message::new("load@elsewhere.test", &[to], &format!("load {n}"));
                n += 1;
                match send_inbound(port, &m) {
                    Ok(r) if r.is_positive() => accepted.lock().unwrap().push(m.message_id),
                    Ok(r) => {
                        assert!(r.code < 500, "permanent refusal under kill -9: {r}");
                        *temp_refusals.lock().unwrap() += 1;
                    }
                    Err(_) => *temp_refusals.lock().unwrap() += 1,
                }
            }
        })
    };
    let wait_for_more = |n: usize| {
        let start = accepted.lock().unwrap().len();
        let ok = poll_until(Duration::from_secs(60), || {
            accepted.lock().unwrap().len() >= start + n
        });
        assert!(ok, "mail stopped flowing");
    };

    wait_for_more(5);
    let [policyd_sock, auth_sock, dict_sock, lmtpd_sock] = mail.sockets.clone();
    // lmtpd: Postfix's delivery in flight fails and is retried.
    mail.stack.lmtpd.as_ref().unwrap().signal(Signal::SIGKILL);
    wait_for_more(3);
    mail.stack.lmtpd = Some(restart(
        &dir,
        "postwerk-lmtpd",
        &mail.lmtpd_config,
        &[&lmtpd_sock],
    ));
    wait_for_more(5);
    // policyd: the maps answer nothing for a moment (451 at RCPT).
    mail.stack.policyd.as_ref().unwrap().signal(Signal::SIGKILL);
    std::thread::sleep(Duration::from_secs(1));
    mail.stack.policyd = Some(restart(
        &dir,
        "postwerk-policyd",
        &mail.policyd_config,
        &[&policyd_sock],
    ));
    wait_for_more(5);
    // authd: SMTP AUTH and Dovecot's userdb fail for a moment.
    mail.stack.authd.as_ref().unwrap().signal(Signal::SIGKILL);
    std::thread::sleep(Duration::from_secs(1));
    mail.stack.authd = Some(restart(
        &dir,
        "postwerk-authd",
        &mail.authd_config,
        &[&auth_sock, &dict_sock],
    ));
    wait_for_more(5);
    // milterd: Postfix's milter_default_action (the guide's `accept`)
    // applies while it is away.
    let (milterd_config, milter_port) = mail.milterd.clone().unwrap();
    mail.stack.milterd.as_ref().unwrap().signal(Signal::SIGKILL);
    std::thread::sleep(Duration::from_secs(1));
    mail.stack.milterd = Some(Daemon::start(
        &dir,
        "postwerk-milterd",
        &milterd_config,
        &[Ready::Tcp(milter_port)],
    ));
    wait_for_more(5);
    stop.store(true, Ordering::SeqCst);
    sender.join().unwrap();

    // Submission works against the restarted authd.
    let m = Message::new(
        "user1@example.org",
        &["user2@example.org"],
        "after the kills",
    );
    let t = submission(&mail.stack, "user1@example.org").send(&m);
    assert!(t.is_accepted(), "{t}");
    let mut sent = accepted.lock().unwrap().clone();
    sent.push(m.message_id);
    assert!(sent.len() >= 29, "too little traffic: {}", sent.len());
    // A delivery killed after lmtpd's fsync but before its 250 reached
    // Postfix is delivered again on retry (as with Dovecot); allow that
    // for lmtpd's kill only: at most one duplicate per killed session.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut found = load::message_ids(&mail.mailboxes());
    while Instant::now() < deadline && !sent.iter().all(|id| found.contains_key(id)) {
        mail.stack.postfix.flush();
        std::thread::sleep(Duration::from_secs(2));
        found = load::message_ids(&mail.mailboxes());
    }
    let missing: Vec<_> = sent.iter().filter(|id| !found.contains_key(*id)).collect();
    assert!(
        missing.is_empty(),
        "lost after kill -9: {missing:?}\n{}",
        mail.stack.postfix.queue_listing()
    );
    let twice: Vec<_> = found.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.len() <= 1, "duplicated: {twice:?}");
    mail.assert_nothing_bounced();
}

/// A DNS server that never answers (a UDP port nobody reads and a TCP
/// port that accepts and stays silent): milterd's verification gives up
/// within its budget, marks temperror, and Postfix's milter timeouts
/// (10 s here) never fire.
#[test]
fn dns_black_hole_is_temperror_within_budget_no_milter_timeout() {
    let dir = TestDir::new("faults-dns");
    let db = Sqlite::fresh(&dir);
    provision(&db);
    // Bound and never read: queries vanish.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let tcp = std::net::TcpListener::bind(udp.local_addr().unwrap());
    let dns_addr = udp.local_addr().unwrap();
    let milter_port = postwerk_tests::net::free_port();
    let milterd = Daemon::start(
        &dir,
        "postwerk-milterd",
        &format!(
            "[database]\nurl = \"{}\"\n[milterd]\nlisten = [\"inet:127.0.0.1:{milter_port}\"]\ndns_servers = [\"{dns_addr}\"]\ndns_timeout = \"1s\"\n[milterd.verify]\ntimeout = \"4s\"\n",
            db.reader_url()
        ),
        &[Ready::Tcp(milter_port)],
    );
    let mut config = postfix::Config::guide(Maps::sql(&dir, &db));
    config.milters = Some(format!("inet:127.0.0.1:{milter_port}"));
    config.extra_main_cf = vec![
        "milter_content_timeout = 10s".into(),
        "milter_command_timeout = 10s".into(),
        // A milter failure must not pass silently in this test.
        "milter_default_action = tempfail".into(),
    ];
    let mut stack = Stack::start_with_config(&dir, &db, config, None);
    stack.milterd = Some(milterd);
    let mut m = Message::new("someone@dns-down.test", &["user1@example.org"], "dns down");
    m.headers.push("DKIM-Signature: v=1; a=rsa-sha256; d=dns-down.test; s=sel; h=from; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=AAAA".into());
    let started = Instant::now();
    let r = send_inbound(stack.postfix.smtp_port, &m).unwrap();
    let took = started.elapsed();
    assert!(r.is_positive(), "{r}");
    assert!(
        took < Duration::from_secs(9),
        "took {took:?}: longer than the budget allows"
    );
    let (stored, _) = stack.read_back("user1@example.org", PASSWORD, "INBOX", &m);
    let ours: String = stored
        .split("\r\n")
        .skip_while(|l| !l.starts_with("Authentication-Results:"))
        .take_while(|l| !l.is_empty())
        .collect();
    assert!(ours.contains("temperror"), "no temperror in:\n{stored}");
    let log = stack.postfix.maillog();
    let timeouts: Vec<_> = log
        .lines()
        .filter(|l| l.contains("milter") && (l.contains("timeout") || l.contains("timed out")))
        .collect();
    assert!(
        timeouts.is_empty(),
        "a milter timeout fired:\n{}",
        timeouts.join("\n")
    );
    drop(tcp);
}

/// The same through Postfix: while the mailboxes' disk is full, Postfix
/// gets 452 from lmtpd and defers (no bounce); once space returns, a
/// flush delivers every message exactly once.
#[test]
fn disk_full_through_postfix_defers_then_delivers_once() {
    let dir = TestDir::new("faults-disk-full-postfix");
    let db = Sqlite::fresh(&dir);
    provision(&db);
    let url = db.reader_url();
    let mut mail = start_mail(&dir, &db, &url, &url, &[], None);
    // lmtpd again, delivering onto a small tmpfs.
    let mail_root = dir.join("mailroot");
    let _fs = Tmpfs::mount(&mail_root, "2m");
    let vmail = mail.stack.dovecot.vmail_dir().join("mailboxes");
    let config = mail.lmtpd_config.replace(
        &vmail.display().to_string(),
        &mail_root.display().to_string(),
    );
    assert_ne!(config, mail.lmtpd_config);
    assert!(mail.stack.lmtpd.take().unwrap().stop());
    mail.stack.lmtpd = Some(Daemon::start(
        &dir,
        "postwerk-lmtpd",
        &config,
        &[Ready::Unix(mail.sockets[3].clone())],
    ));

    let filler = fill(&mail_root);
    let port = mail.stack.postfix.smtp_port;
    let mut sent = Vec::new();
    for i in 0..3 {
        let m = Message::new(
            "a@elsewhere.test",
            &["user1@example.org"],
            &format!("full {i}"),
        );
        let r = send_inbound(port, &m).unwrap();
        assert!(r.is_positive(), "{r}");
        sent.push(m.message_id);
    }
    let deferred = poll_until(Duration::from_secs(60), || {
        mail.stack
            .postfix
            .maillog()
            .lines()
            .filter(|l| {
                l.contains("postfix/lmtp[") && l.contains("status=deferred") && l.contains(" 452 ")
            })
            .count()
            >= 3
    });
    assert!(
        deferred,
        "no 452 deferrals:\n{}",
        mail.stack.postfix.maillog()
    );
    assert!(
        load::maildir_files(&mail_root).is_empty(),
        "a partial file is visible"
    );

    std::fs::remove_file(filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut found = load::message_ids(&mail_root);
    while Instant::now() < deadline && !sent.iter().all(|id| found.contains_key(id)) {
        mail.stack.postfix.flush();
        std::thread::sleep(Duration::from_secs(2));
        found = load::message_ids(&mail_root);
    }
    for id in &sent {
        assert_eq!(found.get(id), Some(&1), "{id}: {found:?}");
    }
    assert_eq!(found.len(), sent.len(), "{found:?}");
    mail.assert_nothing_bounced();
}

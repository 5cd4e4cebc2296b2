//! policyd's SRS maps (issue 8) with the real Postfix and the real
//! PostSRSd:
//!
//! - a private Postfix with PostSRSd's main.cf lines, the socket changed to
//!   policyd: mail from a foreign sender forwarded by an alias to a foreign
//!   domain (a local `smtp-sink` as the foreign server) leaves with an
//!   SRS0 envelope sender; a bounce to that address is reversed and goes
//!   back to the original sender; mail of our own users is not rewritten; a
//!   forged SRS address is refused at RCPT with the reason;
//! - PostSRSd (Debian's 1.10, tcp tables) and policyd share a secret: each
//!   reverses the other's addresses.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use postwerk_tests::cli::Postwerk;
use postwerk_tests::exec::{poll_until, require};
use postwerk_tests::guide::{Stack, start_policyd};
use postwerk_tests::net::{free_port, wait_for_port};
use postwerk_tests::postfix::{self, Maps, postmap_socketmap};
use postwerk_tests::smtp::Message;
use postwerk_tests::{Database, Sqlite, TestDir};

const SECRET: &str = "correct-horse-srs";

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `smtp-sink` on a free port, appending every message with its envelope
/// (`X-Mail-Args:`, `X-Rcpt-Args:`) to a dump file.
fn start_sink(dir: &TestDir) -> (Killed, u16, std::path::PathBuf) {
    let port = free_port();
    // smtp-sink drops to `nobody` and writes one file per message, named
    // after the -D prefix: the directory must let it in and write.
    let _ = std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    );
    let sink_dir = dir.mkdir("sink", 0o777);
    let dump = sink_dir.join("msg");
    let child = Command::new(require("smtp-sink"))
        .args(["-u", "nobody", "-D"])
        .arg(&dump)
        .arg(format!("127.0.0.1:{port}"))
        .arg("20")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(port, Duration::from_secs(10)).unwrap();
    (Killed(child), port, dump)
}

/// Waits until the sink has a message containing `needle` and returns the
/// `X-Mail-Args:` / `X-Rcpt-Args:` lines of that message.
fn sunk(stack: &Stack, dump: &std::path::Path, needle: &str) -> String {
    let mut found = String::new();
    let ok = poll_until(Duration::from_secs(30), || {
        let text = dumped(dump);
        // Messages start with X-Client-Addr:.
        for msg in text.split("X-Client-Addr:") {
            if msg.contains(needle) {
                found = msg
                    .lines()
                    .filter(|l| l.starts_with("X-Mail-Args:") || l.starts_with("X-Rcpt-Args:"))
                    .collect::<Vec<_>>()
                    .join("\n");
                return true;
            }
        }
        false
    });
    assert!(
        ok,
        "no message with {needle} reached the foreign server:\n{}\nqueue: {}\nmaillog:\n{}",
        dumped(dump),
        stack.postfix.queue_listing(),
        stack.postfix.maillog()
    );
    found
}

/// Everything smtp-sink wrote with the -D prefix `dump`.
fn dumped(dump: &std::path::Path) -> String {
    let (Some(dir), Some(prefix)) = (dump.parent(), dump.file_name()) else {
        return String::new();
    };
    let prefix = prefix.to_string_lossy();
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&*prefix))
                .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                .collect::<Vec<_>>()
                .join("")
        })
        .unwrap_or_default()
}

/// A tcp_table query to PostSRSd 1.x: `200 value`, or `500 why`.
fn tcp_table(port: u16, key: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(format!("get {key}\n").as_bytes()).unwrap();
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).trim().to_owned()
}

/// policyd with `[policyd.srs]` (plus `extra` lines) and a Postfix config
/// on its maps that relays every foreign recipient to a fresh smtp-sink
/// (returned with its dump prefix).
fn start_srs(
    dir: &TestDir,
    db: &Sqlite,
    secret_file: &std::path::Path,
    extra: &str,
) -> (
    postwerk_tests::daemon::Daemon,
    std::path::PathBuf,
    postfix::Config,
    (Killed, std::path::PathBuf),
) {
    let (sink, sink_port, dump) = start_sink(dir);
    let (daemon, socket) = start_policyd(
        dir,
        db,
        &format!(
            "\n[policyd.srs]\ndomain = \"example.org\"\nsecret_file = \"{}\"\n{extra}",
            secret_file.display()
        ),
    );
    let mut config = postfix::Config::guide(Maps::socketmap(&format!("unix:{}", socket.display())));
    config.extra_main_cf = vec![
        format!("relayhost = [127.0.0.1]:{sink_port}"),
        "smtp_tls_security_level = may".to_owned(),
    ];
    (daemon, socket, config, (sink, dump))
}

/// Our domain, the account `user1@` (password `pw`) and the alias `fwd@`
/// to a foreign address; returns the SRS secret file.
fn provision(dir: &TestDir, db: &Sqlite) -> std::path::PathBuf {
    let pw = Postwerk::new(&db.url());
    pw.run(&["db", "init"], None);
    pw.run(&["domain", "add", "example.org"], None);
    pw.run(
        &["account", "add", "user1@example.org", "--password-stdin"],
        Some("pw\n"),
    );
    pw.run(
        &["alias", "add", "fwd@example.org", "friend@foreign.example"],
        None,
    );
    db.grant_readers();
    dir.write("srs.secret", format!("{SECRET}\n"), 0o600)
}

#[test]
fn forwarding_rewrites_foreign_senders_and_bounces_come_back() {
    let dir = TestDir::new("srs");
    let db = Sqlite::fresh(&dir);
    let secret_file = provision(&dir, &db);

    let (daemon, socket, mut config, sink) = start_srs(&dir, &db, &secret_file, "");
    let (_sink, dump) = (sink.0, sink.1);
    let sm = |map: &str| format!("socketmap:unix:{}:{map}", socket.display());
    config.extra_main_cf.extend([
        // PostSRSd's documented lines, with policyd's socket.
        format!("sender_canonical_maps = {}", sm("forward")),
        "sender_canonical_classes = envelope_sender".to_owned(),
        format!("recipient_canonical_maps = {}", sm("reverse")),
        "recipient_canonical_classes = envelope_recipient, header_recipient".to_owned(),
    ]);
    let stack = Stack::start_with_config(&dir, &db, config, Some(daemon));

    // Forwarded through the alias: the envelope sender becomes SRS0.
    let fwd = Message::new("alice@sender.example", &["fwd@example.org"], "forwarded");
    let t = stack.inbound().send(&fwd);
    assert!(t.is_accepted(), "{t}");
    let env = sunk(&stack, &dump, &fwd.token);
    assert!(
        env.contains("X-Rcpt-Args: <friend@foreign.example>"),
        "{env}"
    );
    let srs_sender = env
        .lines()
        .find_map(|l| l.strip_prefix("X-Mail-Args: <"))
        .and_then(|l| l.split('>').next())
        .unwrap()
        .to_owned();
    assert!(
        srs_sender.starts_with("SRS0=")
            && srs_sender.ends_with("=sender.example=alice@example.org"),
        "the forwarded mail's envelope sender: {env}"
    );

    // The foreign server bounces it: the bounce goes back to alice.
    let mut bounce = Message::new("", &[&srs_sender], "bounce");
    bounce.from = String::new();
    let t = stack.inbound().send(&bounce);
    assert!(t.is_accepted(), "the bounce to {srs_sender}:\n{t}");
    let env = sunk(&stack, &dump, &bounce.token);
    assert!(env.contains("X-Rcpt-Args: <alice@sender.example>"), "{env}");

    // A forged or altered SRS address is refused at RCPT with the reason.
    let forged = srs_sender.replacen(&srs_sender[5..9], "AAAA", 1);
    let t = stack
        .inbound()
        .send(&Message::new("", &[&forged], "forged bounce"));
    assert!(!t.is_accepted(), "{t}");
    assert!(
        t.replies("550")
            .iter()
            .any(|l| l.contains("invalid SRS signature")),
        "{t}"
    );

    // Senders of our own domains keep their address, forwarded or not.
    let own = Message::new("user1@example.org", &["fwd@example.org"], "own");
    let t = stack.inbound().send(&own);
    assert!(t.is_accepted(), "{t}");
    let env = sunk(&stack, &dump, &own.token);
    assert!(env.contains("X-Mail-Args: <user1@example.org>"), "{env}");
    assert_eq!(
        postmap_socketmap(&dir, &socket, "srs_forward", "user1@example.org"),
        None
    );

    // PostSRSd and policyd with the same secret reverse each other.
    let fport = free_port();
    let rport = free_port();
    let postsrsd = Killed(
        Command::new(require("postsrsd"))
            .arg(format!("-s{}", secret_file.display()))
            .args(["-dexample.org", "-l127.0.0.1", "-4"])
            .arg(format!("-f{fport}"))
            .arg(format!("-r{rport}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(rport, Duration::from_secs(10)).unwrap();
    let theirs = tcp_table(fport, "bob@elsewhere.example");
    let theirs = theirs.strip_prefix("200 ").expect(&theirs).to_owned();
    assert_eq!(
        postmap_socketmap(&dir, &socket, "srs_reverse", &theirs).as_deref(),
        Some("bob@elsewhere.example"),
        "policyd reverses PostSRSd's {theirs}"
    );
    assert_eq!(
        postmap_socketmap(&dir, &socket, "srs_forward", "bob@elsewhere.example").as_deref(),
        Some(theirs.as_str()),
        "same secret, same day: the same address"
    );
    assert_eq!(
        tcp_table(rport, &srs_sender),
        "200 alice@sender.example",
        "PostSRSd reverses policyd's {srs_sender}"
    );
    drop(postsrsd);
}

/// With `srs_transport` and the reinjection service of
/// `contrib/postfix/master.cf.srs`, only mail that leaves for a foreign
/// domain is rewritten: forwarded mail gets the SRS0 sender, mail a local
/// mailbox receives keeps its Return-Path.
#[test]
fn only_forwarded_mail_is_rewritten_through_the_reinjection_service() {
    let dir = TestDir::new("srs-reinject");
    let db = Sqlite::fresh(&dir);
    let secret_file = provision(&dir, &db);

    let reinject_port = free_port();
    let (daemon, socket, mut config, sink) = start_srs(
        &dir,
        &db,
        &secret_file,
        &format!("reinject = \"smtp:[127.0.0.1]:{reinject_port}\"\n"),
    );
    let (_sink, dump) = (sink.0, sink.1);
    let sm = |map: &str| format!("socketmap:unix:{}:{map}", socket.display());
    config.extra_main_cf.extend([
        format!(
            "sender_dependent_default_transport_maps = {}",
            sm("srs_transport")
        ),
        format!("recipient_canonical_maps = {}", sm("srs_reverse")),
        "recipient_canonical_classes = envelope_recipient, header_recipient".to_owned(),
    ]);
    // contrib/postfix/master.cf.srs, with a free port.
    let master = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/postfix/master.cf.srs"),
    )
    .unwrap()
    .replace("127.0.0.1:10027", &format!("127.0.0.1:{reinject_port}"))
    .replace(
        "unix:private/policyd",
        &format!("unix:{}", socket.display()),
    );
    config.extra_master_cf = vec![master];
    let stack = Stack::start_with_config(&dir, &db, config, Some(daemon));

    let fwd = Message::new("alice@sender.example", &["fwd@example.org"], "forwarded");
    assert!(stack.inbound().send(&fwd).is_accepted());
    let env = sunk(&stack, &dump, &fwd.token);
    assert!(
        env.contains("X-Rcpt-Args: <friend@foreign.example>"),
        "{env}"
    );
    assert!(
        env.contains("X-Mail-Args: <SRS0=") && env.contains("=sender.example=alice@example.org>"),
        "forwarded mail leaves with an SRS sender: {env}"
    );

    let local = Message::new("alice@sender.example", &["user1@example.org"], "local");
    assert!(stack.inbound().send(&local).is_accepted());
    match stack.imap.fetch(
        "user1@example.org",
        "pw",
        "INBOX",
        &local.message_id,
        Duration::from_secs(30),
    ) {
        postwerk_tests::imap::Fetch::Found { message, .. } => assert!(
            message.contains("Return-Path: <alice@sender.example>"),
            "local delivery keeps the sender:\n{message}"
        ),
        other => panic!(
            "the local message did not arrive: {other:?}\n{}",
            stack.postfix.maillog()
        ),
    }
}

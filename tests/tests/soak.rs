//! Soak (issue 11): mixed traffic for a bounded time through a private
//! Postfix into all four daemons (policyd answers the maps, milterd
//! verifies and signs, lmtpd delivers, authd checks SMTP AUTH and Dovecot's
//! IMAP logins). Asserts that every Message-ID sent is found exactly once
//! in the Maildirs, that each daemon's RSS at the end is within 10 % of
//! its RSS after warm-up, and that no daemon's open file descriptors grew.
//!
//! `POSTWERK_SOAK_SECONDS` sets the duration (default 120, as in CI). The
//! long run, with its figures written to a results file:
//!
//! ```sh
//! POSTWERK_SOAK_SECONDS=1200 POSTWERK_SOAK_RESULTS=tests/results/soak.md \
//!     cargo test -p postwerk-tests --test soak -- --nocapture
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use postwerk_tests::cli::Postwerk;
use postwerk_tests::daemon::{Daemon, Ready};
use postwerk_tests::dns::Dns;
use postwerk_tests::exec::poll_until;
use postwerk_tests::guide::{Stack, lmtpd_socket, start_authd, start_lmtpd, start_policyd};
use postwerk_tests::imap::Fetch;
use postwerk_tests::load::{self, SmtpSession};
use postwerk_tests::postfix::{self, Maps};
use postwerk_tests::smtp::Message;
use postwerk_tests::{Database, MariaDb, TestDir};

/// Client connections of Postfix processes a daemon may hold open at the
/// end beyond those at warm-up (see the fd check).
const FD_SLACK: usize = 4;

const PASSWORD: &str = "soak pass 2026";
const USERS: [&str; 3] = [
    "user1@example.org",
    "user2@example.org",
    "user3@example.org",
];

fn provision(db: &dyn Database) {
    let pw = Postwerk::new(&db.url());
    let stdin = format!("{PASSWORD}\n");
    pw.run(&["db", "init"], None);
    db.grant_readers();
    pw.run(&["domain", "add", "example.org"], None);
    for user in USERS {
        pw.run(&["account", "add", user, "--password-stdin"], Some(&stdin));
    }
    pw.run(
        &["alias", "add", "team@example.org", "user3@example.org"],
        None,
    );
}

/// RSS (KiB) and open fds of each daemon.
type Sample = BTreeMap<&'static str, (u64, usize)>;

fn sample(stack: &Stack) -> Sample {
    let mut out = BTreeMap::new();
    for (name, d) in [
        ("policyd", &stack.policyd),
        ("authd", &stack.authd),
        ("lmtpd", &stack.lmtpd),
        ("milterd", &stack.milterd),
    ] {
        let pid = d.as_ref().and_then(Daemon::pid).expect("daemon running");
        out.insert(
            name,
            (
                load::rss_kib(pid).expect("RSS from /proc"),
                load::fd_count(pid).expect("fds from /proc"),
            ),
        );
    }
    out
}

/// [`sample`] once the daemons are idle: Postfix keeps LMTP and socketmap
/// connections open for a few seconds after the last use, so wait until
/// every daemon's fd count has held still for 3 s (at most 30 s).
fn settled_sample(stack: &Stack) -> Sample {
    let mut last = sample(stack);
    let mut still_since = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && still_since.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(500));
        let now = sample(stack);
        let fds = |s: &Sample| s.values().map(|v| v.1).collect::<Vec<_>>();
        if fds(&now) != fds(&last) {
            still_since = Instant::now();
        }
        last = now;
    }
    last
}

/// Waits until every message in `sent` is in a Maildir and Postfix's
/// queue is empty; returns how often each Message-ID was found.
fn quiesce(stack: &Stack, sent: &[String]) -> BTreeMap<String, usize> {
    let root = stack.dovecot.vmail_dir().join("mailboxes");
    let mut found = BTreeMap::new();
    let done = poll_until(Duration::from_secs(180), || {
        found = load::message_ids(&root);
        sent.iter().all(|id| found.contains_key(id))
            && stack
                .postfix
                .queue_listing()
                .contains("Mail queue is empty")
    });
    if !done {
        stack.postfix.flush();
        found = load::message_ids(&root);
    }
    found
}

#[test]
fn mixed_traffic_soak_loses_nothing_and_stays_flat() {
    let seconds: u64 = std::env::var("POSTWERK_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    let dir = TestDir::new("soak");
    let db = MariaDb::fresh();
    provision(&db);
    let dns = Dns::start();
    dns.txt("example.org", "v=spf1 ip4:127.0.0.1 -all");

    let (policyd, map_socket) = start_policyd(&dir, &db, "");
    let mut config =
        postfix::Config::guide(Maps::socketmap(&format!("unix:{}", map_socket.display())));
    config.virtual_transport = format!("lmtp:unix:{}", lmtpd_socket(&dir).display());
    let (authd, auth, dict) = start_authd(&dir, &db, &dir.join("vmail"));
    config.sasl_path = auth.display().to_string();
    let milter_port = postwerk_tests::net::free_port();
    let milterd = Daemon::start(
        &dir,
        "postwerk-milterd",
        &format!(
            "[database]\nurl = \"{}\"\n[milterd]\nlisten = [\"inet:127.0.0.1:{milter_port}\"]\ndns_servers = [\"{}\"]\n",
            db.reader_url(),
            dns.addr
        ),
        &[Ready::Tcp(milter_port)],
    );
    config.milters = Some(format!("inet:127.0.0.1:{milter_port}"));
    let mut stack = Stack::start_full(&dir, &db, config, Some(dict), Some(policyd));
    stack.authd = Some(authd);
    stack.milterd = Some(milterd);
    stack.lmtpd = Some(start_lmtpd(&dir, &db, stack.dovecot.vmail_dir()));

    let started = Instant::now();
    let warm_up = Duration::from_secs(seconds / 5);
    let end = started + Duration::from_secs(seconds);
    let mut sent: Vec<String> = Vec::new();
    let mut refused = Vec::new();
    let mut temp_refused: Vec<(Message, String)> = Vec::new();
    let mut warm: Option<Sample> = None;
    let mut round = 0u64;
    let port = stack.postfix.smtp_port;
    while Instant::now() < end {
        round += 1;
        // Ten messages from another server on one connection, to the
        // mailboxes and the alias.
        let mut s = SmtpSession::connect(port, "client.example.net").unwrap();
        for i in 0..10 {
            let to = ["user1@example.org", "user2@example.org", "team@example.org"][i % 3];
            let mut m = Message::new("sender@elsewhere.test", &[to], &format!("soak {round}.{i}"));
            if i % 4 == 0 {
                // Some dot-stuffing and a longer body.
                m.body = format!(
                    "{}\n.leading dot\n..two\n{}\n",
                    "line\n".repeat(200),
                    m.token
                );
            }
            match s.send(&m).unwrap() {
                r if r.is_positive() => sent.push(m.message_id),
                r if r.code < 500 => temp_refused.push((m, r.to_string())),
                r => refused.push(format!("{}: {r}", m.message_id)),
            }
        }
        s.quit();
        // Every third round: a user submits (authd's SMTP AUTH, milterd
        // signs) and another reads over IMAP (Dovecot → authd's dict).
        if round.is_multiple_of(3) {
            let from = USERS[(round as usize) % 3];
            let m = Message::new(from, &["user1@example.org"], &format!("submitted {round}"));
            let t = stack.submission(from, PASSWORD).send(&m);
            if t.is_accepted() {
                sent.push(m.message_id);
            } else if t.replies("5").is_empty() && !t.replies("4").is_empty() {
                temp_refused.push((m, t.to_string()));
            } else {
                refused.push(format!("submission {}: {t}", m.message_id));
            }
            if let Some(id) = sent.first() {
                match stack.imap.fetch(
                    "user2@example.org",
                    PASSWORD,
                    "INBOX",
                    id,
                    Duration::from_secs(1),
                ) {
                    Fetch::LoginFailed(e) => panic!("IMAP login failed during the soak: {e}"),
                    Fetch::Found { .. } | Fetch::NotFound(_) => {}
                }
            }
        }
        if warm.is_none() && started.elapsed() >= warm_up {
            quiesce(&stack, &sent);
            warm = Some(settled_sample(&stack));
        }
    }
    // A temporary refusal (4xx) is the client's to retry, as another MTA
    // would; a permanent one fails the soak.
    let mut retried = 0;
    for (m, first) in std::mem::take(&mut temp_refused) {
        let deadline = Instant::now() + Duration::from_secs(120);
        let outcome = loop {
            let r = SmtpSession::connect(port, "client.example.net").and_then(|mut s| {
                let r = s.send(&m);
                s.quit();
                r
            });
            match r {
                Ok(r) if r.is_positive() => break Ok(()),
                Ok(r) if r.code >= 500 => break Err(r.to_string()),
                other if Instant::now() > deadline => {
                    break Err(format!("still refused ({other:?}); first {first}"));
                }
                _ => std::thread::sleep(Duration::from_secs(1)),
            }
        };
        match outcome {
            Ok(()) => {
                retried += 1;
                sent.push(m.message_id);
            }
            Err(e) => refused.push(format!("{}: {e}", m.message_id)),
        }
    }
    let found = quiesce(&stack, &sent);
    let last = settled_sample(&stack);
    let warm = warm.expect("the soak is longer than its warm-up");

    let missing: Vec<_> = sent.iter().filter(|id| !found.contains_key(*id)).collect();
    let dup: Vec<_> = found.iter().filter(|(_, n)| **n > 1).collect();
    let mut report = format!(
        "soak of {seconds} s: sent {}, delivered {}, lost {}, duplicated {}, \
         temporarily refused and retried {retried}, refused {}\n\n\
         | daemon | RSS after warm-up (KiB) | RSS at end (KiB) | fds after warm-up | fds at end |\n\
         |---|---|---|---|---|\n",
        sent.len(),
        sent.len() - missing.len(),
        missing.len(),
        dup.len(),
        refused.len()
    );
    for (name, (rss, fds)) in &warm {
        let (rss_end, fds_end) = last[name];
        report.push_str(&format!(
            "| {name} | {rss} | {rss_end} | {fds} | {fds_end} |\n"
        ));
    }
    println!("{report}");
    if let Ok(path) = std::env::var("POSTWERK_SOAK_RESULTS") {
        std::fs::write(&path, &report).unwrap_or_else(|e| panic!("{path}: {e}"));
    }

    assert!(refused.is_empty(), "refused during the soak: {refused:#?}");
    assert!(
        sent.len() >= 30,
        "too little traffic to mean anything: {}",
        sent.len()
    );
    assert!(
        missing.is_empty(),
        "lost: {missing:?}\n{}",
        stack.postfix.queue_listing()
    );
    assert!(dup.is_empty(), "duplicated: {dup:?}");
    for (name, (rss, fds)) in &warm {
        let (rss_end, fds_end) = last[name];
        assert!(
            rss_end * 10 <= rss * 11,
            "{name}: RSS grew from {rss} KiB to {rss_end} KiB (more than 10 %)\n{report}"
        );
        // Postfix's long-lived processes (trivial-rewrite, cleanup, qmgr)
        // keep a few client connections open for as long as they live, so
        // the count at any moment varies by the connections that happen to
        // be open; a leak grows with the traffic (thousands of messages).
        assert!(
            fds_end <= *fds + FD_SLACK,
            "{name}: fds grew from {fds} to {fds_end} (more than {FD_SLACK} open client connections)\n{report}"
        );
    }
}

//! The real `postwerk-lmtpd` binary, killed with SIGKILL in the middle of a
//! burst of deliveries from 4 connections: every message that got its
//! `250` is in the mailbox exactly once and complete, no partial message is
//! visible in `new/`, and the daemon starts again on the same tree.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{free_port, messages, wait_for_port};
use postwerk_core::config::DatabaseConfig;
use postwerk_core::db::Db;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn spawn(config: &Path, log: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_postwerk-lmtpd"))
        .env("POSTWERK_ALLOW_ROOT", "1")
        .arg("--config")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

fn reply(r: &mut BufReader<TcpStream>) -> Option<String> {
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line.as_bytes().get(3) != Some(&b'-') {
            return Some(line.trim_end().to_owned());
        }
    }
}

/// Sends messages until the connection dies; returns the subjects that
/// got `250` after DATA.
fn burst(port: u16, t: usize, count: usize, acked: Arc<AtomicUsize>) -> Vec<String> {
    let mut ok = Vec::new();
    let Ok(s) = TcpStream::connect(("127.0.0.1", port)) else {
        return ok;
    };
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    if reply(&mut r).is_none() || w.write_all(b"LHLO burst\r\n").is_err() || reply(&mut r).is_none()
    {
        return ok;
    }
    let body = "x".repeat(76);
    for i in 0..count {
        let subject = format!("burst-{t}-{i}");
        let mut msg =
            String::from("MAIL FROM:<a@remote.test>\r\nRCPT TO:<user1@example.org>\r\nDATA\r\n");
        if w.write_all(msg.as_bytes()).is_err() {
            return ok;
        }
        for _ in 0..3 {
            match reply(&mut r) {
                Some(l) if l.starts_with('2') || l.starts_with('3') => {}
                _ => return ok,
            }
        }
        msg = format!("Subject: {subject}\r\n\r\n");
        for _ in 0..200 {
            msg.push_str(&body);
            msg.push_str("\r\n");
        }
        msg.push_str("END-OF-MESSAGE\r\n.\r\n");
        if w.write_all(msg.as_bytes()).is_err() {
            return ok;
        }
        match reply(&mut r) {
            Some(l) if l.starts_with("250 ") => {
                ok.push(subject);
                acked.fetch_add(1, Ordering::Relaxed);
            }
            _ => return ok,
        }
    }
    ok
}

#[test]
fn kill_9_mid_burst_loses_no_acknowledged_message() {
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}/vmail.db", dir.path().display());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let db = Db::connect_lazy(&DatabaseConfig::from_url(&db_url).unwrap(), true).unwrap();
        common::fixture(&db).await;
        db.close().await;
    });
    let port = free_port();
    let d = dir.path().display();
    let config = dir.path().join("postwerk.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"{db_url}\"\n[log]\nlevel = \"info\"\n[lmtpd]\nlisten = [\"inet:127.0.0.1:{port}\"]\n\
             mail_home = \"{d}/mailboxes/%d/%n\"\nmail_user = \"root\"\nsieve_before = []\n\
             sieve_script = \"{d}/sieve/%d/%n/active-script.sieve\"\n"
        ),
    )
    .unwrap();
    let log = dir.path().join("lmtpd.log");
    let mut child = spawn(&config, &log);
    assert!(
        wait_for_port(port, Duration::from_secs(20)),
        "lmtpd did not listen:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    let acked = Arc::new(AtomicUsize::new(0));
    let all: Arc<Mutex<Vec<String>>> = Arc::default();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (acked, all) = (acked.clone(), all.clone());
            std::thread::spawn(move || {
                let ok = burst(port, t, 300, acked);
                all.lock().unwrap().extend(ok);
            })
        })
        .collect();
    // Kill once deliveries are flowing (bounded wait: 60 s).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while acked.load(Ordering::Relaxed) < 40 && std::time::Instant::now() < deadline {
        std::thread::yield_now();
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    for t in threads {
        t.join().unwrap();
    }
    let acknowledged = all.lock().unwrap().clone();
    assert!(
        acknowledged.len() >= 40,
        "only {} deliveries before the kill",
        acknowledged.len()
    );

    let root = dir.path().join("mailboxes/example.org/user1/mail");
    let mut seen = std::collections::HashMap::new();
    for f in messages(&root) {
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(
            text.ends_with("END-OF-MESSAGE\n"),
            "partial message visible: {}",
            f.display()
        );
        let name = f.file_name().unwrap().to_str().unwrap();
        assert!(name.contains(&format!(",S={},", text.len())), "{name}");
        let subject = text
            .lines()
            .find_map(|l| l.strip_prefix("Subject: "))
            .unwrap()
            .to_owned();
        *seen.entry(subject).or_insert(0) += 1;
    }
    for s in &acknowledged {
        assert_eq!(
            seen.get(s),
            Some(&1),
            "acknowledged {s} is not stored exactly once"
        );
    }
    assert!(seen.values().all(|&n| n == 1));

    // It starts again on the same tree and delivers.
    let mut child = spawn(&config, &log);
    assert!(
        wait_for_port(port, Duration::from_secs(20)),
        "lmtpd did not restart"
    );
    let again = burst(port, 9, 20, Arc::new(AtomicUsize::new(0)));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(again.len(), 20);
}

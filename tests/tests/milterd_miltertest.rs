//! postwerk-milterd driven by OpenDKIM's miltertest (issue 6): every
//! `tests/miltertest/*.lua` script runs against one milterd (SQLite
//! database with `example.org`, the account `user1@`, an RSA key; a test
//! DNS server, so incoming verification never leaves the machine). The
//! test fails if any script fails, and names it with its output.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use postwerk_tests::cli::Postwerk;
use postwerk_tests::daemon::{Daemon, Ready};
use postwerk_tests::exec::{require, run};
use postwerk_tests::net::free_port;
use postwerk_tests::{Database, Sqlite, TestDir};

fn scripts_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("miltertest")
}

#[test]
fn miltertest_scripts_pass_against_milterd() {
    let dir = TestDir::new("milterd-miltertest");
    let db = Sqlite::fresh(&dir);
    let dns = postwerk_tests::dns::Dns::start();
    let keys = dir.mkdir("dkim", 0o750);
    let port = free_port();
    let config = format!(
        "[database]\nurl = \"{}\"\n\n[milterd]\nlisten = [\"inet:127.0.0.1:{port}\"]\nmax_headers = 2000\ndns_servers = [\"{}\"]\ndns_timeout = \"2s\"\n\n[milterd.dkim]\nselector = \"mt2026\"\npath = \"{}/$domain.$selector.key\"\n\n[milterd.verify]\nauthserv_id = \"mail.example.org\"\n\n[milterd.spam]\nenabled = false\n",
        db.reader_url(),
        dns.addr,
        keys.display()
    );
    let config_path = dir.write("postwerk.toml", &config, 0o644);
    let pw = Postwerk::new(&db.url()).with_config(config_path);
    for args in [
        &["db", "init"][..],
        &["domain", "add", "example.org"],
        &["account", "add", "user1@example.org", "--password-stdin"],
        &[
            "dkim",
            "keygen",
            "--domain",
            "example.org",
            "--selector",
            "mt2026",
        ],
    ] {
        pw.run(args, Some("pw\n"));
    }
    db.grant_readers();
    let mut milterd = Daemon::start(&dir, "postwerk-milterd", &config, &[Ready::Tcp(port)]);

    let mut scripts: Vec<PathBuf> = std::fs::read_dir(scripts_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "lua") && !p.ends_with("lib.lua"))
        .collect();
    scripts.sort();
    assert!(scripts.len() >= 5, "{scripts:?}");
    let mut failed = Vec::new();
    for script in &scripts {
        let mut cmd = Command::new(require("miltertest"));
        cmd.arg("-D")
            .arg(format!("socket=inet:{port}@127.0.0.1"))
            .arg("-D")
            .arg(format!("scripts={}", scripts_dir().display()))
            .arg("-s")
            .arg(script);
        let out = run(&mut cmd, None, Duration::from_secs(120));
        if !out.is_success() {
            failed.push(format!("{}:\n{out}", script.display()));
        }
    }
    // milterd is still there and well after all of it.
    let alive = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
    let log = milterd.log();
    assert!(
        failed.is_empty() && alive,
        "{} of {} miltertest scripts failed (milterd alive: {alive}):\n{}\n--- milterd log ---\n{log}",
        failed.len(),
        scripts.len(),
        failed.join("\n")
    );
    assert!(!log.contains("panicked"), "{log}");
    assert!(
        log.contains("message over the buffering limits; not signed"),
        "{log}"
    );
    assert!(milterd.stop(), "{}", milterd.log());
}

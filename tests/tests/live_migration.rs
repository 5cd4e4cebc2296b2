//! The migration guide (contrib/migration.md) on a live server (issue 9):
//! the guide's stack as written (Postfix with the SQL maps, Dovecot's auth
//! and LMTP) carries continuous traffic from Postfix's `smtp-source` while
//! the test switches, in the guide's order, the maps to policyd, delivery
//! to lmtpd, SMTP AUTH and Dovecot's passdb/userdb to authd, and the milter
//! from the guide's Rspamd (a private Rspamd 3.4 with the guide's local.d)
//! to milterd, then stops Rspamd — editing main.cf/master.cf/dovecot.conf
//! exactly as the guide's tables say and reloading Postfix (and Dovecot)
//! after each step — and then rolls the lmtpd step back. Every message
//! sent is delivered exactly once (counted in the Maildir), none bounces,
//! and an SMTP AUTH login and an IMAP login work after every step.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use postwerk_tests::cli::Postwerk;
use postwerk_tests::daemon::{Daemon, Ready};
use postwerk_tests::dns::Dns;
use postwerk_tests::exec::{poll_until, require, run};
use postwerk_tests::guide::{self, PASSWORD, Stack, USER};
use postwerk_tests::postfix::{self, Maps};
use postwerk_tests::rspamd::Rspamd;
use postwerk_tests::smtp::Message;
use postwerk_tests::{Database, Sqlite, TestDir};

/// Messages per `smtp-source` run.
const BATCH: usize = 10;
/// `smtp-source` runs that must complete across each reload.
const BATCHES_PER_STEP: usize = 2;

/// Replaces every `from` with `to` in a config file, written through a
/// rename so no Postfix or Dovecot process reads half a file; panics if `from` is
/// not there (the step would silently do nothing).
fn edit(file: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(file).unwrap();
    assert!(text.contains(from), "{} has no `{from}`", file.display());
    let tmp = file.with_extension("new");
    std::fs::write(&tmp, text.replace(from, to)).unwrap();
    std::fs::rename(&tmp, file).unwrap();
}

/// Like [`edit`], but leaves `proxy_read_maps` alone: smtpd processes that
/// are still in a session when Postfix reloads keep using the old maps
/// through the new proxymap, which refuses tables that are no longer listed
/// there (`fatal: proxymap service is not configured for table`, the
/// session is lost). The migration guide removes them in step 7, after the
/// switch.
fn edit_maps(file: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(file).unwrap();
    let mut in_proxy_read_maps = false;
    let mut changed = false;
    let out: String = text
        .lines()
        .map(|l| {
            if l.starts_with("proxy_read_maps") {
                in_proxy_read_maps = true;
            } else if !l.starts_with([' ', '\t']) {
                in_proxy_read_maps = false;
            }
            if !in_proxy_read_maps && l.contains(from) {
                changed = true;
                format!("{}\n", l.replace(from, to))
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    if changed {
        let tmp = file.with_extension("new");
        std::fs::write(&tmp, out).unwrap();
        std::fs::rename(&tmp, file).unwrap();
    }
}

fn reload(etc: &Path) {
    let mut check = Command::new(require("postfix"));
    check.arg("-c").arg(etc).arg("check");
    run(&mut check, None, Duration::from_secs(30)).assert_success();
    let mut cmd = Command::new(require("postfix"));
    cmd.arg("-c").arg(etc).arg("reload");
    run(&mut cmd, None, Duration::from_secs(30)).assert_success();
}

/// Files in the account's Maildir INBOX (new/ and cur/).
fn delivered(vmail: &Path) -> usize {
    ["new", "cur"]
        .iter()
        .map(|d| {
            std::fs::read_dir(vmail.join("mailboxes/example.org/user1/mail").join(d))
                .map(|r| r.count())
                .unwrap_or(0)
        })
        .sum()
}

#[test]
fn live_migration_in_the_guides_order_loses_and_duplicates_nothing() {
    let dir = TestDir::new("live-migration");
    let db = Sqlite::fresh(&dir);
    let pw = Postwerk::new(&db.url());
    pw.run(&["db", "init"], None);
    pw.run(&["domain", "add", "example.org"], None);
    pw.run(
        &["account", "add", USER, "--password-stdin"],
        Some(&format!("{PASSWORD}\n")),
    );
    db.grant_readers();

    // The guide as written, with its Rspamd as the milter, and the
    // postwerk daemons started beside it (step 0: installed, not yet used).
    let dns = Dns::start();
    let mut rspamd = Rspamd::start(&dir, dns.addr);
    let rspamd_milter = format!("inet:127.0.0.1:{}", rspamd.milter_port);
    let mut config = postfix::Config::guide(Maps::sql(&dir, &db));
    config.milters = Some(rspamd_milter.clone());
    let stack = Stack::start_with_config(&dir, &db, config, None);
    let vmail: PathBuf = stack.dovecot.vmail_dir().to_owned();
    let (_policyd, policyd_sock) = guide::start_policyd(&dir, &db, "");
    let (authd, auth_sock, dict_sock) = guide::start_authd(&dir, &db, &vmail);
    let _lmtpd = guide::start_lmtpd(&dir, &db, &vmail);
    let lmtpd_sock = guide::lmtpd_socket(&dir);
    let milter_port = postwerk_tests::net::free_port();
    // DKIM signing (no key for example.org here: mail passes unsigned)
    // and spam scoring with Bayes in the process.
    let milterd = Daemon::start(
        &dir,
        "postwerk-milterd",
        &format!(
            "[database]\nurl = \"{}\"\n\n[milterd]\nlisten = [\"inet:127.0.0.1:{milter_port}\"]\n\
             dns_servers = [\"{}\"]\ndns_timeout = \"2s\"\n\n[milterd.dkim]\npath = \"{}/$domain.$selector.key\"\n",
            db.reader_url(),
            dns.addr,
            dir.join("dkim").display()
        ),
        &[Ready::Tcp(milter_port)],
    );
    let etc = stack.postfix.config_dir().to_owned();
    let (main_cf, master_cf) = (etc.join("main.cf"), etc.join("master.cf"));

    // Continuous traffic from another server until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let batches = Arc::new(AtomicUsize::new(0));
    let traffic = {
        let (stop, batches) = (stop.clone(), batches.clone());
        let target = format!("127.0.0.1:{}", stack.postfix.smtp_port);
        let source = require("smtp-source");
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let mut cmd = Command::new(&source);
                cmd.args(["-s", "2", "-l", "512", "-m", &BATCH.to_string()])
                    .args([
                        "-f",
                        "sender@example.net",
                        "-t",
                        USER,
                        "-M",
                        "client.example.net",
                    ])
                    .arg(&target);
                let out = run(&mut cmd, None, Duration::from_secs(60));
                assert!(
                    out.is_success() && out.stderr.trim().is_empty(),
                    "smtp-source: {out}"
                );
                batches.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    let mut logins = 0usize;
    let mut step = |what: &str, change: &dyn Fn()| {
        let before = batches.load(Ordering::SeqCst);
        change();
        reload(&etc);
        // Traffic has to flow across the reload, not around it.
        let moved = poll_until(Duration::from_secs(120), || {
            batches.load(Ordering::SeqCst) >= before + BATCHES_PER_STEP
        });
        assert!(moved && !traffic.is_finished(), "{what}: traffic stopped");
        // Logins keep working: SMTP AUTH (submission) and IMAP.
        let msg = Message::new(USER, &[USER], &format!("login after: {what}"));
        let sent = stack.submission(USER, PASSWORD).send(&msg);
        assert!(sent.is_accepted(), "{what}: SMTP AUTH + submission: {sent}");
        logins += 1;
        stack
            .imap
            .login(USER, PASSWORD)
            .unwrap_or_else(|e| panic!("{what}: IMAP login: {e}"));
    };

    // 1. The six SQL maps → policyd (main.cf and master.cf, as the
    // migration guide's tables).
    step("1 policyd maps", &|| {
        for stem in [
            "aliases",
            "accounts",
            "domains",
            "recipient-access",
            "sender-login-maps",
            "tls-policy",
        ] {
            let old = format!("proxy:sqlite:{}/sql/{stem}.cf", etc.display());
            let new = format!("socketmap:unix:{}:{stem}", policyd_sock.display());
            for file in [&main_cf, &master_cf] {
                edit_maps(file, &old, &new);
            }
        }
        // proxy_read_maps keeps listing the .cf files (removed in step
        // 7); no parameter may still use them.
        let mut cmd = Command::new(require("postconf"));
        cmd.arg("-c").arg(&etc).arg("-n");
        let used: Vec<String> = run(&mut cmd, None, Duration::from_secs(30))
            .assert_success()
            .stdout
            .lines()
            .filter(|l| l.contains("proxy:sqlite:") && !l.starts_with("proxy_read_maps"))
            .map(str::to_owned)
            .collect();
        assert!(used.is_empty(), "still on SQL: {used:?}");
    });
    // 2. Delivery → lmtpd.
    step("2 lmtpd", &|| {
        edit(
            &main_cf,
            "virtual_transport = lmtp:unix:private/dovecot-lmtp",
            &format!("virtual_transport = lmtp:unix:{}", lmtpd_sock.display()),
        );
    });
    // 3a. SMTP AUTH → authd (master.cf smtpd_sasl_path).
    step("3a authd SMTP AUTH", &|| {
        edit(
            &master_cf,
            "-o smtpd_sasl_path=private/auth",
            &format!("-o smtpd_sasl_path={}", auth_sock.display()),
        );
    });
    // 3b. Dovecot's passdb/userdb → authd's dict (dovecot.conf, the
    // migration guide's table; contrib/dovecot/dovecot-dict-auth.conf.ext
    // pointed at the dict socket), then `doveadm reload` — while lmtpd
    // delivers: a Dovecot LMTP process busy during a reload can store a
    // message and still answer 421, and Postfix delivers it again (seen
    // here when this step came before lmtpd's, Dovecot 2.3.19).
    let dovecot_conf = stack.dovecot.config_file().to_owned();
    let dict_ext = dir.join("dovecot/dovecot-dict-auth.conf.ext");
    let contrib = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/dovecot/dovecot-dict-auth.conf.ext"),
    )
    .unwrap();
    let ext: String = contrib
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("uri =") {
                format!("uri = proxy:{}:authdict\n", dict_sock.display())
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&dict_ext, ext).unwrap();
    let sql_conf = dir.join("dovecot/dovecot-sql.conf");
    step("3b authd passdb/userdb", &|| {
        // passdb and userdb
        edit(&dovecot_conf, "    driver = sql\n", "    driver = dict\n");
        edit(
            &dovecot_conf,
            &format!("args = {}\n", sql_conf.display()),
            &format!("args = {}\n", dict_ext.display()),
        );
        let mut cmd = Command::new(require("doveadm"));
        cmd.arg("-c").arg(&dovecot_conf).arg("reload");
        run(&mut cmd, None, Duration::from_secs(30)).assert_success();
    });
    // 4–6. The milter: the guide's Rspamd → milterd signing and scoring
    // (smtpd_milters and non_smtpd_milters; the migration guide's steps
    // 4–6 at once, without its shadow period), then Rspamd is stopped.
    let milterd_milter = format!("inet:127.0.0.1:{milter_port}");
    step("4 milterd", &|| {
        edit(&main_cf, &rspamd_milter, &milterd_milter);
    });
    let rspamd_log = rspamd.log();
    assert!(rspamd.stop(), "Rspamd did not stop:\n{rspamd_log}");
    step("5 Rspamd stopped", &|| {});
    // Roll step 2 back: Dovecot's LMTP delivers again, its users now
    // coming from authd's dict.
    step("rollback of 2", &|| {
        edit(
            &main_cf,
            &format!("virtual_transport = lmtp:unix:{}", lmtpd_sock.display()),
            "virtual_transport = lmtp:unix:private/dovecot-lmtp",
        );
    });

    stop.store(true, Ordering::SeqCst);
    traffic.join().expect("the traffic thread");
    let sent = batches.load(Ordering::SeqCst) * BATCH + logins;

    // Everything arrives, and arrives once.
    let all_in = poll_until(Duration::from_secs(120), || {
        stack.postfix.flush();
        delivered(&vmail) >= sent
    });
    let log = stack.postfix.maillog();
    assert!(
        all_in,
        "{} of {sent} messages delivered; queue:\n{}",
        delivered(&vmail),
        stack.postfix.queue_listing()
    );
    assert_eq!(delivered(&vmail), sent, "duplicates in the Maildir");
    // A deferral would be retried and still arrive (the count above); a
    // bounce, a reject or a failed lookup would not.
    for bad in ["status=bounced", " reject: ", "lookup error"] {
        assert!(!log.contains(bad), "maillog has `{bad}`:\n{log}");
    }
    // Each piece really carried mail while it was switched on.
    let by = |relay: &str| {
        log.lines()
            .filter(|l| l.contains("status=sent") && l.contains(relay))
            .count()
    };
    let lmtpd_name = lmtpd_sock
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(by(&lmtpd_name) > 0, "lmtpd delivered nothing:\n{log}");
    assert!(by("dovecot-lmtp") > 0, "Dovecot's LMTP delivered nothing");
    // From step 3a on, SMTP AUTH went to authd (the logins of 3a, 3b and
    // the rollback), and from 3b on Dovecot asked authd's dict.
    let authd_log = authd.log();
    let authd_logins = authd_log.matches("authenticated").count();
    assert!(
        authd_logins >= 3,
        "authd saw {authd_logins} logins:\n{authd_log}"
    );
    assert!(
        authd_log.contains("dict lookup"),
        "Dovecot never asked authd's dict:\n{authd_log}"
    );
    // Rspamd scanned the traffic until step 4, milterd after it.
    let rspamd_scans = rspamd_log.matches("rspamd_task_write_log").count();
    assert!(
        rspamd_scans > 0,
        "Rspamd scanned nothing before the switch:\n{rspamd_log}"
    );
    let milterd_log = milterd.log();
    let scanned = milterd_log.matches("incoming; scored").count();
    assert!(
        scanned > 0,
        "milterd scanned nothing after the switch:\n{milterd_log}"
    );
    eprintln!(
        "live migration: {sent} messages sent and delivered once ({logins} of them with SMTP AUTH); \
         maillog: {} delivered by lmtpd, {} by Dovecot's LMTP, {} deferred on the way; \
         {rspamd_scans} scanned by Rspamd, {scanned} by milterd",
        by(&lmtpd_name),
        by("dovecot-lmtp"),
        log.matches("status=deferred").count()
    );
    assert!(
        log.lines()
            .filter(|l| l.contains("sasl_username=user1@example.org"))
            .count()
            >= logins,
        "every step's login shows in the maillog:\n{log}"
    );
}

//! Real peers: swaks speaks LMTP to lmtpd, a private Dovecot 2.3 IMAP
//! server (own base_dir/state_dir/log, passwd-file users, the guide's
//! `mail_location` and maildir quota) reads the same tree through
//! python's imaplib. A missing peer binary fails the test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{free_port, messages, start, wait_for_port};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const DOVECOT: &str = "/usr/sbin/dovecot";
const SWAKS: &str = "/usr/bin/swaks";
const PYTHON: &str = "/usr/bin/python3";

struct Dovecot {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Dovecot {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dovecot.log")).unwrap_or_default()
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- dovecot.log ----\n{}", self.log());
        }
    }
}

fn start_dovecot(tree: &Path) -> Dovecot {
    assert!(
        Path::new(DOVECOT).exists(),
        "{DOVECOT} is missing: apt-get install dovecot-imapd"
    );
    let dir = tree.join("dovecot");
    std::fs::create_dir_all(dir.join("run")).unwrap();
    std::fs::create_dir_all(dir.join("state")).unwrap();
    let port = free_port();
    let t = tree.display();
    let d = dir.display();
    std::fs::write(
        dir.join("passwd"),
        "user1@example.org:{PLAIN}secret\nsmall@example.org:{PLAIN}secret\nuser2@example.org:{PLAIN}secret\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("users"),
        "user1@example.org:::::::\nuser2@example.org:::::::\nsmall@example.org:::::::quota_rule=*:storage=1M\n",
    )
    .unwrap();
    let conf = format!(
        r#"base_dir = {d}/run
state_dir = {d}/state
instance_name = postwerk-lmtpd-test-{port}
log_path = {d}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
mail_uid = vmail
mail_gid = vmail
mail_home = {t}/mailboxes/%d/%n
mail_location = maildir:~/mail:LAYOUT=fs
mail_plugins = quota
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/passwd
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {d}/users
  default_fields = uid=vmail gid=vmail home={t}/mailboxes/%d/%n
}}
service imap-login {{
  inet_listener imap {{
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0600
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
protocol imap {{
  mail_plugins = $mail_plugins imap_quota
}}
plugin {{
  quota = maildir:User quota
}}
"#
    );
    let conf_path = dir.join("dovecot.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let child = Command::new(DOVECOT)
        .arg("-F")
        .arg("-c")
        .arg(&conf_path)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start dovecot");
    let dc = Dovecot { child, dir, port };
    assert!(
        wait_for_port(port, Duration::from_secs(20)),
        "dovecot did not listen:\n{}",
        dc.log()
    );
    dc
}

/// Delivers with swaks over LMTP; returns the transcript.
fn swaks(port: u16, from: &str, to: &str, data: &str) -> String {
    assert!(
        Path::new(SWAKS).exists(),
        "{SWAKS} is missing: apt-get install swaks"
    );
    let out = Command::new(SWAKS)
        .args([
            "--protocol",
            "LMTP",
            "--server",
            &format!("127.0.0.1:{port}"),
        ])
        .args([
            "--helo",
            "mx.test.local",
            "--from",
            from,
            "--to",
            to,
            "--data",
            "-",
        ])
        .args(["--timeout", "30"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(data.as_bytes())?;
            c.wait_with_output()
        })
        .expect("run swaks");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn imap(port: u16, user: &str) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/imap_check.py");
    assert!(Path::new(PYTHON).exists(), "{PYTHON} is missing");
    let out = Command::new(PYTHON)
        .arg(script)
        .arg(port.to_string())
        .arg(user)
        .arg("secret")
        .output()
        .expect("run python imaplib");
    assert!(
        out.status.success(),
        "imap_check failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn subjects(v: &serde_json::Value, folder: &str) -> Vec<String> {
    v["folders"][folder]
        .as_array()
        .unwrap_or_else(|| panic!("no folder {folder} in {v}"))
        .iter()
        .map(|m| m["subject"].as_str().unwrap_or("").to_owned())
        .collect()
}

fn msg(subject: &str, extra: &str, lines: usize) -> String {
    let mut m =
        format!("From: a@remote.test\nTo: user1@example.org\nSubject: {subject}\n{extra}\n");
    for i in 0..lines {
        m.push_str(&format!(
            "line {i} of the body, padded to a reasonable length for the test\n"
        ));
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dovecot_imap_reads_what_lmtpd_delivered() {
    let d = start("", None, "vmail").await;
    let tree = d.path().to_path_buf();
    let dc = start_dovecot(&tree);
    let port = d.port;
    let user_sieve = tree.join("sieve/example.org/user1");
    std::fs::create_dir_all(&user_sieve).unwrap();
    std::fs::write(
        user_sieve.join("active-script.sieve"),
        r#"require ["fileinto", "imap4flags", "mailbox", "envelope", "subaddress"];
if header :contains "Subject" "project" {
  addflag ["\\Flagged", "$work"];
  fileinto :create "Projects/2026";
  stop;
}
if envelope :detail "to" "news" {
  fileinto :create "News";
}
"#,
    )
    .unwrap();

    let result = tokio::task::spawn_blocking(move || {
        let t1 = swaks(
            port,
            "a@remote.test",
            "user1@example.org",
            &msg("plain hello", "", 3),
        );
        assert!(t1.contains("250 2.0.0 <user1@example.org>"), "{t1}");
        let t2 = swaks(
            port,
            "a@remote.test",
            "user1@example.org",
            &msg("cheap pills", "X-Spam: Yes\n", 3),
        );
        assert!(t2.contains("250 2.0.0"), "{t2}");
        let t3 = swaks(
            port,
            "a@remote.test",
            "user1@example.org",
            &msg("project kickoff", "", 3),
        );
        assert!(t3.contains("250 2.0.0"), "{t3}");
        let t4 = swaks(
            port,
            "a@remote.test",
            "user1+news@example.org",
            &msg("weekly news", "", 3),
        );
        assert!(t4.contains("250 2.0.0 <user1+news@example.org>"), "{t4}");
        let t5 = swaks(
            port,
            "a@remote.test",
            "user1+other@example.org",
            &msg("tagged other", "", 3),
        );
        assert!(t5.contains("250 2.0.0"), "{t5}");
        // quota: two ~200 KB messages fit into small's 1 MB
        for i in 0..2 {
            let t = swaks(
                port,
                "a@remote.test",
                "small@example.org",
                &msg(&format!("big {i}"), "", 3000),
            );
            assert!(t.contains("250 2.0.0 <small@example.org>"), "{t}");
        }
        // multi-recipient with mixed results: unknown at RCPT, full after DATA
        let t6 = swaks(
            port,
            "a@remote.test",
            "user2@example.org,nosuch@example.org,small@example.org",
            &msg("huge", "", 10_000),
        );
        (
            t6,
            imap(dc.port, "user1@example.org"),
            imap(dc.port, "small@example.org"),
            imap(dc.port, "user2@example.org"),
            dc,
        )
    })
    .await;
    let (t6, user1, small, user2, dc) = match result {
        Ok(r) => r,
        Err(e) => {
            let kept = d.keep();
            panic!(
                "peer exchange failed (tree kept at {}): {e}",
                kept.display()
            );
        }
    };
    assert!(t6.contains("550 5.1.1 <nosuch@example.org>"), "{t6}");
    assert!(t6.contains("250 2.0.0 <user2@example.org>"), "{t6}");
    assert!(t6.contains("552 5.2.2 <small@example.org>"), "{t6}");

    assert_eq!(
        subjects(&user1, "INBOX"),
        vec!["plain hello", "tagged other"],
        "{user1}"
    );
    assert_eq!(subjects(&user1, "Spam"), vec!["cheap pills"]);
    assert_eq!(subjects(&user1, "Projects/2026"), vec!["project kickoff"]);
    assert_eq!(subjects(&user1, "News"), vec!["weekly news"]);
    let tagged = &user1["folders"]["INBOX"][1];
    assert_eq!(tagged["delivered_to"], "user1+other@example.org");
    let flags: Vec<&str> = user1["folders"]["Projects/2026"][0]["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(
        flags.contains(&"\\Flagged") && flags.contains(&"$work"),
        "{flags:?}"
    );
    let lsub: Vec<&str> = user1["lsub"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    for f in ["Spam", "Trash", "Drafts", "Sent", "News", "Projects/2026"] {
        assert!(lsub.contains(&f), "{f} not subscribed: {lsub:?}");
    }
    assert_eq!(subjects(&user2, "INBOX"), vec!["huge"]);

    // GETQUOTAROOT shows what lmtpd wrote to maildirsize
    let root = d.maildir("small", "example.org");
    let text = std::fs::read_to_string(root.join("maildirsize")).unwrap();
    let bytes: i64 = text
        .lines()
        .skip(1)
        .map(|l| l.split(' ').next().unwrap().parse::<i64>().unwrap())
        .sum();
    let on_disk: u64 = messages(&root)
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert_eq!(bytes as u64, on_disk, "{text}");
    let q = small["quota"]
        .as_array()
        .unwrap_or_else(|| panic!("no quota in {small}"));
    assert_eq!(q[1], 1024);
    let kib = q[0].as_i64().unwrap();
    assert!(
        kib == bytes / 1024 || kib == (bytes + 1023) / 1024,
        "imap says {kib} KiB, maildirsize {bytes} bytes"
    );
    assert_eq!(subjects(&small, "INBOX"), vec!["big 0", "big 1"]);
    // everything belongs to vmail
    let vmail = nix::unistd::User::from_name("vmail")
        .unwrap()
        .unwrap()
        .uid
        .as_raw();
    for p in messages(&root)
        .iter()
        .chain([root.join("maildirsize"), root.join("subscriptions")].iter())
    {
        assert_eq!(
            std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(p).unwrap()),
            vmail,
            "{}",
            p.display()
        );
    }
    drop(dc);
    d.stop().await;
}

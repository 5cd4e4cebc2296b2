//! postwerk-lmtpd behind the real Postfix and under the real Dovecot
//! (issue 5): a private Postfix delivers through lmtpd
//! (`virtual_transport = lmtp:unix:…/lmtpd.sock`), a private Dovecot serves
//! IMAP and ManageSieve on the same Maildirs, everything on SQLite
//! provisioned with the `postwerk` command. It proves that:
//!
//! - a Sieve script uploaded through Dovecot's ManageSieve (STARTTLS,
//!   AUTHENTICATE PLAIN, PUTSCRIPT, SETACTIVE) takes effect on the next
//!   delivery, and so does switching to another active script;
//! - vacation answers once per sender, its reply goes through Postfix
//!   (lmtpd's `sendmail_path` is Postfix's sendmail for this instance) and
//!   lands in the local sender's INBOX;
//! - redirect reaches the target's mailbox through Postfix, and the
//!   redirecting account keeps no copy;
//! - mail to a full mailbox is refused by lmtpd with `552 5.2.2`, Postfix
//!   bounces it and the bounce, with lmtpd's reason, reaches the local
//!   sender: nothing is lost silently, at RCPT (already full) as after DATA
//!   (this message would not fit);
//! - with several recipients in one LMTP transaction, one of them full,
//!   the others get the message.
//!
//! Needs root, scripts/install-deps and `cargo build -p postwerk
//! -p postwerk-lmtpd -p postwerk-tests`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use postwerk_tests::cli::Postwerk;
use postwerk_tests::daemon::Daemon;
use postwerk_tests::exec::{poll_until, require, run};
use postwerk_tests::guide::{DELIVERY_TIMEOUT, Stack, Swap};
use postwerk_tests::imap::CLIENT_SOURCE;
use postwerk_tests::smtp::{Message, Transcript};
use postwerk_tests::{Database, Sqlite, TestDir};

const PYTHON: &str = "/usr/bin/python3";
const PASSWORD: &str = "correct horse battery staple";
const USER1: &str = "user1@example.org";
const USER2: &str = "user2@example.org";
const USER3: &str = "user3@example.org";
/// An account with a 1 MB quota.
const SMALL: &str = "small@example.org";

/// ManageSieve (RFC 5804) and IMAP SEARCH HEADER, stdlib python only.
const PEER_PY: &str = r#"#!/usr/bin/python3
"""postwerk-tests lmtpd peer client.

managesieve: STARTTLS (verified against --cafile), AUTHENTICATE PLAIN (password
on stdin), PUTSCRIPT --name from --script, SETACTIVE --name, LOGOUT. Prints
{"outcome": "ok"|"no", "transcript": [...]}.

search: IMAP STARTTLS + LOGIN, SELECT --mailbox, UID SEARCH HEADER --header
--value until at least --min messages match or --timeout passes. Prints
{"count": N, "messages": ["<RFC 5322 text>", ...], "flags": [["\\Seen", ...], ...],
"mailboxes": {...}}.
"""
import argparse, base64, imaplib, json, re, socket, ssl, sys, time


def ms_response(f, transcript):
    while True:
        raw = f.readline()
        if not raw:
            raise OSError("managesieve: connection closed")
        line = raw.decode(errors="replace").rstrip("\r\n")
        m = re.search(r"\{(\d+)\+?\}$", line)
        if m:
            line += f.read(int(m.group(1))).decode(errors="replace")
            line += f.readline().decode(errors="replace").rstrip("\r\n")
        transcript.append("S: " + line)
        word = line.split(" ", 1)[0].upper()
        if word in ("OK", "NO", "BYE"):
            return word


def ms_command(sock, f, transcript, text, data=b""):
    transcript.append("C: " + text.split("\r\n")[0])
    sock.sendall(text.encode() + data)
    return ms_response(f, transcript)


def managesieve(args, password):
    t = []
    sock = socket.create_connection((args.host, args.port), args.io_timeout,
                                    source_address=(args.source, 0))
    f = sock.makefile("rb")
    ms_response(f, t)
    if ms_command(sock, f, t, "STARTTLS\r\n") != "OK":
        return t, False
    ctx = ssl.create_default_context(cafile=args.cafile)
    sock = ctx.wrap_socket(sock, server_hostname=args.host)
    f = sock.makefile("rb")
    ms_response(f, t)  # RFC 5804 2.2: capabilities again after TLS
    plain = base64.b64encode(b"\0" + args.user.encode() + b"\0" + password.encode()).decode()
    if ms_command(sock, f, t, 'AUTHENTICATE "PLAIN" "%s"\r\n' % plain) != "OK":
        return t, False
    t[-2] = 'C: AUTHENTICATE "PLAIN" "***"'
    script = open(args.script, "rb").read()
    if ms_command(sock, f, t, 'PUTSCRIPT "%s" {%d+}\r\n' % (args.name, len(script)),
                  script + b"\r\n") != "OK":
        return t, False
    if ms_command(sock, f, t, 'SETACTIVE "%s"\r\n' % args.name) != "OK":
        return t, False
    ms_command(sock, f, t, "LOGOUT\r\n")
    return t, True


class SourcedIMAP4(imaplib.IMAP4):
    def __init__(self, host, port, timeout, source):
        self._source = source
        super().__init__(host, port, timeout=timeout)

    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout,
                                        source_address=(self._source, 0))


def search(args, password):
    conn = SourcedIMAP4(args.host, args.port, args.io_timeout, args.source)
    conn.starttls(ssl_context=ssl.create_default_context(cafile=args.cafile))
    conn.login(args.user, password)
    deadline = time.monotonic() + args.timeout
    messages, flags = [], []
    while True:
        typ, _ = conn.select('"%s"' % args.mailbox, readonly=True)
        if typ == "OK":
            typ, data = conn.uid("SEARCH", None, "HEADER", args.header, '"%s"' % args.value)
            uids = data[0].split() if typ == "OK" and data and data[0] else []
            if len(uids) >= args.min or time.monotonic() >= deadline:
                messages, flags = [], []
                for uid in uids:
                    typ, msg = conn.uid("FETCH", uid, "(FLAGS BODY.PEEK[])")
                    for part in msg:
                        if isinstance(part, tuple):
                            messages.append(part[1].decode("utf-8", errors="replace"))
                            m = re.search(r"FLAGS \(([^)]*)\)", part[0].decode(errors="replace"))
                            flags.append(m.group(1).split() if m else [])
                break
        elif time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    counts = {}
    typ, data = conn.list()
    for line in data or []:
        m = re.match(r'^\((.*?)\) (NIL|"[^"]*") (.*)$', (line or b"").decode(errors="replace"))
        if m:
            name = m.group(3).strip('"')
            typ, n = conn.select('"%s"' % name, readonly=True)
            if typ == "OK":
                counts[name] = int(n[0])
    conn.logout()
    return {"count": len(messages), "messages": messages, "flags": flags, "mailboxes": counts}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["managesieve", "search"])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--source", default="127.0.0.2")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cafile", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--name")
    p.add_argument("--script")
    p.add_argument("--mailbox", default="INBOX")
    p.add_argument("--header")
    p.add_argument("--value")
    p.add_argument("--min", type=int, default=1)
    p.add_argument("--timeout", type=float, default=0.0)
    p.add_argument("--io-timeout", type=float, default=10.0)
    args = p.parse_args()
    password = sys.stdin.readline().rstrip("\n")
    if args.command == "managesieve":
        t, ok = managesieve(args, password)
        print(json.dumps({"outcome": "ok" if ok else "no", "transcript": t}))
    else:
        print(json.dumps(search(args, password)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
"#;

/// One scenario's running mail server with its accounts.
struct Fixture {
    stack: Stack,
    pw: Postwerk,
    dir: TestDir,
    peer: PathBuf,
    // Dropped last: the stack's daemons read it.
    _db: Sqlite,
}

/// What a header search found.
struct Found {
    messages: Vec<String>,
    /// The IMAP flags of each message.
    flags: Vec<Vec<String>>,
    mailboxes: String,
}

impl Fixture {
    /// SQLite with [`USER1`], [`USER2`], [`USER3`] (1 GB each) and
    /// [`SMALL`] (1 MB); Postfix → lmtpd → Maildir ← Dovecot; lmtpd sends
    /// redirects and vacation replies through this Postfix.
    fn start(name: &str) -> Fixture {
        let dir = TestDir::new(name);
        let db = Sqlite::fresh(&dir);
        let pw = Postwerk::new(&db.url());
        let stdin = format!("{PASSWORD}\n");
        pw.run(&["db", "init"], None);
        db.grant_readers();
        pw.run(&["domain", "add", "example.org"], None);
        for (user, quota) in [(USER1, "1G"), (USER2, "1G"), (USER3, "1G"), (SMALL, "1M")] {
            pw.run(
                &["account", "add", user, "--quota", quota, "--password-stdin"],
                Some(&stdin),
            );
        }
        let stack = Stack::start_with(
            &dir,
            &db,
            Swap {
                lmtpd: true,
                ..Swap::GUIDE
            },
        );

        // The harness's lmtpd has the default sendmail_path; Postfix's
        // sendmail must find this instance's config (`-C`), so lmtpd gets a
        // wrapper script, through a reload (SIGHUP) of its config file.
        let sendmail = dir.write(
            "sendmail",
            format!(
                "#!/bin/sh\nexec {} -C {} \"$@\"\n",
                require("sendmail").display(),
                stack.postfix.config_dir().display()
            ),
            0o755,
        );
        let lmtpd = stack
            .lmtpd
            .as_ref()
            .expect("Swap { lmtpd: true } starts lmtpd");
        let config = std::fs::read_to_string(lmtpd.config_path()).unwrap();
        assert!(!config.contains("sendmail_path"), "{config}");
        std::fs::write(
            lmtpd.config_path(),
            format!("{config}sendmail_path = \"{}\"\n", sendmail.display()),
        )
        .unwrap();
        // SIGHUP is handled once it has logged that it started.
        let started = poll_until(Duration::from_secs(10), || {
            lmtpd.log().contains("postwerk-lmtpd started")
        });
        assert!(started, "lmtpd did not log its start:\n{}", lmtpd.log());
        lmtpd.signal(Signal::SIGHUP);
        let reloaded = poll_until(Duration::from_secs(10), || {
            lmtpd.log().contains("configuration reloaded")
        });
        assert!(reloaded, "lmtpd did not reload:\n{}", lmtpd.log());
        let peer = dir.write("scripts/lmtpd_peer.py", PEER_PY, 0o755);
        Fixture {
            stack,
            pw,
            dir,
            peer,
            _db: db,
        }
    }

    /// Uploads `script` as `name` for `user` over ManageSieve and makes it
    /// the active one; panics with the dialogue if Dovecot refuses.
    fn managesieve(&self, user: &str, name: &str, script: &str) -> Vec<String> {
        let file = self
            .dir
            .write(format!("scripts/{name}.sieve"), script, 0o644);
        let mut cmd = Command::new(require(PYTHON));
        cmd.arg(&self.peer)
            .arg("managesieve")
            .args(["--port", &self.stack.dovecot.sieve_port.to_string()])
            .args(["--source", CLIENT_SOURCE, "--user", user, "--name", name])
            .arg("--cafile")
            .arg(&self.stack.tls.ca_file)
            .arg("--script")
            .arg(&file);
        let out = run(
            &mut cmd,
            Some(format!("{PASSWORD}\n").as_bytes()),
            Duration::from_secs(60),
        );
        let v: serde_json::Value = serde_json::from_str(out.stdout.trim())
            .unwrap_or_else(|e| panic!("the ManageSieve client printed no JSON ({e}):\n{out}"));
        let transcript: Vec<String> = v["transcript"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|l| l.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(
            v["outcome"],
            "ok",
            "ManageSieve refused the script:\n{}",
            transcript.join("\n")
        );
        transcript
    }

    /// The messages in `user`'s `mailbox` whose header `name` contains
    /// `value`, waiting up to `timeout` for at least `min` of them.
    fn search(
        &self,
        user: &str,
        mailbox: &str,
        header: (&str, &str),
        min: usize,
        timeout: Duration,
    ) -> Found {
        let mut cmd = Command::new(require(PYTHON));
        cmd.arg(&self.peer)
            .arg("search")
            .args(["--port", &self.stack.dovecot.imap_port.to_string()])
            .args([
                "--source",
                CLIENT_SOURCE,
                "--user",
                user,
                "--mailbox",
                mailbox,
            ])
            .args(["--header", header.0, "--value", header.1])
            .args([
                "--min",
                &min.to_string(),
                "--timeout",
                &timeout.as_secs_f64().to_string(),
            ])
            .arg("--cafile")
            .arg(&self.stack.tls.ca_file);
        let out = run(
            &mut cmd,
            Some(format!("{PASSWORD}\n").as_bytes()),
            timeout + Duration::from_secs(30),
        );
        let v: serde_json::Value = serde_json::from_str(out.stdout.trim())
            .unwrap_or_else(|e| panic!("the IMAP search printed no JSON ({e}):\n{out}"));
        Found {
            messages: v["messages"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|m| m.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            flags: v["flags"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|f| {
                            f.as_array()
                                .map(|f| {
                                    f.iter()
                                        .filter_map(|x| x.as_str().map(str::to_owned))
                                        .collect()
                                })
                                .unwrap_or_default()
                        })
                        .collect()
                })
                .unwrap_or_default(),
            mailboxes: v["mailboxes"].to_string(),
        }
    }

    /// Sends `msg` on the submission port as its sender.
    #[track_caller]
    fn submit(&self, msg: &Message) -> Transcript {
        let t = self.stack.submission(&msg.from, PASSWORD).send(msg);
        assert!(
            t.is_accepted(),
            "submission of {:?} was refused:\n{t}",
            msg.subject
        );
        t
    }

    /// Sends `msg` on the smtp port, as another server would.
    #[track_caller]
    fn inbound(&self, msg: &Message) -> Transcript {
        let t = self.stack.inbound().send(msg);
        assert!(
            t.is_accepted(),
            "inbound {:?} was refused:\n{t}",
            msg.subject
        );
        t
    }

    /// Waits until Postfix's queue is empty: every message is delivered or
    /// bounced (and the bounce delivered).
    #[track_caller]
    fn wait_queue_empty(&self) {
        let mut listing = String::new();
        let empty = poll_until(DELIVERY_TIMEOUT, || {
            listing = self.stack.postfix.queue_listing();
            listing.contains("Mail queue is empty")
        });
        assert!(empty, "Postfix's queue did not drain:\n{listing}");
    }

    /// `msg` is not in `user`'s `mailbox` (checked once, without waiting).
    #[track_caller]
    fn assert_absent(&self, user: &str, mailbox: &str, msg: &Message) {
        let f = self.search(
            user,
            mailbox,
            ("Message-ID", &msg.message_id),
            1,
            Duration::ZERO,
        );
        assert!(
            f.messages.is_empty(),
            "{} is in {mailbox} of {user} but must not be:\n{}",
            msg.message_id,
            f.messages.join("\n----\n")
        );
    }

    /// Postfix's log lines about `rcpt`.
    fn maillog_for(&self, rcpt: &str) -> Vec<String> {
        self.stack
            .postfix
            .maillog()
            .lines()
            .filter(|l| l.contains(&format!("to=<{rcpt}>")))
            .map(str::to_owned)
            .collect()
    }
}

/// A message whose body is `size` bytes of text around its token; swaks
/// reads it from a file (an argument could not hold it).
fn big_message(dir: &TestDir, from: &str, to: &[&str], subject: &str, size: usize) -> Message {
    let mut msg = Message::new(from, to, subject);
    let line = "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\n";
    let mut body = msg.body.clone();
    while body.len() < size {
        body.push_str(line);
    }
    let file = dir.write(format!("bodies/{}.txt", msg.token), &body, 0o644);
    msg.body = file.display().to_string();
    msg
}

#[test]
fn managesieve_script_takes_effect_on_next_delivery() {
    let fx = Fixture::start("lmtpd-managesieve");

    // Before any user script: INBOX.
    let before = Message::new(
        "someone@elsewhere.test",
        &[USER1],
        "project alpha, before the script",
    );
    fx.inbound(&before);
    fx.stack.read_back(USER1, PASSWORD, "INBOX", &before);

    let t = fx.managesieve(
        USER1,
        "projects",
        "require [\"fileinto\", \"mailbox\", \"imap4flags\"];\n\
         if header :contains \"subject\" \"project alpha\" {\n\
         \x20 fileinto :create :flags \"\\\\Flagged\" \"Projects/Alpha\";\n\
         \x20 stop;\n\
         }\n",
    );
    assert!(t.iter().any(|l| l.starts_with("C: SETACTIVE")), "{t:?}");
    // Where the guide's `sieve = file:…;active=…/active-script.sieve` puts it.
    let active = fx
        .stack
        .dovecot
        .vmail_dir()
        .join("sieve/example.org/user1/active-script.sieve");
    let target = std::fs::read_link(&active)
        .unwrap_or_else(|e| panic!("ManageSieve did not make {}: {e}", active.display()));
    assert!(
        target.ends_with("scripts/projects.sieve"),
        "{}",
        target.display()
    );

    let after = Message::new(
        "someone@elsewhere.test",
        &[USER1],
        "project alpha, after the script",
    );
    fx.inbound(&after);
    let (stored, _) = fx
        .stack
        .read_back(USER1, PASSWORD, "Projects/Alpha", &after);
    assert!(
        stored.contains("Delivered-To: user1@example.org"),
        "{stored}"
    );
    fx.assert_absent(USER1, "INBOX", &after);
    let flagged = fx.search(
        USER1,
        "Projects/Alpha",
        ("Message-ID", &after.message_id),
        1,
        DELIVERY_TIMEOUT,
    );
    assert_eq!(flagged.messages.len(), 1, "{}", flagged.mailboxes);
    // `:flags` (imap4flags) landed in the Maildir file name, where Dovecot
    // reads it.
    assert!(
        flagged.flags[0].iter().any(|f| f == "\\Flagged"),
        "{:?}",
        flagged.flags
    );

    // Another script made active: a new symlink target, the next delivery
    // follows it (lmtpd's compiled-script cache must notice).
    fx.managesieve(
        USER1,
        "archive",
        "require [\"fileinto\", \"mailbox\"];\n\
         if header :contains \"subject\" \"project alpha\" {\n\
         \x20 fileinto :create \"Archive\";\n\
         }\n",
    );
    let switched = Message::new(
        "someone@elsewhere.test",
        &[USER1],
        "project alpha, after switching",
    );
    fx.inbound(&switched);
    fx.stack.read_back(USER1, PASSWORD, "Archive", &switched);
    // A successful `fileinto` cancels the implicit keep (RFC 5228 §4.1).
    fx.assert_absent(USER1, "INBOX", &switched);
    fx.assert_absent(USER1, "Projects/Alpha", &switched);
}

#[test]
fn vacation_replies_once_through_postfix() {
    let fx = Fixture::start("lmtpd-vacation");
    fx.managesieve(
        USER2,
        "away",
        "require \"vacation\";\n\
         vacation :days 1 :subject \"Away: back next week\" \"I am away until next week.\";\n",
    );

    let first = Message::new(USER1, &[USER2], "question one");
    fx.submit(&first);
    fx.stack.read_back(USER2, PASSWORD, "INBOX", &first);
    let replies = fx.search(
        USER1,
        "INBOX",
        ("In-Reply-To", &first.message_id),
        1,
        DELIVERY_TIMEOUT,
    );
    assert_eq!(
        replies.messages.len(),
        1,
        "no vacation reply reached {USER1} (mailboxes: {})\nlmtpd log:\n{}\nqueue:\n{}",
        replies.mailboxes,
        fx.stack.lmtpd.as_ref().map(Daemon::log).unwrap_or_default(),
        fx.stack.postfix.queue_listing()
    );
    let reply = &replies.messages[0];
    assert!(reply.contains("Subject: Away: back next week"), "{reply}");
    assert!(reply.contains("I am away until next week."), "{reply}");
    // RFC 3834 §3.1.7 and RFC 5230 §5.1: an auto-reply, sent with the null
    // return path, so it can never start a loop.
    assert!(reply.contains("Auto-Submitted: auto-replied"), "{reply}");
    assert!(reply.contains("Return-Path: <>"), "{reply}");
    // It went through this Postfix (pickup → lmtpd), not around it.
    let log = fx.maillog_for(USER1);
    assert!(
        log.iter()
            .any(|l| l.contains("from=<>") || l.contains("status=sent")),
        "{log:?}"
    );

    // The second message from the same sender within :days gets none.
    let second = Message::new(USER1, &[USER2], "question two");
    fx.submit(&second);
    fx.stack.read_back(USER2, PASSWORD, "INBOX", &second);
    fx.wait_queue_empty();
    let again = fx.search(
        USER1,
        "INBOX",
        ("In-Reply-To", &second.message_id),
        1,
        Duration::ZERO,
    );
    assert!(
        again.messages.is_empty(),
        "vacation replied twice:\n{}",
        again.messages.join("\n----\n")
    );
    let all = fx.search(
        USER1,
        "INBOX",
        ("Auto-Submitted", "auto-replied"),
        1,
        Duration::ZERO,
    );
    assert_eq!(all.messages.len(), 1, "{}", all.messages.join("\n----\n"));
}

#[test]
fn redirect_reaches_the_target_mailbox() {
    let fx = Fixture::start("lmtpd-redirect");
    fx.managesieve(USER2, "forward", &format!("redirect \"{USER3}\";\n"));

    let msg = Message::new("someone@elsewhere.test", &[USER2], "for user2, redirected");
    fx.inbound(&msg);
    let (stored, _) = fx.stack.read_back(USER3, PASSWORD, "INBOX", &msg);
    // It came back through Postfix: Postfix's own Received and lmtpd's
    // Delivered-To for the new recipient.
    assert!(
        stored.contains(&format!("Delivered-To: {USER3}")),
        "{stored}"
    );
    fx.wait_queue_empty();
    // redirect cancels the implicit keep (RFC 5228 §4.2).
    fx.assert_absent(USER2, "INBOX", &msg);
}

#[test]
fn over_quota_mail_bounces_to_the_sender() {
    let fx = Fixture::start("lmtpd-quota");

    // 700 KB fits into SMALL's 1 MB.
    let fits = big_message(&fx.dir, USER1, &[SMALL], "fits", 700 * 1024);
    fx.submit(&fits);
    fx.stack.read_back(SMALL, PASSWORD, "INBOX", &fits);

    // Another 700 KB does not: lmtpd accepts RCPT (the mailbox is not full
    // yet) and refuses after DATA with 552 5.2.2; Postfix bounces it.
    let too_big = big_message(&fx.dir, USER1, &[SMALL], "does not fit", 700 * 1024);
    fx.submit(&too_big);
    let found = wait_for_bounce(&fx, &too_big);
    assert!(found.contains("552 5.2.2"), "{found}");
    // Postfix folds the quoted reply; compare with whitespace collapsed.
    let flat = found.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains(&format!("User {SMALL} has exhausted allowed storage space")),
        "the bounce lacks lmtpd's quota_exceeded_message:\n{found}"
    );
    fx.assert_absent(SMALL, "INBOX", &too_big);
    let log = fx.maillog_for(SMALL);
    assert!(
        log.iter()
            .any(|l| l.contains("status=bounced") && l.contains("552 5.2.2")),
        "Postfix did not log the bounce: {log:?}"
    );

    assert!(
        flat.contains("(in reply to end of DATA command)"),
        "expected the refusal after DATA:\n{found}"
    );

    // With 2 MB it fits; lowered back to 1 MB the mailbox holds more than
    // its quota, and lmtpd refuses already at RCPT, as Dovecot's
    // lmtp_rcpt_check_quota does.
    fx.pw.run(&["account", "quota", SMALL, "2M"], None);
    let now_fits = big_message(&fx.dir, USER1, &[SMALL], "fits into 2 MB", 700 * 1024);
    fx.submit(&now_fits);
    fx.stack.read_back(SMALL, PASSWORD, "INBOX", &now_fits);
    fx.pw.run(&["account", "quota", SMALL, "1M"], None);
    let tiny = Message::new(USER1, &[SMALL], "tiny, but the box is full");
    fx.submit(&tiny);
    let found = wait_for_bounce(&fx, &tiny);
    assert!(found.contains("552 5.2.2"), "{found}");
    let flat = found.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains("(in reply to RCPT TO command)"),
        "expected the refusal at RCPT:\n{found}"
    );
    fx.assert_absent(SMALL, "INBOX", &tiny);
}

#[test]
fn multi_recipient_with_one_over_quota_delivers_to_the_others() {
    let fx = Fixture::start("lmtpd-multi");
    let fits = big_message(&fx.dir, USER1, &[SMALL], "fits", 700 * 1024);
    fx.submit(&fits);
    fx.stack.read_back(SMALL, PASSWORD, "INBOX", &fits);

    // One transaction, three recipients; SMALL cannot take 700 KB more.
    let msg = big_message(
        &fx.dir,
        USER1,
        &[USER2, SMALL, USER3],
        "to three",
        700 * 1024,
    );
    fx.submit(&msg);
    fx.stack.read_back(USER2, PASSWORD, "INBOX", &msg);
    fx.stack.read_back(USER3, PASSWORD, "INBOX", &msg);
    let found = wait_for_bounce(&fx, &msg);
    assert!(
        found.contains(SMALL) && found.contains("552 5.2.2"),
        "{found}"
    );
    assert!(
        !found.contains(&format!("<{USER2}>")) && !found.contains(&format!("<{USER3}>")),
        "the bounce names recipients that got the mail:\n{found}"
    );
    fx.assert_absent(SMALL, "INBOX", &msg);
    // One LMTP transaction with mixed per-recipient replies after DATA
    // (RFC 2033 §4.2), as lmtpd logged it.
    let lmtpd_log = fx.stack.lmtpd.as_ref().map(Daemon::log).unwrap_or_default();
    let txn = |rcpt: &str, what: &str| -> Option<String> {
        lmtpd_log
            .lines()
            .rev()
            .filter(|l| l.contains(&format!("to={rcpt} ")) && l.contains(what))
            .find_map(|l| {
                l.split("txn{id=")
                    .nth(1)?
                    .split('}')
                    .next()
                    .map(str::to_owned)
            })
    };
    let (t2, t_small, t3) = (
        txn(USER2, "delivered"),
        txn(SMALL, "OverQuota"),
        txn(USER3, "delivered"),
    );
    assert!(
        t2.is_some() && t2 == t_small && t2 == t3,
        "not one transaction: {t2:?} {t_small:?} {t3:?}\n{lmtpd_log}"
    );
    for (rcpt, status) in [
        (USER2, "status=sent"),
        (SMALL, "status=bounced"),
        (USER3, "status=sent"),
    ] {
        let log = fx.maillog_for(rcpt);
        assert!(
            log.iter().any(|l| l.contains(status)),
            "{rcpt}: no {status} in {log:?}"
        );
    }
}

/// Waits for Postfix's bounce of `msg` in [`USER1`]'s INBOX (the bounce
/// quotes the original's headers, so Message-ID matching finds it in the
/// attached part); returns its text.
#[track_caller]
fn wait_for_bounce(fx: &Fixture, msg: &Message) -> String {
    let mut text = String::new();
    let found = poll_until(DELIVERY_TIMEOUT, || {
        let f = fx.search(USER1, "INBOX", ("From", "MAILER-DAEMON"), 1, Duration::ZERO);
        match f.messages.into_iter().find(|m| m.contains(&msg.message_id)) {
            Some(m) => {
                text = m;
                true
            }
            None => false,
        }
    });
    assert!(
        found,
        "no bounce for {} reached {USER1}\nmaillog:\n{}",
        msg.message_id,
        fx.stack.postfix.maillog()
    );
    text
}

/// Quota warnings: crossing a configured level sends the user one mail
/// through Postfix (null sender, auto-generated); staying above it sends
/// no more.
#[test]
fn quota_warning_is_sent_once_when_a_level_is_crossed() {
    let fx = Fixture::start("lmtpd-quota-warning");
    let lmtpd = fx.stack.lmtpd.as_ref().expect("lmtpd runs");
    let config = std::fs::read_to_string(lmtpd.config_path()).unwrap();
    std::fs::write(
        lmtpd.config_path(),
        format!("{config}quota_warning = [60, 95]\n"),
    )
    .unwrap();
    lmtpd.signal(Signal::SIGHUP);
    let reloaded = poll_until(Duration::from_secs(10), || {
        lmtpd.log().matches("configuration reloaded").count() >= 2
    });
    assert!(reloaded, "lmtpd did not reload:\n{}", lmtpd.log());

    // 500 KB of SMALL's 1 MB: below 60 %, no warning.
    let half = big_message(&fx.dir, USER1, &[SMALL], "half", 500 * 1024);
    fx.submit(&half);
    fx.stack.read_back(SMALL, PASSWORD, "INBOX", &half);
    // Another 200 KB: past 60 %, one warning.
    let more = big_message(&fx.dir, USER1, &[SMALL], "more", 200 * 1024);
    fx.submit(&more);
    fx.stack.read_back(SMALL, PASSWORD, "INBOX", &more);
    let found = fx.search(
        SMALL,
        "INBOX",
        ("Subject", "Your mailbox is 60% full"),
        1,
        Duration::from_secs(30),
    );
    assert_eq!(found.messages.len(), 1, "{}", found.mailboxes);
    let warning = &found.messages[0];
    assert!(
        warning.contains("Auto-Submitted: auto-generated"),
        "{warning}"
    );
    assert!(
        warning.contains(&format!("Your mailbox {SMALL} uses")),
        "{warning}"
    );
    assert!(
        warning.contains("Return-Path: <>"),
        "null sender: {warning}"
    );
    // Still above 60 % (and below 95 %): no second warning.
    let small = Message::new(USER1, &[SMALL], "a little more");
    fx.submit(&small);
    fx.stack.read_back(SMALL, PASSWORD, "INBOX", &small);
    fx.wait_queue_empty();
    let found = fx.search(
        SMALL,
        "INBOX",
        ("Subject", "Your mailbox is"),
        1,
        Duration::from_secs(5),
    );
    assert_eq!(found.messages.len(), 1, "one warning per crossing");
}

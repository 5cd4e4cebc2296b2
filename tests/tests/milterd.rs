//! postwerk-milterd against the real Postfix (issue 6, part 1):
//!
//! - a private Postfix of the guide with `smtpd_milters` and
//!   `non_smtpd_milters` pointing at milterd over TCP;
//! - keys made with `postwerk dkim keygen` (RSA-2048 and Ed25519, dual
//!   signing), records printed by `postwerk dkim show --json`;
//! - mail submitted with AUTH (swaks, submission port) arrives in the
//!   mailbox (read back over IMAP) with two `DKIM-Signature`s, from the
//!   account's own address and from an alias of it, and both signatures
//!   verify with python3-dkim (dkimpy) against the published records;
//! - mail from another server (port 25) is not signed; a domain without a
//!   key passes unsigned and milterd's log names the missing file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use postwerk_tests::cli::Postwerk;
use postwerk_tests::daemon::{Daemon, Ready};
use postwerk_tests::dkim::{dkimpy_verify, published_records};
use postwerk_tests::exec::{require, run};
use postwerk_tests::guide::Stack;
use postwerk_tests::net::free_port;
use postwerk_tests::postfix::{self, Maps};
use postwerk_tests::smtp::Message;
use postwerk_tests::smtp::header_values;
use postwerk_tests::{Database, Sqlite, TestDir};

const PASSWORD: &str = "s3cret pass";
const USER: &str = "user1@example.org";
const ALIAS: &str = "alias@example.org";
/// An account of a domain that has no DKIM key.
const KEYLESS: &str = "info@example.net";

fn provision(db: &dyn Database, pw: &Postwerk) {
    let stdin = format!("{PASSWORD}\n");
    for args in [
        &["db", "init"][..],
        &["domain", "add", "example.org"],
        &["domain", "add", "example.net"],
        &["account", "add", USER, "--password-stdin"],
        &["account", "add", KEYLESS, "--password-stdin"],
        &["alias", "add", ALIAS, USER],
    ] {
        pw.run(args, Some(&stdin));
    }
    db.grant_readers();
}

fn header_count(message: &str, name: &str) -> usize {
    header_values(message, name).len()
}

#[test]
fn submitted_mail_is_dkim_signed_with_rsa_and_ed25519_and_verifies() {
    let dir = TestDir::new("milterd-sign");
    let db = Sqlite::fresh(&dir);
    let keys = dir.mkdir("dkim", 0o750);
    let port = free_port();
    let config = format!(
        "[database]\nurl = \"{}\"\n\n[milterd]\nlisten = [\"inet:127.0.0.1:{port}\"]\n\n[milterd.dkim]\nselector = [\"rsa2026\", \"ed2026\"]\npath = \"{}/$domain.$selector.key\"\n",
        db.reader_url(),
        keys.display()
    );
    let config_path = dir.write("postwerk.toml", &config, 0o644);
    let pw = Postwerk::new(&db.url()).with_config(config_path);
    provision(&db, &pw);

    // The admin's steps: make the keys, print the records to publish.
    let out = pw.run(
        &[
            "dkim",
            "keygen",
            "--domain",
            "example.org",
            "--selector",
            "rsa2026",
        ],
        None,
    );
    assert!(
        out.contains("rsa2026._domainkey.example.org. IN TXT ( \"v=DKIM1; k=rsa; p="),
        "{out}"
    );
    let out = pw.run(
        &[
            "dkim",
            "keygen",
            "--domain",
            "example.org",
            "--selector",
            "ed2026",
            "--algo",
            "ed25519",
        ],
        None,
    );
    assert!(
        out.contains("ed2026._domainkey.example.org. IN TXT \"v=DKIM1; k=ed25519; p="),
        "{out}"
    );
    for sel in ["rsa2026", "ed2026"] {
        let path = keys.join(format!("example.org.{sel}.key"));
        let mode = std::fs::metadata(&path).unwrap().permissions();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.mode() & 0o777, 0o440, "{}", path.display());
    }
    let records = published_records(&pw, "example.org");
    assert_eq!(records.len(), 2, "{records:?}");

    let mut milterd = Daemon::start(&dir, "postwerk-milterd", &config, &[Ready::Tcp(port)]);
    let mut pf = postfix::Config::guide(Maps::sql(&dir, &db));
    pf.milters = Some(format!("inet:127.0.0.1:{port}"));
    let stack = Stack::start_with_config(&dir, &db, pf, None);

    // Submission with AUTH: own address and an alias of the login.
    let own =
        Message::new(USER, &[USER], "signed by milterd").header("To: Someone <user1@example.org>");
    let t = stack.submission(USER, PASSWORD).send(&own);
    assert!(t.is_accepted(), "{t}");
    let from_alias = Message::new(ALIAS, &[USER], "signed for the alias");
    let t = stack.submission(USER, PASSWORD).send(&from_alias);
    assert!(t.is_accepted(), "{t}");
    // From another server: incoming, not signed.
    let incoming = Message::new("someone@elsewhere.test", &[USER], "incoming");
    let t = stack.inbound().send(&incoming);
    assert!(t.is_accepted(), "{t}");
    // A domain of ours without a key: unsigned, and the log says which file.
    let keyless = Message::new(KEYLESS, &[USER], "no key for example.net");
    let t = stack.submission(KEYLESS, PASSWORD).send(&keyless);
    assert!(t.is_accepted(), "{t}");

    for msg in [&own, &from_alias] {
        let (stored, _) = stack.read_back(USER, PASSWORD, "INBOX", msg);
        assert_eq!(header_count(&stored, "DKIM-Signature"), 2, "{stored}");
        let lines = dkimpy_verify(&dir, &stored, &records);
        assert_eq!(lines.len(), 2, "{lines:?}\n{stored}");
        let mut algos: Vec<&str> = lines
            .iter()
            .map(|l| l.split(' ').nth(3).unwrap_or(""))
            .collect();
        algos.sort();
        assert_eq!(algos, ["ed25519-sha256", "rsa-sha256"], "{lines:?}");
        for l in &lines {
            assert!(
                l.contains(" example.org ") && l.ends_with(" pass"),
                "dkimpy: {l}\n{stored}"
            );
        }
        // Relaxed/relaxed with From, To and Subject over-signed.
        let sig = header_values(&stored, "DKIM-Signature")
            .into_iter()
            .next()
            .unwrap();
        let sig: String = sig.split_whitespace().collect();
        assert!(sig.contains("c=relaxed/relaxed"), "{sig}");
        let h = sig
            .split("h=")
            .nth(1)
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_ascii_lowercase();
        let h: Vec<&str> = h.split(':').collect();
        for name in ["from", "to", "subject"] {
            assert_eq!(
                h.iter().filter(|n| **n == name).count(),
                2,
                "{name} not over-signed: {h:?}"
            );
        }
    }
    // A broken copy must fail: the verifier is not just saying yes.
    let (stored, _) = stack.read_back(USER, PASSWORD, "INBOX", &own);
    let tampered = stored.replace("signed by milterd", "signed by someone else");
    let lines = dkimpy_verify(&dir, &tampered, &records);
    assert!(lines.iter().all(|l| l.ends_with(" fail")), "{lines:?}");

    let (stored, _) = stack.read_back(USER, PASSWORD, "INBOX", &incoming);
    assert_eq!(header_count(&stored, "DKIM-Signature"), 0, "{stored}");
    let (stored, _) = stack.read_back(USER, PASSWORD, "INBOX", &keyless);
    assert_eq!(header_count(&stored, "DKIM-Signature"), 0, "{stored}");
    let log = milterd.log();
    let missing = keys.join("example.net.rsa2026.key");
    assert!(
        log.contains("no DKIM key file") && log.contains(&missing.display().to_string()),
        "milterd did not log the missing key file {}:\n{log}",
        missing.display()
    );
    assert!(log.contains("signed"), "{log}");
    drop(stack);
    assert!(
        milterd.stop(),
        "milterd did not exit cleanly:\n{}",
        milterd.log()
    );
}

// ---------------------------------------------------------------------------
// Incoming mail (issue 6, part 2): SPF, DKIM and DMARC verification against
// a test DNS server on loopback (postwerk_tests::dns), through the real
// Postfix; the messages are signed by dkimpy and sent by python smtplib to
// the smtp port as another server would.

/// Our authserv-id: Postfix's myhostname in the harness.
const AUTHSERV_ID: &str = "mail.example.org";

/// Signs (when argv[4] is a key file) and sends one message with smtplib:
/// argv: port helo mail_from key|- domain selector message_file tamper(0|1)
/// rcpt. Prints `sent` or `rejected <code> <text>`.
const SEND_PY: &str = r#"
import dkim, smtplib, sys
port, helo, mail_from, key, domain, selector, path, tamper, rcpt = sys.argv[1:10]
msg = open(path, 'rb').read()
if key != '-':
    sig = dkim.sign(msg, selector.encode(), domain.encode(), open(key, 'rb').read(),
                    canonicalize=(b'relaxed', b'relaxed'),
                    include_headers=[b'from', b'to', b'subject', b'message-id', b'date'])
    msg = sig + msg
if tamper == '1':
    msg = msg.replace(b'Hello from', b'Hullo from')
s = smtplib.SMTP('127.0.0.1', int(port), local_hostname=helo, timeout=60)
try:
    s.sendmail(mail_from, [rcpt], msg)
    print('sent')
except smtplib.SMTPDataError as e:
    print('rejected', e.smtp_code, e.smtp_error.decode())
finally:
    s.quit()
"#;

/// The message text of `msg` with CRLF line ends and extra header lines.
fn render(msg: &Message, extra: &[&str]) -> String {
    let mut out = String::new();
    for h in extra {
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str(&format!(
        "From: <{}>\r\nTo: <{}>\r\nSubject: {}\r\nMessage-ID: {}\r\nDate: Mon, 01 Jun 2026 10:00:00 +0000\r\n\r\n",
        msg.from,
        msg.to.join(">, <"),
        msg.subject,
        msg.message_id
    ));
    out.push_str(&msg.body.replace('\n', "\r\n"));
    out
}

struct Sender<'a> {
    dir: &'a TestDir,
    port: u16,
    key: String,
}

impl Sender<'_> {
    /// Sends `msg` from `helo`; signs it for `sign = Some((domain,
    /// selector))`; `tamper` changes the body after signing.
    fn send(
        &self,
        msg: &Message,
        extra: &[&str],
        sign: Option<(&str, &str)>,
        tamper: bool,
    ) -> String {
        let path = self.dir.write(
            format!("incoming/{}.eml", msg.token),
            render(msg, extra),
            0o644,
        );
        let (key, domain, selector) = match sign {
            Some((d, s)) => (self.key.as_str(), d, s),
            None => ("-", "-", "-"),
        };
        let mut cmd = Command::new(require("/usr/bin/python3"));
        cmd.args(["-c", SEND_PY, &self.port.to_string(), "mx.sender.test"])
            .args([msg.from.as_str(), key, domain, selector])
            .arg(&path)
            .args([if tamper { "1" } else { "0" }, msg.to[0].as_str()]);
        let out = run(&mut cmd, None, Duration::from_secs(90)).assert_success();
        out.stdout.trim().to_owned()
    }
}

/// An RSA-2048 key for dkimpy (PKCS#1 PEM) and its DKIM public key value.
fn rsa_key(dir: &TestDir) -> (String, String) {
    let key = dir.join("incoming-dkim.key");
    let mut keygen = Command::new(require("openssl"));
    keygen
        .args(["genrsa", "-traditional", "-out"])
        .arg(&key)
        .arg("2048");
    run(&mut keygen, None, Duration::from_secs(60)).assert_success();
    let der = dir.join("incoming-dkim.pub.der");
    let mut public = Command::new(require("openssl"));
    public
        .args(["rsa", "-pubout", "-outform", "DER", "-in"])
        .arg(&key)
        .arg("-out")
        .arg(&der);
    run(&mut public, None, Duration::from_secs(60)).assert_success();
    let mut b64 = Command::new(require("base64"));
    b64.args(["-w", "0"]).arg(&der);
    let p = run(&mut b64, None, Duration::from_secs(60))
        .assert_success()
        .stdout
        .trim()
        .to_owned();
    (key.display().to_string(), p)
}

/// The one Authentication-Results value of a stored message, with the
/// folding removed.
fn our_results(stored: &str) -> String {
    let all = header_values(stored, "Authentication-Results");
    assert_eq!(all.len(), 1, "{stored}");
    all[0].split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn incoming_mail_is_verified_with_spf_dkim_dmarc_through_postfix() {
    let dir = TestDir::new("milterd-verify");
    let db = Sqlite::fresh(&dir);
    let dns = postwerk_tests::dns::Dns::start();
    let (key, public) = rsa_key(&dir);
    dns.txt(
        "sel1._domainkey.signed.test",
        &format!("v=DKIM1; k=rsa; p={public}"),
    )
    .txt("signed.test", "v=spf1 ip4:127.0.0.1 -all")
    .txt("spffail.test", "v=spf1 ip4:192.0.2.1 -all")
    .txt("strict.test", "v=spf1 ip4:192.0.2.1 -all")
    .txt("_dmarc.strict.test", "v=DMARC1; p=reject")
    .txt("_dmarc.signed.test", "v=DMARC1; p=reject");
    let port = free_port();
    let config = format!(
        "[database]\nurl = \"{}\"\n\n[milterd]\nlisten = [\"inet:127.0.0.1:{port}\"]\ndns_servers = [\"{}\"]\ndns_timeout = \"2s\"\n\n[milterd.dkim]\npath = \"{}/$domain.$selector.key\"\n\n[milterd.verify]\nauthserv_id = \"{AUTHSERV_ID}\"\n",
        db.reader_url(),
        dns.addr,
        dir.join("dkim").display()
    );
    let config_path = dir.write("postwerk.toml", &config, 0o644);
    let pw = Postwerk::new(&db.url()).with_config(config_path);
    provision(&db, &pw);
    let mut milterd = Daemon::start(&dir, "postwerk-milterd", &config, &[Ready::Tcp(port)]);
    let mut pf = postfix::Config::guide(Maps::sql(&dir, &db));
    pf.milters = Some(format!("inet:127.0.0.1:{port}"));
    let stack = Stack::start_with_config(&dir, &db, pf, None);
    let sender = Sender {
        dir: &dir,
        port: stack.postfix.smtp_port,
        key,
    };

    // (a) A valid signature, SPF pass, aligned: DMARC pass.
    let valid = Message::new("news@signed.test", &[USER], "valid signature");
    assert_eq!(
        sender.send(&valid, &[], Some(("signed.test", "sel1")), false),
        "sent"
    );
    // (b) The same, with the body changed after signing.
    let broken = Message::new("news@signed.test", &[USER], "broken signature");
    assert_eq!(
        sender.send(&broken, &[], Some(("signed.test", "sel1")), true),
        "sent"
    );
    // (c) SPF fail for the envelope domain (no DMARC record there).
    let spf_fail = Message::new("someone@spffail.test", &[USER], "spf fail");
    assert_eq!(sender.send(&spf_fail, &[], None, false), "sent");
    // (d) DMARC p=reject, SPF fails and no signature: rejected at end of
    // data.
    let dmarc_fail = Message::new("ceo@strict.test", &[USER], "dmarc reject");
    let out = sender.send(&dmarc_fail, &[], None, false);
    assert!(
        out.starts_with("rejected 550 5.7.1"),
        "{out}\n{}",
        milterd.log()
    );
    // (e) Forged results claiming our authserv-id; another host's stay.
    let forged = Message::new("news@signed.test", &[USER], "forged results");
    let extra = [
        "Authentication-Results: mail.example.org; dkim=pass header.d=paypal.com",
        "Authentication-Results: mx.elsewhere.test; spf=pass smtp.mailfrom=x@elsewhere.test",
        "Authentication-Results: (sneaky) MAIL.EXAMPLE.ORG;\r\n\tdmarc=pass header.from=paypal.com",
    ];
    assert_eq!(sender.send(&forged, &extra, None, false), "sent");

    let (stored, _) = stack.read_back(USER, PASSWORD, "INBOX", &valid);
    let ar = our_results(&stored);
    assert!(ar.starts_with("mail.example.org;"), "{ar}");
    assert!(
        ar.contains("spf=pass") && ar.contains("smtp.mailfrom=news@signed.test"),
        "{ar}"
    );
    assert!(ar.contains("smtp.helo=mx.sender.test"), "{ar}");
    // dkimpy writes i=@signed.test, so the result names header.i.
    assert!(
        ar.contains("dkim=pass header.i=@signed.test header.s=sel1"),
        "{ar}"
    );
    assert!(
        ar.contains("dmarc=pass header.from=signed.test policy.dmarc=reject"),
        "{ar}"
    );
    // At the top, above Postfix's own Received: (RFC 8601 §5).
    let ours = stored.find("Authentication-Results:").unwrap();
    let postfix_received = stored.find("Received: from mx.sender.test").unwrap();
    assert!(ours < postfix_received, "{stored}");

    let (stored, _) = stack.read_back(USER, PASSWORD, "INBOX", &broken);
    let ar = our_results(&stored);
    // mail-auth reports a body hash mismatch as `neutral` (RFC 6376
    // §6.1.3 allows either; RFC 8601 §2.7.1), never `pass`.
    assert!(
        ar.contains("dkim=neutral") || ar.contains("dkim=fail"),
        "{ar}"
    );
    assert!(!ar.contains("dkim=pass"), "{ar}");
    assert!(ar.contains("spf=pass"), "{ar}");
    // SPF is aligned, so DMARC still passes (RFC 7489 §4.2).
    assert!(ar.contains("dmarc=pass"), "{ar}");

    let (stored, _) = stack.read_back(USER, PASSWORD, "INBOX", &spf_fail);
    let ar = our_results(&stored);
    assert!(
        ar.contains("spf=fail") && ar.contains("smtp.mailfrom=someone@spffail.test"),
        "{ar}"
    );
    assert!(ar.contains("dkim=none"), "{ar}");
    assert!(ar.contains("dmarc=none"), "{ar}");

    let (stored, _) = stack.read_back(USER, PASSWORD, "INBOX", &forged);
    let all = header_values(&stored, "Authentication-Results");
    assert_eq!(all.len(), 2, "{stored}");
    let ar = our_results_among(&all);
    assert!(!ar.contains("paypal"), "{ar}\n{stored}");
    assert!(ar.contains("dkim=none"), "{ar}");
    assert!(
        all.iter().any(|v| v.contains("mx.elsewhere.test")),
        "{stored}"
    );

    let log = milterd.log();
    assert!(
        log.contains("rejected by the sender domain's DMARC policy"),
        "{log}"
    );
    assert!(
        stack
            .postfix
            .maillog()
            .contains("milter-reject: END-OF-MESSAGE")
    );
    drop(stack);
    assert!(
        milterd.stop(),
        "milterd did not exit cleanly:\n{}",
        milterd.log()
    );
}

/// The one value that starts with our authserv-id, folding removed.
fn our_results_among(all: &[String]) -> String {
    let ours: Vec<String> = all
        .iter()
        .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|v| v.to_ascii_lowercase().contains("mail.example.org"))
        .collect();
    assert_eq!(ours.len(), 1, "{all:?}");
    ours[0].clone()
}

// ---------------------------------------------------------------------------
// ARC (RFC 8617): sealing of mail that an alias forwards off-site and of
// outgoing mail, verification of incoming chains. The foreign server is a
// local smtp-sink (Postfix's relayhost); its copy is checked by dkimpy's
// arc_verify (python3-dkim) and by mail-auth (milterd's own verifier, in
// process), both asking the test DNS server for the keys.

/// dkimpy's ARC verification of the message in argv[1], asking the DNS
/// server at argv[2] (ADDRESS:PORT) for the keys; prints `cv=<pass|fail|
/// none> <reason>` and, for each DKIM-Signature, `dkim <d=> pass|fail`.
const ARC_VERIFY_PY: &str = r#"
import dkim, dns.resolver, re, sys
msg = open(sys.argv[1], 'rb').read()
host, port = sys.argv[2].rsplit(':', 1)
r = dns.resolver.Resolver(configure=False)
r.nameservers = [host]
r.port = int(port)
def dnsfunc(name, timeout=5):
    n = name.decode() if isinstance(name, bytes) else name
    try:
        a = r.resolve(n, 'TXT', lifetime=timeout)
    except Exception:
        return None
    return b''.join(b''.join(x.strings) for x in a)
cv, results, reason = dkim.arc_verify(msg, dnsfunc=dnsfunc)
print('cv=' + (cv.decode() if cv else 'None'), reason)
head = msg.split(b'\r\n\r\n', 1)[0]
for i in range(len(re.findall(rb'(?im)^dkim-signature:', head))):
    d = dkim.DKIM(msg)
    try:
        ok = d.verify(idx=i, dnsfunc=dnsfunc)
    except dkim.ValidationError:
        ok = False
    print('dkim', d.domain.decode(), 'pass' if ok else 'fail')
"#;

/// `smtp-sink` on a free port, writing one file per message under
/// `DIR/sink/`; killed on drop.
struct Sink {
    child: std::process::Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sink {
    fn start(dir: &TestDir) -> Sink {
        let port = free_port();
        // smtp-sink drops to `nobody` and writes one file per message.
        let _ = std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        );
        let sink_dir = dir.mkdir("sink", 0o777);
        let child = Command::new(require("smtp-sink"))
            .args(["-u", "nobody", "-D"])
            .arg(sink_dir.join("msg"))
            .arg(format!("127.0.0.1:{port}"))
            .arg("20")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        postwerk_tests::net::wait_for_port(port, Duration::from_secs(10)).unwrap();
        Sink {
            child,
            port,
            dir: sink_dir,
        }
    }

    /// The messages received so far, without smtp-sink's envelope lines,
    /// with CRLF line ends. smtp-sink appends every message to the -D file,
    /// each starting with its `X-Client-Addr:` line.
    fn messages(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| std::fs::read(e.path()).ok())
            .flat_map(|bytes| {
                let text = String::from_utf8_lossy(&bytes).replace("\r\n", "\n");
                text.split("X-Client-Addr:")
                    .filter(|m| !m.trim().is_empty())
                    .map(|m| format!("X-Client-Addr:{m}"))
                    .collect::<Vec<_>>()
            })
            .map(|text| {
                let text = text.trim_end_matches('\n').to_owned() + "\n";
                let body: Vec<&str> = text
                    .split('\n')
                    .skip_while(|l| {
                        ["X-Client-", "X-Helo-Args:", "X-Mail-Args:", "X-Rcpt-Args:"]
                            .iter()
                            .any(|p| l.starts_with(p))
                    })
                    .collect();
                body.join("\r\n")
            })
            .collect()
    }

    /// Waits for a message that contains every one of `needles`.
    #[track_caller]
    fn wait_for(&self, needles: &[&str], stack: &Stack) -> String {
        let mut found = None;
        let ok = postwerk_tests::exec::poll_until(Duration::from_secs(60), || {
            stack.postfix.flush();
            found = self
                .messages()
                .into_iter()
                .find(|m| needles.iter().all(|n| m.contains(n)));
            found.is_some()
        });
        assert!(
            ok,
            "no message with {needles:?} reached the foreign server; queue:\n{}",
            stack.postfix.queue_listing()
        );
        found.unwrap()
    }
}

/// dkimpy's verdict lines for `message` (see ARC_VERIFY_PY).
fn dkimpy_arc(dir: &TestDir, name: &str, message: &str, dns: &std::net::SocketAddr) -> Vec<String> {
    let path = dir.write(format!("arc/{name}.eml"), message, 0o644);
    let mut cmd = Command::new(require("/usr/bin/python3"));
    cmd.args(["-c", ARC_VERIFY_PY])
        .arg(&path)
        .arg(dns.to_string());
    let out = run(&mut cmd, None, Duration::from_secs(60)).assert_success();
    out.stdout.lines().map(str::to_owned).collect()
}

/// mail-auth's verdict (milterd's verifier, in process, on the test DNS).
fn mail_auth_verdict(config: &str, message: &str) -> postwerk_milterd::verify::Verdict {
    let cfg = postwerk_core::config::Config::parse(config).unwrap();
    let verifier = postwerk_milterd::verify::Verifier::new(&cfg.milterd).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let env = postwerk_milterd::verify::Envelope::default();
    rt.block_on(verifier.verify(message.as_bytes(), &env))
}

/// The tag `tag=` of a header value (whitespace removed).
fn tag(value: &str, tag: &str) -> Option<String> {
    let v: String = value.split_whitespace().collect();
    v.split(';')
        .find_map(|t| t.trim().strip_prefix(&format!("{tag}=")).map(str::to_owned))
}

#[test]
fn mail_forwarded_off_site_is_arc_sealed_and_chains_verify() {
    let dir = TestDir::new("milterd-arc");
    let db = Sqlite::fresh(&dir);
    let dns = postwerk_tests::dns::Dns::start();
    let keys = dir.mkdir("dkim", 0o750);
    let port = free_port();
    let config = format!(
        "[database]\nurl = \"{}\"\n\n[milterd]\nlisten = [\"inet:127.0.0.1:{port}\"]\ndns_servers = [\"{}\"]\ndns_timeout = \"2s\"\n\n[milterd.dkim]\nselector = \"rsa2026\"\npath = \"{}/$domain.$selector.key\"\n\n[milterd.verify]\nauthserv_id = \"{AUTHSERV_ID}\"\n\n[milterd.arc]\nseal_outgoing = true\n\n[milterd.spam]\nenabled = false\n",
        db.reader_url(),
        dns.addr,
        keys.display()
    );
    let config_path = dir.write("postwerk.toml", &config, 0o644);
    let pw = Postwerk::new(&db.url()).with_config(config_path);
    provision(&db, &pw);
    pw.run(
        &["alias", "add", "fwd@example.org", "friend@foreign.example"],
        None,
    );
    // example.net has no key: its forwarded mail goes on unsealed.
    pw.run(
        &["alias", "add", "fwd@example.net", "friend@foreign.example"],
        None,
    );
    pw.run(
        &[
            "dkim",
            "keygen",
            "--domain",
            "example.org",
            "--selector",
            "rsa2026",
        ],
        None,
    );
    let shown: serde_json::Value =
        serde_json::from_str(&pw.run(&["--json", "dkim", "show", "example.org"], None)).unwrap();
    for r in shown.as_array().unwrap() {
        let value: String = r["txt_strings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        dns.txt(r["name"].as_str().unwrap().trim_end_matches('.'), &value);
    }
    // The original author's domain: DKIM key, SPF for loopback.
    let (key, public) = rsa_key(&dir);
    dns.txt(
        "sel1._domainkey.signed.test",
        &format!("v=DKIM1; k=rsa; p={public}"),
    )
    .txt("signed.test", "v=spf1 ip4:127.0.0.1 -all")
    .txt("_dmarc.signed.test", "v=DMARC1; p=none");

    let sink = Sink::start(&dir);
    let mut milterd = Daemon::start(&dir, "postwerk-milterd", &config, &[Ready::Tcp(port)]);
    let mut pf = postfix::Config::guide(Maps::sql(&dir, &db));
    pf.milters = Some(format!("inet:127.0.0.1:{port}"));
    pf.extra_main_cf = vec![
        format!("relayhost = [127.0.0.1]:{}", sink.port),
        "smtp_tls_security_level = may".to_owned(),
    ];
    let stack = Stack::start_with_config(&dir, &db, pf, None);
    let sender = Sender {
        dir: &dir,
        port: stack.postfix.smtp_port,
        key,
    };

    // Hop 1: a signed message from another server to the forwarding alias.
    let msg = Message::new("news@signed.test", &["fwd@example.org"], "forwarded once");
    assert_eq!(
        sender.send(&msg, &[], Some(("signed.test", "sel1")), false),
        "sent"
    );
    let hop1 = sink.wait_for(&[&msg.token, "ARC-Seal:"], &stack);
    let seals = header_values(&hop1, "ARC-Seal");
    assert_eq!(seals.len(), 1, "{hop1}");
    assert_eq!(tag(&seals[0], "i").as_deref(), Some("1"), "{hop1}");
    assert_eq!(tag(&seals[0], "cv").as_deref(), Some("none"), "{hop1}");
    assert_eq!(
        tag(&seals[0], "d").as_deref(),
        Some("example.org"),
        "{hop1}"
    );
    assert_eq!(tag(&seals[0], "s").as_deref(), Some("rsa2026"), "{hop1}");
    assert_eq!(tag(&seals[0], "a").as_deref(), Some("rsa-sha256"), "{hop1}");
    let aar = header_values(&hop1, "ARC-Authentication-Results");
    assert_eq!(aar.len(), 1, "{hop1}");
    let aar: String = aar[0].split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(aar.starts_with("i=1; mail.example.org;"), "{aar}");
    for clause in [
        "spf=pass",
        "dkim=pass header.i=@signed.test",
        "arc=none",
        "dmarc=pass",
    ] {
        assert!(aar.contains(clause), "{clause} missing: {aar}");
    }
    let ar = our_results(&hop1);
    assert!(ar.contains("arc=none"), "{ar}");
    // The ARC set is on top, above our Authentication-Results.
    assert!(
        hop1.find("ARC-Seal:").unwrap() < hop1.find("Authentication-Results: mail").unwrap(),
        "{hop1}"
    );

    // Two verifiers: dkimpy and mail-auth.
    let lines = dkimpy_arc(&dir, "hop1", &hop1, &dns.addr);
    assert!(lines[0].starts_with("cv=pass"), "dkimpy: {lines:?}\n{hop1}");
    assert!(
        lines.iter().any(|l| l == "dkim signed.test pass"),
        "{lines:?}"
    );
    let verdict = mail_auth_verdict(&config, &hop1);
    assert_eq!(verdict.arc, "pass", "mail-auth: {}\n{hop1}", verdict.header);
    // The verifiers do not just say yes: a changed body breaks the chain.
    let tampered = hop1.replace(&msg.token, "tampered-token");
    let lines = dkimpy_arc(&dir, "hop1-tampered", &tampered, &dns.addr);
    assert!(lines[0].starts_with("cv=fail"), "{lines:?}");
    assert_ne!(mail_auth_verdict(&config, &tampered).arc, "pass");

    // Hop 2: the sealed message comes back (a second forwarder would do
    // this): arc=pass in our results, and a second set with i=2, cv=pass.
    let resend = |name: &str, text: &str| {
        let path = dir.write(format!("arc/{name}.eml"), text, 0o644);
        let mut cmd = Command::new(require("/usr/bin/python3"));
        cmd.args([
            "-c",
            SEND_PY,
            &stack.postfix.smtp_port.to_string(),
            "mx.sender.test",
        ])
        .args(["news@signed.test", "-", "-", "-"])
        .arg(&path)
        .args(["0", "fwd@example.org"]);
        let out = run(&mut cmd, None, Duration::from_secs(90)).assert_success();
        assert_eq!(out.stdout.trim(), "sent");
    };
    resend("hop2-in", &hop1);
    let hop2 = sink.wait_for(&[&msg.token, "i=2;"], &stack);
    let seals = header_values(&hop2, "ARC-Seal");
    assert_eq!(seals.len(), 2, "{hop2}");
    // The newest set is on top.
    assert_eq!(tag(&seals[0], "i").as_deref(), Some("2"), "{hop2}");
    assert_eq!(tag(&seals[0], "cv").as_deref(), Some("pass"), "{hop2}");
    let aar2 = header_values(&hop2, "ARC-Authentication-Results");
    assert!(
        aar2.iter()
            .any(|v| v.trim_start().starts_with("i=2;") && v.contains("arc=pass")),
        "{hop2}"
    );
    let ours: Vec<String> = header_values(&hop2, "Authentication-Results")
        .into_iter()
        .filter(|v| v.trim_start().starts_with("mail.example.org"))
        .collect();
    assert_eq!(ours.len(), 1, "{hop2}");
    assert!(ours[0].contains("arc=pass"), "{}", ours[0]);
    let lines = dkimpy_arc(&dir, "hop2", &hop2, &dns.addr);
    assert!(lines[0].starts_with("cv=pass"), "dkimpy: {lines:?}\n{hop2}");
    assert_eq!(mail_auth_verdict(&config, &hop2).arc, "pass");

    // A broken chain: our seal says so (cv=fail, arc=fail), and a chain
    // that has failed is not extended (RFC 8617 §5.1.2), but the message
    // is still forwarded.
    resend("broken-in", &tampered);
    let broken = sink.wait_for(&["tampered-token", "i=2;"], &stack);
    let seals = header_values(&broken, "ARC-Seal");
    assert_eq!(tag(&seals[0], "i").as_deref(), Some("2"), "{broken}");
    assert_eq!(tag(&seals[0], "cv").as_deref(), Some("fail"), "{broken}");
    let ours: Vec<String> = header_values(&broken, "Authentication-Results")
        .into_iter()
        .filter(|v| v.trim_start().starts_with("mail.example.org"))
        .collect();
    assert!(ours[0].contains("arc=fail"), "{}", ours[0]);
    // dkimpy answers a chain whose newest seal says cv=fail with no cv.
    let lines = dkimpy_arc(&dir, "broken", &broken, &dns.addr);
    assert!(!lines[0].starts_with("cv=pass"), "{lines:?}");
    let failed_once = broken.replace("tampered-token", "failed-chain-token");
    resend("failed-in", &failed_once);
    let passed_on = sink.wait_for(&["failed-chain-token"], &stack);
    assert_eq!(header_count(&passed_on, "ARC-Seal"), 2, "{passed_on}");
    assert!(
        milterd
            .log()
            .contains("forwarded off-site; not sealed (ARC)"),
        "{}",
        milterd.log()
    );

    // Mail to a local alias is delivered, not forwarded: no seal.
    let local = Message::new("news@signed.test", &[ALIAS], "delivered locally");
    assert_eq!(
        sender.send(&local, &[], Some(("signed.test", "sel1")), false),
        "sent"
    );
    let (stored, _) = stack.read_back(USER, PASSWORD, "INBOX", &local);
    assert_eq!(header_count(&stored, "ARC-Seal"), 0, "{stored}");
    assert!(our_results(&stored).contains("arc=none"), "{stored}");

    // Outgoing mail (sealed here with seal_outgoing = true; the guide's
    // Rspamd does not, its arc module has sign_authenticated = false): DKIM-signed and
    // sealed with d= the From domain; both verify. (Sent to the alias:
    // the submission service checks a foreign domain in real DNS.)
    let out_msg = Message::new(USER, &["fwd@example.org"], "outgoing sealed");
    let t = stack.submission(USER, PASSWORD).send(&out_msg);
    assert!(t.is_accepted(), "{t}");
    let sent = sink.wait_for(&[&out_msg.token], &stack);
    let seals = header_values(&sent, "ARC-Seal");
    assert_eq!(seals.len(), 1, "{sent}");
    assert_eq!(
        tag(&seals[0], "d").as_deref(),
        Some("example.org"),
        "{sent}"
    );
    let lines = dkimpy_arc(&dir, "outgoing", &sent, &dns.addr);
    assert!(lines[0].starts_with("cv=pass"), "dkimpy: {lines:?}\n{sent}");
    assert!(
        lines.iter().any(|l| l == "dkim example.org pass"),
        "{lines:?}"
    );
    assert_eq!(mail_auth_verdict(&config, &sent).arc, "pass");

    // A forwarding domain without a key: forwarded unsealed, and the log
    // names the key file it looked for.
    let keyless = Message::new("news@signed.test", &["fwd@example.net"], "no arc key");
    assert_eq!(
        sender.send(&keyless, &[], Some(("signed.test", "sel1")), false),
        "sent"
    );
    let passed_on = sink.wait_for(&[&keyless.token], &stack);
    assert_eq!(header_count(&passed_on, "ARC-Seal"), 0, "{passed_on}");
    let missing = keys.join("example.net.rsa2026.key").display().to_string();
    assert!(
        milterd.log().contains("no ARC key file") && milterd.log().contains(&missing),
        "{}",
        milterd.log()
    );

    // DNS trouble while checking a chain: arc=temperror, and no seal with
    // cv=fail that would end the chain for good; the message goes on.
    dns.servfail("gone2026._domainkey.example.org");
    // (The body stays as it was: mail-auth checks the body hash before it
    // asks for the key; the marker is a field the seal does not cover.)
    let unverifiable = format!(
        "X-Run: servfail-token\r\n{}",
        hop1.replace("s=rsa2026; d=example.org;", "s=gone2026; d=example.org;")
    );
    resend("servfail-in", &unverifiable);
    let passed_on = sink.wait_for(&["servfail-token"], &stack);
    assert_eq!(header_count(&passed_on, "ARC-Seal"), 1, "{passed_on}");
    let ours: Vec<String> = header_values(&passed_on, "Authentication-Results")
        .into_iter()
        .filter(|v| v.trim_start().starts_with("mail.example.org"))
        .collect();
    assert!(ours[0].contains("arc=temperror"), "{}", ours[0]);

    let log = milterd.log();
    assert!(log.contains("forwarded off-site; sealed (ARC)"), "{log}");
    assert!(log.contains("sealed (ARC)"), "{log}");
    drop(stack);
    assert!(
        milterd.stop(),
        "milterd did not exit cleanly:\n{}",
        milterd.log()
    );
}

// ---------------------------------------------------------------------------
// A second DKIM verifier (OpenDKIM), mail from sendmail(1) through
// non_smtpd_milters, and a selector switch on SIGHUP.

/// A signing milterd and a guide Postfix on `db`, with `selectors` made by
/// `postwerk dkim keygen` (`ed…` selectors Ed25519, others RSA). Returns
/// the daemon, the stack, the records (name → TXT value) and the config.
fn signing_stack(
    dir: &TestDir,
    db: &Sqlite,
    selectors: &[&str],
    in_config: &str,
    extra_master_cf: Vec<String>,
) -> (Daemon, Stack, BTreeMap<String, String>, String) {
    let keys = dir.mkdir("dkim", 0o750);
    let port = free_port();
    let config = format!(
        "[database]\nurl = \"{}\"\n\n[milterd]\nlisten = [\"inet:127.0.0.1:{port}\"]\n\n[milterd.dkim]\nselector = {in_config}\npath = \"{}/$domain.$selector.key\"\n",
        db.reader_url(),
        keys.display()
    );
    let config_path = dir.write("postwerk.toml", &config, 0o644);
    let pw = Postwerk::new(&db.url()).with_config(config_path);
    provision(db, &pw);
    // The record each keygen prints (zone-file line, 255-byte strings).
    let mut records = BTreeMap::new();
    for sel in selectors {
        let mut args = vec![
            "dkim",
            "keygen",
            "--domain",
            "example.org",
            "--selector",
            sel,
        ];
        if sel.starts_with("ed") {
            args.extend(["--algo", "ed25519"]);
        }
        let out = pw.run(&args, None);
        let value: String = out
            .split('"')
            .skip(1)
            .step_by(2)
            .collect::<Vec<_>>()
            .concat();
        assert!(value.starts_with("v=DKIM1;"), "{out}");
        records.insert(format!("{sel}._domainkey.example.org."), value);
    }
    let milterd = Daemon::start(dir, "postwerk-milterd", &config, &[Ready::Tcp(port)]);
    let mut pf = postfix::Config::guide(Maps::sql(dir, db));
    pf.milters = Some(format!("inet:127.0.0.1:{port}"));
    pf.extra_master_cf = extra_master_cf;
    let stack = Stack::start_with_config(dir, db, pf, None);
    (milterd, stack, records, config)
}

/// OpenDKIM's verdicts (`opendkim -t`, verify mode, keys from a
/// TestPublicKeys table) for `message`: the `dkim=` clauses of the
/// Authentication-Results it would add, one per signature.
fn opendkim_verify(
    dir: &TestDir,
    name: &str,
    message: &str,
    records: &BTreeMap<String, String>,
) -> Vec<String> {
    let table: String = records
        .iter()
        .map(|(n, v)| format!("{} {v}\n", n.trim_end_matches('.')))
        .collect();
    let keys = dir.write("opendkim/keys", table, 0o644);
    let conf = dir.write(
        "opendkim/opendkim.conf",
        format!(
            "Mode v\nSyslog no\nTestPublicKeys {}\nAlwaysAddARHeader yes\n",
            keys.display()
        ),
        0o644,
    );
    let crlf = message.replace("\r\n", "\n").replace('\n', "\r\n");
    let path = dir.write(format!("opendkim/{name}.eml"), crlf, 0o644);
    let mut cmd = Command::new(require("opendkim"));
    cmd.arg("-x").arg(&conf).arg("-vvv").arg("-t").arg(&path);
    let out = run(&mut cmd, None, Duration::from_secs(60)).assert_success();
    // `### INSHEADER: ... hvalue='DEBUG-j;\n\tdkim=pass (...) header.d=...'`
    let text = format!("{}{}", out.stdout, out.stderr);
    let ar = text
        .split("hname='Authentication-Results' hvalue='")
        .nth(1)
        .and_then(|s| s.split('\'').next())
        .unwrap_or_else(|| panic!("OpenDKIM added no Authentication-Results:\n{text}"));
    ar.split(';')
        .map(|c| c.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|c| c.starts_with("dkim="))
        .collect()
}

#[test]
fn opendkim_verifies_rsa_and_ed25519_signatures_made_through_postfix() {
    let dir = TestDir::new("milterd-opendkim");
    let db = Sqlite::fresh(&dir);
    let (mut milterd, stack, records, _) = signing_stack(
        &dir,
        &db,
        &["rsa2026", "ed2026"],
        "[\"rsa2026\", \"ed2026\"]",
        Vec::new(),
    );
    let msg = Message::new(USER, &[USER], "second verifier").header("To: <user1@example.org>");
    let t = stack.submission(USER, PASSWORD).send(&msg);
    assert!(t.is_accepted(), "{t}");
    let (stored, _) = stack.read_back(USER, PASSWORD, "INBOX", &msg);
    assert_eq!(header_count(&stored, "DKIM-Signature"), 2, "{stored}");
    let clauses = opendkim_verify(&dir, "stored", &stored, &records);
    assert_eq!(clauses.len(), 2, "{clauses:?}");
    let rsa = clauses
        .iter()
        .find(|c| c.contains("header.a=rsa-sha256"))
        .unwrap_or_else(|| panic!("{clauses:?}"));
    assert!(
        rsa.starts_with("dkim=pass") && rsa.contains("header.s=rsa2026"),
        "{clauses:?}"
    );
    let ed = clauses
        .iter()
        .find(|c| c.contains("header.a=ed25519-sha256"))
        .unwrap_or_else(|| panic!("{clauses:?}"));
    assert!(
        ed.starts_with("dkim=pass") && ed.contains("header.s=ed2026"),
        "{clauses:?}"
    );
    // OpenDKIM is not just saying yes.
    let tampered = stored.replace(&msg.token, "tampered-token");
    let clauses = opendkim_verify(&dir, "tampered", &tampered, &records);
    assert!(
        clauses.iter().all(|c| !c.starts_with("dkim=pass")),
        "{clauses:?}"
    );
    drop(stack);
    assert!(milterd.stop(), "{}", milterd.log());
}

/// Writes `msg` for sendmail(1) and submits it as `from` through the
/// stack's Postfix (postdrop → pickup → cleanup with non_smtpd_milters).
fn sendmail(dir: &TestDir, stack: &Stack, from: &str, msg: &Message) {
    let text = format!(
        "From: <{from}>\nTo: <{}>\nSubject: {}\nMessage-ID: {}\n\n{}",
        msg.to[0], msg.subject, msg.message_id, msg.body
    );
    dir.write(format!("sendmail/{}.eml", msg.token), &text, 0o644);
    let mut cmd = Command::new(require("/usr/sbin/sendmail"));
    cmd.arg("-C")
        .arg(stack.postfix.config_dir())
        .args(["-f", from, msg.to[0].as_str()]);
    run(&mut cmd, Some(text.as_bytes()), Duration::from_secs(60)).assert_success();
    stack.postfix.flush();
}

#[test]
fn mail_from_sendmail_through_pickup_is_signed() {
    let dir = TestDir::new("milterd-pickup");
    let db = Sqlite::fresh(&dir);
    // contrib/postfix/main.cf.milterd: cleanup's non_smtpd_milters see
    // {daemon_name} = ORIGINATING (only mail that did not come through
    // smtpd runs them), so milterd signs locally submitted mail.
    let (mut milterd, stack, records, _) = signing_stack(
        &dir,
        &db,
        &["rsa2026"],
        "\"rsa2026\"",
        vec![
            "cleanup   unix  n       -       n       -       0       cleanup\n    -o milter_macro_daemon_name=ORIGINATING".to_owned(),
        ],
    );
    let msg = Message::new(USER, &[USER], "from the sendmail command");
    sendmail(&dir, &stack, USER, &msg);
    let (stored, _) = stack.read_back(USER, PASSWORD, "INBOX", &msg);
    assert_eq!(header_count(&stored, "DKIM-Signature"), 1, "{stored}");
    let lines = dkimpy_verify(&dir, &stored, &records);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].ends_with(" pass"), "{lines:?}\n{stored}");
    let log = milterd.log();
    assert!(log.contains("origin=DaemonName"), "{log}");
    assert!(
        stack.postfix.maillog().contains("postfix/pickup"),
        "not through pickup"
    );
    drop(stack);
    assert!(milterd.stop(), "{}", milterd.log());
}

#[test]
fn sighup_switches_the_selector_without_restart_and_the_old_key_still_verifies() {
    let dir = TestDir::new("milterd-rotate");
    let db = Sqlite::fresh(&dir);
    let (mut milterd, stack, records, config) = signing_stack(
        &dir,
        &db,
        &["old2026", "new2026"],
        "\"old2026\"",
        Vec::new(),
    );
    let pid = milterd.pid();
    let before = Message::new(USER, &[USER], "signed before the switch");
    let t = stack.submission(USER, PASSWORD).send(&before);
    assert!(t.is_accepted(), "{t}");
    let (stored_before, _) = stack.read_back(USER, PASSWORD, "INBOX", &before);

    // The admin's rotation: new selector in the config, then SIGHUP.
    let new_config = config.replace("selector = \"old2026\"", "selector = \"new2026\"");
    assert_ne!(new_config, config);
    std::fs::write(milterd.config_path(), &new_config).unwrap();
    milterd.signal(nix::sys::signal::Signal::SIGHUP);
    assert!(
        postwerk_tests::exec::poll_until(Duration::from_secs(20), || milterd
            .log()
            .contains("configuration reloaded")),
        "{}",
        milterd.log()
    );
    let after = Message::new(USER, &[USER], "signed after the switch");
    let t = stack.submission(USER, PASSWORD).send(&after);
    assert!(t.is_accepted(), "{t}");
    let (stored_after, _) = stack.read_back(USER, PASSWORD, "INBOX", &after);
    assert_eq!(milterd.pid(), pid, "milterd was restarted");

    let selector = |stored: &str| {
        let sig = header_values(stored, "DKIM-Signature")
            .into_iter()
            .next()
            .unwrap();
        tag(&sig, "s").unwrap()
    };
    assert_eq!(selector(&stored_before), "old2026", "{stored_before}");
    assert_eq!(selector(&stored_after), "new2026", "{stored_after}");
    // Both records stay published: the old signature still verifies.
    for stored in [&stored_before, &stored_after] {
        let lines = dkimpy_verify(&dir, stored, &records);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].ends_with(" pass"), "{lines:?}\n{stored}");
    }
    drop(stack);
    assert!(milterd.stop(), "{}", milterd.log());
}

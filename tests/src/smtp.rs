//! Sending mail as a client would, with `swaks`: plain SMTP as another
//! server does on port 25, STARTTLS or implicit TLS plus AUTH as a mail
//! client does on 587/465. The certificate is verified against the test CA.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::exec::{INSTALL_HINT, require, run};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// How long swaks may take for one message (Dovecot delays a failed
/// authentication by 2 s).
const SWAKS_TIMEOUT: Duration = Duration::from_secs(60);

/// A test message with a unique Message-ID and a unique token in its body,
/// so that reading it back proves it is this message.
#[derive(Debug, Clone)]
pub struct Message {
    /// Envelope sender and `From:`.
    pub from: String,
    /// Envelope recipients and `To:`.
    pub to: Vec<String>,
    /// `Subject:`.
    pub subject: String,
    /// `Message-ID:` with the angle brackets.
    pub message_id: String,
    /// Additional header lines, `Name: value`.
    pub headers: Vec<String>,
    /// The body; contains [`Message::token`].
    pub body: String,
    /// A string that occurs only in this message's body.
    pub token: String,
}

impl Message {
    /// A message from `from` to `to` with a unique Message-ID and body token.
    pub fn new(from: &str, to: &[&str], subject: &str) -> Message {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let unique = format!(
            "{}.{}.{nanos:x}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let token = format!("postwerk-token-{unique}");
        Message {
            from: from.to_owned(),
            to: to.iter().map(|s| (*s).to_owned()).collect(),
            subject: subject.to_owned(),
            message_id: format!("<{unique}@postwerk.test>"),
            headers: Vec::new(),
            body: format!("Hello from the postwerk tests.\n\n{token}\n"),
            token,
        }
    }

    /// Adds a header line (`X-Spam-Flag: YES`).
    pub fn header(mut self, line: &str) -> Message {
        self.headers.push(line.to_owned());
        self
    }
}

/// How the client protects the connection.
#[derive(Debug, Clone)]
pub enum Security {
    /// No TLS (another server on port 25 that does not use STARTTLS).
    Plain,
    /// STARTTLS, required, verifying the server against this CA file.
    StartTls(PathBuf),
    /// TLS from the first byte (port 465), verifying against this CA file.
    Implicit(PathBuf),
}

/// One SMTP client session.
#[derive(Debug, Clone)]
pub struct Client {
    /// Port on 127.0.0.1.
    pub port: u16,
    /// TLS.
    pub security: Security,
    /// SMTP AUTH with (user, password), if any.
    pub auth: Option<(String, String)>,
    /// The SASL mechanism for `auth` (`PLAIN`, the default, or `LOGIN`).
    pub auth_mechanism: &'static str,
    /// The name sent in EHLO.
    pub helo: String,
    /// Local address to connect from (e.g. `127.0.0.2`, outside a test's
    /// `mynetworks`); `None` lets the system choose (127.0.0.1).
    pub source: Option<String>,
}

/// What happened: swaks' exit code and its transcript of the dialogue.
#[derive(Debug, Clone)]
pub struct Transcript {
    /// swaks' exit code (0: the message was accepted).
    pub exit_code: i32,
    /// The SMTP dialogue as swaks printed it (`<-` server, `->` client).
    pub text: String,
    /// The command line that ran.
    pub command: String,
}

impl Transcript {
    /// True when the server accepted the message (swaks exited with 0).
    pub fn is_accepted(&self) -> bool {
        self.exit_code == 0
    }

    /// Server reply lines that start with `code`, e.g. `"535"` or
    /// `"550 5.1.1"`. swaks marks server lines `<-` (`<~` inside TLS) and
    /// adds `*` to those it considers errors (`<**`, `<~*`).
    pub fn replies(&self, code: &str) -> Vec<&str> {
        self.text
            .lines()
            .filter(|l| l.starts_with("<-") || l.starts_with("<~") || l.starts_with("<*"))
            .map(|l| l.trim_start_matches(['<', '-', '~', '*']).trim_start())
            .filter(|l| l.starts_with(code))
            .collect()
    }

    /// The server's final reply to the message data (`250 2.0.0 Ok: queued
    /// as 4Xyz`), if it accepted one.
    pub fn queued_as(&self) -> Option<&str> {
        self.replies("250")
            .into_iter()
            .find(|l| l.contains("queued as"))
    }
}

impl std::fmt::Display for Transcript {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` exited with {}\n{}",
            self.command, self.exit_code, self.text
        )
    }
}

impl Client {
    /// A client for port 25-like service: plain, no AUTH.
    pub fn plain(port: u16) -> Client {
        Client {
            port,
            security: Security::Plain,
            auth: None,
            auth_mechanism: "PLAIN",
            helo: "client.example.net".to_owned(),
            source: None,
        }
    }

    /// A mail client on a submission port: STARTTLS verified against
    /// `ca_file`, then AUTH PLAIN.
    pub fn submission(port: u16, ca_file: PathBuf, user: &str, password: &str) -> Client {
        Client {
            port,
            security: Security::StartTls(ca_file),
            auth: Some((user.to_owned(), password.to_owned())),
            auth_mechanism: "PLAIN",
            helo: "client.example.net".to_owned(),
            source: None,
        }
    }

    /// Sends `msg` with swaks and returns the transcript, accepted or not.
    pub fn send(&self, msg: &Message) -> Transcript {
        let mut cmd = Command::new(require("swaks"));
        cmd.args(["--server", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--helo", &self.helo, "--timeout", "30"])
            .args(["--from", &msg.from, "--to", &msg.to.join(",")])
            .args(["--header", &format!("Subject: {}", msg.subject)])
            .args(["--header", &format!("Message-Id: {}", msg.message_id)]);
        for h in &msg.headers {
            cmd.args(["--header", h]);
        }
        if let Some(src) = &self.source {
            cmd.args(["--local-interface", src]);
        }
        cmd.args(["--body", &msg.body]);
        match &self.security {
            Security::Plain => {}
            Security::StartTls(ca) => {
                cmd.args(["--tls", "--tls-verify", "--tls-ca-path"]).arg(ca);
            }
            Security::Implicit(ca) => {
                cmd.args(["--tls-on-connect", "--tls-verify", "--tls-ca-path"])
                    .arg(ca);
            }
        }
        if let Some((user, password)) = &self.auth {
            cmd.args([
                "--auth",
                self.auth_mechanism,
                "--auth-user",
                user,
                "--auth-password",
                password,
            ]);
        }
        let out = run(&mut cmd, None, SWAKS_TIMEOUT);
        if out.stdout.contains("requires Net::SSLeay")
            || out.stderr.contains("requires Net::SSLeay")
        {
            panic!(
                "swaks cannot do TLS without Perl's Net::SSLeay (libnet-ssleay-perl): {INSTALL_HINT}"
            );
        }
        Transcript {
            exit_code: out.code(),
            text: format!("{}{}", out.stdout, out.stderr),
            command: out.command,
        }
    }
}

/// Sends `msg` (first recipient only) on `port` with Python's smtplib, as
/// another server would: EHLO, `SIZE=` announced when offered (smtplib
/// does that itself), SMTPUTF8 when offered and UTF-8 commands either way
/// (swaks can do neither). Returns whether it was accepted, and what
/// smtplib said.
pub fn send_smtplib(port: u16, msg: &Message) -> (bool, String) {
    let script = r#"
import smtplib, sys
port, sender, rcpt, mid, subject = sys.argv[1:6]
body = sys.stdin.buffer.read().decode("utf-8")
data = ("From: %s\r\nTo: %s\r\nSubject: %s\r\nMessage-Id: %s\r\n\r\n%s\r\n"
        % (sender, rcpt, subject, mid, body)).encode("utf-8")
s = smtplib.SMTP("127.0.0.1", int(port), local_hostname="client.example.net", timeout=30)
s.ehlo("client.example.net")
opts = []
if s.has_extn("smtputf8"):
    opts.append("SMTPUTF8")
s.command_encoding = "utf-8"
try:
    s.sendmail(sender, [rcpt], data, mail_options=opts)
    print("accepted", "with" if opts else "without", "SMTPUTF8,", len(data), "bytes")
except smtplib.SMTPException as e:
    print("refused", e)
s.quit()
"#;
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg("-c")
        .arg(script)
        .arg(port.to_string())
        .arg(&msg.from)
        .arg(&msg.to[0])
        .arg(&msg.message_id)
        .arg(&msg.subject);
    // On stdin: an argument may not exceed 128 KiB (MAX_ARG_STRLEN).
    let out = run(&mut cmd, Some(msg.body.as_bytes()), SWAKS_TIMEOUT);
    let text = format!("{}{}", out.stdout, out.stderr);
    (out.stdout.starts_with("accepted"), text)
}

/// The values of header `name` of a stored message, in order, unfolded
/// (continuation lines joined with one space) and trimmed.
pub fn header_values(message: &str, name: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    for line in message.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(c) = current.as_mut() {
                c.push(' ');
                c.push_str(line.trim());
            }
            continue;
        }
        out.extend(current.take());
        if let Some((n, v)) = line.split_once(':')
            && n.eq_ignore_ascii_case(name)
        {
            current = Some(v.trim().to_owned());
        }
    }
    out.extend(current);
    out
}

//! Reading mail back as a mail client would: tests/scripts/imap_fetch.py
//! (python3 imaplib from Debian's /usr/bin/python3) over STARTTLS with the
//! test CA, LOGIN with the password, polling with a deadline until the
//! message is there.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::exec::{require, run};
use crate::template::IMAP_FETCH_PY;
use crate::testdir::TestDir;

/// Debian's python3: the pyenv one that may come first on PATH is fine too
/// for a stdlib-only script, but this one is what install-deps guarantees.
const PYTHON: &str = "/usr/bin/python3";

/// The local address the IMAP client connects from (Linux routes all of
/// 127.0.0.0/8 to the loopback interface).
pub const CLIENT_SOURCE: &str = "127.0.0.2";

/// An IMAP client for one server.
#[derive(Debug, Clone)]
pub struct Client {
    script: PathBuf,
    port: u16,
    ca_file: PathBuf,
}

/// What the script found.
#[derive(Debug, Clone)]
pub enum Fetch {
    /// The message, as stored (RFC 5322 text).
    Found {
        /// The message text.
        message: String,
        /// GETQUOTAROOT INBOX response lines.
        quota: Vec<String>,
        /// CAPABILITY before STARTTLS.
        pre_tls_capabilities: Vec<String>,
    },
    /// Not there before the deadline; message counts per mailbox.
    NotFound(String),
    /// LOGIN was refused; the server's text.
    LoginFailed(String),
}

impl Client {
    /// A client for 127.0.0.1:`port`, trusting `ca_file`; writes the script
    /// into `dir/scripts/`.
    pub fn new(dir: &TestDir, port: u16, ca_file: PathBuf) -> Client {
        require(PYTHON);
        let script = dir.write("scripts/imap_fetch.py", IMAP_FETCH_PY, 0o755);
        Client {
            script,
            port,
            ca_file,
        }
    }

    fn run(
        &self,
        user: &str,
        password: &str,
        extra: &[&str],
        timeout: Duration,
    ) -> serde_json::Value {
        let mut cmd = Command::new(PYTHON);
        cmd.arg(&self.script)
            .args(["--port", &self.port.to_string(), "--user", user])
            // Dovecot counts 127.0.0.1 → 127.0.0.1 as a secured connection
            // and would allow LOGIN without TLS; from another loopback
            // address it treats the client as remote, as the guide intends.
            .args(["--source", CLIENT_SOURCE])
            .arg("--cafile")
            .arg(&self.ca_file)
            .args(["--timeout", &timeout.as_secs_f64().to_string()])
            .args(extra);
        let out = run(
            &mut cmd,
            Some(format!("{password}\n").as_bytes()),
            timeout + Duration::from_secs(30),
        );
        if out.code() == 3 || out.stdout.trim().is_empty() {
            panic!("the IMAP client failed:\n{out}");
        }
        serde_json::from_str(out.stdout.trim())
            .unwrap_or_else(|e| panic!("imap_fetch.py printed no JSON ({e}):\n{out}"))
    }

    /// Logs in as `user` and waits up to `timeout` for the message with
    /// `message_id` in `mailbox`.
    pub fn fetch(
        &self,
        user: &str,
        password: &str,
        mailbox: &str,
        message_id: &str,
        timeout: Duration,
    ) -> Fetch {
        let v = self.run(
            user,
            password,
            &["--mailbox", mailbox, "--message-id", message_id],
            timeout,
        );
        let strings = |key: &str| -> Vec<String> {
            v[key].as_array().map_or_else(Vec::new, |a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
        };
        match v["outcome"].as_str() {
            Some("found") => Fetch::Found {
                message: v["message"].as_str().unwrap_or_default().to_owned(),
                quota: strings("quota"),
                pre_tls_capabilities: strings("pre_tls_capabilities"),
            },
            Some("login_failed") => {
                Fetch::LoginFailed(v["response"].as_str().unwrap_or_default().to_owned())
            }
            _ => Fetch::NotFound(v["mailboxes"].to_string()),
        }
    }

    /// Logs in as `user`, waits for the message with `message_id` in
    /// `from` and moves it into `to` (UID MOVE), as a user dragging it in a
    /// mail client; panics if it is not there or the server refuses.
    #[track_caller]
    pub fn move_message(&self, user: &str, password: &str, from: &str, message_id: &str, to: &str) {
        let v = self.run(
            user,
            password,
            &[
                "--mailbox",
                from,
                "--message-id",
                message_id,
                "--move-to",
                to,
            ],
            Duration::from_secs(30),
        );
        assert!(
            v["outcome"] == "found" && v["moved"] == "OK",
            "moving {message_id} of {user} from {from} to {to}: {v}"
        );
    }

    /// Only logs in: `Ok(pre-TLS capabilities)` or `Err(server text)`.
    pub fn login(&self, user: &str, password: &str) -> Result<Vec<String>, String> {
        let v = self.run(user, password, &["--login-only"], Duration::from_secs(10));
        let caps = v["pre_tls_capabilities"]
            .as_array()
            .map_or_else(Vec::new, |a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            });
        match v["outcome"].as_str() {
            Some("logged_in") => Ok(caps),
            _ => Err(v["response"].as_str().unwrap_or_default().to_owned()),
        }
    }
}

//! Tools of the reliability tests (fault injection, soak): a raw SMTP client
//! that sends many messages per connection (swaks starts one Perl process
//! per message), a raw LMTP client, counting Message-IDs in the Maildirs on
//! disk, and a daemon's RSS and open file descriptors from /proc.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::smtp::Message;

const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// One SMTP or LMTP reply: its code and all its lines.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// Every line as received, without CRLF.
    pub lines: Vec<String>,
}

impl Reply {
    /// 2xx.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.lines.join(" / "))
    }
}

fn read_reply(r: &mut impl BufRead) -> Result<Reply, String> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        match r.read_line(&mut line) {
            Ok(0) => return Err(format!("connection closed after {lines:?}")),
            Ok(_) => {}
            Err(e) => return Err(format!("read failed after {lines:?}: {e}")),
        }
        let line = line.trim_end().to_owned();
        let code = line
            .get(..3)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("not a reply line: {line:?}"))?;
        let more = line.as_bytes().get(3) == Some(&b'-');
        lines.push(line);
        if !more {
            return Ok(Reply { code, lines });
        }
    }
}

/// The message as it goes on the wire after DATA (CRLF, dot-stuffed, with
/// the final dot).
pub fn wire_text(msg: &Message) -> String {
    let mut text = format!(
        "From: <{}>\r\nTo: {}\r\nSubject: {}\r\nMessage-Id: {}\r\n",
        msg.from,
        msg.to
            .iter()
            .map(|t| format!("<{t}>"))
            .collect::<Vec<_>>()
            .join(", "),
        msg.subject,
        msg.message_id
    );
    for h in &msg.headers {
        text.push_str(h);
        text.push_str("\r\n");
    }
    text.push_str("\r\n");
    for line in msg.body.lines() {
        if line.starts_with('.') {
            text.push('.');
        }
        text.push_str(line);
        text.push_str("\r\n");
    }
    text.push_str(".\r\n");
    text
}

/// A plain SMTP session (port 25 style: no TLS, no AUTH) that sends one
/// message after another on the same connection.
#[derive(Debug)]
pub struct SmtpSession {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl SmtpSession {
    /// Connects to 127.0.0.1:`port` and says EHLO `helo`.
    pub fn connect(port: u16, helo: &str) -> Result<SmtpSession, String> {
        let s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
        s.set_read_timeout(Some(IO_TIMEOUT))
            .map_err(|e| e.to_string())?;
        let writer = s.try_clone().map_err(|e| e.to_string())?;
        let mut session = SmtpSession {
            reader: BufReader::new(s),
            writer,
        };
        let greeting = read_reply(&mut session.reader)?;
        if greeting.code != 220 {
            return Err(format!("greeting: {greeting}"));
        }
        let r = session.command(&format!("EHLO {helo}"))?;
        if !r.is_positive() {
            return Err(format!("EHLO: {r}"));
        }
        Ok(session)
    }

    /// Sends one command line and reads the reply.
    pub fn command(&mut self, line: &str) -> Result<Reply, String> {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .map_err(|e| format!("write {line:?}: {e}"))?;
        read_reply(&mut self.reader)
    }

    /// Sends `msg`. `Ok(reply)` is the final reply (250 when accepted; a
    /// refusal at MAIL, RCPT or DATA is returned too, after RSET); `Err`
    /// means the connection broke.
    pub fn send(&mut self, msg: &Message) -> Result<Reply, String> {
        let r = self.command(&format!("MAIL FROM:<{}>", msg.from))?;
        if !r.is_positive() {
            self.command("RSET")?;
            return Ok(r);
        }
        let mut accepted = 0;
        let mut last = r;
        for to in &msg.to {
            let r = self.command(&format!("RCPT TO:<{to}>"))?;
            if r.is_positive() {
                accepted += 1;
            } else {
                last = r;
            }
        }
        if accepted < msg.to.len() {
            // All or nothing: a test counts a message as sent only when
            // every recipient took it.
            self.command("RSET")?;
            return Ok(last);
        }
        let r = self.command("DATA")?;
        if r.code != 354 {
            self.command("RSET")?;
            return Ok(r);
        }
        self.writer
            .write_all(wire_text(msg).as_bytes())
            .map_err(|e| format!("write message: {e}"))?;
        read_reply(&mut self.reader)
    }

    /// QUIT.
    pub fn quit(mut self) {
        let _ = self.command("QUIT");
    }
}

/// A raw LMTP client on a UNIX socket.
#[derive(Debug)]
pub struct LmtpSession {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl LmtpSession {
    /// Connects to `socket` and says LHLO.
    pub fn connect(socket: &Path) -> Result<LmtpSession, String> {
        let s = UnixStream::connect(socket).map_err(|e| format!("connect: {e}"))?;
        s.set_read_timeout(Some(IO_TIMEOUT))
            .map_err(|e| e.to_string())?;
        let writer = s.try_clone().map_err(|e| e.to_string())?;
        let mut session = LmtpSession {
            reader: BufReader::new(s),
            writer,
        };
        let greeting = read_reply(&mut session.reader)?;
        if greeting.code != 220 {
            return Err(format!("greeting: {greeting}"));
        }
        let r = session.command("LHLO test.local")?;
        if !r.is_positive() {
            return Err(format!("LHLO: {r}"));
        }
        Ok(session)
    }

    /// One command line and its reply.
    pub fn command(&mut self, line: &str) -> Result<Reply, String> {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .map_err(|e| format!("write {line:?}: {e}"))?;
        read_reply(&mut self.reader)
    }

    /// A whole transaction: the replies to each RCPT, then (if any RCPT
    /// was accepted) one reply per accepted recipient after DATA, in order.
    pub fn deliver(&mut self, msg: &Message) -> Result<(Vec<Reply>, Vec<Reply>), String> {
        let r = self.command(&format!("MAIL FROM:<{}>", msg.from))?;
        if !r.is_positive() {
            return Err(format!("MAIL: {r}"));
        }
        let mut rcpt = Vec::new();
        for to in &msg.to {
            rcpt.push(self.command(&format!("RCPT TO:<{to}>"))?);
        }
        let accepted = rcpt.iter().filter(|r| r.is_positive()).count();
        if accepted == 0 {
            self.command("RSET")?;
            return Ok((rcpt, Vec::new()));
        }
        let r = self.command("DATA")?;
        if r.code != 354 {
            return Err(format!("DATA: {r}"));
        }
        self.writer
            .write_all(wire_text(msg).as_bytes())
            .map_err(|e| format!("write message: {e}"))?;
        let mut data = Vec::new();
        for _ in 0..accepted {
            data.push(read_reply(&mut self.reader)?);
        }
        Ok((rcpt, data))
    }
}

/// Every file under `root` (recursively) in a Maildir `new/` or `cur/`
/// directory.
pub fn maildir_files(root: &Path) -> Vec<PathBuf> {
    files_in(root, &["new", "cur"])
}

/// Every file under `root` in a Maildir `tmp/` directory.
pub fn maildir_tmp_files(root: &Path) -> Vec<PathBuf> {
    files_in(root, &["tmp"])
}

fn files_in(root: &Path, leaf_dirs: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let in_leaf = dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| leaf_dirs.contains(&n));
        for e in entries.flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => todo.push(p),
                Ok(t) if t.is_file() && in_leaf => out.push(p),
                _ => {}
            }
        }
    }
    out.sort();
    out
}

/// How often each Message-ID occurs in the Maildirs under `root`. A file
/// without a Message-ID counts under `""`.
pub fn message_ids(root: &Path) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for f in maildir_files(root) {
        let Ok(bytes) = std::fs::read(&f) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        let id = text
            .lines()
            .take_while(|l| !l.trim().is_empty())
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("message-id")
                    .then(|| value.trim().to_owned())
            })
            .unwrap_or_default();
        *out.entry(id).or_insert(0) += 1;
    }
    out
}

/// A process's resident set size in KiB (`VmRSS` of /proc/PID/status).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// How many file descriptors a process has open.
pub fn fd_count(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

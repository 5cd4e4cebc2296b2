//! bench-lmtpd: deliveries/s of postwerk-lmtpd against Dovecot's own LMTP,
//! both on the guide's configuration (SQL userdb on SQLite, maildir quota,
//! the guide's global Sieve `spam-global.sieve` before every delivery),
//! writing into the same vmail tree on the same disk, in one run. An LMTP
//! client sends ~4 KB messages, one recipient each, over 1, 4 and 16
//! concurrent connections (connections are reused, as Postfix's connection
//! cache does); one message in ten carries `X-Spam-Flag: YES`, which the
//! global script files into Spam. Each (server, connections) pair gets its
//! own 16 fresh accounts, so neither server reads the other's mail. Next to
//! it: the disk's rate of durable small-file writes (write, fsync, rename,
//! fsync the directory) with 1 and 4 threads, the bound for any durable
//! delivery, and lmtpd's peak resident memory.
//!
//! Run with `bench/lmtpd.sh` (release build). Prints a Markdown table and
//! writes it to bench/results/. No assertions on time: this is a report.
//! A transaction that does not end in `250` (or a session that breaks) is
//! counted as a failure and the table shows it.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use postwerk_tests::cli::Postwerk;
use postwerk_tests::cli::workspace_binary;
use postwerk_tests::dovecot::{self, Dovecot};
use postwerk_tests::net::wait_for_unix_socket;
use postwerk_tests::testdir::chown_recursive;
use postwerk_tests::tls::TestCa;
use postwerk_tests::{Database, Sqlite, TestDir};

/// Messages per (server, connections) run.
const MESSAGES: usize = 2_000;
/// Size of each message's body.
const BODY_BYTES: usize = 4 * 1024;
/// Recipients per run (each run gets its own).
const USERS: usize = 16;
const CONNECTIONS: [usize; 3] = [1, 4, 16];
const IO_TIMEOUT: Duration = Duration::from_secs(120);
const FSYNC_PROBE: Duration = Duration::from_secs(3);

fn main() {
    let dir = TestDir::new("bench-lmtpd");
    let db = Sqlite::fresh(&dir);
    let pw = Postwerk::new(&db.url());
    pw.run(&["db", "init"], None);
    db.grant_readers();
    pw.run(&["domain", "add", "bench.test"], None);
    let servers = ["dovecot", "lmtpd"];
    println!(
        "bench-lmtpd: provisioning {} accounts on SQLite",
        servers.len() * CONNECTIONS.len() * USERS
    );
    for s in servers {
        for c in CONNECTIONS {
            for u in 0..USERS {
                pw.run(
                    &[
                        "account",
                        "add",
                        &user(s, c, u),
                        "--quota",
                        "1G",
                        "--password-stdin",
                    ],
                    Some("bench password\n"),
                );
            }
        }
    }

    let tls = TestCa::new(&dir);
    let sockets = dir.mkdir("sockets", 0o755);
    let dovecot = Dovecot::start(
        &dir,
        &tls,
        &db,
        &dovecot::Config {
            lmtp_socket: sockets.join("dovecot-lmtp"),
            auth_socket: sockets.join("auth"),
            mail_domain: "bench.test".to_owned(),
            auth_dict: None,
        },
    );
    let (mut lmtpd, lmtpd_socket) = start_lmtpd(&dir, &db, dovecot.vmail_dir());

    let fsync1 = fsync_rate(dovecot.vmail_dir(), 1);
    let fsync4 = fsync_rate(dovecot.vmail_dir(), 4);
    println!(
        "bench-lmtpd: durable 4 KB writes on this disk: {fsync1:.0}/s (1 thread), {fsync4:.0}/s (4 threads)"
    );

    let mut rows: Vec<(usize, Outcome, Outcome)> = Vec::new();
    for c in CONNECTIONS {
        // Dovecot first, then lmtpd, at each concurrency: the same disk
        // state (page cache, journal) for both as far as one run allows.
        let d = run(&dovecot.lmtp_socket, "dovecot", c);
        println!(
            "bench-lmtpd: Dovecot LMTP, {c} connection(s): {:.0} msgs/s, {} failed",
            d.rate, d.failed
        );
        let l = run(&lmtpd_socket, "lmtpd", c);
        println!(
            "bench-lmtpd: lmtpd, {c} connection(s): {:.0} msgs/s, {} failed",
            l.rate, l.failed
        );
        rows.push((c, d, l));
    }
    let hwm = status_kib(lmtpd.id(), "VmHWM:").unwrap_or(0);
    let _ = lmtpd.kill();
    let _ = lmtpd.wait();
    // What a 250 promised must be on disk: count the files.
    for (c, d, l) in &mut rows {
        for (server, o) in [("dovecot", d), ("lmtpd", l)] {
            let stored: usize = (0..USERS)
                .map(|u| stored(dovecot.vmail_dir(), &user(server, *c, u)))
                .sum();
            if stored != o.delivered {
                o.first_error.get_or_insert_with(|| {
                    format!(
                        "{server}, {c} connection(s): {} acknowledged, {stored} stored",
                        o.delivered
                    )
                });
            }
        }
    }
    // Dovecot's files for vmail, so that the test directory can go.
    chown_recursive(
        dovecot.vmail_dir(),
        dovecot::VMAIL_USER,
        dovecot::VMAIL_USER,
    );

    let mut out = String::new();
    out.push_str(&format!(
        "# lmtpd benchmark\n\n{} on {} ({} cores). {MESSAGES} messages of ~{} KB per run, one recipient each, \
         {USERS} fresh accounts per run, global Sieve (the guide's spam-global.sieve) on, 1 in 10 messages \
         filed into Spam by it; both servers durable, same vmail tree.\n\n",
        date(),
        hostname(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        BODY_BYTES / 1024
    ));
    out.push_str(
        "| connections | Dovecot LMTP (msgs/s) | lmtpd (msgs/s) | lmtpd / Dovecot | failed: Dovecot | failed: lmtpd |\n\
         |---:|---:|---:|---:|---:|---:|\n",
    );
    for (c, d, l) in &rows {
        out.push_str(&format!(
            "| {c} | {:.0} | {:.0} | {:.2}× | {} | {} |\n",
            d.rate,
            l.rate,
            l.rate / d.rate.max(f64::MIN_POSITIVE),
            d.failed,
            l.failed
        ));
    }
    out.push_str(&format!(
        "\nDisk bound (write 4 KB, fsync, rename, fsync the directory, on the vmail tree's disk): {fsync1:.0}/s with 1 thread, {fsync4:.0}/s with 4 threads.\n\
         \nlmtpd's peak resident memory (VmHWM) over the whole run: {:.1} MiB.\n",
        hwm as f64 / 1024.0
    ));
    let errors: Vec<&String> = rows
        .iter()
        .flat_map(|(_, d, l)| d.first_error.iter().chain(l.first_error.iter()))
        .collect();
    if !errors.is_empty() {
        out.push_str("\nFirst failure per run:\n\n");
        for e in errors {
            out.push_str(&format!("- {e}\n"));
        }
    }
    println!("\n{out}");
    let results = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/results");
    let _ = std::fs::create_dir_all(&results);
    let file = results.join(format!("lmtpd-{}.md", date()));
    match std::fs::write(&file, &out) {
        Ok(()) => println!("written to {}", file.display()),
        Err(e) => eprintln!("cannot write {}: {e}", file.display()),
    }
    drop(dovecot);
}

/// Starts postwerk-lmtpd as the harness's `guide::start_lmtpd` configures
/// it, but logging at `info` (one line per delivery, as in production)
/// instead of the harness's `debug`.
fn start_lmtpd(dir: &TestDir, db: &dyn Database, vmail: &Path) -> (Child, PathBuf) {
    let socket = dir.join("lmtpd.sock");
    let v = vmail.display();
    let config = dir.write(
        "postwerk-lmtpd.toml",
        format!(
            "[database]\nurl = \"{}\"\n\n[lmtpd]\nlisten = [\"unix:{}\"]\nsocket_mode = \"0666\"\n\
             hostname = \"mail.bench.test\"\nmail_home = \"{v}/mailboxes/%d/%n\"\n\
             sieve_before = [\"{v}/sieve/global/spam-global.sieve\"]\n\
             sieve_script = \"{v}/sieve/%d/%n/active-script.sieve\"\n",
            db.reader_url(),
            socket.display()
        ),
        0o644,
    );
    let log = std::fs::File::create(dir.join("postwerk-lmtpd.log")).expect("create the lmtpd log");
    let child = Command::new(workspace_binary("postwerk-lmtpd"))
        .env("POSTWERK_ALLOW_ROOT", "1")
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "info")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup the lmtpd log"))
        .stderr(log)
        .spawn()
        .expect("start postwerk-lmtpd");
    if let Err(e) = wait_for_unix_socket(&socket, Duration::from_secs(30)) {
        panic!("postwerk-lmtpd did not come up: {e}");
    }
    (child, socket)
}

/// Messages in `user`'s Maildir (INBOX and Spam, `new/` and `cur/`).
fn stored(vmail: &Path, user: &str) -> usize {
    let (local, domain) = user.split_once('@').unwrap_or((user, ""));
    let root = vmail
        .join("mailboxes")
        .join(domain)
        .join(local)
        .join("mail");
    [root.clone(), root.join("Spam")]
        .iter()
        .flat_map(|d| [d.join("new"), d.join("cur")])
        .map(|d| std::fs::read_dir(d).map_or(0, |e| e.count()))
        .sum()
}

/// The `u`-th account of the run of `server` at `conns` connections.
fn user(server: &str, conns: usize, u: usize) -> String {
    format!("{server}-c{conns}-u{u:02}@bench.test")
}

/// What one run measured.
#[derive(Debug)]
struct Outcome {
    rate: f64,
    delivered: usize,
    failed: usize,
    first_error: Option<String>,
}

/// Sends [`MESSAGES`] over `conns` connections to `socket`; deliveries per
/// second counted from the first connect to the last reply.
fn run(socket: &Path, server: &str, conns: usize) -> Outcome {
    let delivered = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let started = Instant::now();
    let workers: Vec<_> = (0..conns)
        .map(|i| {
            let (socket, server) = (socket.to_owned(), server.to_owned());
            let (delivered, failed, first_error) =
                (delivered.clone(), failed.clone(), first_error.clone());
            std::thread::spawn(move || {
                let share = MESSAGES / conns + usize::from(i < MESSAGES % conns);
                let mut session: Option<Lmtp> = None;
                for j in 0..share {
                    let rcpt = user(&server, conns, (i + j) % USERS);
                    let result = match session.as_mut() {
                        Some(s) => Ok(s),
                        None => Lmtp::connect(&socket).map(|s| session.insert(s)),
                    }
                    .and_then(|s| s.deliver("sender@elsewhere.test", &rcpt, &message(&rcpt, i, j)));
                    match result {
                        Ok(()) => {
                            delivered.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            let mut first = first_error.lock().unwrap_or_else(|p| p.into_inner());
                            first.get_or_insert_with(|| {
                                format!("{server}, {conns} connection(s): {e}")
                            });
                            // A broken session is not reused.
                            session = None;
                        }
                    }
                }
                if let Some(mut s) = session {
                    let _ = s.quit();
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let first_error = first_error.lock().unwrap_or_else(|p| p.into_inner()).take();
    Outcome {
        rate: delivered.load(Ordering::Relaxed) as f64 / elapsed,
        delivered: delivered.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        first_error,
    }
}

/// A ~4 KB message; every tenth is marked as spam.
fn message(rcpt: &str, conn: usize, n: usize) -> Vec<u8> {
    let mut m = format!(
        "From: <sender@elsewhere.test>\r\nTo: <{rcpt}>\r\nSubject: bench {conn}.{n}\r\n\
         Message-ID: <bench.{conn}.{n}.{}@elsewhere.test>\r\nDate: Sun, 29 Nov 2026 08:00:00 +0000\r\n",
        std::process::id()
    );
    if n % 10 == 9 {
        m.push_str("X-Spam-Flag: YES\r\n");
    }
    m.push_str("\r\n");
    let line = "The quick brown fox jumps over the lazy dog, again and again, 0123456789.\r\n";
    while m.len() < BODY_BYTES {
        m.push_str(line);
    }
    m.into_bytes()
}

/// One LMTP client session (RFC 2033), pipelining MAIL, RCPT and DATA.
struct Lmtp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Lmtp {
    fn connect(path: &Path) -> io::Result<Lmtp> {
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        let mut s = Lmtp {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        };
        s.expect(220, "greeting")?;
        s.writer.write_all(b"LHLO bench.test\r\n")?;
        s.expect(250, "LHLO")?;
        Ok(s)
    }

    /// One reply (all its lines): the code and the last line.
    fn reply(&mut self) -> io::Result<(u16, String)> {
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "server closed the connection",
                ));
            }
            let code = line.get(..3).and_then(|c| c.parse().ok());
            match (code, line.as_bytes().get(3)) {
                (Some(code), Some(b' ' | b'\r' | b'\n')) => {
                    return Ok((code, line.trim_end().to_owned()));
                }
                (Some(_), Some(b'-')) => {}
                _ => return Err(io::Error::other(format!("malformed reply {line:?}"))),
            }
        }
    }

    fn expect(&mut self, code: u16, what: &str) -> io::Result<()> {
        let (c, text) = self.reply()?;
        if c == code {
            Ok(())
        } else {
            Err(io::Error::other(format!("{what}: {text}")))
        }
    }

    /// MAIL, RCPT and DATA in one write, then the message; `Ok` only for
    /// `250` to the message.
    fn deliver(&mut self, from: &str, rcpt: &str, data: &[u8]) -> io::Result<()> {
        self.writer
            .write_all(format!("MAIL FROM:<{from}>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n").as_bytes())?;
        let mail = self.expect(250, "MAIL");
        let rcpt_reply = self.expect(250, "RCPT");
        let (code, text) = self.reply()?;
        if code != 354 {
            mail?;
            rcpt_reply?;
            return Err(io::Error::other(format!("DATA: {text}")));
        }
        // The message has no line starting with a dot: no stuffing needed.
        self.writer.write_all(data)?;
        self.writer.write_all(b".\r\n")?;
        let end = self.expect(250, "end of DATA");
        mail?;
        rcpt_reply?;
        end
    }

    fn quit(&mut self) -> io::Result<()> {
        self.writer.write_all(b"QUIT\r\n")?;
        self.expect(221, "QUIT")
    }
}

/// Durable 4 KB file creations per second in `dir`'s file system with
/// `threads` threads: write to a temp name, fsync, rename, fsync the
/// directory — what a Maildir delivery must do at least.
fn fsync_rate(dir: &Path, threads: usize) -> f64 {
    let probe = dir.join(format!("fsync-probe-{threads}"));
    let _ = std::fs::create_dir_all(&probe);
    let total = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (probe, total) = (probe.clone(), total.clone());
            std::thread::spawn(move || -> io::Result<()> {
                let sub: PathBuf = probe.join(t.to_string());
                std::fs::create_dir_all(sub.join("tmp"))?;
                std::fs::create_dir_all(sub.join("new"))?;
                let block = vec![b'x'; 4096];
                let new_dir = std::fs::File::open(sub.join("new"))?;
                let mut n = 0usize;
                while started.elapsed() < FSYNC_PROBE {
                    let (tmp, new) = (
                        sub.join("tmp").join(n.to_string()),
                        sub.join("new").join(n.to_string()),
                    );
                    let mut f = std::fs::File::create(&tmp)?;
                    f.write_all(&block)?;
                    f.sync_all()?;
                    std::fs::rename(&tmp, &new)?;
                    new_dir.sync_all()?;
                    n += 1;
                    total.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();
    for w in workers {
        match w.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("bench-lmtpd: fsync probe failed: {e}"),
            Err(_) => eprintln!("bench-lmtpd: fsync probe thread panicked"),
        }
    }
    let rate = total.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&probe);
    rate
}

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_or_else(|_| "unknown".into(), |s| s.trim().to_owned())
}

fn date() -> String {
    let out = Command::new("date").arg("+%Y-%m-%d").output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|_| "unknown-date".into())
}

//! bench-lmtpd: deliveries/s of postwerk-lmtpd against Dovecot's own LMTP,
//! both on the guide's configuration (SQL userdb on the suite's MariaDB
//! fixture, 10,000 or 100,000 accounts, maildir quota,
//! the guide's global Sieve `spam-global.sieve` before every delivery),
//! writing into the same vmail tree on the same disk, in one run. An LMTP
//! client sends ~4 KB messages, one recipient each, over 1, 4 and 16
//! concurrent connections (connections are reused, as Postfix's connection
//! cache does); one message in ten carries `X-Spam-Flag: YES`, which the
//! global script files into Spam. Each (server, connections) pair gets its
//! own 16 accounts, so neither server reads the other's mail; the servers
//! alternate over several rounds. Next to it: the disk's rate of durable
//! small-file writes (write, fsync, rename, fsync the directory) with 1
//! and 4 threads, the bound for any durable delivery; resident memory and
//! CPU seconds per 1,000 deliveries of lmtpd and of Dovecot's lmtp and
//! auth processes.
//!
//! Part of `bench/run` (BENCH_SCALE, BENCH_QUICK, BENCH_OUT: see
//! `postwerk_tests::bench`); alone: `bench/lmtpd.sh`. No assertions on time.
//! A transaction that does not end in `250` (or a session that breaks) is
//! counted as a failure and the table shows it.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use postwerk_tests::bench::{self, Fixture, Row, Series, Settings};
use postwerk_tests::cli::Postwerk;
use postwerk_tests::cli::workspace_binary;
use postwerk_tests::dovecot::{self, Dovecot};
use postwerk_tests::net::wait_for_unix_socket;
use postwerk_tests::testdir::chown_recursive;
use postwerk_tests::tls::TestCa;
use postwerk_tests::{Database, MariaDb, TestDir};

/// Size of each message's body.
const BODY_BYTES: usize = 4 * 1024;
/// Recipients per (server, connections) pair.
const USERS: usize = 16;
const CONNECTIONS: [usize; 3] = [1, 4, 16];
const SERVERS: [&str; 2] = ["dovecot", "lmtpd"];
const IO_TIMEOUT: Duration = Duration::from_secs(120);

fn main() {
    let s = Settings::from_env();
    let messages = s.pick(600, 200);
    let fsync_probe = Duration::from_millis(s.pick(1_500, 500));
    let fixture = Fixture::at(s.scale);
    let dir = TestDir::new("bench-lmtpd");
    let db = MariaDb::fresh();
    Postwerk::new(&db.url()).run(&["db", "init"], None);
    bench::load_mariadb(&db, &fixture.sql(&bench::password_hash()));
    db.grant_readers();
    println!(
        "bench-lmtpd: {messages} messages per run, {} rounds, {} accounts in the database",
        s.rounds,
        fixture.accounts()
    );

    let tls = TestCa::new(&dir);
    let sockets = dir.mkdir("sockets", 0o755);
    let dovecot = Dovecot::start(
        &dir,
        &tls,
        &db,
        &dovecot::Config {
            lmtp_socket: sockets.join("dovecot-lmtp"),
            auth_socket: sockets.join("auth"),
            mail_domain: "d0.example".to_owned(),
            auth_dict: None,
        },
    );
    let (mut lmtpd, lmtpd_socket) = start_lmtpd(&dir, &db, dovecot.vmail_dir());
    let sockets = [dovecot.lmtp_socket.clone(), lmtpd_socket];
    let dc_pid = dovecot.pid().unwrap_or(0);
    // Dovecot's delivery: its lmtp processes and the auth processes they
    // ask for the userdb.
    let dc_procs = move || -> Vec<u32> {
        bench::process_tree(dc_pid)
            .into_iter()
            .filter(|p| {
                std::fs::read_to_string(format!("/proc/{p}/comm"))
                    .is_ok_and(|c| c.trim() == "lmtp" || c.trim().starts_with("auth"))
            })
            .collect()
    };
    let dc_rss = || -> f64 {
        dc_procs()
            .into_iter()
            .filter_map(|p| bench::status_kib(p, "VmRSS:"))
            .sum::<u64>() as f64
            / 1024.0
    };
    let dc_cpu = || -> f64 { dc_procs().into_iter().map(bench::tree_cpu_secs).sum() };
    let lmtpd_pid = lmtpd.id();
    // One delivery each, so both have their processes up.
    for (i, socket) in sockets.iter().enumerate() {
        let _ = run(socket, i, 0, 1, 1);
    }
    let idle = (bench::tree_rss_mib(lmtpd_pid), dc_rss());

    let mut delivered = [[0usize; CONNECTIONS.len()]; SERVERS.len()];
    let mut failures: Vec<String> = Vec::new();
    let mut fsync1 = Series::new("durable 4 KB writes, 1 thread");
    let mut fsync4 = Series::new("durable 4 KB writes, 4 threads");
    let mut rates = vec![vec![Series::default(); CONNECTIONS.len()]; SERVERS.len()];
    let mut cpu = [Series::new("Dovecot lmtp+auth"), Series::new("lmtpd")];
    for round in 0..s.rounds {
        fsync1.push(fsync_rate(dovecot.vmail_dir(), 1, fsync_probe));
        fsync4.push(fsync_rate(dovecot.vmail_dir(), 4, fsync_probe));
        let mut cpu_used = [0.0f64; 2];
        let mut count = [0usize; 2];
        for (ci, c) in CONNECTIONS.into_iter().enumerate() {
            // Alternate which server goes first.
            let order = if (round + ci) % 2 == 0 {
                [0, 1]
            } else {
                [1, 0]
            };
            for si in order {
                let before = if si == 0 {
                    dc_cpu()
                } else {
                    bench::tree_cpu_secs(lmtpd_pid)
                };
                let o = run(&sockets[si], si, ci, c, messages);
                let after = if si == 0 {
                    dc_cpu()
                } else {
                    bench::tree_cpu_secs(lmtpd_pid)
                };
                cpu_used[si] += after - before;
                count[si] += o.delivered;
                println!(
                    "  round {round}: {}, {c} connection(s): {:.0} msgs/s, {} failed",
                    SERVERS[si], o.rate, o.failed
                );
                delivered[si][ci] += o.delivered;
                if let Some(e) = o.first_error {
                    failures.push(e);
                }
                rates[si][ci].push(o.rate);
            }
        }
        for si in 0..2 {
            cpu[si].push(cpu_used[si] * 1000.0 / count[si].max(1) as f64);
        }
    }
    let after = (
        bench::status_kib(lmtpd_pid, "VmHWM:").unwrap_or(0) as f64 / 1024.0,
        dc_rss(),
    );
    let _ = lmtpd.kill();
    let _ = lmtpd.wait();
    // What a 250 promised must be on disk: count the files.
    for (si, server) in SERVERS.iter().enumerate() {
        for (ci, c) in CONNECTIONS.into_iter().enumerate() {
            let stored: usize = (0..USERS)
                .map(|u| stored(dovecot.vmail_dir(), &user(si, ci, u)))
                .sum();
            // The warm-up delivery went to the first account of (si, 0).
            let expected = delivered[si][ci] + usize::from(ci == 0);
            if stored != expected {
                failures.push(format!(
                    "{server}, {c} connection(s): {expected} acknowledged, {stored} stored"
                ));
            }
        }
    }
    chown_recursive(
        dovecot.vmail_dir(),
        dovecot::VMAIL_USER,
        dovecot::VMAIL_USER,
    );

    for (ci, c) in CONNECTIONS.into_iter().enumerate() {
        let mut l = rates[1][ci].clone();
        l.name = "lmtpd".into();
        let mut d = rates[0][ci].clone();
        d.name = "Dovecot LMTP".into();
        let row = |m: &str| Row::new(&s, "lmtpd", &format!("{m}, {c} conn"), "msgs/s");
        s.emit(&row("deliveries/s").postwerk(&l).anchor(&d));
        let bound = if c == 1 { &fsync1 } else { &fsync4 };
        s.emit(
            &row("deliveries/s (bound: disk fsync rate)")
                .postwerk(&l)
                .anchor(bound),
        );
    }
    s.emit(
        &Row::new(&s, "lmtpd", "CPU s per 1,000 deliveries", "CPU s")
            .lower_is_better()
            .postwerk(&cpu[1])
            .anchor(&cpu[0]),
    );
    let one = |name: &str, v: f64| Series {
        name: name.to_owned(),
        samples: vec![v],
    };
    for (m, (l, d)) in [
        ("RSS idle", idle),
        ("RSS peak (lmtpd VmHWM) / after load", after),
    ] {
        s.emit(
            &Row::new(&s, "lmtpd", m, "MiB")
                .lower_is_better()
                .postwerk(&one("lmtpd", l))
                .anchor(&one("Dovecot lmtp+auth", d)),
        );
    }
    for f in &failures {
        println!("bench-lmtpd: FAILURE {f}");
    }
    if !failures.is_empty() {
        s.emit(
            &Row::new(
                &s,
                "lmtpd",
                &format!("failed or lost deliveries: {}", failures.join("; ")),
                "count",
            )
            .postwerk(&one("failures", failures.len() as f64)),
        );
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

/// The `u`-th recipient of server `si` at connection index `ci`: an
/// enabled, receiving account (`u0`…`u3`) of its own fixture domain, so
/// neither server reads the other's mail.
fn user(si: usize, ci: usize, u: usize) -> String {
    let domain = ((si * CONNECTIONS.len() + ci) * USERS + u) / 4;
    format!("u{}@d{domain}.example", u % 4)
}

/// What one run measured.
#[derive(Debug)]
struct Outcome {
    rate: f64,
    delivered: usize,
    failed: usize,
    first_error: Option<String>,
}

/// Sends `messages` over `conns` connections to `socket` for the accounts
/// of server `si` at connection index `ci`; deliveries per second counted
/// from the first connect to the last reply.
fn run(socket: &Path, si: usize, ci: usize, conns: usize, messages: usize) -> Outcome {
    let server = SERVERS[si];
    let delivered = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let started = Instant::now();
    let workers: Vec<_> = (0..conns)
        .map(|i| {
            let socket = socket.to_owned();
            let (delivered, failed, first_error) =
                (delivered.clone(), failed.clone(), first_error.clone());
            std::thread::spawn(move || {
                let share = messages / conns + usize::from(i < messages % conns);
                let mut session: Option<Lmtp> = None;
                for j in 0..share {
                    // The warm-up (one message) goes to the first account.
                    let rcpt = user(si, ci, if messages == 1 { 0 } else { (i + j) % USERS });
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
fn fsync_rate(dir: &Path, threads: usize, probe_time: Duration) -> f64 {
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
                while started.elapsed() < probe_time {
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

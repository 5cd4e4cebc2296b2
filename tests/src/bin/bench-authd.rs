//! bench-authd: successful SHA512-CRYPT logins per second over the Dovecot
//! auth-client protocol (what Postfix's SMTP AUTH speaks) at 1, 4 and 16
//! connections, postwerk-authd against a private Dovecot with the guide's
//! SQL passdb (no auth cache, as in the guide), both on the same MariaDB
//! fixture, alternating over several rounds:
//!
//! - first logins: authd's login cache off, so every login verifies the
//!   hash (a client logging in for the first time);
//! - repeat logins: authd's default verified-login cache (a client
//!   reconnecting with the same password);
//! - the raw bound: SHA512-CRYPT verifications/s of `postwerk_core::password`
//!   on as many threads as the connections (at most the cores).
//!
//! Also the resident memory of authd and of Dovecot's auth processes, idle
//! and after the load, and CPU seconds per 1,000 logins.
//!
//! Part of `bench/run` (BENCH_SCALE, BENCH_QUICK, BENCH_OUT: see
//! `postwerk_tests::bench`). Replaces nothing in authd/benches (that stays
//! the in-crate bench with SQLite and passwd-file); this one runs in the
//! suite with the shared fixture. A report, no assertions on time.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use postwerk_core::password::{Scheme, verify};
use postwerk_tests::bench::{self, Fixture, PASSWORD, Row, Series, Settings};
use postwerk_tests::cli::Postwerk;
use postwerk_tests::daemon::{Daemon, Ready};
use postwerk_tests::dovecot::{self, Dovecot};
use postwerk_tests::tls::TestCa;
use postwerk_tests::{Database, MariaDb, TestDir};

const CONNECTIONS: [usize; 3] = [1, 4, 16];
/// Distinct accounts the clients cycle through.
const USERS: usize = 16;

fn main() {
    let s = Settings::from_env();
    let fixture = Fixture::at(s.scale);
    let cell = Duration::from_millis(s.pick(2_000, 500));
    let dir = TestDir::new("bench-authd");
    let db = MariaDb::fresh();
    Postwerk::new(&db.url()).run(&["db", "init"], None);
    let stored = bench::password_hash();
    bench::load_mariadb(&db, &fixture.sql(&stored));
    db.grant_readers();
    let users: Vec<String> = (0..USERS)
        .map(|i| format!("u{}@d{}.example", i % 4, (i * 7919) % fixture.domains))
        .collect();

    let tls = TestCa::new(&dir);
    let sockets = dir.mkdir("sockets", 0o755);
    let dc = Dovecot::start(
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
    let (first, first_sock, _d1) = start_authd(&db, "first", "login_cache_ttl = \"0s\"\n");
    let (repeat, repeat_sock, _d2) = start_authd(&db, "repeat", "");
    let dc_pid = dc.pid().unwrap_or(0);
    let dc_auth = |f: fn(u32) -> f64| -> f64 {
        bench::process_tree(dc_pid)
            .into_iter()
            .filter(|p| {
                std::fs::read_to_string(format!("/proc/{p}/comm"))
                    .is_ok_and(|c| c.trim().starts_with("auth"))
            })
            .map(f)
            .sum()
    };
    let rss_one = |p: u32| bench::status_kib(p, "VmRSS:").map_or(0.0, |k| k as f64 / 1024.0);
    let cpu_one = |p: u32| bench::tree_cpu_secs(p);
    // One login each first, so every server has its connections and
    // workers up before "idle" is read.
    for sock in [&first_sock, &repeat_sock, &dc.auth_socket] {
        rate(sock, 1, &users, Duration::from_millis(50));
    }
    let idle_authd = first.pid().map_or(0.0, bench::tree_rss_mib);
    let idle_dc = dc_auth(rss_one);

    let stored_crypt = stored.trim_start_matches("{SHA512-CRYPT}").to_owned();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    for n in CONNECTIONS {
        let mut a_first = Series::new("authd, first logins");
        let mut a_repeat = Series::new("authd, repeat logins");
        let mut dovecot_sql = Series::new("Dovecot SQL passdb");
        let mut raw = Series::new("raw SHA512-CRYPT");
        let mut cpu_a = Series::new("authd, first logins");
        let mut cpu_d = Series::new("Dovecot auth");
        for _ in 0..s.rounds {
            let c0 = first.pid().map_or(0.0, cpu_one);
            let (r, done) = rate(&first_sock, n, &users, cell);
            a_first.push(r);
            cpu_a.push((first.pid().map_or(0.0, cpu_one) - c0) * 1000.0 / done.max(1) as f64);
            a_repeat.push(rate(&repeat_sock, n, &users, cell).0);
            let c0 = dc_auth(cpu_one);
            let (r, done) = rate(&dc.auth_socket, n, &users, cell);
            dovecot_sql.push(r);
            cpu_d.push((dc_auth(cpu_one) - c0) * 1000.0 / done.max(1) as f64);
            raw.push(raw_rate(n.min(cores), &stored_crypt, cell));
        }
        let row = |m: &str| Row::new(&s, "authd", &format!("{m}, {n} conn"), "logins/s");
        s.emit(
            &row("first logins/s")
                .postwerk(&a_first)
                .anchor(&dovecot_sql),
        );
        s.emit(
            &row("repeat logins/s")
                .postwerk(&a_repeat)
                .anchor(&dovecot_sql),
        );
        s.emit(
            &row("first logins/s (bound: raw hash)")
                .postwerk(&a_first)
                .anchor(&raw),
        );
        s.emit(
            &Row::new(
                &s,
                "authd",
                &format!("CPU s per 1,000 first logins, {n} conn"),
                "CPU s",
            )
            .lower_is_better()
            .postwerk(&cpu_a)
            .anchor(&cpu_d),
        );
    }
    let one = |name: &str, v: f64| Series {
        name: name.to_owned(),
        samples: vec![v],
    };
    let mib = |m: &str, a: f64, d: f64| {
        s.emit(
            &Row::new(&s, "authd", m, "MiB")
                .lower_is_better()
                .postwerk(&one("authd", a))
                .anchor(&one("Dovecot auth processes", d)),
        );
    };
    mib("RSS idle", idle_authd, idle_dc);
    mib(
        "RSS after load",
        first.pid().map_or(0.0, bench::tree_rss_mib),
        dc_auth(rss_one),
    );
    drop(first);
    drop(repeat);
    drop(dc);
}

fn start_authd(db: &dyn Database, name: &str, extra: &str) -> (Daemon, PathBuf, TestDir) {
    let dir = TestDir::new(&format!("bench-authd-{name}"));
    let socket = dir.join("auth.sock");
    // BENCH_AUTHD_CONFIG: more [authd] lines, for experiments (e.g.
    // `verify_parallelism = 4`).
    let experiment = std::env::var("BENCH_AUTHD_CONFIG").unwrap_or_default();
    let config = format!(
        "[database]\nurl = \"{}\"\n\n[authd]\nauth_listen = [\"unix:{}\"]\nsocket_mode = \"0666\"\n{extra}{experiment}\n",
        db.reader_url(),
        socket.display()
    );
    let d = Daemon::start_logging(
        &dir,
        "postwerk-authd",
        &config,
        &[Ready::Unix(socket.clone())],
        "info",
    );
    (d, socket, dir)
}

/// `AUTH PLAIN` initial response: base64 of `\0user\0password`.
fn plain(user: &str, password: &str) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let raw = format!("\0{user}\0{password}").into_bytes();
    let mut out = String::new();
    for c in raw.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= c.len() {
                out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One auth-client connection after the handshake.
struct Conn {
    r: BufReader<UnixStream>,
    w: UnixStream,
}

impl Conn {
    fn open(sock: &Path) -> Conn {
        let s = UnixStream::connect(sock).unwrap_or_else(|e| panic!("{}: {e}", sock.display()));
        let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
        let mut w = s.try_clone().unwrap_or_else(|e| panic!("{e}"));
        w.write_all(format!("VERSION\t1\t2\nCPID\t{}\n", std::process::id()).as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        let mut r = BufReader::new(s);
        let mut line = String::new();
        loop {
            line.clear();
            let n = r.read_line(&mut line).unwrap_or(0);
            assert!(n > 0, "{}: closed in the handshake", sock.display());
            if line == "DONE\n" {
                break;
            }
        }
        Conn { r, w }
    }

    /// AUTH PLAIN; true on OK.
    fn auth(&mut self, id: u64, user: &str) -> bool {
        let line = format!(
            "AUTH\t{id}\tPLAIN\tservice=smtp\tsecured\tnologin\tlip=127.0.0.1\trip=127.0.0.1\tresp={}\n",
            plain(user, PASSWORD)
        );
        if self.w.write_all(line.as_bytes()).is_err() {
            return false;
        }
        let mut reply = String::new();
        self.r.read_line(&mut reply).unwrap_or(0) > 0 && reply.starts_with("OK\t")
    }
}

/// Successful logins/s with `n` connections for `cell`, and how many.
fn rate(sock: &Path, n: usize, users: &[String], cell: Duration) -> (f64, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = (0..n)
        .map(|c| {
            let (sock, users, stop) = (sock.to_owned(), users.to_vec(), stop.clone());
            std::thread::spawn(move || {
                let mut conn = Conn::open(&sock);
                let (mut ok, mut id) = (0u64, 0u64);
                while !stop.load(Ordering::Relaxed) {
                    id += 1;
                    let user = &users[(c + id as usize) % users.len()];
                    if conn.auth(id, user) {
                        ok += 1;
                    } else {
                        panic!("{}: login of {user} failed", sock.display());
                    }
                }
                ok
            })
        })
        .collect();
    std::thread::sleep(cell);
    stop.store(true, Ordering::Relaxed);
    let total: u64 = workers.into_iter().map(|w| w.join().unwrap_or(0)).sum();
    (total as f64 / started.elapsed().as_secs_f64(), total)
}

/// SHA512-CRYPT verifications/s on `threads` threads for `cell`.
fn raw_rate(threads: usize, stored: &str, cell: Duration) -> f64 {
    let deadline = Instant::now() + cell;
    let started = Instant::now();
    let total: u64 = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                sc.spawn(|| {
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        if verify(PASSWORD.as_bytes(), stored, Scheme::Sha512Crypt).unwrap_or(false)
                        {
                            n += 1;
                        }
                    }
                    n
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    total as f64 / started.elapsed().as_secs_f64()
}

//! bench-milter: messages/s one private Postfix of the guide accepts from
//! `smtp-source` (1, 4 and 16 sessions, ~4 KB messages, `discard:`
//! delivery so delivery does not compete with acceptance), through each
//! milter, alternating over several rounds:
//!
//! - no milter (the bound);
//! - DKIM signing (RSA-2048, relaxed/relaxed, the same key file):
//!   postwerk-milterd against OpenDKIM (issue 6);
//! - scanning incoming mail (SPF/DKIM/DMARC verification and spam
//!   scoring, Bayes on Redis, DNS answered by a local test server):
//!   postwerk-milterd against Rspamd 3.4 as the guide configures it (proxy
//!   worker in milter mode with `self_scan`, Redis for Bayes, the guide's
//!   milter_headers), over TCP and over a UNIX socket (issue 7).
//!
//! Every setup has its own smtpd port in the one Postfix (master.cf `-o
//! smtpd_milters=…`), so a round switches setups without restarting
//! anything. Also CPU seconds per 1,000 messages and resident memory idle
//! and after the load of every milter (Rspamd: all its processes), and the
//! raw signing rate of milterd's signer (OpenSSL for RSA, ring for
//! Ed25519) against `openssl speed` (RSA-2048, Ed25519), one core each.
//!
//! Part of `bench/run` (BENCH_SCALE, BENCH_QUICK, BENCH_OUT: see
//! `postwerk_tests::bench`); `bench/milterd.sh` runs it alone. The Postfix
//! maps read the suite's MariaDB fixture. A report, no assertions on time;
//! a run whose `smtp-source` reports errors, or a milter that did not
//! handle every message, is shown in the report.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use postwerk_tests::bench::{self, Fixture, Row, Series, Settings};
use postwerk_tests::cli::{Postwerk, workspace_binary};
use postwerk_tests::dns::Dns;
use postwerk_tests::exec::{require, run};
use postwerk_tests::net::{free_port, wait_for_port, wait_for_unix_socket};
use postwerk_tests::postfix::{self, Maps, Postfix};
use postwerk_tests::redis::RedisPrefix;
use postwerk_tests::tls::TestCa;
use postwerk_tests::{Database, MariaDb, TestDir};

/// Message size (smtp-source `-l`).
const MESSAGE_BYTES: usize = 4 * 1024;
const SESSIONS: [usize; 3] = [1, 4, 16];
/// The recipient, an account of the fixture.
const RCPT: &str = "u0@d0.example";
/// Sender of outgoing (signed) mail: a fixture domain with a key.
const OUR_SENDER: &str = "u1@d0.example";
/// Sender of incoming (scanned) mail.
const FOREIGN_SENDER: &str = "sender@elsewhere.test";
const SELECTOR: &str = "2020";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Setup {
    NoMilter,
    TrivialMilter,
    MilterdSign,
    OpenDkimSign,
    MilterdScanTcp,
    RspamdScanTcp,
    MilterdScanUnix,
    RspamdScanUnix,
}

const SETUPS: [Setup; 8] = [
    Setup::NoMilter,
    Setup::TrivialMilter,
    Setup::MilterdSign,
    Setup::OpenDkimSign,
    Setup::MilterdScanTcp,
    Setup::RspamdScanTcp,
    Setup::MilterdScanUnix,
    Setup::RspamdScanUnix,
];

impl Setup {
    fn name(self) -> &'static str {
        match self {
            Setup::NoMilter => "no milter",
            Setup::TrivialMilter => "trivial milter",
            Setup::MilterdSign => "milterd sign",
            Setup::OpenDkimSign => "OpenDKIM sign",
            Setup::MilterdScanTcp => "milterd scan, TCP",
            Setup::RspamdScanTcp => "Rspamd scan, TCP",
            Setup::MilterdScanUnix => "milterd scan, UNIX socket",
            Setup::RspamdScanUnix => "Rspamd scan, UNIX socket",
        }
    }

    fn is_signing(self) -> bool {
        matches!(
            self,
            Setup::MilterdSign | Setup::OpenDkimSign | Setup::TrivialMilter
        )
    }
}

/// A child process stopped with SIGTERM on drop.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(cmd: &mut Command, log: PathBuf) -> Proc {
        let out = std::fs::File::create(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let err = out.try_clone().unwrap_or_else(|e| panic!("{e}"));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        Proc { child, log }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_ready(&mut self, what: &str, ready: Result<u16, &Path>, timeout: Duration) {
        let up = match ready {
            Ok(port) => wait_for_port(port, timeout),
            Err(path) => wait_for_unix_socket(path, timeout),
        };
        if let Err(e) = up {
            panic!("{what} did not come up: {e}\n{}", self.log());
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(i32::MAX));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The bound of any milter: a milter that does no work. It negotiates
/// the steps milterd asks for (connect to end of message, no replies
/// before end of headers, header values with their leading space), reads
/// every packet, and at end of message adds one header field, as a
/// signing milter does, then accepts. One thread per connection, blocking
/// I/O, no allocation per packet beyond the read buffer, quick ACKs.
fn trivial_milter(port: u16) {
    use std::io::{Read, Write};
    // SMFIP_*: NOUNKNOWN, NODATA, NR_CONN, NR_HELO, NR_MAIL, NR_RCPT,
    // NR_HDR, NR_BODY, HDR_LEADSPC (milter.md).
    const PROTO: u32 =
        0x100 | 0x200 | 0x1000 | 0x2000 | 0x4000 | 0x8000 | 0x80 | 0x80000 | 0x100000;
    const ACTIONS: u32 = 0x01; // SMFIF_ADDHDRS
    fn packet(out: &mut Vec<u8>, cmd: u8, data: &[u8]) {
        out.extend_from_slice(&u32::try_from(data.len() + 1).unwrap_or(0).to_be_bytes());
        out.push(cmd);
        out.extend_from_slice(data);
    }
    fn serve(mut conn: std::net::TcpStream) -> std::io::Result<()> {
        conn.set_nodelay(true)?;
        let mut buf = Vec::with_capacity(65_600);
        let mut out = Vec::with_capacity(256);
        loop {
            let mut len = [0u8; 4];
            conn.read_exact(&mut len)?;
            let len = u32::from_be_bytes(len) as usize;
            if len == 0 || len > 1 << 20 {
                return Ok(());
            }
            buf.resize(len, 0);
            conn.read_exact(&mut buf)?;
            // Postfix writes the packets that need no reply with Nagle's
            // algorithm on: without quick ACKs each waits for a delayed
            // ACK (40 ms). milterd does the same (session.rs).
            let _ = socket2::SockRef::from(&conn).set_tcp_quickack(true);
            out.clear();
            match buf[0] {
                b'O' => {
                    let offered = buf
                        .get(9..13)
                        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                    let mut data = Vec::with_capacity(12);
                    data.extend_from_slice(&6u32.to_be_bytes());
                    data.extend_from_slice(&ACTIONS.to_be_bytes());
                    data.extend_from_slice(&(PROTO & offered).to_be_bytes());
                    packet(&mut out, b'O', &data);
                }
                b'N' => packet(&mut out, b'c', &[]),
                b'E' => {
                    packet(&mut out, b'h', b"X-Bench\0 trivial milter\0");
                    packet(&mut out, b'a', &[]);
                }
                b'Q' => return Ok(()),
                // Macros, connect, HELO, MAIL, RCPT, headers, body,
                // abort: no reply (negotiated).
                _ => {}
            }
            if !out.is_empty() {
                conn.write_all(&out)?;
            }
        }
    }
    let listener = std::net::TcpListener::bind(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("trivial milter on port {port}: {e}"));
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || serve(conn));
        }
    });
}

fn milterd(dir: &TestDir, name: &str, config: &str, ready: Result<u16, &Path>) -> Proc {
    let path = dir.write(format!("{name}.toml"), config, 0o644);
    // BENCH_MILTERD_WRAP: a command line to run milterd under, for
    // profiling (e.g. "valgrind --tool=callgrind
    // --callgrind-out-file=/tmp/cg.%p"); readiness then waits longer.
    let wrap = std::env::var("BENCH_MILTERD_WRAP").unwrap_or_default();
    let mut words = wrap.split_whitespace();
    let mut cmd = match words.next() {
        Some(w) => {
            let mut c = Command::new(w);
            c.args(words).arg(workspace_binary("postwerk-milterd"));
            c
        }
        None => Command::new(workspace_binary("postwerk-milterd")),
    };
    let mut p = Proc::spawn(
        cmd.env("POSTWERK_ALLOW_ROOT", "1")
            .env("RUST_LOG", "info")
            .arg("--config")
            .arg(path),
        dir.join(format!("{name}.log")),
    );
    p.wait_ready(name, ready, Duration::from_secs(120));
    p
}

fn opendkim(dir: &TestDir, port: u16, key: &Path) -> Proc {
    let conf = dir.write(
        "opendkim.conf",
        format!(
            "Syslog no\nMode s\nSocket inet:{port}@127.0.0.1\nDomain d0.example\nSelector {SELECTOR}\n\
             KeyFile {}\nCanonicalization relaxed/relaxed\nRequireSafeKeys false\n\
             PidFile {}\nInternalHosts 127.0.0.1\nUserID opendkim:opendkim\n",
            key.display(),
            dir.join("opendkim.pid").display()
        ),
        0o644,
    );
    let mut p = Proc::spawn(
        Command::new(require("opendkim"))
            .args(["-f", "-x"])
            .arg(conf),
        dir.join("opendkim.log"),
    );
    p.wait_ready("OpenDKIM", Ok(port), Duration::from_secs(30));
    p
}

/// A private Rspamd 3.4 with the guide's local.d settings (proxy worker as
/// milter with self_scan — Debian's worker-proxy.inc with the guide's
/// worker-proxy.inc over it, written out because its `upstream "local"`
/// would otherwise be merged with Debian's, which proxies to port 11333 —
/// Redis, Bayes with autolearn, milter_headers),
/// the normal and controller workers on free ports, DNS from `dns`.
/// Its database directory (hyperscan cache) is kept between runs in
/// /var/tmp so that a run does not pay for compiling the regexps.
fn rspamd(dir: &TestDir, port: u16, socket: &Path, dns: &Dns, redis: &RedisPrefix) -> Proc {
    let local = dir.mkdir("rspamd/local", 0o755);
    let local_d = dir.mkdir("rspamd/local/local.d", 0o755);
    let run_dir = dir.mkdir("rspamd/run", 0o777);
    let db_dir = PathBuf::from("/var/tmp/postwerk-bench-rspamd");
    let _ = std::fs::create_dir_all(&db_dir);
    let _ = Command::new("chown")
        .args(["-R", "_rspamd:_rspamd"])
        .arg(&db_dir)
        .arg(&run_dir)
        .status();
    let (normal, controller) = (free_port(), free_port());
    let write = |name: &str, text: String| {
        std::fs::write(local_d.join(name), text).unwrap_or_else(|e| panic!("{name}: {e}"));
    };
    // The guide's files, with our ports, DNS server and Redis prefix.
    write(
        "options.inc",
        format!(
            "dns {{\n  nameserver = [\"{}\"];\n  timeout = 2s;\n}}\n",
            dns.addr
        ),
    );
    write("redis.conf", "servers = \"127.0.0.1\";\n".to_owned());
    write(
        "classifier-bayes.conf",
        format!(
            "backend = \"redis\";\nautolearn = true;\nprefix = \"{}\";\n",
            redis.prefix()
        ),
    );
    write(
        "milter_headers.conf",
        "use = [\"x-spamd-bar\", \"x-spam-level\", \"authentication-results\"];\nauthenticated_headers = [\"authentication-results\"];\n"
            .to_owned(),
    );
    write("logging.inc", "level = \"warning\";\n".to_owned());
    let conf = dir.write(
        "rspamd/rspamd.conf",
        format!(
            ".include \"$CONFDIR/common.conf\"\n\
             options {{\n  pidfile = \"$RUNDIR/rspamd.pid\";\n  .include \"$CONFDIR/options.inc\"\n  \
             .include(try=true; priority=1,duplicate=merge) \"$LOCAL_CONFDIR/local.d/options.inc\"\n}}\n\
             logging {{\n  type = \"file\";\n  filename = \"$LOGDIR/rspamd.log\";\n  .include \"$CONFDIR/logging.inc\"\n  \
             .include(try=true; priority=1,duplicate=merge) \"$LOCAL_CONFDIR/local.d/logging.inc\"\n}}\n\
             worker \"normal\" {{\n  bind_socket = \"127.0.0.1:{normal}\";\n  .include \"$CONFDIR/worker-normal.inc\"\n}}\n\
             worker \"controller\" {{\n  bind_socket = \"127.0.0.1:{controller}\";\n  .include \"$CONFDIR/worker-controller.inc\"\n}}\n\
             worker \"rspamd_proxy\" {{\n  bind_socket = \"127.0.0.1:{port}\";\n  bind_socket = \"{} mode=0666\";\n  \
             milter = yes;\n  timeout = 120s;\n  count = 1;\n  max_retries = 5;\n  \
             discard_on_reject = false;\n  quarantine_on_reject = false;\n  spam_header = \"X-Spam\";\n  \
             reject_message = \"Spam message rejected\";\n  \
             upstream \"local\" {{\n    default = yes;\n    self_scan = yes;\n  }}\n}}\n",
            socket.display()
        ),
        0o644,
    );
    let var = |k: &str, v: &Path| format!("--var={k}={}", v.display());
    let mut p = Proc::spawn(
        Command::new(require("rspamd"))
            .args(["-f", "-u", "_rspamd", "-g", "_rspamd", "-c"])
            .arg(&conf)
            .arg(var("LOCAL_CONFDIR", &local))
            .arg(var("DBDIR", &db_dir))
            .arg(var("RUNDIR", &run_dir))
            .arg(var("LOGDIR", &run_dir)),
        dir.join("rspamd.stderr"),
    );
    p.log = run_dir.join("rspamd.log");
    p.wait_ready("Rspamd", Ok(port), Duration::from_secs(180));
    p.wait_ready("Rspamd", Err(socket), Duration::from_secs(30));
    p
}

fn milterd_scan_config(
    db: &dyn Database,
    listen: &[String],
    dns: &Dns,
    redis: &RedisPrefix,
) -> String {
    format!(
        "[database]\nurl = \"{}\"\n\n[milterd]\nlisten = [{}]\nsocket_mode = \"0666\"\n\
         dns_servers = [\"{}\"]\ndns_timeout = \"2s\"\n\n\
         [milterd.spam]\nredis_url = \"redis://127.0.0.1:6379\"\nredis_prefix = \"{}\"\n\n\
         [[milterd.spam.dnsbl]]\nname = \"RBL_BENCH\"\ntype = \"ip\"\nzone = \"zen.bench.test\"\nscore = 4.0\n",
        db.reader_url(),
        listen
            .iter()
            .map(|l| format!("\"{l}\""))
            .collect::<Vec<_>>()
            .join(", "),
        dns.addr,
        redis.prefix()
    )
}

/// One smtp-source run: messages/s, and an error note.
fn source(port: u16, sessions: usize, count: usize, sender: &str) -> (f64, Option<String>) {
    let mut cmd = Command::new(require("smtp-source"));
    cmd.args(["-s", &sessions.to_string()])
        .args(["-m", &count.to_string()])
        .args(["-l", &MESSAGE_BYTES.to_string()])
        .args(["-f", sender, "-t", RCPT])
        .arg(format!("127.0.0.1:{port}"));
    let started = Instant::now();
    let out = run(&mut cmd, None, Duration::from_secs(1800));
    let secs = started.elapsed().as_secs_f64();
    let note = (!(out.is_success() && out.stderr.trim().is_empty())).then(|| {
        out.stderr
            .lines()
            .next()
            .unwrap_or("exit status")
            .trim()
            .to_owned()
    });
    (count as f64 / secs, note)
}

/// `openssl speed` signatures/s of `alg` on one core.
fn openssl_speed(alg: &str) -> f64 {
    let out = run(
        Command::new(require("openssl")).args(["speed", "-seconds", "1", "-mr", alg]),
        None,
        Duration::from_secs(120),
    );
    // -mr lines (OpenSSL 3): "+F2:<n>:2048:<sign/s>:<verify/s>" (RSA),
    // "+F6:<n>:253:Ed25519:<sign/s>:<verify/s>" (EdDSA).
    out.stdout
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            match f.first() {
                Some(&"+F2") => f.get(3)?.parse::<f64>().ok(),
                Some(&"+F6") => f.get(4)?.parse::<f64>().ok(),
                _ => None,
            }
        })
        .unwrap_or(0.0)
}

/// Signatures/s of milterd's signer (`postwerk_milterd::keys::Key::sign`:
/// OpenSSL for RSA, ring for Ed25519) over a DKIM-sized signing input on
/// one core, with the key file at `path`.
fn milterd_speed(path: &Path, cell: Duration) -> f64 {
    let Ok(key) = postwerk_milterd::keys::load(path) else {
        return 0.0;
    };
    let msg = [0x5au8; 600];
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < cell {
        if std::hint::black_box(key.sign(&msg)).is_ok() {
            n += 1;
        }
    }
    n as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let s = Settings::from_env();
    let count = std::env::var("BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(s.pick(150, 40));
    let fixture = Fixture::at(s.scale);
    let mut dir = TestDir::new("bench-milter");
    if std::env::var_os("BENCH_KEEP").is_some() {
        dir.keep();
        println!("bench-milter: working directory {}", dir.path().display());
    }
    let db = MariaDb::fresh();
    Postwerk::new(&db.url()).run(&["db", "init"], None);
    bench::load_mariadb(&db, &fixture.sql("{PLAIN}x"));
    db.grant_readers();
    let dns = Dns::start();
    // Real zones' negative answers carry an SOA, so both milters' resolvers
    // may cache them (SPF/DMARC lookups of the sender's domain).
    dns.negative_caching(300);
    let redis = RedisPrefix::fresh();
    let rspamd_redis = RedisPrefix::fresh();
    let tls = TestCa::new(&dir);

    // One RSA-2048 key for both signers.
    let dkim = dir.mkdir("dkim", 0o755);
    let key = dkim.join(format!("d0.example.{SELECTOR}.key"));
    let out = run(
        Command::new(require("openssl"))
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
            ])
            .arg(&key),
        None,
        Duration::from_secs(60),
    );
    assert!(out.is_success(), "openssl genpkey: {out}");
    let _ = Command::new("chmod").arg("0644").arg(&key).status();

    let sign_port = free_port();
    let sign = milterd(
        &dir,
        "milterd-sign",
        &format!(
            "[database]\nurl = \"{}\"\n\n[milterd]\nlisten = [\"inet:127.0.0.1:{sign_port}\"]\n\n\
             [milterd.dkim]\npath = \"{}/$domain.$selector.key\"\nselector = \"{SELECTOR}\"\n\n\
             [milterd.verify]\nenabled = false\n\n[milterd.spam]\nenabled = false\n",
            db.reader_url(),
            dkim.display()
        ),
        Ok(sign_port),
    );
    let trivial_port = free_port();
    trivial_milter(trivial_port);
    let odkim_port = free_port();
    let odkim = opendkim(&dir, odkim_port, &key);
    let scan_port = free_port();
    let scan_socket = dir.join("milterd.sock");
    let scan = milterd(
        &dir,
        "milterd-scan",
        &milterd_scan_config(
            &db,
            &[
                format!("inet:127.0.0.1:{scan_port}"),
                format!("unix:{}", scan_socket.display()),
            ],
            &dns,
            &redis,
        ),
        Ok(scan_port),
    );
    let rspamd_port = free_port();
    let rspamd_socket = dir.join("rspamd.sock");
    let started = Instant::now();
    let rs = rspamd(&dir, rspamd_port, &rspamd_socket, &dns, &rspamd_redis);
    println!(
        "bench-milter: Rspamd up in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let milter_of = |setup: Setup| -> Option<String> {
        match setup {
            Setup::NoMilter => None,
            Setup::TrivialMilter => Some(format!("inet:127.0.0.1:{trivial_port}")),
            Setup::MilterdSign => Some(format!("inet:127.0.0.1:{sign_port}")),
            Setup::OpenDkimSign => Some(format!("inet:127.0.0.1:{odkim_port}")),
            Setup::MilterdScanTcp => Some(format!("inet:127.0.0.1:{scan_port}")),
            Setup::RspamdScanTcp => Some(format!("inet:127.0.0.1:{rspamd_port}")),
            Setup::MilterdScanUnix => Some(format!("unix:{}", scan_socket.display())),
            Setup::RspamdScanUnix => Some(format!("unix:{}", rspamd_socket.display())),
        }
    };
    let ports: Vec<u16> = SETUPS.iter().map(|_| free_port()).collect();
    let mut pf = postfix::Config::guide(Maps::sql(&dir, &db));
    pf.virtual_transport = "discard:".to_owned();
    for (setup, port) in SETUPS.iter().zip(&ports) {
        let mut line = format!("127.0.0.1:{port} inet n - n - - smtpd");
        if let Some(m) = milter_of(*setup) {
            line.push_str(&format!(" -o smtpd_milters={m}"));
        }
        if setup.is_signing() {
            line.push_str(" -o milter_macro_daemon_name=ORIGINATING");
        }
        pf.extra_master_cf.push(line);
    }
    let postfix = Postfix::start(&dir, &tls, &pf);
    for port in &ports {
        let _ = wait_for_port(*port, Duration::from_secs(30));
    }
    let sender = |setup: Setup| {
        if setup.is_signing() {
            OUR_SENDER
        } else {
            FOREIGN_SENDER
        }
    };
    // Warm up: connections, caches, Redis, Rspamd's maps.
    for (setup, port) in SETUPS.iter().zip(&ports) {
        let _ = source(*port, 1, 5, sender(*setup));
    }
    let pid_of = |setup: Setup| -> Option<u32> {
        match setup {
            Setup::NoMilter | Setup::TrivialMilter => None,
            Setup::MilterdSign => Some(sign.pid()),
            Setup::OpenDkimSign => Some(odkim.pid()),
            Setup::MilterdScanTcp | Setup::MilterdScanUnix => Some(scan.pid()),
            Setup::RspamdScanTcp | Setup::RspamdScanUnix => Some(rs.pid()),
        }
    };
    let idle: Vec<f64> = SETUPS
        .iter()
        .map(|s| pid_of(*s).map_or(0.0, bench::tree_rss_mib))
        .collect();

    let mut rates: Vec<Vec<Series>> = SETUPS
        .iter()
        .map(|st| SESSIONS.iter().map(|_| Series::new(st.name())).collect())
        .collect();
    let mut cpu: Vec<Series> = SETUPS.iter().map(|st| Series::new(st.name())).collect();
    let mut notes: Vec<String> = Vec::new();
    for round in 0..s.rounds {
        let mut cpu_used = vec![0.0f64; SETUPS.len()];
        for (si, sessions) in SESSIONS.into_iter().enumerate() {
            // Rotate the order each round and each session count.
            let n = SETUPS.len();
            for k in 0..n {
                let i = (k + round + si) % n;
                let setup = SETUPS[i];
                let before = pid_of(setup).map_or((0.0, 0.0), bench::tree_cpu_split);
                let (r, note) = source(ports[i], sessions, count, sender(setup));
                let after = pid_of(setup).map_or((0.0, 0.0), bench::tree_cpu_split);
                let (user, system) = (after.0 - before.0, after.1 - before.1);
                cpu_used[i] += user + system;
                println!(
                    "  round {round}: {} with {sessions} sessions: {r:.0} msgs/s{} (CPU ms/msg: user {:.2}, system {:.2})",
                    setup.name(),
                    note.as_deref()
                        .map(|n| format!(" ({n})"))
                        .unwrap_or_default(),
                    user * 1000.0 / count as f64,
                    system * 1000.0 / count as f64,
                );
                if let Some(n) = note {
                    notes.push(format!("{}, {sessions} sessions: {n}", setup.name()));
                }
                rates[i][si].push(r);
            }
        }
        for (i, c) in cpu_used.into_iter().enumerate() {
            cpu[i].push(c * 1000.0 / (count * SESSIONS.len()) as f64);
        }
    }
    let after: Vec<f64> = SETUPS
        .iter()
        .map(|s| pid_of(*s).map_or(0.0, bench::tree_rss_mib))
        .collect();

    let idx = |st: Setup| SETUPS.iter().position(|x| *x == st).unwrap_or(0);
    let pairs = [
        (Setup::MilterdSign, Setup::OpenDkimSign),
        (Setup::MilterdScanTcp, Setup::RspamdScanTcp),
        (Setup::MilterdScanUnix, Setup::RspamdScanUnix),
    ];
    for (si, sessions) in SESSIONS.into_iter().enumerate() {
        for (p, a) in pairs {
            s.emit(
                &Row::new(
                    &s,
                    "milter",
                    &format!("Postfix msgs/s, {}, {sessions} sessions", p.name()),
                    "msgs/s",
                )
                .postwerk(&rates[idx(p)][si])
                .anchor(&rates[idx(a)][si]),
            );
        }
        for p in [Setup::MilterdSign, Setup::MilterdScanTcp] {
            s.emit(
                &Row::new(
                    &s,
                    "milter",
                    &format!(
                        "Postfix msgs/s, {}, {sessions} sessions (bound: trivial milter)",
                        p.name()
                    ),
                    "msgs/s",
                )
                .postwerk(&rates[idx(p)][si])
                .anchor(&rates[idx(Setup::TrivialMilter)][si]),
            );
            s.emit(
                &Row::new(
                    &s,
                    "milter",
                    &format!(
                        "Postfix msgs/s, {}, {sessions} sessions (bound: no milter)",
                        p.name()
                    ),
                    "msgs/s",
                )
                .postwerk(&rates[idx(p)][si])
                .anchor(&rates[idx(Setup::NoMilter)][si]),
            );
        }
    }
    let one = |name: &str, v: f64| Series {
        name: name.to_owned(),
        samples: vec![v],
    };
    for (p, a) in [pairs[0], pairs[1]] {
        let what = if p.is_signing() { "sign" } else { "scan" };
        s.emit(
            &Row::new(
                &s,
                "milter",
                &format!("CPU s per 1,000 msgs, {what}"),
                "CPU s",
            )
            .lower_is_better()
            .postwerk(&cpu[idx(p)])
            .anchor(&cpu[idx(a)]),
        );
        let (pn, an) = (
            p.name().split(',').next().unwrap_or(""),
            a.name().split(',').next().unwrap_or(""),
        );
        for (m, v) in [("RSS idle", &idle), ("RSS after load", &after)] {
            s.emit(
                &Row::new(&s, "milter", &format!("{m}, {what}"), "MiB")
                    .lower_is_better()
                    .postwerk(&one(pn, v[idx(p)]))
                    .anchor(&one(an, v[idx(a)])),
            );
        }
    }
    if s.scale == 1 {
        // The primitive: signatures/s of milterd's signer against
        // `openssl speed`, one core each.
        let cell = Duration::from_millis(s.pick(2_000, 700));
        let ed_path = dir.join("ed25519.key");
        let _ = Command::new(require("openssl"))
            .args(["genpkey", "-algorithm", "ed25519", "-out"])
            .arg(&ed_path)
            .status();
        for (alg, label, path) in [
            ("rsa2048", "RSA-2048", &key),
            ("ed25519", "Ed25519", &ed_path),
        ] {
            let mut ours = Series::new("milterd's signer");
            let mut theirs = Series::new("openssl speed");
            for _ in 0..s.rounds {
                ours.push(milterd_speed(path, cell));
                theirs.push(openssl_speed(alg));
            }
            s.emit(
                &Row::new(
                    &s,
                    "milter",
                    &format!("raw signatures/s, {label}, 1 core (vs openssl speed)"),
                    "sig/s",
                )
                .postwerk(&ours)
                .anchor(&theirs),
            );
        }
    }

    // Did each milter see every message? (milter_default_action = accept
    // would otherwise hide a milter that failed.)
    let log = postfix.maillog();
    let milter_warnings = log
        .lines()
        .filter(|l| l.contains("milter") && l.contains("warning"))
        .count();
    let signed = sign.log().matches("signed").count();
    let scored = scan.log().matches("scored").count();
    println!(
        "bench-milter: milterd signed {signed}, scored {scored} messages; {milter_warnings} milter warnings in Postfix's log"
    );
    if milter_warnings > 0 {
        notes.push(format!(
            "{milter_warnings} milter warnings in Postfix's log"
        ));
        for l in log
            .lines()
            .filter(|l| l.contains("milter") && l.contains("warning"))
            .take(3)
        {
            println!("  {l}");
        }
    }
    if !notes.is_empty() {
        s.emit(
            &Row::new(
                &s,
                "milter",
                &format!("errors: {}", notes.join("; ")),
                "count",
            )
            .postwerk(&one("errors", notes.len() as f64)),
        );
    }
    drop(postfix);
    drop(rs);
    drop(scan);
    drop(odkim);
    drop(sign);
}

//! bench-milterd: messages/s a private Postfix of the guide accepts from
//! `smtp-source` with no milter, and with postwerk-milterd scanning every
//! message (SPF/DKIM/DMARC verification and spam scoring: local rules,
//! Bayes on Redis, a DNS list answered by a local test DNS server), over
//! TCP and over a UNIX socket, at 1, 4 and 16 SMTP sessions, in one run.
//! Mail goes to Postfix's `discard:` transport, so delivery does not
//! compete with acceptance. Also milterd's resident memory after the run.
//!
//! Run with `bench/milterd.sh` (release build). Prints a Markdown table and
//! writes it to bench/results/. No assertions on time: this is a report.
//! A run whose `smtp-source` reports errors is marked in the table.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use postwerk_tests::cli::Postwerk;
use postwerk_tests::cli::workspace_binary;
use postwerk_tests::dns::Dns;
use postwerk_tests::exec::{require, run};
use postwerk_tests::net::free_port;
use postwerk_tests::net::{wait_for_port, wait_for_unix_socket};
use postwerk_tests::postfix::{self, Maps, Postfix};
use postwerk_tests::redis::RedisPrefix;
use postwerk_tests::tls::TestCa;
use postwerk_tests::{Database, Sqlite, TestDir};

/// Messages per (setup, sessions) run; `BENCH_MESSAGES` overrides.
const MESSAGES: usize = 2_000;
/// Message size (smtp-source `-l`).
const MESSAGE_BYTES: usize = 4 * 1024;
const SESSIONS: [usize; 3] = [1, 4, 16];
const RCPT: &str = "user1@example.org";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Setup {
    NoMilter,
    /// Verification and scoring off: the cost of the milter protocol alone.
    MilterdTcpIdle,
    MilterdTcp,
    MilterdUnix,
}

impl Setup {
    fn name(self) -> &'static str {
        match self {
            Setup::NoMilter => "no milter",
            Setup::MilterdTcpIdle => "milterd, TCP, checks off",
            Setup::MilterdTcp => "milterd, TCP",
            Setup::MilterdUnix => "milterd, UNIX socket",
        }
    }
}

/// milterd at log level info (the test harness's Daemon logs at debug,
/// which would measure the logging); stopped with SIGTERM on drop.
struct Milterd {
    child: std::process::Child,
    log: std::path::PathBuf,
}

impl Milterd {
    fn start(dir: &TestDir, config: &str, ready: Result<u16, &Path>) -> Milterd {
        let config_path = dir.write("milterd.toml", config, 0o644);
        let log = dir.join("milterd.log");
        let out = std::fs::File::create(&log).expect("create the milterd log");
        let err = out.try_clone().expect("clone the log file");
        let child = Command::new(workspace_binary("postwerk-milterd"))
            .env("POSTWERK_ALLOW_ROOT", "1")
            .arg("--config")
            .arg(&config_path)
            .env("RUST_LOG", "info")
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start postwerk-milterd");
        let up = match ready {
            Ok(port) => wait_for_port(port, Duration::from_secs(30)),
            Err(path) => wait_for_unix_socket(path, Duration::from_secs(30)),
        };
        if let Err(e) = up {
            panic!(
                "milterd did not come up: {e}\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        Milterd { child, log }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Milterd {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(i32::MAX));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

struct Row {
    setup: Setup,
    rates: Vec<(f64, String)>,
    rss_kib: Option<u64>,
}

fn messages() -> usize {
    std::env::var("BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(MESSAGES)
}

fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// One smtp-source run: (messages/s, note).
fn source(port: u16, sessions: usize, count: usize) -> (f64, String) {
    let mut cmd = Command::new(require("smtp-source"));
    cmd.args(["-s", &sessions.to_string()])
        .args(["-m", &count.to_string()])
        .args(["-l", &MESSAGE_BYTES.to_string()])
        .args(["-f", "sender@elsewhere.test", "-t", RCPT])
        .arg(format!("127.0.0.1:{port}"));
    let started = Instant::now();
    let out = run(&mut cmd, None, Duration::from_secs(1800));
    let secs = started.elapsed().as_secs_f64();
    let note = if out.is_success() && out.stderr.trim().is_empty() {
        String::new()
    } else {
        format!(
            " (errors: {})",
            out.stderr.lines().next().unwrap_or("exit status").trim()
        )
    };
    (count as f64 / secs, note)
}

fn milterd_config(
    db: &dyn Database,
    listen: &str,
    dns: &Dns,
    redis: &RedisPrefix,
    dir: &Path,
) -> String {
    format!(
        "[database]\nurl = \"{}\"\n\n[milterd]\nlisten = [\"{listen}\"]\nsocket_mode = \"0666\"\n\
         dns_servers = [\"{}\"]\ndns_timeout = \"2s\"\n\n[milterd.dkim]\npath = \"{}/$domain.$selector.key\"\n\n\
         [milterd.spam]\nredis_url = \"redis://127.0.0.1:6379\"\nredis_prefix = \"{}\"\n\n\
         [[milterd.spam.dnsbl]]\nname = \"RBL_BENCH\"\ntype = \"ip\"\nzone = \"zen.bench.test\"\nscore = 4.0\n",
        db.reader_url(),
        dns.addr,
        dir.join("dkim").display(),
        redis.prefix()
    )
}

fn bench(setup: Setup, count: usize) -> Row {
    let mut dir = TestDir::new(&format!(
        "bench-milterd-{}",
        setup.name().replace([',', ' '], "")
    ));
    if std::env::var_os("BENCH_KEEP").is_some() {
        dir.keep();
        println!("  working directory {}", dir.path().display());
    }
    let db = Sqlite::fresh(&dir);
    // Its own config file: a system-wide /etc/postwerk/postwerk.toml must
    // not leak into the run.
    let pw_config = dir.write(
        "postwerk.toml",
        format!("[database]\nurl = \"{}\"\n", db.url()),
        0o644,
    );
    let pw = Postwerk::new(&db.url()).with_config(pw_config);
    pw.run(&["db", "init"], None);
    db.grant_readers();
    pw.run(&["domain", "add", "example.org"], None);
    pw.run(
        &["account", "add", RCPT, "--password-stdin"],
        Some("bench password\n"),
    );
    let dns = Dns::start();
    let redis = RedisPrefix::fresh();
    let tls = TestCa::new(&dir);
    let mut pf = postfix::Config::guide(Maps::sql(&dir, &db));
    pf.virtual_transport = "discard:".to_owned();
    let mut milterd = None;
    match setup {
        Setup::NoMilter => {}
        Setup::MilterdTcpIdle | Setup::MilterdTcp => {
            let port = free_port();
            let listen = format!("inet:127.0.0.1:{port}");
            milterd = Some(Milterd::start(
                &dir,
                &if setup == Setup::MilterdTcpIdle {
                    format!(
                        "{}\n[milterd.verify]\nenabled = false\n[milterd.spam]\nenabled = false\n",
                        milterd_config(&db, &listen, &dns, &redis, dir.path())
                            .split("\n[milterd.spam]")
                            .next()
                            .unwrap_or_default()
                    )
                } else {
                    milterd_config(&db, &listen, &dns, &redis, dir.path())
                },
                Ok(port),
            ));
            pf.milters = Some(listen);
        }
        Setup::MilterdUnix => {
            let socket = dir.join("milterd.sock");
            let listen = format!("unix:{}", socket.display());
            milterd = Some(Milterd::start(
                &dir,
                &milterd_config(&db, &listen, &dns, &redis, dir.path()),
                Err(&socket),
            ));
            pf.milters = Some(listen);
        }
    }
    let postfix = Postfix::start(&dir, &tls, &pf);
    // Warm up: connections, caches, Redis.
    source(postfix.smtp_port, 1, 20);
    let mut rates = Vec::new();
    for s in SESSIONS {
        let r = source(postfix.smtp_port, s, count);
        println!(
            "  {} with {s} sessions: {:.0} msgs/s{}",
            setup.name(),
            r.0,
            r.1
        );
        rates.push(r);
    }
    let rss_kib = milterd.as_ref().and_then(|m| status_kib(m.pid(), "VmRSS:"));
    if let Some(m) = milterd.as_ref() {
        let log = m.log();
        let scored = log.matches("incoming; scored").count();
        let ms: Vec<f64> = log
            .lines()
            .filter(|l| l.contains("incoming; scored"))
            .filter_map(|l| {
                l.split("scan_ms=")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .collect();
        let avg = ms.iter().sum::<f64>() / ms.len().max(1) as f64;
        println!("  milterd scored {scored} messages, scan time {avg:.1} ms on average");
    }
    drop(postfix);
    drop(milterd);
    Row {
        setup,
        rates,
        rss_kib,
    }
}

fn main() {
    let count = messages();
    println!(
        "bench-milterd: {count} messages of {MESSAGE_BYTES} bytes per run, sessions {SESSIONS:?}"
    );
    let rows: Vec<Row> = [
        Setup::NoMilter,
        Setup::MilterdTcpIdle,
        Setup::MilterdTcp,
        Setup::MilterdUnix,
    ]
    .into_iter()
    .map(|s| bench(s, count))
    .collect();
    let base = &rows[0].rates;
    let mut table = String::from(
        "| Postfix with | 1 session | 4 sessions | 16 sessions | milterd RSS after |\n|---|---|---|---|---|\n",
    );
    for r in &rows {
        let cells: Vec<String> = r
            .rates
            .iter()
            .zip(base)
            .map(|((rate, note), (b, _))| {
                if r.setup == Setup::NoMilter {
                    format!("{rate:.0} msgs/s{note}")
                } else {
                    format!("{rate:.0} msgs/s ({:.0} %){note}", rate / b * 100.0)
                }
            })
            .collect();
        let rss = r.rss_kib.map_or_else(
            || "—".to_owned(),
            |k| format!("{:.1} MiB", k as f64 / 1024.0),
        );
        table.push_str(&format!(
            "| {} | {} | {rss} |\n",
            r.setup.name(),
            cells.join(" | ")
        ));
    }
    let machine = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let profile = if cfg!(debug_assertions) {
        "debug build (not representative; bench/milterd.sh builds release)"
    } else {
        "release build"
    };
    let date = run(&mut Command::new("date"), None, Duration::from_secs(5))
        .stdout
        .trim()
        .to_owned();
    let report = format!(
        "# milterd benchmark\n\n{date}; {profile}; {cpus} CPUs ({machine}); {count} messages of {MESSAGE_BYTES} bytes per run from smtp-source to a private Postfix (guide's main.cf, SQL maps on SQLite, `discard:` delivery). milterd: verification with a local DNS server, spam scoring with Bayes on Redis and one DNS list. Percentages: of Postfix with no milter.\n\n{table}"
    );
    println!("\n{report}");
    let results = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/results");
    let stamp = run(
        Command::new("date").arg("+%Y-%m-%d"),
        None,
        Duration::from_secs(5),
    )
    .stdout
    .trim()
    .to_owned();
    let file = results.join(format!("milterd-{stamp}.md"));
    match std::fs::create_dir_all(&results).and_then(|()| std::fs::write(&file, &report)) {
        Ok(()) => println!("written to {}", file.display()),
        Err(e) => eprintln!("cannot write {}: {e}", file.display()),
    }
}

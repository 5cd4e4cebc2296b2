//! bench-policyd: lookups/s of postwerk-policyd's socketmap against the
//! guide's `proxy:mysql` maps on the same MariaDB data, and against a
//! trivial socketmap server that answers `NOTFOUND` at once (the physical
//! bound of any socketmap server), all through the real `postmap -q -`, in
//! one run, alternating A/B/C over several rounds. Then p50/p99 latency
//! with 8 concurrent socketmap clients, and policyd's resident memory.
//!
//! Run with `bench/policyd.sh` (release build). Prints a Markdown table and
//! writes it to bench/results/. No assertions on time: this is a report.

use std::io::{BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use postwerk_tests::cli::Postwerk;
use postwerk_tests::exec::{require, run};
use postwerk_tests::guide::start_policyd;
use postwerk_tests::postfix::{self, Maps, Postfix};
use postwerk_tests::tls::TestCa;
use postwerk_tests::{Database, MariaDb, TestDir};

const DOMAINS: usize = 100;
const ACCOUNTS_PER_DOMAIN: usize = 10;
const KEYS: usize = 10_000;
const ROUNDS: usize = 3;
const LATENCY_CLIENTS: usize = 8;
const LATENCY_LOOKUPS: usize = 2_000;

fn main() {
    let dir = TestDir::new("bench-policyd");
    let db = MariaDb::fresh();
    println!(
        "bench-policyd: provisioning {DOMAINS} domains, {} accounts, aliases and catch-alls on MariaDB",
        DOMAINS * ACCOUNTS_PER_DOMAIN
    );
    Postwerk::new(&db.url()).run(&["db", "init"], None);
    db.query(&fixture_sql());
    db.grant_readers();

    let tls = TestCa::new(&dir);
    let postfix = Postfix::start(&dir, &tls, &postfix::Config::guide(Maps::sql(&dir, &db)));
    let (policyd, socket) = start_policyd(&dir, &db, "cache_ttl = \"0s\"\n");
    let cached_dir = TestDir::new("bench-policyd-cached");
    let (cached, cached_socket) = start_policyd(&cached_dir, &db, "");
    let trivial_socket = dir.join("trivial.sock");
    start_trivial_server(&trivial_socket);
    let keys = mixed_keys();
    let domain_keys: Vec<String> = keys
        .iter()
        .map(|k| k.rsplit('@').next().unwrap_or(k).to_owned())
        .collect();

    let guide = Maps::sql(&dir, &db);
    let maps: [(&str, String, String, &Vec<String>); 3] = [
        (
            "accounts (virtual_mailbox_maps)",
            guide.accounts.clone(),
            "mailboxes".into(),
            &keys,
        ),
        (
            "aliases (virtual_alias_maps)",
            guide.aliases.clone(),
            "aliases".into(),
            &keys,
        ),
        (
            "domains (virtual_mailbox_domains)",
            guide.domains.clone(),
            "domains".into(),
            &domain_keys,
        ),
    ];
    let mut rows = Vec::new();
    for (label, proxy_map, name, keys) in &maps {
        let policyd_map = format!("socketmap:unix:{}:{name}", socket.display());
        let trivial_map = format!("socketmap:unix:{}:{name}", trivial_socket.display());
        let cached_map = format!("socketmap:unix:{}:{name}", cached_socket.display());
        let (mut a, mut b, mut c, mut d) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            a.push(rate(postfix.config_dir(), proxy_map, keys));
            b.push(rate(postfix.config_dir(), &policyd_map, keys));
            d.push(rate(postfix.config_dir(), &cached_map, keys));
            c.push(rate(postfix.config_dir(), &trivial_map, keys));
        }
        rows.push((label.to_string(), a, b, c, d));
    }

    let lat_keys: Vec<String> = keys.iter().take(LATENCY_LOOKUPS).cloned().collect();
    let (p50, p99) = latency(&socket, "aliases", &lat_keys);
    let (c50, c99) = latency(&cached_socket, "aliases", &lat_keys);
    let (t50, t99) = latency(&trivial_socket, "aliases", &lat_keys);
    let rss = policyd.pid().and_then(rss_kib).unwrap_or(0);
    let cached_rss = cached.pid().and_then(rss_kib).unwrap_or(0);

    let mut out = String::new();
    out.push_str(&format!(
        "# policyd benchmark\n\n{} on {} ({} cores), {} keys through `postmap -q -`, {ROUNDS} rounds alternating, medians (min–max)\n\n",
        chrono_like_date(),
        hostname(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        KEYS
    ));
    out.push_str("| map | guide proxy:mysql | policyd, no cache | policyd (default: cache until the tables change) | trivial server | policyd / proxy:mysql | cached / proxy:mysql | policyd / trivial | cached / trivial |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (label, a, b, c, d) in &rows {
        out.push_str(&format!(
            "| {label} | {} | {} | {} | {} | {:.2}× | {:.2}× | {:.0} % | {:.0} % |\n",
            fmt(a),
            fmt(b),
            fmt(d),
            fmt(c),
            median(b) / median(a),
            median(d) / median(a),
            100.0 * median(b) / median(c),
            100.0 * median(d) / median(c)
        ));
    }
    out.push_str("\n(lookups/s. The key set repeats addresses, as Postfix does — smtpd, trivial-rewrite and cleanup each ask for the same address. The default policyd keeps answers until a change probe, run every second, sees the vmail tables change.)\n");
    out.push_str(&format!(
        "\nLatency, {LATENCY_CLIENTS} concurrent socketmap clients, {} lookups each (aliases map): policyd without cache p50 {:.0} µs, p99 {:.0} µs; policyd default p50 {:.0} µs, p99 {:.0} µs; trivial server p50 {:.0} µs, p99 {:.0} µs.\n\nResident memory after the run: policyd without cache {:.1} MiB, policyd default {:.1} MiB.\n",
        lat_keys.len(),
        p50,
        p99,
        c50,
        c99,
        t50,
        t99,
        rss as f64 / 1024.0,
        cached_rss as f64 / 1024.0
    ));
    println!("\n{out}");
    let results = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/results");
    let _ = std::fs::create_dir_all(&results);
    let file = results.join(format!("policyd-{}.md", chrono_like_date()));
    match std::fs::write(&file, &out) {
        Ok(()) => println!("written to {}", file.display()),
        Err(e) => eprintln!("cannot write {}: {e}", file.display()),
    }
    drop(policyd);
    drop(postfix);
}

fn fixture_sql() -> String {
    let mut sql = String::from("INSERT INTO domains (domain) VALUES ");
    sql.push_str(
        &(0..DOMAINS)
            .map(|d| format!("('d{d}.example')"))
            .collect::<Vec<_>>()
            .join(","),
    );
    sql.push_str(
        ";\nINSERT INTO accounts (username, domain, password, quota, enabled, sendonly) VALUES ",
    );
    let mut rows = Vec::new();
    for d in 0..DOMAINS {
        for u in 0..ACCOUNTS_PER_DOMAIN {
            // every tenth account disabled, every twentieth send-only
            let enabled = u % 10 != 9;
            let sendonly = u % 20 == 5;
            rows.push(format!(
                "('u{u}','d{d}.example','{{PLAIN}}x',0,{enabled},{sendonly})"
            ));
        }
    }
    sql.push_str(&rows.join(","));
    sql.push_str(";\nINSERT INTO aliases (source_username, source_domain, destination_username, destination_domain, enabled) VALUES ");
    let mut rows = Vec::new();
    for d in 0..DOMAINS {
        for a in 0..ACCOUNTS_PER_DOMAIN {
            rows.push(format!(
                "('a{a}','d{d}.example','u{a}','d{d}.example',true)"
            ));
        }
        // a distribution list and, in every fifth domain, a catch-all
        rows.push(format!("('list','d{d}.example','u1','d{d}.example',true)"));
        rows.push(format!("('list','d{d}.example','u2','d{d}.example',true)"));
        if d % 5 == 0 {
            rows.push(format!("(NULL,'d{d}.example','u0','d{d}.example',true)"));
        }
    }
    sql.push_str(&rows.join(","));
    sql.push(';');
    sql
}

/// Hits, misses, disabled accounts, catch-all domains, extensions and
/// unknown domains, deterministically mixed.
fn mixed_keys() -> Vec<String> {
    (0..KEYS)
        .map(|i| {
            let d = (i * 7) % DOMAINS;
            match i % 10 {
                0..=2 => format!("u{}@d{d}.example", i % 9),
                3 | 4 => format!("a{}@d{d}.example", i % 10),
                5 => format!("nobody{i}@d{d}.example"),
                6 => format!("u9@d{d}.example"),
                7 => format!("u{}+tag@d{d}.example", i % 9),
                8 => format!("list@d{d}.example"),
                _ => format!("x{i}@unknown{d}.test"),
            }
        })
        .collect()
}

fn rate(config: &Path, map: &str, keys: &[String]) -> f64 {
    let mut cmd = Command::new(require("postmap"));
    cmd.arg("-c").arg(config).args(["-q", "-", map]);
    let input = keys.join("\n") + "\n";
    let started = Instant::now();
    let out = run(&mut cmd, Some(input.as_bytes()), Duration::from_secs(600));
    let elapsed = started.elapsed().as_secs_f64();
    if out.stderr.contains("fatal") {
        panic!("postmap {map} failed: {}", out.stderr);
    }
    keys.len() as f64 / elapsed
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s[s.len() / 2]
}

fn fmt(v: &[f64]) -> String {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(0.0, f64::max);
    format!("{:.0} ({:.0}–{:.0})", median(v), min, max)
}

fn netstring(s: &str) -> Vec<u8> {
    format!("{}:{s},", s.len()).into_bytes()
}

fn read_netstring(r: &mut impl Read) -> Option<Vec<u8>> {
    let mut len = Vec::new();
    let mut b = [0u8; 1];
    loop {
        if r.read(&mut b).ok()? == 0 {
            return None;
        }
        if b[0] == b':' {
            break;
        }
        len.push(b[0]);
    }
    let n: usize = String::from_utf8(len).ok()?.parse().ok()?;
    let mut buf = vec![0u8; n + 1];
    r.read_exact(&mut buf).ok()?;
    buf.pop();
    Some(buf)
}

/// A socketmap server that answers NOTFOUND at once: the bound of any
/// socketmap server on this machine.
fn start_trivial_server(path: &Path) {
    let listener = UnixListener::bind(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let _ = std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o666));
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut w = match conn.try_clone() {
                    Ok(w) => w,
                    Err(_) => return,
                };
                let mut r = BufReader::new(conn);
                while read_netstring(&mut r).is_some() {
                    if w.write_all(b"9:NOTFOUND ,").is_err() {
                        break;
                    }
                }
            });
        }
    });
}

/// p50 and p99 in microseconds with concurrent persistent clients.
fn latency(socket: &Path, map: &str, keys: &[String]) -> (f64, f64) {
    let socket: PathBuf = socket.to_path_buf();
    let handles: Vec<_> = (0..LATENCY_CLIENTS)
        .map(|_| {
            let (socket, keys, map) = (socket.clone(), keys.to_vec(), map.to_owned());
            std::thread::spawn(move || {
                let conn = UnixStream::connect(&socket)
                    .unwrap_or_else(|e| panic!("{}: {e}", socket.display()));
                let mut w = conn.try_clone().unwrap_or_else(|e| panic!("{e}"));
                let mut r = BufReader::new(conn);
                keys.iter()
                    .map(|k| {
                        let started = Instant::now();
                        w.write_all(&netstring(&format!("{map} {k}")))
                            .unwrap_or_else(|e| panic!("{e}"));
                        read_netstring(&mut r).unwrap_or_else(|| panic!("no reply"));
                        started.elapsed().as_secs_f64() * 1e6
                    })
                    .collect::<Vec<f64>>()
            })
        })
        .collect();
    let mut all: Vec<f64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap_or_default())
        .collect();
    all.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    (at(0.50), at(0.99))
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_or_else(|_| "unknown".into(), |s| s.trim().to_owned())
}

fn chrono_like_date() -> String {
    let out = Command::new("date").arg("+%Y-%m-%d").output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|_| "unknown-date".into())
}

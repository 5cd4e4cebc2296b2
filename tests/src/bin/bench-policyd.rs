//! bench-policyd: lookups/s of postwerk-policyd's socketmap against the
//! guide's `proxy:mysql` maps on the same MariaDB data, against Postfix's
//! own `hash:` files of the same data, and against a trivial socketmap
//! server that answers `NOTFOUND` at once (the physical bound of any
//! socketmap server), all through the real `postmap -q -`, alternating over
//! several rounds. Then p50/p99 latency with 8 concurrent socketmap
//! clients, policyd's resident memory idle and after the load, and CPU
//! seconds per 1,000 lookups (policyd against Postfix's proxymap; the
//! MariaDB server's share is in neither).
//!
//! Part of `bench/run` (which sets BENCH_SCALE, BENCH_QUICK, BENCH_OUT; see
//! `postwerk_tests::bench`); alone: `bench/policyd.sh`. A report, no
//! assertions on time.

use std::io::{BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use postwerk_tests::bench::{self, Fixture, Row, Series, Settings};
use postwerk_tests::cli::Postwerk;
use postwerk_tests::daemon::{Daemon, Ready};
use postwerk_tests::exec::{require, run};
use postwerk_tests::postfix::{self, Maps, Postfix};
use postwerk_tests::tls::TestCa;
use postwerk_tests::{Database, MariaDb, TestDir};

const LATENCY_CLIENTS: usize = 8;

fn main() {
    let s = Settings::from_env();
    let fixture = Fixture::at(s.scale);
    let keys_n = s.pick(10_000, 3_000);
    let dir = TestDir::new("bench-policyd");
    let db = MariaDb::fresh();
    println!(
        "bench-policyd: {} domains, {} accounts, {} aliases on MariaDB; {keys_n} keys, {} rounds",
        fixture.domains,
        fixture.accounts(),
        fixture.aliases(),
        s.rounds
    );
    Postwerk::new(&db.url()).run(&["db", "init"], None);
    let started = Instant::now();
    bench::load_mariadb(&db, &fixture.sql("{PLAIN}x"));
    println!(
        "bench-policyd: fixture loaded in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    db.grant_readers();

    let tls = TestCa::new(&dir);
    let postfix = Postfix::start(&dir, &tls, &postfix::Config::guide(Maps::sql(&dir, &db)));
    let master = bench::pid_file(&postfix.queue_dir().join("pid/master.pid")).unwrap_or(0);
    let (uncached, socket, _uncached_dir) = start_policyd("uncached", &db, "cache_ttl = \"0s\"\n");
    let (cached, cached_socket, _cached_dir) = start_policyd("cached", &db, "");
    let idle = [uncached.pid(), cached.pid()].map(|p| p.map_or(0.0, bench::tree_rss_mib));
    let trivial_socket = dir.join("trivial.sock");
    start_trivial_server(&trivial_socket);
    let hash = hash_maps(&dir, postfix.config_dir(), &fixture);

    let keys = mixed_keys(&fixture, keys_n);
    let domain_keys: Vec<String> = keys
        .iter()
        .map(|k| k.rsplit('@').next().unwrap_or(k).to_owned())
        .collect();
    let guide = Maps::sql(&dir, &db);
    let maps = [
        (
            "accounts",
            guide.accounts.clone(),
            "mailboxes",
            &keys,
            &hash.0,
        ),
        ("aliases", guide.aliases.clone(), "aliases", &keys, &hash.1),
        (
            "domains",
            guide.domains.clone(),
            "domains",
            &domain_keys,
            &hash.2,
        ),
    ];
    let sock = |p: &Path, name: &str| format!("socketmap:unix:{}:{name}", p.display());
    let cpu = |pid: Option<u32>| pid.map_or(0.0, bench::tree_cpu_secs);
    for (label, proxy_map, name, keys, hash_map) in &maps {
        let mut proxy = Series::new("proxy:mysql");
        let mut plain = Series::new("policyd, no cache");
        let mut warm = Series::new("policyd");
        let mut trivial = Series::new("trivial socketmap server");
        let mut hashed = Series::new("hash:");
        let mut cpu_proxy = Series::new("proxymap");
        let mut cpu_plain = Series::new("policyd, no cache");
        // Warm up (not counted): MariaDB's buffer pool, proxymap's
        // connection, policyd's cache — the steady state of a mail server.
        rate(postfix.config_dir(), proxy_map, keys);
        rate(postfix.config_dir(), &sock(&cached_socket, name), keys);
        for _ in 0..s.rounds {
            let c0 = bench::tree_cpu_secs(master);
            proxy.push(rate(postfix.config_dir(), proxy_map, keys));
            let c1 = bench::tree_cpu_secs(master);
            cpu_proxy.push((c1 - c0) * 1000.0 / keys.len() as f64);
            let c0 = cpu(uncached.pid());
            plain.push(rate(postfix.config_dir(), &sock(&socket, name), keys));
            cpu_plain.push((cpu(uncached.pid()) - c0) * 1000.0 / keys.len() as f64);
            warm.push(rate(
                postfix.config_dir(),
                &sock(&cached_socket, name),
                keys,
            ));
            trivial.push(rate(
                postfix.config_dir(),
                &sock(&trivial_socket, name),
                keys,
            ));
            hashed.push(rate(postfix.config_dir(), hash_map, keys));
        }
        let m = format!("{label}: lookups/s via postmap");
        let row = |measure: &str| Row::new(&s, "policyd", measure, "lookups/s");
        s.emit(&row(&m).postwerk(&warm).anchor(&proxy));
        s.emit(
            &row(&format!("{m}, no cache"))
                .postwerk(&plain)
                .anchor(&proxy),
        );
        s.emit(
            &row(&format!("{m} (bound: trivial server)"))
                .postwerk(&warm)
                .anchor(&trivial),
        );
        s.emit(
            &row(&format!("{m} (vs hash: file)"))
                .postwerk(&warm)
                .anchor(&hashed),
        );
        s.emit(
            &Row::new(
                &s,
                "policyd",
                &format!("{label}: CPU s per 1,000 lookups, no cache"),
                "CPU s",
            )
            .lower_is_better()
            .postwerk(&cpu_plain)
            .anchor(&cpu_proxy),
        );
    }

    let lat_keys: Vec<String> = keys.iter().take(s.pick(2_000, 1_000)).cloned().collect();
    let (mut p50, mut p99) = (Series::new("policyd"), Series::new("policyd"));
    let (mut n50, mut n99) = (
        Series::new("policyd, no cache"),
        Series::new("policyd, no cache"),
    );
    let (mut t50, mut t99) = (Series::new("trivial server"), Series::new("trivial server"));
    // Warm up (not counted), as for the rates above: the aliases map was
    // warmed more than `cache_ttl` (60 s) ago at 1× data, so without this
    // the first round measured MariaDB, not the steady state.
    latency(&cached_socket, "aliases", &lat_keys);
    for _ in 0..s.rounds {
        let (a, b) = latency(&cached_socket, "aliases", &lat_keys);
        p50.push(a);
        p99.push(b);
        let (a, b) = latency(&socket, "aliases", &lat_keys);
        n50.push(a);
        n99.push(b);
        let (a, b) = latency(&trivial_socket, "aliases", &lat_keys);
        t50.push(a);
        t99.push(b);
    }
    let lat = |m: &str, p: &Series, t: &Series| {
        s.emit(
            &Row::new(&s, "policyd", m, "µs")
                .lower_is_better()
                .postwerk(p)
                .anchor(t),
        );
    };
    lat("aliases p50, 8 clients (bound: trivial server)", &p50, &t50);
    lat("aliases p99, 8 clients (bound: trivial server)", &p99, &t99);
    lat(
        "aliases p99, 8 clients, no cache (bound: trivial server)",
        &n99,
        &t99,
    );
    let after = [uncached.pid(), cached.pid()].map(|p| p.map_or(0.0, bench::tree_rss_mib));
    let proxy_rss = bench::process_tree(master)
        .into_iter()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "proxymap")
        })
        .filter_map(|p| bench::status_kib(p, "VmRSS:"))
        .sum::<u64>() as f64
        / 1024.0;
    let one = |name: &str, v: f64| Series {
        name: name.to_owned(),
        samples: vec![v],
    };
    let rss = |m: &str, p: f64| {
        s.emit(
            &Row::new(&s, "policyd", m, "MiB")
                .lower_is_better()
                .postwerk(&one("policyd", p))
                .anchor(&one("proxymap", proxy_rss)),
        );
    };
    rss("RSS idle (vs proxymap after load)", idle[1]);
    rss("RSS after load", after[1]);
    rss("RSS after load, no cache", after[0]);
    drop(uncached);
    drop(cached);
    drop(postfix);
}

/// A policyd at log level `info` in its own directory (returned with it:
/// the daemon's config and log live there).
fn start_policyd(name: &str, db: &dyn Database, extra: &str) -> (Daemon, PathBuf, TestDir) {
    let sub_dir = TestDir::new(&format!("bench-policyd-{name}"));
    let socket = sub_dir.join("policyd.sock");
    let config = format!(
        "[database]\nurl = \"{}\"\n\n[policyd]\nsocketmap_listen = [\"unix:{}\"]\nsocket_mode = \"0666\"\n{extra}",
        db.reader_url(),
        socket.display()
    );
    let d = Daemon::start_logging(
        &sub_dir,
        "postwerk-policyd",
        &config,
        &[Ready::Unix(socket.clone())],
        "info",
    );
    (d, socket, sub_dir)
}

/// Postfix `hash:` maps of the fixture (accounts, aliases, domains).
fn hash_maps(dir: &TestDir, config: &Path, f: &Fixture) -> (String, String, String) {
    let (a, b, c) = f.hash_sources();
    let make = |name: &str, text: String| {
        let path = dir.write(format!("hash-{name}"), text, 0o644);
        let out = run(
            Command::new(require("postmap"))
                .arg("-c")
                .arg(config)
                .arg(format!("hash:{}", path.display())),
            None,
            Duration::from_secs(300),
        );
        if !out.is_success() {
            panic!("postmap hash:{}: {out}", path.display());
        }
        format!("hash:{}", path.display())
    };
    (make("accounts", a), make("aliases", b), make("domains", c))
}

/// Hits, misses, disabled accounts, catch-all domains, extensions and
/// unknown domains, deterministically mixed over the whole fixture.
fn mixed_keys(f: &Fixture, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let d = (i * 7919) % f.domains;
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
    if out.stderr.contains("fatal") || out.stderr.contains("warning") {
        panic!("postmap {map} failed: {}", out.stderr);
    }
    keys.len() as f64 / elapsed
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
    all.sort_by(f64::total_cmp);
    let at = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    (at(0.50), at(0.99))
}

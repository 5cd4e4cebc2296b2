//! policyd's MTA-STS fallback for `tls_policy` (issue 8), asked through
//! the real `postmap`: a local DNS server publishes `_mta-sts` TXT records
//! and the address of `mta-sts.example.net`, an HTTPS server with the test
//! CA serves the policy. A `tlspolicies` row always wins; `enforce` gives
//! `secure match=…`; a new `id` brings the new policy; a failing fetch keeps
//! the cached policy; DNS failure gives the default policy, never a
//! temporary error.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use postwerk_tests::cli::Postwerk;
use postwerk_tests::dns::Dns;
use postwerk_tests::exec::{require, run};
use postwerk_tests::guide::start_policyd;
use postwerk_tests::net::wait_for_port;
use postwerk_tests::tls::TestCa;
use postwerk_tests::{Database, Sqlite, TestDir};

const ENFORCE: &str = "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.net\r\nmx: *.mx.example.net\r\nmax_age: 86400\r\n";
const TESTING: &str =
    "version: STSv1\r\nmode: testing\r\nmx: mx1.example.net\r\nmax_age: 86400\r\n";
const SECURE: &str = "secure match=mx1.example.net:.mx.example.net servername=hostname";

/// An HTTPS server on `ip:443` serving `root`, killed when dropped.
struct Https(Child);

impl Https {
    fn start(ip: Ipv4Addr, root: &std::path::Path, tls: &TestCa) -> Https {
        let script = r#"
import functools, http.server, ssl, sys
ip, root, cert, key = sys.argv[1:5]
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=root)
srv = http.server.HTTPServer((ip, 443), handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
"#;
        let child = Command::new("/usr/bin/python3")
            .arg("-c")
            .arg(script)
            .arg(ip.to_string())
            .arg(root)
            .arg(&tls.fullchain)
            .arg(&tls.key)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect((ip, 443)).is_err() {
            assert!(Instant::now() < deadline, "the HTTPS server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Https(child)
    }
}

impl Drop for Https {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `postmap -q KEY socketmap:…:tls_policy`: the answer, or `None`.
fn tls_policy(dir: &TestDir, socket: &std::path::Path, key: &str) -> Option<String> {
    dir.write("postmap-etc/main.cf", "compatibility_level = 3.6\n", 0o644);
    let mut cmd = Command::new(require("postmap"));
    cmd.arg("-c")
        .arg(dir.join("postmap-etc"))
        .args(["-q", key])
        .arg(format!("socketmap:unix:{}:tls_policy", socket.display()));
    let out = run(&mut cmd, None, Duration::from_secs(60));
    assert!(
        !out.stderr.contains("fatal"),
        "postmap must never fail for MTA-STS reasons: {out}"
    );
    out.is_success().then(|| out.stdout.trim().to_owned())
}

/// Asks until the answer is `want` (the TXT record is checked at most
/// every second) or 15 s passed.
#[track_caller]
fn eventually(dir: &TestDir, socket: &std::path::Path, key: &str, want: Option<&str>) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got = tls_policy(dir, socket, key);
        if got.as_deref() == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "tls_policy {key}: {got:?}, expected {want:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn tls_policy_falls_back_to_mta_sts() {
    let dir = TestDir::new("mta-sts");
    let db = Sqlite::fresh(&dir);
    let pw = Postwerk::new(&db.url());
    pw.run(&["db", "init"], None);
    db.grant_readers();
    let tls = TestCa::new(&dir);

    // A loopback address of its own, so port 443 is free for this test.
    let pid = std::process::id();
    let ip = Ipv4Addr::new(127, 77, (pid >> 8) as u8, (pid as u8).max(1));
    let dns = Dns::start();
    dns.set_txt("_mta-sts.example.net", "v=STSv1; id=1");
    dns.a("mta-sts.example.net", ip);
    dns.servfail("_mta-sts.broken.example");
    let www = dir.mkdir("www/.well-known", 0o755);
    std::fs::write(www.join("mta-sts.txt"), ENFORCE).unwrap();
    let root = dir.join("www");
    let https = Https::start(ip, &root, &tls);

    let (_policyd, socket) = start_policyd(
        &dir,
        &db,
        &format!(
            "cache_ttl = \"0s\"\n\n[policyd.mta_sts]\nnameservers = [\"{}\"]\nca_file = \"{}\"\ncheck_interval = \"1s\"\ntimeout = \"3s\"\n",
            dns.addr,
            tls.ca_file.display()
        ),
    );
    wait_for_port(dns.addr.port(), Duration::from_secs(5)).unwrap();

    // enforce → secure, with Postfix's match syntax for "*.".
    assert_eq!(
        tls_policy(&dir, &socket, "example.net").as_deref(),
        Some(SECURE)
    );
    // A row in the table always wins, and its removal brings MTA-STS back.
    pw.run(&["tlspolicy", "add", "example.net", "dane-only"], None);
    assert_eq!(
        tls_policy(&dir, &socket, "example.net").as_deref(),
        Some("dane-only")
    );
    pw.run(&["tlspolicy", "del", "example.net"], None);
    assert_eq!(
        tls_policy(&dir, &socket, "example.net").as_deref(),
        Some(SECURE)
    );

    // The policy server goes away and the id changes: the cached policy
    // (max_age one day) still applies.
    drop(https);
    dns.set_txt("_mta-sts.example.net", "v=STSv1; id=2");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        tls_policy(&dir, &socket, "example.net").as_deref(),
        Some(SECURE)
    );

    // It comes back with mode testing under a new id: no policy (Postfix's
    // default, opportunistic or DANE).
    std::fs::write(www.join("mta-sts.txt"), TESTING).unwrap();
    let _https = Https::start(ip, &root, &tls);
    dns.set_txt("_mta-sts.example.net", "v=STSv1; id=3");
    eventually(&dir, &socket, "example.net", None);
    // And enforce again under another id.
    std::fs::write(www.join("mta-sts.txt"), ENFORCE).unwrap();
    dns.set_txt("_mta-sts.example.net", "v=STSv1; id=4");
    eventually(&dir, &socket, "example.net", Some(SECURE));

    // No record, and a failing DNS server: the default policy at once,
    // never a lookup error that would hold mail back.
    let start = Instant::now();
    assert_eq!(tls_policy(&dir, &socket, "nosts.example"), None);
    assert_eq!(tls_policy(&dir, &socket, "broken.example"), None);
    assert!(
        start.elapsed() < Duration::from_secs(9),
        "{:?}",
        start.elapsed()
    );
    // Next hops and parent-domain keys are table-only.
    assert_eq!(tls_policy(&dir, &socket, "[mx1.example.net]:25"), None);
}

//! `postwerk dns` (issue 9): the records of two domains of the guide's
//! setup (mysystems.tld, the mail host's own, and domain2.tld), printed from
//! `[server]` and the DKIM key in use, then checked with `--check` against
//! the harness's DNS server (tests/src/dns.rs) holding some records right,
//! some wrong and some missing; every verdict and fix is asserted, and after
//! the zone is fixed the check passes. The TLSA record is compared with
//! what `openssl` computes from the same certificate.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use postwerk_tests::cli::Postwerk;
use postwerk_tests::dns::Dns;
use postwerk_tests::exec::{require, run};
use postwerk_tests::tls::TestCa;
use postwerk_tests::{Database, Sqlite, TestDir};
use serde_json::Value;

const HOST: &str = "mail.mysystems.tld";

fn setup(dir: &TestDir) -> (Postwerk, TestCa) {
    let db = Sqlite::fresh(dir);
    let ca = TestCa::new(dir);
    let keys = dir.mkdir("dkim", 0o755);
    let config = dir.write(
        "postwerk.toml",
        format!(
            r#"
[server]
hostname = "{HOST}"
addresses = ["203.0.113.1", "2001:db8::1"]
imap_host = "imap.mysystems.tld"
smtp_host = "smtp.mysystems.tld"
mta_sts = "enforce"
tls_rpt = "mailto:tls-reports@mysystems.tld"
tls_certificate = "{}"

[milterd.dkim]
selector = "2020"
path = "{}/$selector.key"
"#,
            ca.fullchain.display(),
            keys.display()
        ),
        0o644,
    );
    let pw = Postwerk::new(&db.url()).with_config(config);
    pw.run(&["db", "init"], None);
    pw.run(&["domain", "add", "mysystems.tld"], None);
    pw.run(&["domain", "add", "domain2.tld"], None);
    pw.run(
        &[
            "dkim",
            "keygen",
            "--domain",
            "mysystems.tld",
            "--selector",
            "2020",
            "--group",
            "root",
        ],
        None,
    );
    (pw, ca)
}

/// The records `postwerk dns --json` prints: (name, type, value).
fn records(pw: &Postwerk, args: &[&str]) -> Vec<(String, String, String)> {
    let mut all = vec!["--json", "dns"];
    all.extend(args);
    let out = pw.run(&all, None);
    let v: Value = serde_json::from_str(&out).unwrap();
    v["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_owned(),
                r["type"].as_str().unwrap().to_owned(),
                r["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn find<'a>(recs: &'a [(String, String, String)], name: &str, rtype: &str) -> &'a str {
    recs.iter()
        .find(|(n, t, _)| n == name && t == rtype)
        .map(|(_, _, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {rtype} record for {name} in {recs:#?}"))
}

/// `"a" "b"` → `ab`.
fn unquote(txt: &str) -> String {
    txt.trim_matches('"').replace("\" \"", "")
}

/// Publishes one printed record in the test zone.
fn publish(dns: &Dns, name: &str, rtype: &str, value: &str) {
    let f: Vec<&str> = value.split_whitespace().collect();
    match rtype {
        "MX" => {
            dns.mx(name, f[0].parse().unwrap(), f[1]);
        }
        "A" => {
            dns.a(name, value.parse().unwrap());
        }
        "AAAA" => {
            dns.aaaa(name, value.parse().unwrap());
        }
        "CNAME" => {
            dns.cname(name, value);
        }
        "TXT" => {
            dns.txt(name, &unquote(value));
        }
        "SRV" => {
            dns.srv(
                name,
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
                f[3],
            );
        }
        "TLSA" => {
            let data: Vec<u8> = (0..f[3].len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&f[3][i..i + 2], 16).unwrap())
                .collect();
            dns.tlsa(
                name,
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
                &data,
            );
        }
        other => panic!("unexpected record type {other}"),
    }
}

/// `postwerk dns --check --json`: status per (name, type, value), and the
/// exit code.
fn check(pw: &Postwerk, dns: &Dns) -> (Vec<(String, String, String, String)>, i32) {
    let ns = dns.addr.to_string();
    let out = pw.try_run(&["--json", "dns", "--check", "--nameserver", &ns], None);
    let v: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", out.stdout, out.stderr));
    let rows = v["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_owned(),
                r["type"].as_str().unwrap().to_owned(),
                r["value"].as_str().unwrap().to_owned(),
                r["check"]["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (rows, out.code())
}

#[test]
fn dns_prints_the_guides_records_and_check_finds_missing_and_wrong_ones() {
    let dir = TestDir::new("dns-cmd");
    let (pw, ca) = setup(&dir);

    // What the guide asks for, for both domains.
    let main = records(&pw, &["mysystems.tld"]);
    assert_eq!(find(&main, "mysystems.tld.", "MX"), "0 mail.mysystems.tld.");
    assert_eq!(find(&main, "mail.mysystems.tld.", "A"), "203.0.113.1");
    assert_eq!(find(&main, "mail.mysystems.tld.", "AAAA"), "2001:db8::1");
    assert_eq!(
        find(&main, "imap.mysystems.tld.", "CNAME"),
        "mail.mysystems.tld."
    );
    assert_eq!(
        find(&main, "smtp.mysystems.tld.", "CNAME"),
        "mail.mysystems.tld."
    );
    assert_eq!(
        find(&main, "mysystems.tld.", "TXT"),
        "\"v=spf1 a:mail.mysystems.tld mx ?all\""
    );
    assert_eq!(
        find(&main, "_dmarc.mysystems.tld.", "TXT"),
        "\"v=DMARC1; p=reject;\""
    );
    assert_eq!(
        find(&main, "autoconfig.mysystems.tld.", "CNAME"),
        "mail.mysystems.tld."
    );
    assert_eq!(
        find(&main, "_imaps._tcp.mysystems.tld.", "SRV"),
        "0 1 993 imap.mysystems.tld."
    );
    assert_eq!(
        find(&main, "_submissions._tcp.mysystems.tld.", "SRV"),
        "0 1 465 smtp.mysystems.tld."
    );
    assert_eq!(
        find(&main, "_smtp._tls.mysystems.tld.", "TXT"),
        "\"v=TLSRPTv1; rua=mailto:tls-reports@mysystems.tld\""
    );
    assert!(find(&main, "_mta-sts.mysystems.tld.", "TXT").starts_with("\"v=STSv1; id="));
    let dkim = find(&main, "2020._domainkey.mysystems.tld.", "TXT");
    assert!(dkim.starts_with("\"v=DKIM1; k=rsa; p=MII"), "{dkim}");
    // The same record `postwerk dkim show` prints (one key for all domains,
    // as the guide's Rspamd setup has it).
    let show = pw.run(&["dkim", "show", "domain2.tld"], None);
    let squash = |s: &str| s.replace(['"', ' ', '\t', '\n'], "");
    assert!(squash(&show).contains(&squash(dkim)), "{show}");
    // The other domains include the main domain's SPF, as in the guide.
    let second = records(&pw, &["domain2.tld"]);
    assert_eq!(
        find(&second, "domain2.tld.", "TXT"),
        "\"v=spf1 include:mysystems.tld ?all\""
    );
    // TLSA 3 1 1: SHA-256 of the certificate's public key, as openssl has it.
    let pipeline = format!(
        "{} x509 -in {} -pubkey -noout | {} pkey -pubin -outform DER | sha256sum",
        require("openssl").display(),
        ca.fullchain.display(),
        require("openssl").display()
    );
    let digest = run(
        Command::new("sh").args(["-c", &pipeline]),
        None,
        Duration::from_secs(30),
    )
    .assert_success()
    .stdout;
    let digest = digest.split_whitespace().next().unwrap();
    assert_eq!(
        find(&main, "_25._tcp.mail.mysystems.tld.", "TLSA"),
        format!("3 1 1 {digest}")
    );

    // A zone with most records right, some wrong, some missing.
    let all = records(&pw, &[]);
    let dns = Dns::start();
    let wrong_dmarc = "_dmarc.mysystems.tld.";
    let missing_srv = "_autodiscover._tcp.mysystems.tld.";
    let wrong_mx = "domain2.tld.";
    let missing_spf = "domain2.tld.";
    for (name, rtype, value) in &all {
        let n = name.as_str();
        match (n, rtype.as_str()) {
            (n, "TXT") if n == wrong_dmarc => {
                dns.txt(n, "v=DMARC1; p=none; rua=mailto:d@mysystems.tld");
            }
            (n, "SRV") if n == missing_srv => {}
            (n, "MX") if n == wrong_mx => {
                dns.mx(n, 10, "mx.old-provider.example");
            }
            (n, "TXT") if n == missing_spf => {
                // Another TXT record is there, but no SPF.
                dns.txt(n, "google-site-verification=abc");
            }
            _ => publish(&dns, n, rtype, value),
        }
    }
    let (rows, code) = check(&pw, &dns);
    assert_eq!(
        code, 1,
        "--check must fail while records are wrong: {rows:#?}"
    );
    let status = |name: &str, rtype: &str, prefix: &str| -> String {
        rows.iter()
            .find(|(n, t, v, _)| n == name && t == rtype && v.starts_with(prefix))
            .map(|r| r.3.clone())
            .unwrap_or_else(|| panic!("no {rtype} {name} {prefix} in {rows:#?}"))
    };
    assert_eq!(status(wrong_dmarc, "TXT", ""), "wrong");
    assert_eq!(status(missing_srv, "SRV", ""), "missing");
    assert_eq!(status(wrong_mx, "MX", ""), "wrong");
    assert_eq!(status(missing_spf, "TXT", "\"v=spf1"), "missing");
    let bad: Vec<_> = rows.iter().filter(|r| r.3 != "ok").collect();
    assert_eq!(bad.len(), 4, "only the four broken records fail: {bad:#?}");
    for (name, rtype, prefix) in [
        ("mysystems.tld.", "MX", ""),
        ("mail.mysystems.tld.", "A", ""),
        ("mail.mysystems.tld.", "AAAA", ""),
        ("imap.mysystems.tld.", "CNAME", ""),
        ("2020._domainkey.domain2.tld.", "TXT", ""),
        ("_mta-sts.domain2.tld.", "TXT", ""),
        ("_25._tcp.mail.mysystems.tld.", "TLSA", ""),
        ("domain2.tld.", "TXT", "\"v=spf1"),
    ] {
        let expected = if name == "domain2.tld." {
            "missing"
        } else {
            "ok"
        };
        assert_eq!(status(name, rtype, prefix), expected, "{name} {rtype}");
    }

    // The human output names each problem and gives the zone line to fix it.
    let ns = dns.addr.to_string();
    let human = pw.try_run(&["dns", "--check", "--nameserver", &ns], None);
    assert_eq!(human.code(), 1);
    assert!(
        human.stdout.contains(
            "MISSING  _autodiscover._tcp.mysystems.tld. SRV"
        ) && human.stdout.contains(
            "fix: add    _autodiscover._tcp.mysystems.tld. 3600 IN SRV 0 1 443 mail.mysystems.tld."
        ),
        "{}",
        human.stdout
    );
    assert!(
        human.stdout.contains("WRONG    domain2.tld. MX")
            && human
                .stdout
                .contains("found:      10 mx.old-provider.example.")
            && human
                .stdout
                .contains("fix: make it domain2.tld. 86400 IN MX 0 mail.mysystems.tld."),
        "{}",
        human.stdout
    );
    assert!(
        human.stderr.contains("4 of") && human.stderr.contains("missing, wrong"),
        "{}",
        human.stderr
    );

    // Fixed zone: everything is ok and the check passes.
    let fixed = Dns::start();
    for (name, rtype, value) in &all {
        publish(&fixed, name, rtype, value);
    }
    let (rows, code) = check(&pw, &fixed);
    assert!(
        rows.iter().all(|r| r.3 == "ok"),
        "all records ok: {rows:#?}"
    );
    assert_eq!(code, 0);

    // A SERVFAIL is reported as "cannot check", never as ok.
    let broken = Dns::start();
    for (name, rtype, value) in &all {
        publish(&broken, name, rtype, value);
    }
    broken.servfail("_dmarc.domain2.tld");
    let (rows, code) = check(&pw, &broken);
    assert_eq!(code, 1);
    assert_eq!(
        rows.iter()
            .find(|r| r.0 == "_dmarc.domain2.tld.")
            .map(|r| r.3.as_str()),
        Some("error")
    );
}

#[test]
fn dns_without_addresses_asks_only_that_the_host_resolves() {
    let dir = TestDir::new("dns-cmd-any");
    let db = Sqlite::fresh(&dir);
    let config = dir.write(
        "postwerk.toml",
        format!(
            "[milterd.dkim]\npath = \"{}/$selector.key\"\n",
            dir.join("no-keys").display()
        ),
        0o644,
    );
    let pw = Postwerk::new(&db.url()).with_config(config);
    pw.run(&["db", "init"], None);
    pw.run(&["domain", "add", "example.org"], None);
    let printed = pw.run(
        &["dns", "example.org", "--hostname", "mx.example.org"],
        None,
    );
    // The address is a placeholder, printed as a comment, not a record.
    assert!(
        printed.contains("; mx.example.org. 86400 IN A <the mail host's IPv4 address>"),
        "{printed}"
    );
    let dns = Dns::start();
    dns.a("mx.example.org", Ipv4Addr::new(192, 0, 2, 7));
    dns.mx("example.org", 0, "mx.example.org");
    let ns = dns.addr.to_string();
    let out = pw.try_run(
        &[
            "--json",
            "dns",
            "example.org",
            "--hostname",
            "mx.example.org",
            "--check",
            "--nameserver",
            &ns,
        ],
        None,
    );
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    let host = v["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "mx.example.org.")
        .unwrap();
    assert_eq!(host["check"]["status"], "ok");
    assert_eq!(host["check"]["found"], "192.0.2.7");
    // Without a DKIM key, a note says how to make one.
    assert!(
        out.stderr.contains("postwerk dkim keygen"),
        "{}",
        out.stderr
    );
}

//! `postwerk autoconfig --out DIR` (issue 9) run as a binary on SQLite: for
//! every domain in the database it writes Thunderbird's config-v1.1.xml,
//! Outlook's Autodiscover response, an Apple .mobileconfig and, with
//! MTA-STS on, the policy file. Python's XML and plist parsers (not ours)
//! read the files back and check hosts and ports per domain; the
//! Thunderbird file for mysystems.tld is the same XML tree as the guide's
//! hand-written one (testdata/guide-config-v1.1.xml); a deleted domain's
//! directory goes away on the next run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

fn postwerk(config: &Path, db: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_postwerk"))
        .arg("--config")
        .arg(config)
        .arg("--database")
        .arg(format!("sqlite://{}", db.display()))
        .args(args)
        .env_remove("POSTWERK_DATABASE_URL")
        .output()
        .unwrap()
}

fn ok(config: &Path, db: &Path, args: &[&str]) -> String {
    let out = postwerk(config, db, args);
    assert!(
        out.status.success(),
        "postwerk {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Parses every file with python3's xml.etree / plistlib and prints one
/// line per fact: `DOMAIN KIND key=value`. Any parse error fails.
const READ_PY: &str = r#"
import os, plistlib, sys
import xml.etree.ElementTree as ET
out, guide = sys.argv[1], sys.argv[2]
AD = '{http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a}'
def tree(e):
    return (e.tag, sorted(e.attrib.items()), (e.text or '').strip(), [tree(c) for c in e])
for d in sorted(os.listdir(out)):
    base = os.path.join(out, d)
    tb = ET.parse(os.path.join(base, 'mail/config-v1.1.xml')).getroot()
    p = tb.find('emailProvider')
    print(d, 'thunderbird', 'id=' + p.get('id'), 'domain=' + p.findtext('domain'))
    for s in p.findall('incomingServer') + p.findall('outgoingServer'):
        print(d, 'thunderbird', s.get('type') + '=' + s.findtext('hostname') + ':' + s.findtext('port'),
              'socket=' + s.findtext('socketType'), 'user=' + s.findtext('username'))
    if d == 'mysystems.tld':
        same = tree(tb) == tree(ET.parse(guide).getroot())
        print(d, 'thunderbird', 'same-as-guide=' + str(same))
    for name in ('autodiscover/autodiscover.xml', 'Autodiscover/Autodiscover.xml'):
        ad = ET.parse(os.path.join(base, name)).getroot()
        for pr in ad.iter(AD + 'Protocol'):
            print(d, 'outlook', pr.findtext(AD + 'Type') + '=' + pr.findtext(AD + 'Server') + ':' + pr.findtext(AD + 'Port'),
                  'ssl=' + pr.findtext(AD + 'SSL'))
    with open(os.path.join(base, 'email.mobileconfig'), 'rb') as f:
        pl = plistlib.load(f)
    m = pl['PayloadContent'][0]
    print(d, 'apple', 'type=' + m['PayloadType'],
          'imap=%s:%d' % (m['IncomingMailServerHostName'], m['IncomingMailServerPortNumber']),
          'smtp=%s:%d' % (m['OutgoingMailServerHostName'], m['OutgoingMailServerPortNumber']),
          'ssl=%s/%s' % (m['IncomingMailServerUseSSL'], m['OutgoingMailServerUseSSL']),
          'uuid=' + m['PayloadUUID'])
    sts = os.path.join(base, '.well-known/mta-sts.txt')
    if os.path.exists(sts):
        print(d, 'mta-sts', open(sts, 'rb').read().decode().replace('\r\n', '|'))
"#;

fn read(out: &Path) -> Vec<String> {
    let guide = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/guide-config-v1.1.xml");
    let o = Command::new("python3")
        .args(["-c", READ_PY])
        .arg(out)
        .arg(guide)
        .output()
        .expect("python3 (scripts/install-deps installs it)");
    assert!(
        o.status.success(),
        "the files do not parse: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn autoconfig_writes_parseable_files_with_each_domains_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vmail.db");
    let config = dir.path().join("postwerk.toml");
    std::fs::write(
        &config,
        "[server]\nhostname = \"mail.mysystems.tld\"\nimap_host = \"imap.mysystems.tld\"\nsmtp_host = \"smtp.mysystems.tld\"\n",
    )
    .unwrap();
    let out = dir.path().join("www");
    ok(&config, &db, &["db", "init"]);
    ok(&config, &db, &["domain", "add", "mysystems.tld"]);
    ok(&config, &db, &["domain", "add", "domain2.tld"]);
    let printed = ok(
        &config,
        &db,
        &["autoconfig", "--out", out.to_str().unwrap()],
    );
    assert!(printed.contains("2 domain(s)"), "{printed}");

    let facts = read(&out);
    let has = |line: &str| {
        assert!(
            facts.iter().any(|f| f == line),
            "missing `{line}` in:\n{}",
            facts.join("\n")
        )
    };
    for d in ["mysystems.tld", "domain2.tld"] {
        has(&format!("{d} thunderbird id={d} domain={d}"));
        has(&format!(
            "{d} thunderbird imap=imap.mysystems.tld:993 socket=SSL user=%EMAILADDRESS%"
        ));
        has(&format!(
            "{d} thunderbird smtp=smtp.mysystems.tld:465 socket=SSL user=%EMAILADDRESS%"
        ));
        has(&format!("{d} outlook IMAP=imap.mysystems.tld:993 ssl=on"));
        has(&format!("{d} outlook SMTP=smtp.mysystems.tld:465 ssl=on"));
    }
    has("mysystems.tld thunderbird same-as-guide=True");
    let apple: Vec<&String> = facts.iter().filter(|f| f.contains(" apple ")).collect();
    assert_eq!(apple.len(), 2, "{apple:?}");
    for a in &apple {
        assert!(
            a.contains(
                "type=com.apple.mail.managed imap=imap.mysystems.tld:993 smtp=smtp.mysystems.tld:465 ssl=True/True"
            ),
            "{a}"
        );
    }
    // One profile per domain: installing two domains' profiles gives two accounts.
    assert_ne!(
        apple[0].rsplit("uuid=").next(),
        apple[1].rsplit("uuid=").next()
    );
    assert!(
        !facts.iter().any(|f| f.contains("mta-sts")),
        "MTA-STS is off"
    );

    // A second run with nothing changed writes nothing.
    let again = ok(
        &config,
        &db,
        &["autoconfig", "--out", out.to_str().unwrap()],
    );
    assert!(again.contains("0 file(s) written"), "{again}");

    // MTA-STS on: the policy file appears; a deleted domain's files go.
    std::fs::write(
        &config,
        "[server]\nhostname = \"mail.mysystems.tld\"\nmta_sts = \"testing\"\n",
    )
    .unwrap();
    std::fs::create_dir_all(out.join("not-ours")).unwrap();
    ok(&config, &db, &["domain", "del", "domain2.tld"]);
    let printed = ok(
        &config,
        &db,
        &["autoconfig", "--out", out.to_str().unwrap()],
    );
    assert!(printed.contains("removed domain2.tld"), "{printed}");
    assert!(!out.join("domain2.tld").exists());
    assert!(
        out.join("not-ours").is_dir(),
        "a directory postwerk did not write stays"
    );
    std::fs::remove_dir(out.join("not-ours")).unwrap();
    let facts = read(&out);
    assert!(
        facts.contains(
            &"mysystems.tld mta-sts version: STSv1|mode: testing|mx: mail.mysystems.tld|max_age: 604800|"
                .to_owned()
        ),
        "{}",
        facts.join("\n")
    );
    // Without imap_host/smtp_host, clients are sent to the host name.
    assert!(
        facts.contains(
            &"mysystems.tld thunderbird imap=mail.mysystems.tld:993 socket=SSL user=%EMAILADDRESS%"
                .to_owned()
        ),
        "{}",
        facts.join("\n")
    );
}

#[test]
fn autoconfig_needs_a_fully_qualified_host_name() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vmail.db");
    let config = dir.path().join("postwerk.toml");
    std::fs::write(&config, "").unwrap();
    ok(&config, &db, &["db", "init"]);
    ok(&config, &db, &["domain", "add", "example.org"]);
    let out = postwerk(
        &config,
        &db,
        &[
            "autoconfig",
            "--out",
            dir.path().join("www").to_str().unwrap(),
            "--hostname",
            "mail",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a fully qualified host name"), "{err}");
}

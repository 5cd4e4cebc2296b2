//! DKIM signatures checked by an independent implementation: dkimpy
//! (Debian's python3-dkim, under /usr/bin/python3) against the records
//! `postwerk dkim show --json` tells the admin to publish.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use crate::cli::Postwerk;
use crate::exec::{require, run};
use crate::testdir::TestDir;

/// dkimpy verifies every DKIM-Signature of the message in argv[1] with the
/// DNS answers of the JSON object in argv[2] (name → TXT value) and prints
/// one line per signature: `<index> <d=> <s=> <a=> pass|fail`.
const VERIFY_PY: &str = r#"
import dkim, json, re, sys
msg = open(sys.argv[1], 'rb').read()
records = json.load(open(sys.argv[2]))
def dnsfunc(name, timeout=5):
    n = name.decode() if isinstance(name, bytes) else name
    v = records.get(n.rstrip('.') + '.')
    return v.encode() if v is not None else None
head = msg.split(b'\r\n\r\n', 1)[0]
count = len(re.findall(rb'(?im)^dkim-signature:', head))
for i in range(count):
    d = dkim.DKIM(msg)
    ok = d.verify(idx=i, dnsfunc=dnsfunc)
    print(i, d.domain.decode(), d.selector.decode(), d.signature_fields.get(b'a', b'').decode(), 'pass' if ok else 'fail')
"#;

/// The DKIM records of `domain` as `postwerk dkim show --json` prints them:
/// record name (with the trailing dot) → the TXT value, its strings joined.
pub fn published_records(pw: &Postwerk, domain: &str) -> BTreeMap<String, String> {
    let shown: serde_json::Value = serde_json::from_str(
        &pw.run(&["--json", "dkim", "show", domain], None),
    )
    .unwrap_or_else(|e| panic!("`postwerk dkim show --json {domain}` printed no JSON: {e}"));
    let mut records = BTreeMap::new();
    for r in shown.as_array().map(Vec::as_slice).unwrap_or_default() {
        let strings: Vec<&str> = r["txt_strings"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(serde_json::Value::as_str)
            .collect();
        assert!(
            strings.iter().all(|s| s.len() <= 255),
            "a TXT string longer than 255 bytes: {shown}"
        );
        if let Some(name) = r["name"].as_str() {
            records.insert(name.to_owned(), strings.concat());
        }
    }
    records
}

/// Verifies every signature of `message` (as stored; line ends are made
/// CRLF as on the wire) with dkimpy against `records`; one line per
/// signature: `<index> <d=> <s=> <a=> pass|fail`.
pub fn dkimpy_verify(
    dir: &TestDir,
    message: &str,
    records: &BTreeMap<String, String>,
) -> Vec<String> {
    let crlf = message.replace("\r\n", "\n").replace('\n', "\r\n");
    let msg_path = dir.write("verify/message.eml", crlf, 0o644);
    let records = serde_json::to_string(records).unwrap_or_else(|e| panic!("records: {e}"));
    let dns_path = dir.write("verify/dns.json", records, 0o644);
    let mut cmd = Command::new(require("/usr/bin/python3"));
    cmd.args(["-c", VERIFY_PY]).arg(&msg_path).arg(&dns_path);
    let out = run(&mut cmd, None, Duration::from_secs(60)).assert_success();
    out.stdout.lines().map(str::to_owned).collect()
}

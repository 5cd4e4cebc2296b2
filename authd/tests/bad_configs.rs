//! tests/bad-configs: postwerk-authd refuses every case with exit 78 and
//! the expected reason, before it binds anything.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

#[test]
fn every_bad_config_is_refused_for_its_reason() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/bad-configs");
    let mut cases = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let case = entry.unwrap().path();
        if !case.is_dir() {
            continue;
        }
        cases += 1;
        let expected = std::fs::read_to_string(case.join("expected-error")).unwrap();
        let expected = expected.trim();
        let out = Command::new(env!("CARGO_BIN_EXE_postwerk-authd"))
            .arg("--config")
            .arg(case.join("postwerk.toml"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{}: {err}", case.display());
        assert!(
            err.contains(expected),
            "{}: expected `{expected}` in:\n{err}",
            case.display()
        );
    }
    assert!(cases >= 20, "only {cases} cases found in {}", dir.display());
}

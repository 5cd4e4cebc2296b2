//! tests/bad-configs: the `postwerk` command refuses every case with exit
//! 78 and the expected reason.

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
        let out = Command::new(env!("CARGO_BIN_EXE_postwerk"))
            .arg("--config")
            .arg(case.join("postwerk.toml"))
            .args(["domain", "list"])
            .env_remove("POSTWERK_DATABASE_URL")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{}: {err}", case.display());
        assert!(
            err.contains(expected.trim()),
            "{}: expected `{}` in:\n{err}",
            case.display(),
            expected.trim()
        );
    }
    assert!(cases >= 20);
}

//! tests/bad-configs: every postwerk program refuses every case with exit
//! status 78 (EX_CONFIG) and the expected reason, before it binds anything.
//! Each case is a directory with `postwerk.toml` and `expected-error`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use postwerk_tests::cli::workspace_binary;

/// The programs and the arguments that make them read the config.
const PROGRAMS: &[(&str, &[&str])] = &[
    ("postwerk", &["domain", "list"]),
    ("postwerk-policyd", &[]),
    ("postwerk-lmtpd", &[]),
    ("postwerk-authd", &[]),
    ("postwerk-milterd", &[]),
];

#[test]
fn every_program_refuses_every_bad_config_for_its_reason() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("bad-configs");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 40,
        "only {} cases in {}",
        cases.len(),
        dir.display()
    );
    let mut failures = Vec::new();
    for (program, args) in PROGRAMS {
        let bin = workspace_binary(program);
        for case in &cases {
            let expected = std::fs::read_to_string(case.join("expected-error")).unwrap();
            let expected = expected.trim();
            let out = Command::new(&bin)
                .arg("--config")
                .arg(case.join("postwerk.toml"))
                .args(*args)
                .env_remove("POSTWERK_DATABASE_URL")
                // Errors found while binding come after the root check.
                .env("POSTWERK_ALLOW_ROOT", "1")
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            if out.status.code() != Some(78) || !err.contains(expected) {
                failures.push(format!(
                    "{program} {}: exit {:?}, expected `{expected}` in:\n{err}",
                    case.file_name().unwrap().to_string_lossy(),
                    out.status.code()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Every daemon started as root refuses to run (exit 77, EX_NOPERM) and
/// says how to start it, unless POSTWERK_ALLOW_ROOT=1 tells it otherwise.
#[test]
fn daemons_refuse_to_run_as_root_unless_told() {
    // Not a skip: the suite runs as root (private Postfix and Dovecot need
    // it), and a non-root run must not pass this test silently.
    assert!(nix_is_root(), "the tests run as root (see scripts/test)");
    let dir = postwerk_tests::TestDir::new("refuse-root");
    let config = dir.write(
        "postwerk.toml",
        format!(
            "[database]\nurl = \"sqlite://{}\"\n",
            dir.join("v.db").display()
        ),
        0o644,
    );
    for program in [
        "postwerk-policyd",
        "postwerk-authd",
        "postwerk-lmtpd",
        "postwerk-milterd",
    ] {
        let out = Command::new(workspace_binary(program))
            .arg("--config")
            .arg(&config)
            .env_remove("POSTWERK_ALLOW_ROOT")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(77), "{program}: {err}");
        assert!(
            err.contains("refusing to run as root") && err.contains("POSTWERK_ALLOW_ROOT=1"),
            "{program}: {err}"
        );
    }
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

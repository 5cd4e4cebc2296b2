//! `postwerk import-rspamd` on a copy of the guide's /etc/rspamd (issue 7):
//! the tables it prints are accepted by `postwerk config check` (the same
//! validation every daemon runs) and keep the guide's thresholds, lists,
//! controller password and DKIM settings.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

#[test]
fn the_guides_rspamd_settings_become_a_valid_postwerk_config() {
    let tmp = tempfile::tempdir().unwrap();
    let guide = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/guide/etc/rspamd");
    let rspamd = tmp.path().join("rspamd");
    if guide.is_dir() {
        copy_dir(&guide, &rspamd);
    } else {
        // The guide's files as extracted in shared/guide (a clone of the
        // repository alone has the same content in this test).
        let local = rspamd.join("local.d");
        std::fs::create_dir_all(&local).unwrap();
        std::fs::create_dir_all(rspamd.join("override.d")).unwrap();
        std::fs::write(local.join("dkim_signing.conf"), "path = \"/var/lib/rspamd/dkim/$selector.key\";\nselector = \"2020\";\nallow_username_mismatch = true;\n").unwrap();
        std::fs::write(
            local.join("arc.conf"),
            "path = \"/var/lib/rspamd/dkim/$selector.key\";\nselector = \"2020\";\n",
        )
        .unwrap();
        std::fs::write(
            local.join("classifier-bayes.conf"),
            "backend = \"redis\";\n",
        )
        .unwrap();
        std::fs::write(
            rspamd.join("override.d/classifier-bayes.conf"),
            "autolearn = true;\n",
        )
        .unwrap();
        std::fs::write(local.join("redis.conf"), "servers = \"127.0.0.1\";\n").unwrap();
        std::fs::write(local.join("worker-controller.inc"), "password = \"$2$qecacwgrz13owkag4gqcy5y7yeqh7yh4$y6i6gn5q3538tzsn19ojchuudoauw3rzdj1z74h5us4gd3jj5e8y\";\n").unwrap();
        std::fs::write(local.join("multimap.conf"), "WHITELIST_IP {\n type = \"ip\";\n map = \"$CONFDIR/local.d/whitelist_ip.map\";\n description = \"Local ip whitelist\";\n action = \"accept\";\n}\nBLACKLIST_FROM {\n type = \"from\";\n map = \"$CONFDIR/local.d/blacklist_from.map\";\n action = \"reject\";\n}\n").unwrap();
    }
    // An admin's own thresholds, with greylisting switched off.
    std::fs::write(
        rspamd.join("local.d/actions.conf"),
        "reject = 20; # stricter\nadd_header = 7.5;\ngreylist = null;\n",
    )
    .unwrap();
    for m in [
        "whitelist_ip",
        "whitelist_from",
        "blacklist_ip",
        "blacklist_from",
    ] {
        std::fs::write(rspamd.join(format!("local.d/{m}.map")), "").unwrap();
    }

    let out = Command::new(env!("CARGO_BIN_EXE_postwerk"))
        .args(["import-rspamd"])
        .arg(&rspamd)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let tables = String::from_utf8(out.stdout).unwrap();
    let notes = String::from_utf8(out.stderr).unwrap();
    assert!(
        !notes.contains("arc.conf"),
        "the guide's arc.conf is carried over completely: {notes}"
    );
    assert!(
        tables.contains("[milterd.arc]\nseal_forwarded = true\nseal_outgoing = false\nselector = \"2020\"\npath = "),
        "ARC sealing with the guide's selector and path: {tables}"
    );

    let config = tmp.path().join("postwerk.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"sqlite://{}/v.db\"\n\n{tables}",
            tmp.path().display()
        ),
    )
    .unwrap();
    let init = Command::new(env!("CARGO_BIN_EXE_postwerk"))
        .arg("--config")
        .arg(&config)
        .args(["db", "init"])
        .output()
        .unwrap();
    assert!(init.status.success(), "{init:?}");
    let check = Command::new(env!("CARGO_BIN_EXE_postwerk"))
        .arg("--config")
        .arg(&config)
        .args(["--json", "config", "check"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&check.stdout).into_owned();
    assert!(
        check.status.success(),
        "config check refused the imported tables:\n{tables}\n{text}\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let rows: serde_json::Value = serde_json::from_str(&text).unwrap();
    let value = |key: &str| -> String {
        rows["settings"][key]["value"]
            .as_str()
            .unwrap_or_else(|| panic!("no {key} in {text}"))
            .to_owned()
    };
    assert_eq!(value("[milterd.spam.actions].reject"), "20");
    assert_eq!(value("[milterd.spam.actions].add_header"), "7.5");
    assert_eq!(value("[milterd.spam.actions].greylist"), "off");
    assert_eq!(value("[milterd].dkim.selector"), "2020");
    assert_eq!(
        value("[milterd].dkim.path"),
        "/var/lib/rspamd/dkim/$selector.key"
    );
    assert_eq!(value("[milterd].dkim.allow_username_mismatch"), "true");
    assert_eq!(value("[milterd.spam].redis_url"), "redis://127.0.0.1:6379");
    assert_eq!(value("[milterd.spam.bayes].autolearn"), "true");
    assert_eq!(value("[milterd.spam.controller].password"), "***");
    assert!(
        tables.contains("$2$qecacwgrz13owkag4gqcy5y7yeqh7yh4$"),
        "{tables}"
    );
    assert!(
        value("[[milterd.spam.multimap]] WHITELIST_IP").contains("whitelist_ip.map"),
        "{text}"
    );
}

//! Real peers: the `postwerk-authd` binary serving a private Dovecot 2.3
//! (`dovecot -c FILE`, passdb/userdb `driver = dict` pointing at authd's
//! dict socket, exactly as `contrib/dovecot/` configures it, or `driver =
//! lua` running `contrib/dovecot/postwerk-authd.lua`, the Dovecot 2.4 path,
//! with Debian's dovecot-auth-lua and lua-socket), driven by
//! `doveadm auth test`, `auth lookup` and `user`; and `doveadm auth test -a`
//! straight against authd's auth-client socket, the protocol Postfix's
//! `smtpd_sasl_type = dovecot` speaks. A missing dovecot or doveadm fails
//! the test. On failure the temp dir is kept and both logs are printed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{DOWN_URL, PASSWORD};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Readiness deadline for each peer.
const READY: Duration = Duration::from_secs(20);

/// How the private Dovecot reaches authd for its passdb/userdb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    /// `driver = dict` + `contrib/dovecot/dovecot-dict-auth.conf.ext` (2.3).
    Dict,
    /// `driver = lua` + `contrib/dovecot/postwerk-authd.lua` (2.4 and 2.3).
    Lua,
}

struct Fixture {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    authd: Child,
    dovecot: Option<Child>,
    dovecot_conf: PathBuf,
}

impl Fixture {
    /// authd on `database_url` (the fixture database if `None`) and a
    /// private Dovecot using it through `backend`.
    async fn start(database_url: Option<&str>, backend: Backend) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        // Dovecot's auth process (user dovecot) must reach the dict socket.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let url = common::vmail_db(&path).await;
        let auth_sock = path.join("authd-auth.sock");
        let dict_sock = path.join("authd-dict.sock");
        std::fs::write(
            path.join("postwerk.toml"),
            format!(
                "[database]\nurl = \"{}\"\nacquire_timeout = \"2s\"\n[log]\nlevel = \"debug\"\n[authd]\nauth_listen = [\"unix:{}\"]\ndict_listen = [\"unix:{}\"]\nsocket_mode = \"0666\"\nauth_failure_delay = \"200ms\"\n",
                database_url.unwrap_or(&url),
                auth_sock.display(),
                dict_sock.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(path.join("authd.log")).unwrap();
        let authd = Command::new(env!("CARGO_BIN_EXE_postwerk-authd"))
            .env("POSTWERK_ALLOW_ROOT", "1")
            .arg("--config")
            .arg(path.join("postwerk.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start postwerk-authd");
        // The dict-auth file (or the Lua script) is contrib's, with the
        // socket path replaced, as the admin would edit it for Dovecot 2.3.
        let file = match backend {
            Backend::Dict => "dovecot-dict-auth.conf.ext",
            Backend::Lua => "postwerk-authd.lua",
        };
        let contrib = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../contrib/dovecot")
                .join(file),
        )
        .unwrap_or_else(|e| panic!("contrib/dovecot/{file}: {e}"));
        let installed = contrib.replace(
            "\"/run/postwerk/authd-dict\"",
            &format!("\"{}\"", dict_sock.display()),
        );
        let installed = installed.replace(
            "proxy:/run/postwerk/authd-dict:",
            &format!("proxy:{}:", dict_sock.display()),
        );
        assert_ne!(installed, contrib, "socket path not found in {file}");
        std::fs::write(path.join(file), installed).unwrap();
        let drivers = match backend {
            Backend::Dict => format!(
                "passdb {{\n  driver = dict\n  args = {p}/{file}\n}}\n\
userdb {{\n  driver = dict\n  args = {p}/{file}\n}}\n",
                p = path.display()
            ),
            Backend::Lua => format!(
                "passdb {{\n  driver = lua\n  args = file={p}/{file} blocking=yes\n}}\n\
userdb {{\n  driver = lua\n  args = file={p}/{file} blocking=yes\n}}\n",
                p = path.display()
            ),
        };
        let dovecot_conf = path.join("dovecot.conf");
        std::fs::create_dir_all(path.join("run")).unwrap();
        std::fs::create_dir_all(path.join("state")).unwrap();
        let p = path.display();
        std::fs::write(
            &dovecot_conf,
            format!(
                "base_dir = {p}/run\ninstance_name = postwerk-authd-test-{pid}-{n}\nstate_dir = {p}/state\nlog_path = {p}/dovecot.log\n\
protocols =\nssl = no\ndisable_plaintext_auth = no\nauth_mechanisms = plain login\nauth_username_format = %Lu\nauth_debug = yes\n\
auth_failure_delay = 0\nfirst_valid_uid = 1\nmail_location = maildir:~/mail:LAYOUT=fs\n{drivers}",
                pid = std::process::id(),
                n = path.file_name().unwrap().to_string_lossy().replace('.', ""),
            ),
        )
        .unwrap();
        let mut f = Fixture {
            dir: Some(dir),
            path: path.clone(),
            authd,
            dovecot: None,
            dovecot_conf,
        };
        f.wait_for(&auth_sock);
        f.wait_for(&dict_sock);
        // -F: stay in the foreground as our child (a daemonised master would
        // keep our pipes open and outlive a failed test).
        let err = std::fs::File::create(path.join("dovecot.stderr")).unwrap();
        f.dovecot = Some(
            Command::new("dovecot")
                .arg("-F")
                .arg("-c")
                .arg(&f.dovecot_conf)
                .stdout(Stdio::null())
                .stderr(err)
                .spawn()
                .expect("run dovecot (is dovecot-core installed?)"),
        );
        f.wait_for(&path.join("run/auth-client"));
        f.wait_for(&path.join("run/auth-userdb"));
        f
    }

    /// Polls a UNIX socket until it accepts, with a deadline.
    fn wait_for(&mut self, sock: &Path) {
        let deadline = Instant::now() + READY;
        loop {
            if std::os::unix::net::UnixStream::connect(sock).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.authd.try_wait() {
                panic!("postwerk-authd exited early with {status}");
            }
            if let Some(Ok(Some(status))) = self.dovecot.as_mut().map(Child::try_wait) {
                panic!("dovecot exited early with {status}");
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready after {READY:?}",
                sock.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `doveadm auth test -a <authd's auth socket>` as Postfix would ask
    /// (service smtp, `secured` after TLS unless `secured` is false).
    fn auth_test(&self, sock: &str, secured: bool, user: &str, password: &str) -> (i32, String) {
        let mut args = vec!["auth", "test", "-a", sock, "-x", "service=smtp"];
        if secured {
            args.extend(["-x", "secured"]);
        }
        args.extend([user, password]);
        self.doveadm(&args)
    }

    fn doveadm(&self, args: &[&str]) -> (i32, String) {
        let out: Output = Command::new("doveadm")
            .arg("-c")
            .arg(&self.dovecot_conf)
            .args(args)
            .output()
            .expect("run doveadm (is dovecot-core installed?)");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().unwrap_or(-1), text)
    }

    fn authd_socket(&self) -> String {
        self.path.join("authd-auth.sock").display().to_string()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(mut d) = self.dovecot.take() {
            let _ = Command::new("doveadm")
                .arg("-c")
                .arg(&self.dovecot_conf)
                .arg("stop")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + READY;
            while matches!(d.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = d.kill();
            let _ = d.wait();
        }
        let _ = self.authd.kill();
        let _ = self.authd.wait();
        if std::thread::panicking() {
            for log in ["authd.log", "dovecot.log", "dovecot.stderr"] {
                eprintln!(
                    "===== {log} =====\n{}",
                    std::fs::read_to_string(self.path.join(log)).unwrap_or_default()
                );
            }
            if let Some(dir) = self.dir.take() {
                eprintln!("kept temp dir {}", dir.keep().display());
            }
        }
    }
}

/// What Dovecot answers through authd, whichever backend: passdb (Dovecot
/// verifies the hash), userdb fields, send-only and iteration.
fn assert_dovecot_passdb_userdb(f: &Fixture) {
    // passdb through Dovecot → authd dict → Dovecot verifies the hash.
    let (rc, out) = f.doveadm(&[
        "auth",
        "test",
        "-x",
        "no-penalty",
        "user@example.org",
        PASSWORD,
    ]);
    assert_eq!(rc, 0, "{out}");
    assert!(
        out.contains("passdb: user@example.org auth succeeded"),
        "{out}"
    );
    let (rc, out) = f.doveadm(&[
        "auth",
        "test",
        "-x",
        "no-penalty",
        "User@EXAMPLE.org",
        PASSWORD,
    ]);
    assert_eq!(rc, 0, "upper-case user name: {out}");
    let (rc, out) = f.doveadm(&[
        "auth",
        "test",
        "-x",
        "no-penalty",
        "user@example.org",
        "wrong",
    ]);
    assert_eq!(rc, 77, "{out}");
    assert!(out.contains("auth failed"), "{out}");
    let (rc, out) = f.doveadm(&[
        "auth",
        "test",
        "-x",
        "no-penalty",
        "disabled@example.org",
        PASSWORD,
    ]);
    assert_eq!(rc, 77, "disabled: {out}");
    let (rc, out) = f.doveadm(&[
        "auth",
        "test",
        "-x",
        "no-penalty",
        "sendonly@example.org",
        PASSWORD,
    ]);
    assert_eq!(rc, 0, "send-only accounts pass the passdb: {out}");
    let (rc, out) = f.doveadm(&["auth", "lookup", "user@example.org"]);
    assert_eq!(rc, 0, "{out}");
    assert!(out.contains("passdb: user@example.org"), "{out}");

    // userdb: home, uid/gid of vmail, the guide's quota rule.
    let (rc, out) = f.doveadm(&["user", "user@example.org"]);
    assert_eq!(rc, 0, "{out}");
    assert!(out.contains("*:storage=2048M"), "{out}");
    assert!(
        out.contains("/var/vmail/mailboxes/example.org/user"),
        "{out}"
    );
    assert!(out.contains("uid") && out.contains("gid"), "{out}");
    let (rc, out) = f.doveadm(&["user", "sendonly@example.org"]);
    assert_ne!(rc, 0, "send-only accounts have no userdb entry: {out}");
    assert!(out.contains("doesn't exist"), "{out}");

    // Iteration (doveadm user '*', what -A commands use).
    let (rc, out) = f.doveadm(&["user", "*"]);
    assert_eq!(rc, 0, "{out}");
    let users: Vec<&str> = out.lines().collect();
    assert_eq!(
        users,
        [
            "disabled@example.org",
            "plain@example.org",
            "user@example.org"
        ],
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dovecot_dict_passdb_userdb_and_doveadm_against_authd() {
    let f = Fixture::start(None, Backend::Dict).await;
    assert_dovecot_passdb_userdb(&f);

    // doveadm as auth-client straight against authd (Postfix's protocol).
    let sock = f.authd_socket();
    let (rc, out) = f.auth_test(&sock, true, "user@example.org", PASSWORD);
    assert_eq!(rc, 0, "{out}");
    assert!(
        out.contains("passdb: user@example.org auth succeeded"),
        "{out}"
    );
    let (rc, out) = f.auth_test(&sock, true, "USER@example.org", PASSWORD);
    assert_eq!(rc, 0, "{out}");
    let (rc, out) = f.auth_test(&sock, true, "user@example.org", "wrong");
    assert_eq!(rc, 77, "{out}");
    let (rc, out) = f.auth_test(&sock, true, "disabled@example.org", PASSWORD);
    assert_eq!(rc, 77, "{out}");
    let (rc, out) = f.auth_test(&sock, true, "sendonly@example.org", PASSWORD);
    assert_eq!(rc, 0, "send-only accounts may submit: {out}");
    // No `secured` flag: plaintext refused, as disable_plaintext_auth.
    let (rc, out) = f.auth_test(&sock, false, "user@example.org", PASSWORD);
    assert_eq!(rc, 77, "{out}");
    assert!(out.contains("Plaintext authentication disallowed"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_down_is_temp_fail_for_dovecot_and_doveadm() {
    let f = Fixture::start(Some(DOWN_URL), Backend::Dict).await;
    // Through Dovecot: the dict F reply becomes code=temp_fail.
    let (rc, out) = f.doveadm(&[
        "auth",
        "test",
        "-x",
        "no-penalty",
        "user@example.org",
        PASSWORD,
    ]);
    assert_eq!(rc, 77, "{out}");
    assert!(out.contains("code=temp_fail"), "{out}");
    let (rc, out) = f.doveadm(&["user", "user@example.org"]);
    assert_ne!(rc, 0, "{out}");
    assert!(
        !out.contains("doesn't exist"),
        "an outage is not an unknown user: {out}"
    );
    // Straight against authd's auth-client socket.
    let sock = f.authd_socket();
    let (rc, out) = f.auth_test(&sock, true, "user@example.org", PASSWORD);
    assert_eq!(rc, 77, "{out}");
    assert!(out.contains("code=temp_fail"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dovecot_lua_passdb_userdb_against_authd() {
    // contrib/dovecot/postwerk-authd.lua (the Dovecot 2.4 path) under
    // Dovecot 2.3's driver = lua: the same answers as the dict path.
    let f = Fixture::start(None, Backend::Lua).await;
    assert_dovecot_passdb_userdb(&f);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dovecot_lua_database_down_is_temp_fail() {
    let f = Fixture::start(Some(DOWN_URL), Backend::Lua).await;
    let (rc, out) = f.doveadm(&[
        "auth",
        "test",
        "-x",
        "no-penalty",
        "user@example.org",
        PASSWORD,
    ]);
    assert_eq!(rc, 77, "{out}");
    assert!(out.contains("code=temp_fail"), "{out}");
    let (rc, out) = f.doveadm(&["user", "user@example.org"]);
    assert_ne!(rc, 0, "{out}");
    assert!(
        !out.contains("doesn't exist"),
        "an outage is not an unknown user: {out}"
    );
}

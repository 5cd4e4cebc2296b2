//! postwerk-authd with the peers of Debian 13 (issue 4): Dovecot 2.4.1 and
//! Postfix 3.10 from the trixie root of `scripts/trixie-root`, each in a
//! chroot of its own private mount namespace ([`postwerk_tests::trixie`]);
//! authd runs on the host, on MariaDB behind a [`TcpProxy`] that a test cuts
//! to take the database down.
//!
//! * Dovecot 2.4 has no dict passdb/userdb: its `passdb lua` / `userdb lua`
//!   run `contrib/dovecot/postwerk-authd.lua`, configured by the 2.4
//!   snippet `contrib/dovecot/dovecot24.conf.authd` as shipped (paths
//!   replaced), and reach authd's dict socket (the test directory is
//!   mounted into the chroot). Proved with `doveadm auth test` (good, wrong,
//!   disabled, upper-case, send-only), `doveadm user` (home, uid, gid,
//!   `quota_storage_size`; send-only has no userdb entry; `'*'`),
//!   `doveadm quota get` (the 2G quota reaches Dovecot's quota plugin),
//!   python imaplib logins over STARTTLS (good, upper-case, wrong,
//!   send-only, disabled refused) and, with the database down, temporary
//!   failures (`code=temp_fail`, IMAP `[UNAVAILABLE]`) then recovery.
//! * Postfix 3.10 with `smtpd_sasl_type = dovecot` pointing at authd over
//!   loopback TCP: what it makes of authd's `FAIL ... code=temp_fail`
//!   (535, as Debian 12's Postfix 3.7, run the same way on the host), and
//!   of a SASL server that hangs up (454).
//!
//! A missing trixie root fails the tests (scripts/install-deps makes it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use postwerk_tests::cli::Postwerk;
use postwerk_tests::daemon::{Daemon, Ready};
use postwerk_tests::db::TcpReader;
use postwerk_tests::exec::{Output, require, run};
use postwerk_tests::imap;
use postwerk_tests::net::{TcpProxy, free_port, wait_for_port, wait_for_unix_socket};
use postwerk_tests::testdir::chown_recursive;
use postwerk_tests::tls::TestCa;
use postwerk_tests::trixie::{Jail, Root, jail_path};
use postwerk_tests::{Database, MariaDb, TestDir};

const PASSWORD: &str = "s3cret pass";
const USER: &str = "user@example.org";
const SENDONLY: &str = "noreply@example.org";
const DISABLED: &str = "gone@example.org";

const READY: Duration = Duration::from_secs(30);
const DOVEADM_TIMEOUT: Duration = Duration::from_secs(30);

/// The database with an account (2G quota), a send-only account and a
/// disabled one, made by the `postwerk` command.
fn provision(db: &MariaDb) {
    let pw = Postwerk::new(&db.url());
    let stdin = format!("{PASSWORD}\n");
    pw.run(&["db", "init"], None);
    db.grant_readers();
    pw.run(&["domain", "add", "example.org"], None);
    pw.run(
        &["account", "add", USER, "--quota", "2G", "--password-stdin"],
        Some(&stdin),
    );
    pw.run(
        &["account", "add", SENDONLY, "--sendonly", "--password-stdin"],
        Some(&stdin),
    );
    pw.run(
        &["account", "add", DISABLED, "--disabled", "--password-stdin"],
        Some(&stdin),
    );
}

/// authd on the host: the dict socket in the test directory (so the
/// jails see it), the auth-client protocol on a loopback port for Postfix;
/// homes as the jailed Dovecot sees the test directory's vmail/.
fn start_authd(dir: &TestDir, url: &str) -> (Daemon, PathBuf, u16) {
    let dict = dir.join("authd-dict.sock");
    let auth_port = free_port();
    let home = jail_path(dir, &dir.join("vmail/mailboxes"));
    let config = format!(
        "[database]\nurl = \"{url}\"\nacquire_timeout = \"2s\"\n\n[authd]\n\
         auth_listen = [\"inet:127.0.0.1:{auth_port}\"]\ndict_listen = [\"unix:{}\"]\n\
         socket_mode = \"0666\"\nauth_failure_delay = \"200ms\"\nhome = \"{}/%d/%n\"\n",
        dict.display(),
        home.display()
    );
    let authd = Daemon::start(
        dir,
        "postwerk-authd",
        &config,
        &[Ready::Unix(dict.clone()), Ready::Tcp(auth_port)],
    );
    (authd, dict, auth_port)
}

/// A private Dovecot 2.4 in the trixie root.
struct Dovecot24 {
    jail: Jail,
    conf: String,
    imap_port: u16,
    log: PathBuf,
}

impl Dovecot24 {
    /// Writes dovecot.conf (2.4 syntax) with contrib's passdb/userdb
    /// snippet and the Lua script, and starts `dovecot -F`.
    fn start(root: &Root, dir: &TestDir, tls: &TestCa, dict: &std::path::Path) -> Dovecot24 {
        dir.mkdir("vmail/mailboxes", 0o770);
        chown_recursive(&dir.join("vmail"), "vmail", "vmail");
        let conf_dir = dir.mkdir("dovecot", 0o755);
        dir.mkdir("dovecot/run", 0o755);
        dir.mkdir("dovecot/state", 0o755);

        let contrib = |f: &str| {
            let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../contrib/dovecot")
                .join(f);
            std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        };
        let lua = dir.write(
            "dovecot/postwerk-authd.lua",
            contrib("postwerk-authd.lua"),
            0o644,
        );
        let j = |p: &std::path::Path| jail_path(dir, p).display().to_string();
        // The snippet as the admin installs it, with this test's paths.
        let snippet = contrib("dovecot24.conf.authd");
        let installed = snippet
            .replace("/etc/dovecot/postwerk-authd.lua", &j(&lua))
            .replace("/run/postwerk/authd-dict", &j(dict));
        assert!(
            installed.contains(&format!("lua_file = {}", j(&lua)))
                && installed.contains(&format!("socket = {}", j(dict))),
            "contrib/dovecot/dovecot24.conf.authd no longer names the script and socket:\n{snippet}"
        );
        let snippet_path = dir.write("dovecot/auth-postwerk.conf.ext", installed, 0o644);

        let imap_port = free_port();
        let log = conf_dir.join("dovecot.log");
        let conf = conf_dir.join("dovecot.conf");
        let text = format!(
            "dovecot_config_version = 2.4.0\n\
             dovecot_storage_version = 2.4.0\n\
             base_dir = {run}\n\
             state_dir = {state}\n\
             instance_name = postwerk-dovecot24-{n}\n\
             log_path = {log}\n\
             protocols = imap\n\
             listen = 127.0.0.1\n\
             ssl = required\n\
             ssl_server_cert_file = {cert}\n\
             ssl_server_key_file = {key}\n\
             auth_mechanisms = plain login\n\
             auth_failure_delay = 0\n\
             auth_verbose = yes\n\
             auth_debug = yes\n\
             first_valid_uid = 1\n\
             mail_driver = maildir\n\
             mail_path = ~/Maildir\n\
             mail_plugins {{\n  quota = yes\n}}\n\
             quota \"User quota\" {{\n}}\n\
             service imap-login {{\n  inet_listener imap {{\n    port = {imap_port}\n  }}\n  inet_listener imaps {{\n    port = 0\n  }}\n}}\n\
             !include {snippet}\n",
            run = j(&conf_dir.join("run")),
            state = j(&conf_dir.join("state")),
            n = dir.path().file_name().unwrap().to_string_lossy(),
            log = j(&log),
            cert = j(&tls.fullchain),
            key = j(&tls.key),
            snippet = j(&snippet_path),
        );
        dir.write("dovecot/dovecot.conf", text, 0o644);
        let conf = j(&conf);
        let mut jail = Jail::spawn(root, dir, "dovecot", &["dovecot", "-F", "-c", &conf]);
        let ready = wait_for_port(imap_port, READY)
            .and_then(|()| wait_for_unix_socket(&conf_dir.join("run/auth-userdb"), READY));
        if let Err(e) = ready {
            panic!(
                "Dovecot 2.4 did not come up: {e} (exited: {:?})\n{}",
                jail.exited(),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        Dovecot24 {
            jail,
            conf,
            imap_port,
            log,
        }
    }

    fn doveadm(&self, args: &[&str]) -> Output {
        let mut argv = vec!["doveadm", "-c", &self.conf];
        argv.extend(args);
        self.jail.exec(&argv, DOVEADM_TIMEOUT)
    }

    /// `doveadm auth test` without Dovecot's penalty for the test's address.
    fn auth_test(&self, user: &str, password: &str) -> Output {
        self.doveadm(&["auth", "test", "-x", "no-penalty", user, password])
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Dovecot24 {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("===== Dovecot 2.4 log =====\n{}\n=====", self.log());
        }
    }
}

#[track_caller]
fn assert_auth(out: &Output, user: &str, ok: bool, what: &str) {
    let (code, verdict) = if ok { (0, "succeeded") } else { (77, "failed") };
    assert_eq!(out.code(), code, "{what}:\n{out}");
    assert!(
        out.stdout
            .contains(&format!("passdb: {user} auth {verdict}")),
        "{what}:\n{out}"
    );
}

/// Dovecot 2.4.1 logs in through authd with contrib's Lua passdb/userdb.
#[test]
fn dovecot_2_4_lua_passdb_userdb_and_imap_through_authd() {
    let root = Root::require();
    let dir = TestDir::new("dovecot24");
    let db = MariaDb::fresh();
    provision(&db);
    let reader = TcpReader::create(&db);
    let mut proxy = TcpProxy::start("127.0.0.1:3306".parse().unwrap());
    let (authd, dict, _) = start_authd(&dir, &reader.url_via(&proxy));
    let tls = TestCa::new(&dir);
    let dc = Dovecot24::start(&root, &dir, &tls, &dict);

    // The peer is the 2.4 of Debian 13.
    let v = dc.jail.exec(&["dovecot", "--version"], DOVEADM_TIMEOUT);
    assert!(v.stdout.starts_with("2.4."), "not Dovecot 2.4:\n{v}");

    // passdb: authd hands out the hash, Dovecot 2.4 verifies it.
    assert_auth(&dc.auth_test(USER, PASSWORD), USER, true, "good password");
    let upper = dc.auth_test("User@EXAMPLE.org", PASSWORD);
    assert_auth(&upper, "User@EXAMPLE.org", true, "upper-case user name");
    assert!(
        upper.stdout.contains(&format!("user={USER}")),
        "2.4's auth_username_format did not lowercase the name:\n{upper}"
    );
    assert_auth(&dc.auth_test(USER, "wrong"), USER, false, "wrong password");
    assert_auth(
        &dc.auth_test(DISABLED, PASSWORD),
        DISABLED,
        false,
        "disabled account",
    );
    assert_auth(
        &dc.auth_test(SENDONLY, PASSWORD),
        SENDONLY,
        true,
        "send-only accounts pass the passdb (SMTP AUTH)",
    );

    // userdb: home, uid/gid of vmail, the quota in 2.4's name.
    let out = dc.doveadm(&["user", USER]);
    assert!(out.is_success(), "{out}");
    let field = |name: &str| -> Option<String> {
        out.stdout.lines().find_map(|l| {
            l.split_once('\t')
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| v.to_owned())
        })
    };
    let vmail = nix::unistd::User::from_name("vmail").unwrap().unwrap();
    assert_eq!(
        field("home").as_deref(),
        Some(
            jail_path(&dir, &dir.join("vmail/mailboxes/example.org/user"))
                .to_str()
                .unwrap()
        ),
        "{out}"
    );
    assert_eq!(field("uid"), Some(vmail.uid.to_string()), "{out}");
    assert_eq!(field("gid"), Some(vmail.gid.to_string()), "{out}");
    assert_eq!(
        field("quota_storage_size").as_deref(),
        Some("2048M"),
        "{out}"
    );
    let out = dc.doveadm(&["user", SENDONLY]);
    assert_eq!(out.code(), 67, "send-only accounts have no mailbox:\n{out}");
    assert!(out.stdout.contains("doesn't exist"), "{out}");
    let out = dc.doveadm(&["user", "*"]);
    assert!(out.is_success(), "{out}");
    let users: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(users, [DISABLED, USER], "doveadm user '*':\n{out}");
    // The quota plugin of 2.4 takes the limit from the userdb field.
    let out = dc.doveadm(&["quota", "get", "-u", USER]);
    assert!(out.is_success(), "{out}");
    assert!(
        out.stdout
            .lines()
            .any(|l| l.contains("STORAGE") && l.contains("2097152")),
        "the 2G quota did not reach Dovecot 2.4's quota plugin:\n{out}"
    );

    // IMAP, as a mail client: python imaplib, STARTTLS, LOGIN.
    let imap = imap::Client::new(&dir, dc.imap_port, tls.ca_file.clone());
    imap.login(USER, PASSWORD)
        .unwrap_or_else(|e| panic!("IMAP login refused: {e}"));
    imap.login("USER@Example.ORG", PASSWORD)
        .unwrap_or_else(|e| panic!("IMAP login in upper case refused: {e}"));
    // Refusals last: Dovecot slows further logins from an address that failed.
    let e = imap
        .login(SENDONLY, PASSWORD)
        .expect_err("a send-only account (no mailbox) logged in to IMAP");
    assert!(!e.contains("UNAVAILABLE"), "send-only: {e}");
    imap.login(USER, "wrong")
        .expect_err("a wrong password logged in to IMAP");
    imap.login(DISABLED, PASSWORD)
        .expect_err("a disabled account logged in to IMAP");

    // The database goes down: temporary failures, never "unknown user".
    proxy.cut();
    let out = dc.auth_test(USER, PASSWORD);
    // 2.4's doveadm exits EX_TEMPFAIL (75) here; 2.3's said 77 for any failure.
    assert_eq!(out.code(), 75, "database down:\n{out}");
    assert!(
        out.stdout.contains("code=temp_fail"),
        "database down:\n{out}"
    );
    let out = dc.doveadm(&["user", USER]);
    assert!(!out.is_success(), "{out}");
    assert!(
        !out.stdout.contains("doesn't exist") && !out.stderr.contains("doesn't exist"),
        "an outage is not an unknown user:\n{out}"
    );
    match imap.login(USER, PASSWORD) {
        Ok(_) => panic!("IMAP login succeeded with the database down"),
        Err(text) => assert!(
            text.contains("UNAVAILABLE") || text.contains("Temporary"),
            "IMAP login with the database down: {text}"
        ),
    }
    assert!(
        dc.log().contains("Temporary") || dc.log().contains("temporary failure"),
        "Dovecot logged no temporary failure"
    );
    // ... and logins work again when it is back.
    proxy.resume();
    assert_auth(&dc.auth_test(USER, PASSWORD), USER, true, "database back");
    drop(authd);
}

/// Where a private Postfix runs: Debian 12's on the host (3.7), or
/// Debian 13's in a trixie jail (3.10).
enum Host {
    Debian12,
    Trixie(Root),
}

/// A running Postfix master (`master -d`, in the foreground).
enum Master {
    Host(std::process::Child, PathBuf),
    Jail(Jail),
}

impl Drop for Master {
    fn drop(&mut self) {
        if let Master::Host(child, log) = self {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = child.wait();
            if std::thread::panicking() {
                eprintln!(
                    "===== Postfix output =====\n{}\n=====",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
        }
    }
}

/// A private Postfix, the same main.cf and master.cf for 3.7 and 3.10:
/// smtpd on a loopback port with STARTTLS, SMTP AUTH through authd's
/// auth-client port; a second smtpd whose SASL server is [`HangUpStub`].
struct Postfix {
    master: Master,
    port: u16,
    hangup_port: u16,
}

impl Postfix {
    fn start(
        host: &Host,
        dir: &TestDir,
        tls: &TestCa,
        auth_port: u16,
        hangup_auth_port: u16,
    ) -> Postfix {
        let port = free_port();
        let hangup_port = free_port();
        let conf_dir = dir.mkdir("postfix", 0o755);
        dir.mkdir("postfix/queue", 0o755);
        dir.mkdir("postfix/data", 0o755);
        // Paths as the Postfix processes see them.
        let j = |p: &std::path::Path| match host {
            Host::Debian12 => p.display().to_string(),
            Host::Trixie(_) => jail_path(dir, p).display().to_string(),
        };
        let main_cf = format!(
            "compatibility_level = 3.6\n\
             queue_directory = {queue}\n\
             data_directory = {data}\n\
             myhostname = mail.example.org\n\
             mydomain = example.org\n\
             inet_interfaces = 127.0.0.1\n\
             inet_protocols = ipv4\n\
             maillog_file = /dev/stdout\n\
             alias_maps =\n\
             alias_database =\n\
             mynetworks =\n\
             smtpd_tls_security_level = may\n\
             smtpd_tls_chain_files = {key}, {cert}\n\
             smtpd_tls_auth_only = yes\n\
             smtpd_sasl_auth_enable = yes\n\
             smtpd_sasl_type = dovecot\n\
             smtpd_sasl_path = inet:127.0.0.1:{auth_port}\n\
             smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination\n",
            queue = j(&conf_dir.join("queue")),
            data = j(&conf_dir.join("data")),
            key = j(&tls.key),
            cert = j(&tls.fullchain),
        );
        dir.write("postfix/main.cf", main_cf, 0o644);
        let master_cf = format!(
            "{port} inet n - n - - smtpd\n\
             {hangup_port} inet n - n - - smtpd -o smtpd_sasl_path=inet:127.0.0.1:{hangup_auth_port}\n\
             postlog unix-dgram n - n - 1 postlogd\n\
             proxymap unix - - n - - proxymap\n\
             anvil unix - - n - 1 anvil\n\
             tlsmgr unix - - n 1000? 1 tlsmgr\n"
        );
        dir.write("postfix/master.cf", master_cf, 0o644);
        // master -d stays in the foreground (postfix start-fg insists on
        // being pid 1); its data directory must belong to the postfix user
        // of the system it runs on (the trixie root's uid is not the
        // host's); `postfix check` makes the queue's subdirectories.
        let script = format!(
            "chown postfix: {data} && postfix -c {c} check && exec /usr/lib/postfix/sbin/master -c {c} -d",
            data = j(&conf_dir.join("data")),
            c = j(&conf_dir)
        );
        let mut master = match host {
            Host::Debian12 => {
                require("postfix");
                let log = dir.join("postfix.log");
                let out = std::fs::File::create(&log).unwrap();
                let child = Command::new("/bin/sh")
                    .args(["-c", &script])
                    .stdin(std::process::Stdio::null())
                    .stdout(out.try_clone().unwrap())
                    .stderr(out)
                    .spawn()
                    .expect("start Postfix");
                Master::Host(child, log)
            }
            Host::Trixie(root) => Master::Jail(Jail::spawn(
                root,
                dir,
                "postfix",
                &["/bin/sh", "-c", &script],
            )),
        };
        if let Err(e) = wait_for_port(port, READY).and_then(|()| wait_for_port(hangup_port, READY))
        {
            let (exited, log) = match &mut master {
                Master::Host(c, log) => (
                    c.try_wait().ok().flatten(),
                    std::fs::read_to_string(log).unwrap_or_default(),
                ),
                Master::Jail(jail) => (jail.exited(), jail.log()),
            };
            panic!("Postfix did not come up: {e} (exited: {exited:?})\n{log}");
        }
        Postfix {
            master,
            port,
            hangup_port,
        }
    }

    /// `mail_version` of the Postfix that runs.
    fn version(&self) -> String {
        let argv = ["postconf", "-d", "-h", "mail_version"];
        let out = match &self.master {
            Master::Host(..) => run(
                Command::new(argv[0]).args(&argv[1..]),
                None,
                DOVEADM_TIMEOUT,
            ),
            Master::Jail(jail) => jail.exec(&argv, DOVEADM_TIMEOUT),
        };
        out.stdout.trim().to_owned()
    }

    /// swaks: STARTTLS, AUTH PLAIN, then QUIT; the transcript.
    fn auth(&self, tls: &TestCa, user: &str, password: &str) -> String {
        self.auth_on(self.port, tls, user, password)
    }

    fn auth_on(&self, port: u16, tls: &TestCa, user: &str, password: &str) -> String {
        let mut cmd = Command::new(require("swaks"));
        cmd.args(["--server", "127.0.0.1", "--port", &port.to_string()])
            .args(["--from", user, "--to", USER, "--quit-after", "AUTH"])
            .args(["--tls", "--tls-verify", "--tls-ca-path"])
            .arg(&tls.ca_file)
            .args([
                "--auth",
                "PLAIN",
                "--auth-user",
                user,
                "--auth-password",
                password,
            ]);
        let out = run(&mut cmd, None, Duration::from_secs(60));
        format!("{}{}", out.stdout, out.stderr)
    }
}

/// An auth-client server that greets like Dovecot and hangs up on the
/// first `AUTH`: what Postfix does when the connection to its SASL server
/// is lost mid-request (the other way to fail temporarily).
struct HangUpStub {
    port: u16,
}

impl HangUpStub {
    fn start() -> HangUpStub {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                std::thread::spawn(move || {
                    let _ = conn.write_all(
                        b"VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nSPID\t1\nCUID\t1\n\
                          COOKIE\t0123456789abcdef0123456789abcdef\nDONE\n",
                    );
                    let Ok(read) = conn.try_clone() else { return };
                    for line in BufReader::new(read).lines() {
                        match line {
                            Ok(l) if l.starts_with("AUTH\t") => break,
                            Ok(_) => {}
                            Err(_) => return,
                        }
                    }
                    let _ = conn.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        HangUpStub { port }
    }
}

/// The server's reply to AUTH in a swaks transcript.
fn auth_reply(transcript: &str) -> String {
    let mut lines = transcript.lines().skip_while(|l| !l.contains("> AUTH "));
    lines
        .find(|l| l.starts_with("<~") || l.starts_with("<-") || l.starts_with("<*"))
        .map(|l| l.trim_start_matches(['<', '-', '~', '*', ' ']).to_owned())
        .unwrap_or_else(|| panic!("no reply to AUTH:\n{transcript}"))
}

/// Postfix ≥ 3.8 and `code=temp_fail`: does a temporary failure from the
/// SASL server become a 454 4.7.0 (RFC 4954 §6, "temporary authentication
/// failure")? No: Postfix 3.10.13, like 3.7.11, answers every FAIL with
/// `535 5.7.8`, showing authd's neutral reason. Its only 454 is for a
/// connection to the SASL server lost mid-request, shown with a stub that
/// hangs up. The same instance and the same assertions for both versions.
fn postfix_and_code_temp_fail(host: Host, name: &str, version: &str) {
    let dir = TestDir::new(name);
    let db = MariaDb::fresh();
    provision(&db);
    let reader = TcpReader::create(&db);
    let mut proxy = TcpProxy::start("127.0.0.1:3306".parse().unwrap());
    let (authd, _, auth_port) = start_authd(&dir, &reader.url_via(&proxy));
    let tls = TestCa::new(&dir);
    let stub = HangUpStub::start();
    let pf = Postfix::start(&host, &dir, &tls, auth_port, stub.port);
    let v = pf.version();
    assert!(v.starts_with(version), "not Postfix {version}: {v}");

    let t = pf.auth(&tls, USER, PASSWORD);
    assert!(
        auth_reply(&t).starts_with("235 2.7.0"),
        "good password:\n{t}"
    );
    let t = pf.auth(&tls, SENDONLY, PASSWORD);
    assert!(auth_reply(&t).starts_with("235 2.7.0"), "send-only:\n{t}");
    let t = pf.auth(&tls, USER, "wrong");
    assert!(
        auth_reply(&t).starts_with("535 5.7.8"),
        "wrong password:\n{t}"
    );
    let t = pf.auth(&tls, DISABLED, PASSWORD);
    assert!(auth_reply(&t).starts_with("535 5.7.8"), "disabled:\n{t}");

    proxy.cut();
    let t = pf.auth(&tls, USER, PASSWORD);
    let reply = auth_reply(&t);
    // authd did say temp_fail ...
    let log = authd.log();
    assert!(
        log.contains("answered temp_fail"),
        "authd did not answer a temporary failure:\n{log}"
    );
    // ... and Postfix still answers permanently, with authd's reason.
    assert_eq!(
        reply,
        "535 5.7.8 Error: authentication failed: Temporary authentication failure, try again later",
        "Postfix {v} and code=temp_fail:\n{t}"
    );
    proxy.resume();
    let t = pf.auth(&tls, USER, PASSWORD);
    assert!(
        auth_reply(&t).starts_with("235 2.7.0"),
        "database back:\n{t}"
    );

    // Postfix's only 454: the SASL server's connection breaks mid-request.
    let t = pf.auth_on(pf.hangup_port, &tls, USER, PASSWORD);
    assert_eq!(
        auth_reply(&t),
        "454 4.7.0 Temporary authentication failure: Connection lost to authentication server",
        "Postfix {v}, SASL server hung up:\n{t}"
    );
}

#[test]
fn postfix_3_10_answers_535_even_for_code_temp_fail() {
    postfix_and_code_temp_fail(Host::Trixie(Root::require()), "postfix310", "3.10.");
}

/// Debian 12's Postfix, for comparison (shared/reference's capture).
#[test]
fn postfix_3_7_answers_535_for_code_temp_fail() {
    postfix_and_code_temp_fail(Host::Debian12, "postfix37", "3.7.");
}

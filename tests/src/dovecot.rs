//! A private Dovecot instance (`dovecot -F -c FILE`) made from the guide's
//! dovecot.conf and dovecot-sql.conf (tests/templates/dovecot/): IMAP with
//! mandatory TLS and ManageSieve on loopback ports, LMTP and the SASL auth
//! socket inside Postfix's queue directory, SQL passdb/userdb, quota and the
//! guide's global Sieve script. Stopped on Drop; its log is printed when the
//! test fails.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::db::{Database, Dialect};
use crate::exec::{poll_until, require};
use crate::net::{free_port, wait_for_port, wait_for_unix_socket};
use crate::template::{
    DOVECOT_CONF, DOVECOT_SQL_MYSQL, DOVECOT_SQL_PGSQL, DOVECOT_SQL_SQLITE, SIEVE_GLOBAL,
};
use crate::testdir::{TestDir, chown_recursive, set_mode};
use crate::tls::TestCa;

const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// The system user that owns the mailboxes (created by scripts/install-deps),
/// the guide's `vmail`.
pub const VMAIL_USER: &str = "vmail";

/// What a test chooses about its Dovecot; everything else is the guide's.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where Dovecot's LMTP listener goes (the guide's
    /// /var/spool/postfix/private/dovecot-lmtp).
    pub lmtp_socket: PathBuf,
    /// Where the auth listener for Postfix goes (the guide's
    /// /var/spool/postfix/private/auth).
    pub auth_socket: PathBuf,
    /// The domain of `postmaster_address` (the guide's mysystems.tld).
    pub mail_domain: String,
    /// `Some(socket)`: passdb and userdb use `driver = dict` through
    /// postwerk-authd's dict socket (contrib/dovecot/dovecot-dict-auth.conf.ext)
    /// instead of the guide's `driver = sql`.
    pub auth_dict: Option<PathBuf>,
}

impl Config {
    /// The guide's layout: both sockets in Postfix's `private/` directory.
    pub fn guide(postfix_private_dir: &Path) -> Config {
        Config {
            lmtp_socket: postfix_private_dir.join("dovecot-lmtp"),
            auth_socket: postfix_private_dir.join("auth"),
            mail_domain: "example.org".to_owned(),
            auth_dict: None,
        }
    }
}

/// A running private Dovecot.
#[derive(Debug)]
pub struct Dovecot {
    child: Option<Child>,
    config_file: PathBuf,
    log: PathBuf,
    stderr_log: PathBuf,
    vmail_dir: PathBuf,
    /// The IMAP port (the guide's 143; STARTTLS, `ssl = required`).
    pub imap_port: u16,
    /// The ManageSieve port (the guide's 4190).
    pub sieve_port: u16,
    /// The LMTP socket.
    pub lmtp_socket: PathBuf,
    /// The auth socket for Postfix's SASL.
    pub auth_socket: PathBuf,
}

impl Dovecot {
    /// Writes the configuration into `DIR/dovecot/`, makes the guide's
    /// /var/vmail as `DIR/vmail/` and starts Dovecot in the foreground;
    /// returns once IMAP, ManageSieve, LMTP and auth accept connections.
    /// Panics, with the log, if it does not come up.
    pub fn start(dir: &TestDir, tls: &TestCa, db: &dyn Database, config: &Config) -> Dovecot {
        let dovecot = require("dovecot");
        let conf_dir = dir.mkdir("dovecot", 0o755);
        let base_dir = conf_dir.join("run");
        let state_dir = dir.mkdir("dovecot/state", 0o755);
        let log = conf_dir.join("dovecot.log");
        let stderr_log = conf_dir.join("stderr.log");
        let config_file = conf_dir.join("dovecot.conf");

        // The guide: /var/vmail/mailboxes and /var/vmail/sieve/global, owned
        // by vmail, mode 770. The global scripts are compiled next to
        // themselves by the vmail-owned LMTP process.
        let vmail_dir = dir.mkdir("vmail", 0o770);
        dir.mkdir("vmail/mailboxes", 0o770);
        dir.mkdir("vmail/sieve/global", 0o770);
        for script in SIEVE_GLOBAL {
            dir.write(
                format!("vmail/sieve/global/{}", script.file_name()),
                script.text,
                0o660,
            );
        }
        chown_recursive(&vmail_dir, VMAIL_USER, VMAIL_USER);

        // The guide: dovecot-sql.conf, chmod 440.
        let sql_template = match db.dialect() {
            Dialect::Mysql => DOVECOT_SQL_MYSQL,
            Dialect::Sqlite => DOVECOT_SQL_SQLITE,
            Dialect::Pgsql => DOVECOT_SQL_PGSQL,
        };
        let db_vars = db.template_vars();
        let db_vars: Vec<(&str, &str)> = db_vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let sql_conf = dir.write(
            "dovecot/dovecot-sql.conf",
            sql_template.render(&db_vars),
            0o440,
        );

        let (auth_driver, auth_args) = match &config.auth_dict {
            None => ("sql", sql_conf.clone()),
            Some(socket) => {
                let contrib = include_str!("../../contrib/dovecot/dovecot-dict-auth.conf.ext");
                let text: String = contrib
                    .lines()
                    .map(|l| {
                        if l.trim_start().starts_with("uri =") {
                            format!("uri = proxy:{}:authdict", socket.display())
                        } else {
                            l.to_owned()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                (
                    "dict",
                    dir.write("dovecot/dovecot-dict-auth.conf.ext", text + "\n", 0o444),
                )
            }
        };

        let imap_port = free_port();
        let sieve_port = free_port();
        let instance_name = format!(
            "postwerk-{}",
            dir.path()
                .file_name()
                .map_or_else(|| "test".into(), |n| n.to_string_lossy())
        );
        let d = |p: &Path| p.display().to_string();
        let vars: Vec<(&str, String)> = vec![
            ("config_file", d(&config_file)),
            ("base_dir", d(&base_dir)),
            ("instance_name", instance_name),
            ("state_dir", d(&state_dir)),
            ("log_path", d(&log)),
            ("tls_fullchain", d(&tls.fullchain)),
            ("tls_key", d(&tls.key)),
            ("tls_dh4096", d(&tls.dh4096)),
            ("imap_port", imap_port.to_string()),
            ("sieve_port", sieve_port.to_string()),
            ("lmtp_socket", d(&config.lmtp_socket)),
            ("auth_socket", d(&config.auth_socket)),
            ("mail_domain", config.mail_domain.clone()),
            ("sql_conf", d(&sql_conf)),
            ("auth_driver", auth_driver.to_owned()),
            ("auth_args", d(&auth_args)),
            ("vmail_dir", d(&vmail_dir)),
        ];
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        dir.write("dovecot/dovecot.conf", DOVECOT_CONF.render(&vars), 0o644);

        let stderr_file = File::create(&stderr_log)
            .unwrap_or_else(|e| panic!("create {}: {e}", stderr_log.display()));
        let stdout_file = stderr_file
            .try_clone()
            .unwrap_or_else(|e| panic!("dup {}: {e}", stderr_log.display()));
        let child = Command::new(&dovecot)
            .arg("-F")
            .arg("-c")
            .arg(&config_file)
            .stdin(Stdio::null())
            .stdout(stdout_file)
            .stderr(stderr_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", dovecot.display()));
        set_mode(&stderr_log, 0o644);

        let mut instance = Dovecot {
            child: Some(child),
            config_file,
            log,
            stderr_log,
            vmail_dir,
            imap_port,
            sieve_port,
            lmtp_socket: config.lmtp_socket.clone(),
            auth_socket: config.auth_socket.clone(),
        };
        let ready = wait_for_port(imap_port, START_TIMEOUT)
            .and_then(|()| wait_for_port(sieve_port, START_TIMEOUT))
            .and_then(|()| wait_for_unix_socket(&instance.lmtp_socket, START_TIMEOUT))
            .and_then(|()| wait_for_unix_socket(&instance.auth_socket, START_TIMEOUT));
        if let Err(e) = ready {
            let exited = instance
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            panic!(
                "Dovecot did not come up: {e} (process: {})\n{}",
                exited.map_or_else(
                    || "still running".to_owned(),
                    |s| format!("exited with {s}")
                ),
                instance.logs()
            );
        }
        instance
    }

    /// The generated dovecot.conf (for `doveadm -c`).
    pub fn config_file(&self) -> &Path {
        &self.config_file
    }

    /// The master's process id, while it runs (benchmarks sum its tree's
    /// memory and CPU).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The guide's /var/vmail of this instance.
    pub fn vmail_dir(&self) -> &Path {
        &self.vmail_dir
    }

    /// Dovecot's log file and what the master wrote to stderr.
    pub fn logs(&self) -> String {
        let read = |p: &Path| {
            fs::read_to_string(p).unwrap_or_else(|e| format!("(nothing at {}: {e})", p.display()))
        };
        format!(
            "--- {} ---\n{}\n--- {} ---\n{}",
            self.log.display(),
            read(&self.log),
            self.stderr_log.display(),
            read(&self.stderr_log)
        )
    }

    /// SIGTERM to the master (which stops its children), then waits; SIGKILL
    /// if it has not exited in time.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let exited = poll_until(STOP_TIMEOUT, || matches!(child.try_wait(), Ok(Some(_))));
        if !exited {
            eprintln!("postwerk-tests: Dovecot master {pid} did not stop on SIGTERM; killing it");
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "===== Dovecot logs =====\n{}\n===== end of Dovecot logs =====",
                self.logs()
            );
        }
    }
}

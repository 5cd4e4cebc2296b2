//! A private Postfix instance (`postfix -c DIR start`) made from the guide's
//! main.cf and master.cf (tests/templates/postfix/), with its own queue,
//! data directory, log file and loopback ports. Stopped on Drop; its log is
//! printed when the test fails.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::db::Database;
use crate::exec::{poll_until, require, run};
use crate::net::{free_port, wait_for_port};
use crate::template::{
    POSTFIX_MAIN_CF, POSTFIX_MASTER_CF, POSTFIX_SQL_MYSQL, POSTFIX_SQL_PGSQL, POSTFIX_SQL_SQLITE,
    POSTFIX_SUBMISSION_HEADER_CLEANUP, Template,
};
use crate::testdir::{TestDir, chown_to};
use crate::tls::TestCa;

const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// The six lookup tables of the guide's main.cf and master.cf, each a full
/// Postfix map spec (`proxy:mysql:/path/aliases.cf`, `socketmap:unix:...`).
#[derive(Debug, Clone)]
pub struct Maps {
    /// `virtual_mailbox_domains` (the guide's sql/domains.cf).
    pub domains: String,
    /// `virtual_mailbox_maps` (sql/accounts.cf).
    pub accounts: String,
    /// `virtual_alias_maps` (sql/aliases.cf).
    pub aliases: String,
    /// `check_recipient_access` in `smtpd_recipient_restrictions`
    /// (sql/recipient-access.cf).
    pub recipient_access: String,
    /// `smtpd_sender_login_maps` of the submission services
    /// (sql/sender-login-maps.cf).
    pub sender_login: String,
    /// `smtp_tls_policy_maps` (sql/tls-policy.cf).
    pub tls_policy: String,
}

impl Maps {
    /// The guide's `proxy:mysql:/etc/postfix/sql/*.cf` maps for `db`: the
    /// .cf files are written to `DIR/postfix/etc/sql/` from the template of the
    /// database's dialect (the guide's own for MySQL, translations for SQLite
    /// and PostgreSQL), owned root:postfix as the guide says.
    pub fn sql(dir: &TestDir, db: &dyn Database) -> Maps {
        let dialect = db.dialect();
        let templates: &[Template; 6] = match dialect {
            crate::db::Dialect::Mysql => &POSTFIX_SQL_MYSQL,
            crate::db::Dialect::Sqlite => &POSTFIX_SQL_SQLITE,
            crate::db::Dialect::Pgsql => &POSTFIX_SQL_PGSQL,
        };
        let owned = db.template_vars();
        let vars: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let sql_dir = dir.mkdir("postfix/etc/sql", 0o750);
        chown_to(&sql_dir, "root", "postfix");
        let spec = |file: &str| {
            let template = templates
                .iter()
                .find(|t| t.file_name() == file)
                .unwrap_or_else(|| panic!("no template for sql/{file}"));
            let path = dir.write(
                format!("postfix/etc/sql/{file}"),
                template.render(&vars),
                0o640,
            );
            chown_to(&path, "root", "postfix");
            format!("proxy:{}:{}", dialect.driver(), path.display())
        };
        Maps {
            domains: spec("domains.cf"),
            accounts: spec("accounts.cf"),
            aliases: spec("aliases.cf"),
            recipient_access: spec("recipient-access.cf"),
            sender_login: spec("sender-login-maps.cf"),
            tls_policy: spec("tls-policy.cf"),
        }
    }

    /// The six maps answered by postwerk-policyd over socketmap at
    /// `endpoint` (`unix:private/policyd`, relative to the queue directory,
    /// or `inet:127.0.0.1:PORT`), with the map names of policyd's manual.
    pub fn socketmap(endpoint: &str) -> Maps {
        let spec = |name: &str| format!("socketmap:{endpoint}:{name}");
        Maps {
            domains: spec("domains"),
            accounts: spec("mailboxes"),
            aliases: spec("aliases"),
            recipient_access: spec("recipient_access"),
            sender_login: spec("sender_login"),
            tls_policy: spec("tls_policy"),
        }
    }

    fn all(&self) -> [&str; 6] {
        [
            &self.aliases,
            &self.accounts,
            &self.domains,
            &self.recipient_access,
            &self.sender_login,
            &self.tls_policy,
        ]
    }
}

/// What a test chooses about its Postfix; everything else is the guide's.
#[derive(Debug, Clone)]
pub struct Config {
    /// The six maps.
    pub maps: Maps,
    /// `virtual_transport`; the guide's is `lmtp:unix:private/dovecot-lmtp`.
    pub virtual_transport: String,
    /// `smtpd_sasl_path` of the submission services; the guide's is
    /// `private/auth` (Dovecot's auth socket in Postfix's queue directory).
    pub sasl_path: String,
    /// `smtpd_milters` and `non_smtpd_milters`; `None` leaves the guide's
    /// Rspamd milter commented out.
    pub milters: Option<String>,
    /// `myhostname`; the guide's is mail.mysystems.tld.
    pub myhostname: String,
    /// Lines appended to main.cf (a later line overrides the guide's value
    /// of the same parameter), for a test that needs one change.
    pub extra_main_cf: Vec<String>,
    /// Services appended to master.cf (whole entries with their `-o`
    /// lines).
    pub extra_master_cf: Vec<String>,
}

impl Config {
    /// The guide's configuration with `maps`, delivering to Dovecot's LMTP
    /// socket and authenticating through Dovecot's auth socket.
    pub fn guide(maps: Maps) -> Config {
        Config {
            maps,
            virtual_transport: "lmtp:unix:private/dovecot-lmtp".to_owned(),
            sasl_path: "private/auth".to_owned(),
            milters: None,
            myhostname: "mail.example.org".to_owned(),
            extra_main_cf: Vec::new(),
            extra_master_cf: Vec::new(),
        }
    }
}

/// A running private Postfix.
#[derive(Debug)]
pub struct Postfix {
    config_dir: PathBuf,
    queue_dir: PathBuf,
    maillog: PathBuf,
    /// Port of the guide's `smtp` service (port 25: mail from other servers).
    pub smtp_port: u16,
    /// Port of the guide's `submission` service (587: STARTTLS + SASL).
    pub submission_port: u16,
    /// Port of the guide's `smtps` service (465: implicit TLS + SASL).
    pub smtps_port: u16,
    is_running: bool,
}

impl Postfix {
    /// Writes the configuration into `DIR/postfix/` and starts Postfix; returns
    /// once all three listeners accept connections. Panics, with the log,
    /// if it does not come up.
    pub fn start(dir: &TestDir, tls: &TestCa, config: &Config) -> Postfix {
        let postfix = require("postfix");
        require("postmap");
        require("postqueue");

        // Like /etc/postfix, /var/spool/postfix and /var/lib/postfix: the
        // queue and data directories must not be below the configuration
        // directory, whose whole tree `postfix start` checks is root's.
        let config_dir = dir.mkdir("postfix/etc", 0o755);
        // The queue directory belongs to root and the data directory to
        // mail_owner; `postfix start` makes the queue's subdirectories.
        let queue_dir = dir.mkdir("postfix/spool", 0o755);
        let data_dir = dir.mkdir("postfix/data", 0o700);
        chown_to(&data_dir, "postfix", "postfix");
        let maillog = dir.join("postfix/maillog");

        let smtp_port = free_port();
        let submission_port = free_port();
        let smtps_port = free_port();

        let proxy_read_maps: Vec<&str> = config
            .maps
            .all()
            .into_iter()
            .filter(|m| m.starts_with("proxy:"))
            .collect();
        let milters = match &config.milters {
            Some(m) => format!("smtpd_milters = {m}\nnon_smtpd_milters = {m}"),
            None => {
                "#smtpd_milters = inet:localhost:11332\n#non_smtpd_milters = inet:localhost:11332"
                    .to_owned()
            }
        };
        let d = |p: &Path| p.display().to_string();
        let (smtp_port_s, submission_port_s, smtps_port_s) = (
            smtp_port.to_string(),
            submission_port.to_string(),
            smtps_port.to_string(),
        );
        let proxy_read_maps = proxy_read_maps.join("\n                        ");
        let vars: Vec<(&str, String)> = vec![
            ("config_dir", d(&config_dir)),
            ("queue_dir", d(&queue_dir)),
            ("data_dir", d(&data_dir)),
            ("maillog", d(&maillog)),
            ("maillog_prefix", d(dir.path())),
            ("myhostname", config.myhostname.clone()),
            ("tls_fullchain", d(&tls.fullchain)),
            ("tls_key", d(&tls.key)),
            ("tls_dh2048", d(&tls.dh2048)),
            ("virtual_transport", config.virtual_transport.clone()),
            ("sasl_path", config.sasl_path.clone()),
            ("milters", milters),
            ("proxy_read_maps", proxy_read_maps),
            ("map_domains", config.maps.domains.clone()),
            ("map_accounts", config.maps.accounts.clone()),
            ("map_aliases", config.maps.aliases.clone()),
            ("map_recipient_access", config.maps.recipient_access.clone()),
            ("map_sender_login", config.maps.sender_login.clone()),
            ("map_tls_policy", config.maps.tls_policy.clone()),
            ("smtp_port", smtp_port_s),
            ("submission_port", submission_port_s),
            ("smtps_port", smtps_port_s),
        ];
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut main_cf = POSTFIX_MAIN_CF.render(&vars);
        // A test's line replaces the guide's line for the same parameter
        // (and its continuation lines), so Postfix warns about nothing.
        for extra in &config.extra_main_cf {
            let name = extra.split('=').next().unwrap_or("").trim();
            let mut out = String::new();
            let mut skipping = false;
            for line in main_cf.lines() {
                let is_continuation = line.starts_with([' ', '\t']) && !line.trim().is_empty();
                if skipping && is_continuation {
                    continue;
                }
                skipping =
                    line.split('=').next().is_some_and(|n| n.trim() == name) && line.contains('=');
                if !skipping {
                    out.push_str(line);
                    out.push('\n');
                }
            }
            main_cf = out;
        }
        if !config.extra_main_cf.is_empty() {
            main_cf.push_str("\n# TEST: set by this test\n");
            for line in &config.extra_main_cf {
                main_cf.push_str(line);
                main_cf.push('\n');
            }
        }
        dir.write("postfix/etc/main.cf", main_cf, 0o644);
        let mut master_cf = POSTFIX_MASTER_CF.render(&vars);
        if !config.extra_master_cf.is_empty() {
            master_cf.push_str("\n# TEST: added by this test\n");
            for entry in &config.extra_master_cf {
                master_cf.push_str(entry);
                master_cf.push('\n');
            }
        }
        dir.write("postfix/etc/master.cf", master_cf, 0o644);
        dir.write(
            "postfix/etc/submission_header_cleanup",
            POSTFIX_SUBMISSION_HEADER_CLEANUP.text,
            0o644,
        );
        // The guide: `touch /etc/postfix/without_ptr` and `postmap` it.
        let without_ptr = dir.write("postfix/etc/without_ptr", "", 0o644);
        let mut postmap = Command::new(require("postmap"));
        postmap
            .arg("-c")
            .arg(&config_dir)
            .arg(format!("hash:{}", without_ptr.display()));
        run(&mut postmap, None, START_TIMEOUT).assert_success();

        let mut instance = Postfix {
            config_dir,
            queue_dir,
            maillog,
            smtp_port,
            submission_port,
            smtps_port,
            is_running: true,
        };
        let mut start = Command::new(postfix);
        start.arg("-c").arg(&instance.config_dir).arg("start");
        let out = run(&mut start, None, START_TIMEOUT);
        if !out.is_success() {
            instance.is_running = false;
            panic!(
                "Postfix did not start:\n{out}\n--- maillog ---\n{}",
                instance.maillog()
            );
        }
        for port in [smtp_port, submission_port, smtps_port] {
            if let Err(e) = wait_for_port(port, START_TIMEOUT) {
                panic!(
                    "Postfix did not come up: {e}\n--- maillog ---\n{}",
                    instance.maillog()
                );
            }
        }
        instance
    }

    /// The configuration directory (`postfix -c` argument).
    pub fn config_dir(&self) -> &Path {
        &self.config_dir
    }

    /// The queue directory; Dovecot puts its LMTP and auth sockets into its
    /// `private/` as in the guide.
    pub fn queue_dir(&self) -> &Path {
        &self.queue_dir
    }

    /// `queue_dir/private`.
    pub fn private_dir(&self) -> PathBuf {
        self.queue_dir.join("private")
    }

    /// The log so far (maillog_file), or a note why there is none.
    pub fn maillog(&self) -> String {
        fs::read_to_string(&self.maillog)
            .unwrap_or_else(|e| format!("(no maillog at {}: {e})", self.maillog.display()))
    }

    /// `postqueue -f`: deliver whatever is queued now, without waiting for
    /// the queue manager's next scan.
    pub fn flush(&self) {
        let mut cmd = Command::new(require("postqueue"));
        cmd.arg("-c").arg(&self.config_dir).arg("-f");
        let out = run(&mut cmd, None, Duration::from_secs(30));
        if !out.is_success() {
            eprintln!("postwerk-tests: postqueue -f failed:\n{out}");
        }
    }

    /// `postqueue -p`: the queue listing.
    pub fn queue_listing(&self) -> String {
        let mut cmd = Command::new(require("postqueue"));
        cmd.arg("-c").arg(&self.config_dir).arg("-p");
        let out = run(&mut cmd, None, Duration::from_secs(30));
        format!("{}{}", out.stdout, out.stderr)
    }

    fn master_pid(&self) -> Option<i32> {
        fs::read_to_string(self.queue_dir.join("pid/master.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// `postfix stop`, then waits until the master process has gone.
    pub fn stop(&mut self) {
        if !self.is_running {
            return;
        }
        self.is_running = false;
        let pid = self.master_pid();
        let mut cmd = Command::new(require("postfix"));
        cmd.arg("-c").arg(&self.config_dir).arg("stop");
        let out = run(&mut cmd, None, STOP_TIMEOUT);
        if !out.is_success() {
            eprintln!("postwerk-tests: postfix stop failed:\n{out}");
        }
        if let Some(pid) = pid {
            let gone = poll_until(STOP_TIMEOUT, || {
                !Path::new(&format!("/proc/{pid}")).exists()
            });
            if !gone {
                eprintln!("postwerk-tests: Postfix master {pid} still running; killing it");
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "===== Postfix maillog ({}) =====\n{}\n===== end of Postfix maillog =====",
                self.maillog.display(),
                self.maillog()
            );
        }
    }
}

/// One `postmap -q KEY socketmap:unix:SOCKET:MAP`, as Postfix asks a
/// socketmap (with an empty private main.cf in `DIR/postmap-etc`): the
/// value, or `None` when postmap found nothing or failed.
pub fn postmap_socketmap(dir: &TestDir, socket: &Path, map: &str, key: &str) -> Option<String> {
    dir.write("postmap-etc/main.cf", "compatibility_level = 3.6\n", 0o644);
    let mut cmd = Command::new(require("postmap"));
    cmd.arg("-c")
        .arg(dir.join("postmap-etc"))
        .args(["-q", key])
        .arg(format!("socketmap:unix:{}:{map}", socket.display()));
    let out = run(&mut cmd, None, Duration::from_secs(30));
    out.is_success().then(|| out.stdout.trim().to_owned())
}

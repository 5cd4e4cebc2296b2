//! "The guide as written": the mail server of the guide, run for real on one
//! database, provisioned with the `postwerk` command, then used as its users
//! would use it. Shared by tests/tests/guide_as_written.rs (one test per
//! database) and the `postwerk-demo` binary, which narrates each step.

use std::time::Duration;

use crate::cli::Postwerk;
use crate::daemon::{Daemon, Ready};
use crate::db::Database;
use crate::dns::Dns;
use crate::dovecot::{self, Dovecot};
use crate::imap::{self, Fetch};
use crate::postfix::{self, Maps, Postfix};
use crate::redis::RedisPrefix;
use crate::smtp::{self, Message, Transcript};
use crate::testdir::TestDir;
use crate::tls::TestCa;

/// The guide's mysystems.tld.
pub const DOMAIN: &str = "example.org";
/// The guide's domain1.tld, whose catch-all goes to [`USER`].
pub const CATCHALL_DOMAIN: &str = "example.net";
/// The guide's user1@mysystems.tld.
pub const USER: &str = "user1@example.org";
/// The guide's alias@mysystems.tld → user1.
pub const ALIAS: &str = "alias@example.org";
/// A send-only account: may submit, has no mailbox.
pub const SENDONLY: &str = "noreply@example.org";
/// An account in the catch-all domain, which the catch-all must not shadow.
pub const CATCHALL_DOMAIN_USER: &str = "info@example.net";
/// A distribution list: [`USER`] and [`CATCHALL_DOMAIN_USER`].
pub const LIST: &str = "list@example.org";
/// An account with a 1 MB quota, for the quota check.
pub const SMALL: &str = "small@example.org";
/// Messages per hour [`USER`] may send in the whole guide (policyd's rate
/// limit, an override for that account).
pub const RATE_LIMIT: u32 = 3;
/// Failed SMTP logins from one address before authd blocks it, in the
/// whole guide.
pub const BRUTEFORCE_IP_FAILURES: u32 = 3;
/// Rspamd's controller port, where the guide's `rspamc learn_spam` pipes
/// (no `-h`) send learning requests; milterd's controller takes it over in
/// the whole guide. Tests that use it hold [`lock_rspamd_controller`] (and
/// nextest also runs them in one test group, .config/nextest.toml).
pub const RSPAMD_CONTROLLER: u16 = 11334;
/// Holds Rspamd's controller port for one test: an exclusive flock(2) on
/// a file in /tmp, so tests that take over 127.0.0.1:11334 wait for each
/// other whether they run as separate processes (nextest, which also
/// serializes them by its test group) or as threads of one (`cargo test`).
#[derive(Debug)]
pub struct ControllerLock(#[allow(dead_code)] nix::fcntl::Flock<std::fs::File>);

/// Waits for and takes Rspamd's controller port (see [`ControllerLock`]).
pub fn lock_rspamd_controller() -> ControllerLock {
    let path = "/tmp/postwerk-tests-rspamd-controller.lock";
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive) {
        Ok(lock) => ControllerLock(lock),
        Err((_, e)) => panic!("flock {path}: {e}"),
    }
}

/// The GTUBE test string of the guide ("Test spam filter").
pub const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";
/// The password of [`USER`].
pub const PASSWORD: &str = "correct horse battery staple";
/// How long a message may take from accepted to visible over IMAP.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Prints the steps of a scenario for a person: on stdout, which the test
/// harness captures and shows only when a test fails, and the demo shows.
#[derive(Debug, Default)]
pub struct Narrator {
    step: std::cell::Cell<u32>,
}

impl Narrator {
    /// A new numbered step.
    pub fn step(&self, text: &str) {
        let n = self.step.get() + 1;
        self.step.set(n);
        println!("\n{n}. {text}");
    }

    /// A command being run, as it would be typed.
    pub fn command(&self, line: &str) {
        println!("   $ {line}");
    }

    /// What came of it.
    pub fn note(&self, text: &str) {
        for line in text.lines() {
            println!("   {line}");
        }
    }
}

/// Which jobs of the guide's stack postwerk daemons take over in a
/// scenario; everything else runs as the guide says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swap {
    /// postwerk-policyd answers Postfix's six lookups (the guide's
    /// sql/*.cf maps) over socketmap.
    pub policyd: bool,
    /// postwerk-lmtpd delivers (Postfix's `virtual_transport`) instead of
    /// Dovecot's LMTP; Dovecot's IMAP reads the same Maildirs.
    pub lmtpd: bool,
    /// postwerk-authd checks Postfix's SMTP AUTH (`smtpd_sasl_path`) and
    /// answers Dovecot's passdb/userdb (`driver = dict`) for IMAP logins.
    pub authd: bool,
    /// postwerk-milterd is Postfix's milter (`smtpd_milters`, the guide's
    /// Rspamd) and DKIM-signs outgoing mail.
    pub milterd: bool,
}

impl Swap {
    /// Every daemon swapped in: the whole guide, with what the guide's
    /// Rspamd does (spam scoring, Bayes in Redis learning from IMAP moves)
    /// and what postwerk adds (rate limit, quota check at RCPT, brute-force
    /// protection) switched on.
    pub fn whole(self) -> bool {
        self == Swap::ALL
    }

    /// The guide as written.
    pub const GUIDE: Swap = Swap {
        policyd: false,
        lmtpd: false,
        authd: false,
        milterd: false,
    };
    /// Every postwerk daemon that exists so far.
    pub const ALL: Swap = Swap {
        policyd: true,
        lmtpd: true,
        authd: true,
        milterd: true,
    };
}

/// Starts postwerk-lmtpd on `db`, delivering into Dovecot's `vmail_dir`
/// tree as the guide's Dovecot would; its LMTP socket is `DIR/lmtpd.sock`.
pub fn start_lmtpd(dir: &TestDir, db: &dyn Database, vmail_dir: &std::path::Path) -> Daemon {
    let socket = lmtpd_socket(dir);
    let v = vmail_dir.display();
    let config = format!(
        "[database]\nurl = \"{}\"\n\n[lmtpd]\nlisten = [\"unix:{}\"]\nsocket_mode = \"0666\"\n\
         hostname = \"mail.example.org\"\nmail_home = \"{v}/mailboxes/%d/%n\"\n\
         sieve_before = [\"{v}/sieve/global/spam-global.sieve\"]\nsieve_script = \"{v}/sieve/%d/%n/active-script.sieve\"\n",
        db.reader_url(),
        socket.display()
    );
    Daemon::start(dir, "postwerk-lmtpd", &config, &[Ready::Unix(socket)])
}

/// Starts postwerk-authd on `db`: the auth-client socket for Postfix at
/// `DIR/authd-auth.sock` and the dict socket for Dovecot at
/// `DIR/authd-dict.sock`; homes under `vmail_dir` as the guide's Dovecot.
pub fn start_authd(
    dir: &TestDir,
    db: &dyn Database,
    vmail_dir: &std::path::Path,
) -> (Daemon, std::path::PathBuf, std::path::PathBuf) {
    start_authd_with(dir, db, vmail_dir, "")
}

/// Like [`start_authd`], with `extra` TOML lines for `[authd]`.
pub fn start_authd_with(
    dir: &TestDir,
    db: &dyn Database,
    vmail_dir: &std::path::Path,
    extra: &str,
) -> (Daemon, std::path::PathBuf, std::path::PathBuf) {
    let (auth, dict) = (dir.join("authd-auth.sock"), dir.join("authd-dict.sock"));
    let config = format!(
        "[database]\nurl = \"{}\"\n\n[authd]\nauth_listen = [\"unix:{}\"]\ndict_listen = [\"unix:{}\"]\nsocket_mode = \"0666\"\n\
         home = \"{}/mailboxes/%d/%n\"\n{extra}",
        db.reader_url(),
        auth.display(),
        dict.display(),
        vmail_dir.display()
    );
    let d = Daemon::start(
        dir,
        "postwerk-authd",
        &config,
        &[Ready::Unix(auth.clone()), Ready::Unix(dict.clone())],
    );
    (d, auth, dict)
}

/// The DKIM selector of the scenario's key.
pub const DKIM_SELECTOR: &str = "demo2026";

/// postwerk.toml for `postwerk dkim` and postwerk-milterd: keys in
/// `DIR/dkim/$domain.$selector.key`, milter on `port`.
pub fn milterd_config(dir: &TestDir, db: &dyn Database, port: u16) -> String {
    milterd_config_with(dir, db, port, None)
}

/// Like [`milterd_config`]; with `spam` (the test DNS server and a Redis
/// prefix), milterd does the guide's Rspamd's job too: verification with
/// that DNS, spam scoring with Bayes in Redis, and the controller on
/// Rspamd's port for the guide's `rspamc` learning pipes.
pub fn milterd_config_with(
    dir: &TestDir,
    db: &dyn Database,
    port: u16,
    spam: Option<(&Dns, &RedisPrefix)>,
) -> String {
    let mut config = format!(
        "[database]\nurl = \"{}\"\n\n[milterd]\nlisten = [\"inet:127.0.0.1:{port}\"]\n",
        db.reader_url()
    );
    if let Some((dns, _)) = spam {
        config.push_str(&format!(
            "dns_servers = [\"{}\"]\ndns_timeout = \"2s\"\n",
            dns.addr
        ));
    }
    config.push_str(&format!(
        "\n[milterd.dkim]\nselector = [\"{DKIM_SELECTOR}\"]\npath = \"{}/$domain.$selector.key\"\n",
        dir.join("dkim").display()
    ));
    if let Some((_, redis)) = spam {
        config.push_str(&format!(
            "\n[milterd.spam]\nredis_url = \"redis://127.0.0.1:6379\"\nredis_prefix = \"{}\"\n\n\
             [milterd.spam.controller]\nlisten = [\"inet:127.0.0.1:{RSPAMD_CONTROLLER}\"]\n",
            redis.key("milterd:")
        ));
    }
    config
}

/// Where [`start_lmtpd`] listens.
pub fn lmtpd_socket(dir: &TestDir) -> std::path::PathBuf {
    dir.join("lmtpd.sock")
}

/// Starts postwerk-policyd on `db` with its socketmap at `DIR/policyd.sock`
/// plus `extra` TOML for `[policyd]`; returns the daemon and the socket.
pub fn start_policyd(
    dir: &TestDir,
    db: &dyn Database,
    extra: &str,
) -> (Daemon, std::path::PathBuf) {
    let socket = dir.join("policyd.sock");
    let config = format!(
        "[database]\nurl = \"{}\"\n\n[policyd]\nsocketmap_listen = [\"unix:{}\"]\nsocket_mode = \"0666\"\n{extra}",
        db.reader_url(),
        socket.display()
    );
    let d = Daemon::start(
        dir,
        "postwerk-policyd",
        &config,
        &[Ready::Unix(socket.clone())],
    );
    (d, socket)
}

/// The running mail server of one scenario. Fields drop in order: Postfix
/// first (it stops accepting), then Dovecot, then the postwerk daemons.
#[derive(Debug)]
pub struct Stack {
    /// The private Postfix.
    pub postfix: Postfix,
    /// The private Dovecot.
    pub dovecot: Dovecot,
    /// The test CA the clients trust.
    pub tls: TestCa,
    /// An IMAP client for the Dovecot.
    pub imap: imap::Client,
    /// postwerk-policyd, when it answers the lookups.
    pub policyd: Option<Daemon>,
    /// postwerk-lmtpd, when it delivers.
    pub lmtpd: Option<Daemon>,
    /// postwerk-authd, when it authenticates.
    pub authd: Option<Daemon>,
    /// postwerk-milterd, when it is the milter.
    pub milterd: Option<Daemon>,
    /// The test DNS server milterd asks, in the whole guide.
    pub dns: Option<Dns>,
    /// The Redis keys of milterd's Bayes and policyd's rate limit, in the
    /// whole guide (removed when the stack is dropped).
    pub redis: Option<RedisPrefix>,
    /// Rspamd's controller port, held until everything above has stopped.
    pub controller: Option<ControllerLock>,
}

impl Stack {
    /// Starts Postfix (with the guide's SQL maps on `db`) and Dovecot (with
    /// the guide's SQL passdb/userdb on `db`), wired as in the guide.
    pub fn start(dir: &TestDir, db: &dyn Database) -> Stack {
        Stack::start_with(dir, db, Swap::GUIDE)
    }

    /// Like [`Stack::start`], with the jobs in `swap` done by postwerk.
    pub fn start_with(dir: &TestDir, db: &dyn Database, swap: Swap) -> Stack {
        Stack::start_with_main_cf(dir, db, swap, &[])
    }

    /// Like [`Stack::start_with`], with `extra_main_cf` lines
    /// (`name = value`) added to Postfix's main.cf.
    pub fn start_with_main_cf(
        dir: &TestDir,
        db: &dyn Database,
        swap: Swap,
        extra_main_cf: &[&str],
    ) -> Stack {
        let whole = swap.whole();
        let controller = whole.then(lock_rspamd_controller);
        let dns = whole.then(Dns::start);
        let redis = whole.then(RedisPrefix::fresh);
        let vmail = dir.join("vmail"); // the tree Dovecot::start makes
        let mut restrictions = None;
        let (maps, policyd) = if swap.policyd {
            // In the whole guide policyd is also Postfix's policy service:
            // a sending rate limit for USER (counters in Redis) and the
            // quota check at RCPT, which reads the Maildirs lmtpd writes.
            let policy_socket = dir.join("policyd-policy.sock");
            let extra = match &redis {
                Some(redis) => format!(
                    "policy_listen = [\"unix:{}\"]\n\n[policyd.ratelimit]\nredis_url = \"redis://127.0.0.1:6379\"\n\
                     redis_prefix = \"{}\"\n\n[[policyd.ratelimit.override]]\nmatch = \"{USER}\"\nmessages_per_hour = {RATE_LIMIT}\n\n\
                     [lmtpd]\nmail_home = \"{}/mailboxes/%d/%n\"\n",
                    policy_socket.display(),
                    redis.key("ratelimit:"),
                    vmail.display()
                ),
                None => String::new(),
            };
            let (d, socket) = start_policyd(dir, db, &extra);
            if whole {
                // As contrib/postfix/main.cf.policyd: the policy service
                // first, then the guide's recipient-access map.
                restrictions = Some(format!(
                    "smtpd_recipient_restrictions = check_policy_service unix:{}, check_recipient_access socketmap:unix:{}:recipient_access",
                    policy_socket.display(),
                    socket.display()
                ));
            }
            (
                Maps::socketmap(&format!("unix:{}", socket.display())),
                Some(d),
            )
        } else {
            (Maps::sql(dir, db), None)
        };
        let mut config = postfix::Config::guide(maps);
        config.extra_main_cf.extend(restrictions);
        config
            .extra_main_cf
            .extend(extra_main_cf.iter().map(|l| (*l).to_owned()));
        if swap.lmtpd {
            config.virtual_transport = format!("lmtp:unix:{}", lmtpd_socket(dir).display());
        }
        let (authd, auth_dict) = if swap.authd {
            // In the whole guide a few failed logins from one address block
            // it (the account budget stays high so only the address is).
            let extra = if whole {
                format!(
                    "bruteforce_ip_failures = {BRUTEFORCE_IP_FAILURES}\nbruteforce_account_failures = 1000\nbruteforce_backoff = \"120s\"\n"
                )
            } else {
                String::new()
            };
            let (d, auth, dict) = start_authd_with(dir, db, &vmail, &extra);
            config.sasl_path = auth.display().to_string();
            (Some(d), Some(dict))
        } else {
            (None, None)
        };
        let milterd = swap.milterd.then(|| {
            let port = crate::net::free_port();
            config.milters = Some(format!("inet:127.0.0.1:{port}"));
            let spam = dns.as_ref().zip(redis.as_ref());
            let mut ready = vec![Ready::Tcp(port)];
            if spam.is_some() {
                ready.push(Ready::Tcp(RSPAMD_CONTROLLER));
            }
            Daemon::start(
                dir,
                "postwerk-milterd",
                &milterd_config_with(dir, db, port, spam),
                &ready,
            )
        });
        let mut stack = Stack::start_full(dir, db, config, auth_dict, policyd);
        stack.authd = authd;
        stack.milterd = milterd;
        stack.dns = dns;
        stack.redis = redis;
        stack.controller = controller;
        if swap.lmtpd {
            stack.lmtpd = Some(start_lmtpd(dir, db, stack.dovecot.vmail_dir()));
        }
        stack
    }

    /// Starts Postfix with `config` and Dovecot on `db`; `policyd` (already
    /// running) is kept with the stack.
    pub fn start_with_config(
        dir: &TestDir,
        db: &dyn Database,
        config: postfix::Config,
        policyd: Option<Daemon>,
    ) -> Stack {
        Stack::start_full(dir, db, config, None, policyd)
    }

    /// Starts Postfix with `config` and Dovecot on `db`, its passdb/userdb
    /// through authd's dict socket when `auth_dict` is set.
    pub fn start_full(
        dir: &TestDir,
        db: &dyn Database,
        config: postfix::Config,
        auth_dict: Option<std::path::PathBuf>,
        policyd: Option<Daemon>,
    ) -> Stack {
        let tls = TestCa::new(dir);
        let postfix = Postfix::start(dir, &tls, &config);
        let mut dovecot_config = dovecot::Config::guide(&postfix.private_dir());
        dovecot_config.auth_dict = auth_dict;
        let dovecot = Dovecot::start(dir, &tls, db, &dovecot_config);
        let imap = imap::Client::new(dir, dovecot.imap_port, tls.ca_file.clone());
        Stack {
            postfix,
            dovecot,
            tls,
            imap,
            policyd,
            lmtpd: None,
            authd: None,
            milterd: None,
            dns: None,
            redis: None,
            controller: None,
        }
    }

    /// A mail client on the submission port (587), logged in as `user`.
    pub fn submission(&self, user: &str, password: &str) -> smtp::Client {
        smtp::Client::submission(
            self.postfix.submission_port,
            self.tls.ca_file.clone(),
            user,
            password,
        )
    }

    /// Another mail server on the smtp port (25).
    pub fn inbound(&self) -> smtp::Client {
        smtp::Client::plain(self.postfix.smtp_port)
    }

    /// Reads `msg` back as `user` from `mailbox`, waiting for delivery, and
    /// checks it is that message. Returns the stored text and the quota lines.
    #[track_caller]
    pub fn read_back(
        &self,
        user: &str,
        password: &str,
        mailbox: &str,
        msg: &Message,
    ) -> (String, Vec<String>) {
        match self
            .imap
            .fetch(user, password, mailbox, &msg.message_id, DELIVERY_TIMEOUT)
        {
            Fetch::Found { message, quota, .. } => {
                assert!(
                    message.contains(&format!("Subject: {}", msg.subject)),
                    "{} in {mailbox} of {user} has not the subject {:?}:\n{message}",
                    msg.message_id,
                    msg.subject
                );
                assert!(
                    message.contains(&msg.token),
                    "{} lost its body:\n{message}",
                    msg.message_id
                );
                (message, quota)
            }
            Fetch::NotFound(counts) => panic!(
                "{} did not arrive in {mailbox} of {user} within {DELIVERY_TIMEOUT:?} (messages per mailbox: {counts})\n\
                 queue: {}",
                msg.message_id,
                self.postfix.queue_listing()
            ),
            Fetch::LoginFailed(text) => panic!("IMAP LOGIN as {user} was refused: {text}"),
        }
    }
}

#[track_caller]
fn assert_accepted(t: &Transcript, what: &str) {
    assert!(
        t.is_accepted(),
        "{what}: the message was not accepted:\n{t}"
    );
}

#[track_caller]
fn assert_reply(t: &Transcript, code: &str, what: &str) {
    assert!(
        !t.replies(code).is_empty(),
        "{what}: expected a {code} reply:\n{t}"
    );
}

/// Runs the whole scenario on `db` (fresh, empty) in `dir`, narrating to
/// `say`. Panics, with the transcripts and the peers' logs, at the first
/// thing that does not behave as the guide says.
pub fn as_written(dir: &TestDir, db: &dyn Database, say: &Narrator) {
    scenario(dir, db, say, Swap::GUIDE);
}

/// The guide's scenario with the jobs in `swap` done by postwerk daemons.
pub fn scenario(dir: &TestDir, db: &dyn Database, say: &Narrator, swap: Swap) {
    let pw = Postwerk::new(&db.url());
    let admin = |args: &[&str], stdin: Option<&str>| {
        say.command(&pw.command_line(args));
        let out = pw.run(args, stdin);
        if !out.trim().is_empty() {
            say.note(out.trim_end());
        }
    };
    let password_line = format!("{PASSWORD}\n");

    say.step("creating the database with `postwerk db init`");
    admin(&["db", "init"], None);
    db.grant_readers();

    say.step("adding domains, accounts, an alias and a catch-all with `postwerk`");
    admin(&["domain", "add", DOMAIN], None);
    admin(&["domain", "add", CATCHALL_DOMAIN], None);
    say.note(&format!("(every password is {PASSWORD:?}, given on stdin)"));
    admin(
        &["account", "add", USER, "--quota", "2G", "--password-stdin"],
        Some(&password_line),
    );
    admin(
        &["account", "add", SENDONLY, "--sendonly", "--password-stdin"],
        Some(&password_line),
    );
    admin(
        &["account", "add", CATCHALL_DOMAIN_USER, "--password-stdin"],
        Some(&password_line),
    );
    admin(&["alias", "add", ALIAS, USER], None);
    admin(
        &["alias", "add", &format!("@{CATCHALL_DOMAIN}"), USER],
        None,
    );
    if swap.whole() {
        say.step("adding a distribution list and an account with a small quota");
        admin(&["alias", "add", LIST, USER, CATCHALL_DOMAIN_USER], None);
        admin(
            &["account", "add", SMALL, "--quota", "1M", "--password-stdin"],
            Some(&password_line),
        );
    }

    let mut dkim_records = None;
    if swap.milterd {
        say.step(
            "making a DKIM key for example.org with `postwerk dkim keygen` (milterd signs with it)",
        );
        let config = dir.write("postwerk.toml", milterd_config(dir, db, 0), 0o644);
        dir.mkdir("dkim", 0o750);
        let pwc = Postwerk::new(&db.url()).with_config(config);
        let args = [
            "dkim",
            "keygen",
            "--domain",
            DOMAIN,
            "--selector",
            DKIM_SELECTOR,
        ];
        say.command(&pwc.command_line(&args));
        let out = pwc.run(&args, None);
        say.note(out.trim_end());
        dkim_records = Some(crate::dkim::published_records(&pwc, DOMAIN));
    }
    if swap == Swap::GUIDE {
        say.step("starting a private Dovecot and Postfix, configured as the guide says");
    } else {
        say.step("starting postwerk daemons and a private Dovecot and Postfix, configured as the guide says, except:");
        if swap.policyd {
            say.note("postwerk-policyd answers Postfix's six lookups over socketmap instead of the guide's sql/*.cf maps:");
            say.note("  main.cf: virtual_alias_maps = socketmap:unix:…/policyd.sock:aliases (and domains, mailboxes, recipient_access, sender_login, tls_policy)");
        }
        if swap.lmtpd {
            say.note("postwerk-lmtpd delivers into the Maildirs (quota, the guide's global Sieve) instead of Dovecot's LMTP:");
            say.note("  main.cf: virtual_transport = lmtp:unix:…/lmtpd.sock");
        }
        if swap.milterd {
            say.note("postwerk-milterd is Postfix's milter (the guide's Rspamd) and DKIM-signs outgoing mail:");
            say.note("  main.cf: smtpd_milters = inet:127.0.0.1:…, non_smtpd_milters = the same");
        }
        if swap.authd {
            say.note("postwerk-authd checks SMTP AUTH for Postfix and answers Dovecot's passdb/userdb for IMAP logins:");
            say.note("  master.cf: -o smtpd_sasl_path=…/authd-auth.sock; dovecot.conf: passdb/userdb { driver = dict }");
        }
    }
    let stack = Stack::start_with(dir, db, swap);
    say.note(&format!(
        "Postfix: smtp 127.0.0.1:{}, submission 127.0.0.1:{}, smtps 127.0.0.1:{} (config in {})",
        stack.postfix.smtp_port,
        stack.postfix.submission_port,
        stack.postfix.smtps_port,
        stack.postfix.config_dir().display()
    ));
    say.note(&format!(
        "Dovecot: imap 127.0.0.1:{}, managesieve 127.0.0.1:{} (config {})",
        stack.dovecot.imap_port,
        stack.dovecot.sieve_port,
        stack.dovecot.config_file().display()
    ));

    say.step(&format!(
        "sending as a mail client: STARTTLS + AUTH PLAIN as {USER} on the submission port"
    ));
    let submitted =
        Message::new(USER, &[USER], "sent through submission").header("X-Mailer: postwerk-tests");
    let t = stack.submission(USER, PASSWORD).send(&submitted);
    assert_accepted(&t, "submission with the right password");
    say.note(&format!("mail sent: {}", t.queued_as().unwrap_or("250")));

    say.step(&format!(
        "sending as the send-only account {SENDONLY}: implicit TLS + AUTH PLAIN on the smtps port"
    ));
    let from_sendonly = Message::new(SENDONLY, &[USER], "from the send-only account");
    let mut smtps = stack.submission(SENDONLY, PASSWORD);
    smtps.port = stack.postfix.smtps_port;
    smtps.security = smtp::Security::Implicit(stack.tls.ca_file.clone());
    let t = smtps.send(&from_sendonly);
    assert_accepted(&t, "smtps submission by the send-only account");
    say.note(&format!("mail sent: {}", t.queued_as().unwrap_or("250")));

    let inbound = [
        (ALIAS.to_owned(), "to the alias"),
        (format!("anything@{CATCHALL_DOMAIN}"), "to the catch-all"),
        (
            CATCHALL_DOMAIN_USER.to_owned(),
            "to an account in the catch-all domain",
        ),
    ];
    let mut received = Vec::new();
    for (rcpt, subject) in &inbound {
        say.step(&format!(
            "receiving as from another server: plain SMTP on the smtp port to {rcpt}"
        ));
        let msg = Message::new("someone@elsewhere.test", &[rcpt], subject);
        let t = stack.inbound().send(&msg);
        assert_accepted(&t, &format!("inbound mail {subject}"));
        say.note(&format!("mail sent: {}", t.queued_as().unwrap_or("250")));
        received.push(msg);
    }

    let spam = if swap.whole() {
        say.step("receiving spam: milterd scores it over the add-header threshold (X-Spam: Yes), the guide's global Sieve files it into Spam");
        // A From display name that names one of our addresses but a foreign
        // address behind it: a phishing trick milterd's header rules score.
        Message::new("info@phish.test", &[USER], "Verify your mailbox")
            .header(&format!("From: \"it-support@{DOMAIN}\" <info@phish.test>"))
    } else {
        say.step(
            "receiving spam (X-Spam-Flag: YES), which the guide's global Sieve script files into Spam",
        );
        Message::new("spammer@elsewhere.test", &[USER], "buy now").header("X-Spam-Flag: YES")
    };
    let t = stack.inbound().send(&spam);
    assert_accepted(&t, "inbound spam");
    say.note(&format!("mail sent: {}", t.queued_as().unwrap_or("250")));

    let list_mail = swap.whole().then(|| {
        say.step(&format!(
            "receiving as from another server: to the distribution list {LIST} ({USER}, {CATCHALL_DOMAIN_USER})"
        ));
        let msg = Message::new("someone@elsewhere.test", &[LIST], "to the list");
        let t = stack.inbound().send(&msg);
        assert_accepted(&t, "inbound mail to the list");
        say.note(&format!("mail sent: {}", t.queued_as().unwrap_or("250")));
        msg
    });

    say.step("checking what must be refused");
    let t = stack.submission(USER, "wrong password").send(&Message::new(
        USER,
        &[USER],
        "must not be sent",
    ));
    assert!(
        !t.is_accepted(),
        "submission with a wrong password was accepted:\n{t}"
    );
    assert_reply(&t, "535", "submission with a wrong password");
    say.note(&format!(
        "wrong password at submission: {}",
        t.replies("535")[0]
    ));

    let mut no_tls = stack.submission(USER, PASSWORD);
    no_tls.security = smtp::Security::Plain;
    let t = no_tls.send(&Message::new(USER, &[USER], "must not be sent"));
    assert!(
        !t.is_accepted(),
        "submission without TLS was accepted:\n{t}"
    );
    say.note("submission without STARTTLS: refused (smtpd_tls_security_level=encrypt)");

    let unknown = format!("nobody@{DOMAIN}");
    let t = stack.inbound().send(&Message::new(
        "someone@elsewhere.test",
        &[&unknown],
        "must bounce",
    ));
    assert!(!t.is_accepted(), "mail to {unknown} was accepted:\n{t}");
    assert_reply(&t, "550 5.1.1", &format!("mail to {unknown}"));
    say.note(&format!(
        "unknown user of a known domain: {}",
        t.replies("550")[0]
    ));

    // The guide's recipient-access.cf answers REJECT for a send-only account.
    let t = stack.inbound().send(&Message::new(
        "someone@elsewhere.test",
        &[SENDONLY],
        "must bounce",
    ));
    assert!(
        !t.is_accepted(),
        "mail to the send-only {SENDONLY} was accepted:\n{t}"
    );
    assert_reply(
        &t,
        "554 5.7.1",
        &format!("mail to the send-only {SENDONLY}"),
    );
    say.note(&format!(
        "mail to the send-only account: {}",
        t.replies("554")[0]
    ));

    say.step("reading everything back over IMAP (STARTTLS, LOGIN)");
    let (message, quota) = stack.read_back(USER, PASSWORD, "INBOX", &submitted);
    say.note(&format!(
        "{USER} INBOX: Subject: {} ({})",
        submitted.subject, submitted.message_id
    ));
    assert!(
        !message.contains("X-Mailer: postwerk-tests"),
        "the guide's submission_header_cleanup did not remove X-Mailer:\n{message}"
    );
    if swap.milterd {
        let sig = message
            .lines()
            .find(|l| l.starts_with("DKIM-Signature:"))
            .unwrap_or_else(|| panic!("submitted mail was not DKIM-signed by milterd:\n{message}"));
        assert!(
            message.contains(&format!("d={DOMAIN};"))
                && message.contains(&format!("s={DKIM_SELECTOR};")),
            "unexpected signature:\n{message}"
        );
        say.note(&format!(
            "{USER} INBOX: signed by milterd: {}",
            sig.chars().take(72).collect::<String>()
        ));
        if let Some(records) = &dkim_records {
            let lines = crate::dkim::dkimpy_verify(dir, &message, records);
            assert!(
                !lines.is_empty() && lines.iter().all(|l| l.ends_with(" pass")),
                "dkimpy does not verify milterd's signature with the published record: {lines:?}\n{message}"
            );
            say.note(&format!(
                "dkimpy (python3-dkim) verifies it against the record `postwerk dkim show` prints: {}",
                lines.join("; ")
            ));
        }
    }
    // quota = 2048 (MB) in the accounts row → Dovecot's quota_rule
    // *:storage=2048M → IMAP reports the limit in KiB (RFC 2087).
    assert!(
        quota
            .iter()
            .any(|q| q.contains("STORAGE") && q.contains(" 2097152)")),
        "the 2G quota did not reach IMAP: {quota:?}"
    );
    say.note(&format!(
        "{USER} quota: {}",
        quota.last().map_or("", String::as_str)
    ));
    for msg in [&from_sendonly, &received[0], &received[1]] {
        stack.read_back(USER, PASSWORD, "INBOX", msg);
        say.note(&format!(
            "{USER} INBOX: Subject: {} ({})",
            msg.subject, msg.message_id
        ));
    }
    let (stored_spam, _) = stack.read_back(USER, PASSWORD, "Spam", &spam);
    say.note(&format!(
        "{USER} Spam: Subject: {} ({})",
        spam.subject, spam.message_id
    ));
    if swap.whole() {
        let status = smtp::header_values(&stored_spam, "X-Spam-Status")
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("milterd added no X-Spam-Status:\n{stored_spam}"));
        assert!(
            smtp::header_values(&stored_spam, "X-Spam") == ["Yes"],
            "milterd did not mark the spam X-Spam: Yes:\n{stored_spam}"
        );
        say.note(&format!("  X-Spam: Yes, X-Spam-Status: {status}"));
    }
    if let Some(msg) = &list_mail {
        for user in [USER, CATCHALL_DOMAIN_USER] {
            stack.read_back(user, PASSWORD, "INBOX", msg);
            say.note(&format!(
                "{user} INBOX: Subject: {} ({}), through the list",
                msg.subject, msg.message_id
            ));
        }
    }
    // The catch-all must not shadow an existing account (the guide's
    // aliases.cf: AND NOT EXISTS (SELECT id FROM accounts ...)).
    stack.read_back(CATCHALL_DOMAIN_USER, PASSWORD, "INBOX", &received[2]);
    say.note(&format!(
        "{CATCHALL_DOMAIN_USER} INBOX: Subject: {} ({})",
        received[2].subject, received[2].message_id
    ));

    let caps = stack
        .imap
        .login(USER, PASSWORD)
        .unwrap_or_else(|e| panic!("IMAP LOGIN failed: {e}"));
    assert!(
        caps.iter().any(|c| c == "LOGINDISABLED"),
        "Dovecot offered LOGIN before STARTTLS (the guide has ssl = required): {caps:?}"
    );
    say.note("before STARTTLS the server announces LOGINDISABLED (ssl = required)");

    if swap.whole() {
        whole_guide(&stack, say, &spam);
    }

    // Last: after a failed login Dovecot delays every further login from the
    // same address (auth penalty), which would only slow the reads above.
    match stack.imap.login(USER, "wrong password") {
        Ok(_) => panic!("IMAP LOGIN with a wrong password succeeded"),
        Err(text) => say.note(&format!("wrong password at IMAP: refused, {text}")),
    }
}

/// `learned: N` of statfile `symbol` in `rspamc stat` (to localhost, as the
/// guide's Sieve pipes call it); `None` when rspamc got no answer.
pub fn rspamc_learned(symbol: &str) -> Option<u64> {
    let mut cmd = std::process::Command::new(crate::exec::require("rspamc"));
    cmd.arg("stat");
    let out = crate::exec::run(&mut cmd, None, Duration::from_secs(30));
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with(&format!("Statfile: {symbol} ")))?
        .to_owned();
    line.split("learned: ")
        .nth(1)?
        .split(';')
        .next()?
        .trim()
        .parse()
        .ok()
}

/// What the whole guide adds to the scenario: Bayes learning from an IMAP
/// move, GTUBE, the quota, the rate limit and brute-force protection.
fn whole_guide(stack: &Stack, say: &Narrator, spam: &Message) {
    say.step("the user moves the spam back to INBOX: the guide's imapsieve learn-ham.sieve pipes it into `rspamc learn_ham`, which milterd's controller answers");
    let ham_before = rspamc_learned("BAYES_HAM")
        .unwrap_or_else(|| panic!("`rspamc stat` got no answer from milterd's controller"));
    stack
        .imap
        .move_message(USER, PASSWORD, "Spam", &spam.message_id, "INBOX");
    let learned = crate::exec::poll_until(Duration::from_secs(30), || {
        rspamc_learned("BAYES_HAM").is_some_and(|n| n > ham_before)
    });
    assert!(
        learned,
        "moving the spam out of Spam did not train Bayes as ham (BAYES_HAM learned: {:?} before {ham_before})\n{}",
        rspamc_learned("BAYES_HAM"),
        stack.milterd.as_ref().map(Daemon::log).unwrap_or_default()
    );
    stack.read_back(USER, PASSWORD, "INBOX", spam);
    say.command("rspamc stat");
    say.note(&format!(
        "Statfile: BAYES_HAM learned: {} (was {ham_before}); the message is in INBOX again",
        rspamc_learned("BAYES_HAM").unwrap_or_default()
    ));

    say.step("what milterd and policyd refuse");
    let mut gtube = Message::new("someone@elsewhere.test", &[USER], "test spam");
    gtube.body = format!("{GTUBE}\n");
    let t = stack.inbound().send(&gtube);
    assert!(!t.is_accepted(), "GTUBE was accepted:\n{t}");
    assert_reply(&t, "554", "GTUBE");
    say.note(&format!("GTUBE: {}", t.replies("554")[0]));

    // 1 MB of quota: 700 KB fit, another 700 KB do not; refused at RCPT by
    // policyd from the SIZE the client announces, before any data is sent.
    let big = |subject: &str| {
        let mut m = Message::new("someone@elsewhere.test", &[SMALL], subject);
        let line = "x".repeat(75);
        for _ in 0..700_000 / 76 {
            m.body.push_str(&line);
            m.body.push('\n');
        }
        m
    };
    let first = big("fits");
    let (accepted, text) = smtp::send_smtplib(stack.postfix.smtp_port, &first);
    assert!(
        accepted,
        "700 KB to {SMALL} (1 MB quota, empty) were refused:\n{text}"
    );
    stack.read_back(SMALL, PASSWORD, "INBOX", &first);
    let (accepted, text) = smtp::send_smtplib(stack.postfix.smtp_port, &big("does not fit"));
    assert!(
        !accepted && text.contains("552") && text.contains("5.2.2"),
        "another 700 KB to {SMALL} were not refused with 552 5.2.2:\n{text}"
    );
    say.note(&format!(
        "quota: 700 KB to {SMALL} (1 MB) delivered, 700 KB more refused at RCPT: {}",
        text.trim()
    ));

    // USER has sent one message this hour (the first step).
    let mut sent = 1;
    let refused = loop {
        let t = stack.submission(USER, PASSWORD).send(&Message::new(
            USER,
            &[USER],
            &format!("message {}", sent + 1),
        ));
        if !t.is_accepted() {
            break t;
        }
        sent += 1;
        assert!(
            sent <= RATE_LIMIT,
            "{USER} sent {sent} messages, over the rate limit of {RATE_LIMIT} an hour"
        );
    };
    assert_eq!(
        sent, RATE_LIMIT,
        "the rate limit refused too early:\n{refused}"
    );
    assert_reply(&refused, "450 4.7.1", "over the rate limit");
    say.note(&format!(
        "rate limit: {USER} sent {sent} messages this hour, the next is deferred: {}",
        refused.replies("450")[0]
    ));
    let t = stack
        .submission(CATCHALL_DOMAIN_USER, PASSWORD)
        .send(&Message::new(CATCHALL_DOMAIN_USER, &[USER], "not limited"));
    assert_accepted(&t, "another account's submission during USER's rate limit");
    say.note(&format!("{CATCHALL_DOMAIN_USER} is not limited: sent"));

    // Brute force from 127.0.0.3 against SMALL: after the budget even the
    // right password is refused from there, without a password check;
    // from 127.0.0.1 it works.
    let from = |password: &str, source: &str| {
        let mut c = stack.submission(SMALL, password);
        c.source = Some(source.to_owned());
        c.send(&Message::new(SMALL, &[USER], "brute force"))
    };
    for i in 0..BRUTEFORCE_IP_FAILURES {
        let t = from("guess", "127.0.0.3");
        assert!(!t.is_accepted(), "wrong password {i} accepted:\n{t}");
    }
    let t = from(PASSWORD, "127.0.0.3");
    assert!(
        !t.is_accepted(),
        "the right password was accepted from 127.0.0.3 after {BRUTEFORCE_IP_FAILURES} failures:\n{t}"
    );
    let log = stack.authd.as_ref().map(Daemon::log).unwrap_or_default();
    assert!(
        log.contains("Blocked"),
        "authd did not log the blocked attempt:\n{log}"
    );
    say.note(&format!(
        "brute force: after {BRUTEFORCE_IP_FAILURES} wrong passwords from 127.0.0.3 even the right one is refused from there"
    ));
    let t = from(PASSWORD, "127.0.0.1");
    assert_accepted(&t, "the right password from another address");
    say.note("from 127.0.0.1 the same login works");
}

//! "The guide as written": the mail server of the guide, run for real on one
//! database, provisioned with the `postwerk` command, then used as its users
//! would use it. Shared by tests/tests/guide_as_written.rs (one test per
//! database) and the `postwerk-demo` binary, which narrates each step.

use std::time::Duration;

use crate::cli::Postwerk;
use crate::daemon::{Daemon, Ready};
use crate::db::Database;
use crate::dovecot::{self, Dovecot};
use crate::imap::{self, Fetch};
use crate::postfix::{self, Maps, Postfix};
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
    let (auth, dict) = (dir.join("authd-auth.sock"), dir.join("authd-dict.sock"));
    let config = format!(
        "[database]\nurl = \"{}\"\n\n[authd]\nauth_listen = [\"unix:{}\"]\ndict_listen = [\"unix:{}\"]\nsocket_mode = \"0666\"\n\
         home = \"{}/mailboxes/%d/%n\"\n",
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
    format!(
        "[database]\nurl = \"{}\"\n\n[milterd]\nlisten = [\"inet:127.0.0.1:{port}\"]\n\n[milterd.dkim]\nselector = [\"{DKIM_SELECTOR}\"]\npath = \"{}/$domain.$selector.key\"\n",
        db.reader_url(),
        dir.join("dkim").display()
    )
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
        let (maps, policyd) = if swap.policyd {
            let (d, socket) = start_policyd(dir, db, "");
            (
                Maps::socketmap(&format!("unix:{}", socket.display())),
                Some(d),
            )
        } else {
            (Maps::sql(dir, db), None)
        };
        let mut config = postfix::Config::guide(maps);
        config
            .extra_main_cf
            .extend(extra_main_cf.iter().map(|l| (*l).to_owned()));
        if swap.lmtpd {
            config.virtual_transport = format!("lmtp:unix:{}", lmtpd_socket(dir).display());
        }
        let (authd, auth_dict) = if swap.authd {
            // The same tree Dovecot::start makes (DIR/vmail).
            let (d, auth, dict) = start_authd(dir, db, &dir.join("vmail"));
            config.sasl_path = auth.display().to_string();
            (Some(d), Some(dict))
        } else {
            (None, None)
        };
        let milterd = swap.milterd.then(|| {
            let port = crate::net::free_port();
            config.milters = Some(format!("inet:127.0.0.1:{port}"));
            Daemon::start(
                dir,
                "postwerk-milterd",
                &milterd_config(dir, db, port),
                &[Ready::Tcp(port)],
            )
        });
        let mut stack = Stack::start_full(dir, db, config, auth_dict, policyd);
        stack.authd = authd;
        stack.milterd = milterd;
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

    say.step(
        "receiving spam (X-Spam-Flag: YES), which the guide's global Sieve script files into Spam",
    );
    let spam =
        Message::new("spammer@elsewhere.test", &[USER], "buy now").header("X-Spam-Flag: YES");
    let t = stack.inbound().send(&spam);
    assert_accepted(&t, "inbound spam");
    say.note(&format!("mail sent: {}", t.queued_as().unwrap_or("250")));

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
    stack.read_back(USER, PASSWORD, "Spam", &spam);
    say.note(&format!(
        "{USER} Spam: Subject: {} ({})",
        spam.subject, spam.message_id
    ));
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

    // Last: after a failed login Dovecot delays every further login from the
    // same address (auth penalty), which would only slow the reads above.
    match stack.imap.login(USER, "wrong password") {
        Ok(_) => panic!("IMAP LOGIN with a wrong password succeeded"),
        Err(text) => say.note(&format!("wrong password at IMAP: refused, {text}")),
    }
}

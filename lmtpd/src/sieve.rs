//! LOGIC: Sieve filtering with sieve-rs, the Pigeonhole way: the global
//! `sieve_before` scripts, the user's active script, then `sieve_after`.
//! Execution stops after the first script that cancels the implicit keep
//! (Pigeonhole's "script execution ends when the currently executing script
//! does not yield an implicit keep"). Compiled scripts are cached by path
//! and recompiled when the file's mtime or size changes. A script that
//! fails to compile or run is logged and skipped, so mail is kept, never
//! lost. CPU-bound and reads files: call from `spawn_blocking`. No
//! protocol, no Maildir writes and no database here; the caller executes
//! the returned [`Action`]s.

use sieve::{Compiler, Envelope, Event, Input, Recipient, Runtime, Sieve};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tracing::{debug, warn};

/// What the scripts decided for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Store into `folder` (`INBOX` for keep) with these IMAP flags.
    Store {
        /// The folder (`INBOX`, `Spam`, `Archive/2024`).
        folder: String,
        /// IMAP flag names (`\Seen`, `$Junk`).
        flags: Vec<String>,
        /// `fileinto :create` (RFC 5490) or an implicit target that must
        /// exist anyway.
        create: bool,
        /// A message changed by `editheader`, else the original.
        message: Option<Arc<Vec<u8>>>,
    },
    /// `reject` / `ereject`: refuse delivery for this recipient.
    Reject(String),
    /// `redirect` (message is the original unless changed) or a `vacation`
    /// reply (sent from `<>`).
    Send {
        /// Envelope recipient.
        to: String,
        /// The message to send; `None` is the original.
        message: Option<Arc<Vec<u8>>>,
        /// `vacation` and other generated messages go out with `MAIL
        /// FROM:<>`; a redirect keeps the original sender.
        is_auto_reply: bool,
    },
}

/// The envelope and environment one run needs.
#[derive(Debug, Clone)]
pub struct RunEnv {
    /// MAIL FROM (empty for bounces).
    pub from: String,
    /// RCPT TO as received (with `+detail`, for `envelope :detail`).
    pub to: String,
    /// The account address (vacation's "my address").
    pub user: String,
}

/// Per-user state a run consults: existing folders and the duplicate /
/// vacation memory.
pub trait Mailboxes {
    /// Whether a folder exists (`mailboxexists`).
    fn exists(&self, folder: &str) -> bool;
    /// Whether `id` was seen within `expiry` seconds; records it if not
    /// (`duplicate`, vacation's once-per-days).
    fn seen_before(&self, id: &str, expiry: u64) -> bool;
}

/// Why a script was not usable.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// Which file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The script does not compile.
    #[error("{path}: line {line}: {message}")]
    Compile {
        /// Which file.
        path: PathBuf,
        /// Line number.
        line: usize,
        /// The compiler's message.
        message: String,
    },
}

/// Limits for one run.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most instructions per script.
    pub max_instructions: usize,
    /// Most redirects per message.
    pub max_redirects: usize,
}

/// What identifies one version of a script file: mtime, size and inode.
/// The inode matters for the user's script: ManageSieve's PUTSCRIPT
/// writes a new file and renames it over the old one, SETACTIVE points
/// the `active-script.sieve` symlink at another file; either can keep
/// mtime and size.
type Stamp = (SystemTime, u64, u64);

/// A compiled script with the [`Stamp`] of the file it came from.
type Cached = (Stamp, Arc<Sieve>);

/// Compiler, runtime and the compiled-script cache.
pub struct Engine {
    compiler: Compiler,
    runtime: Runtime,
    cache: Mutex<HashMap<PathBuf, Cached>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine with our limits and host name (used in vacation's
    /// Message-ID).
    pub fn new(hostname: &str, limits: Limits) -> Self {
        let runtime = Runtime::new()
            .with_cpu_limit(limits.max_instructions)
            .with_max_redirects(limits.max_redirects)
            .with_local_hostname(hostname.to_owned());
        Engine {
            compiler: Compiler::new(),
            runtime,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The compiled script at `path`: `Ok(None)` if there is no such file
    /// (no user script is the normal case), from the cache if the file is
    /// unchanged.
    pub fn load(&self, path: &Path) -> Result<Option<Arc<Sieve>>, ScriptError> {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(ScriptError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let stamp: Stamp = (
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            meta.len(),
            std::os::unix::fs::MetadataExt::ino(&meta),
        );
        {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((cached, s)) = cache.get(path)
                && *cached == stamp
            {
                return Ok(Some(s.clone()));
            }
        }
        let text = std::fs::read(path).map_err(|source| ScriptError::Read {
            path: path.to_owned(),
            source,
        })?;
        let script = Arc::new(
            self.compiler
                .compile(&text)
                .map_err(|e| ScriptError::Compile {
                    path: path.to_owned(),
                    line: e.line_num(),
                    message: format!("{:?}", e.error_type()),
                })?,
        );
        debug!(script = %path.display(), "sieve script compiled");
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.insert(path.to_owned(), (stamp, script.clone()));
        Ok(Some(script))
    }

    /// Runs `scripts` in order over `raw` (the message as stored, LF line
    /// ends). A script that fails at run time is logged and treated as if
    /// it had kept the message. Returns the actions to execute; an empty
    /// result never happens (at worst it is a keep into INBOX).
    pub fn run(
        &self,
        scripts: &[(String, Arc<Sieve>)],
        raw: &[u8],
        env: &RunEnv,
        boxes: &dyn Mailboxes,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        let mut keep_flags: Option<Vec<String>> = Some(Vec::new());
        for (name, script) in scripts {
            let mut ctx = self
                .runtime
                .filter(raw)
                .with_envelope(Envelope::From, env.from.as_str())
                .with_envelope(Envelope::To, env.to.as_str())
                .with_user_address(env.user.as_str());
            let mut created: HashMap<usize, Arc<Vec<u8>>> = HashMap::new();
            let mut script_actions = Vec::new();
            let mut kept: Option<Vec<String>> = None;
            let mut discarded = false;
            let mut failed = false;
            let mut input = Input::script(name.clone(), script.clone());
            while let Some(result) = ctx.run(input) {
                input = true.into();
                match result {
                    Err(e) => {
                        warn!(script = %name, error = ?e, "sieve runtime error; keeping the message");
                        failed = true;
                        break;
                    }
                    Ok(event) => match event {
                        Event::IncludeScript { optional, .. } => {
                            // LIMITATION: `include` is not supported yet.
                            if !optional {
                                warn!(script = %name, "sieve include is not supported; keeping the message");
                                failed = true;
                                break;
                            }
                            input = false.into();
                        }
                        Event::MailboxExists { mailboxes, .. } => {
                            input = mailboxes
                                .iter()
                                .all(|m| matches!(m, sieve::Mailbox::Name(n) if boxes.exists(n)))
                                .into();
                        }
                        Event::DuplicateId { id, expiry, .. } => {
                            input = boxes.seen_before(&id, expiry).into();
                        }
                        Event::ListContains { .. } | Event::Function { .. } => input = false.into(),
                        Event::SetEnvelope { .. } | Event::Notify { .. } => {}
                        Event::CreatedMessage {
                            message_id,
                            message,
                        } => {
                            created.insert(message_id, Arc::new(normalize_eol(&message)));
                        }
                        Event::Keep { flags, message_id } => {
                            kept = Some(flags);
                            if message_id > 0 {
                                script_actions.push(Action::Store {
                                    folder: "INBOX".into(),
                                    flags: kept.take().unwrap_or_default(),
                                    create: true,
                                    message: created.get(&message_id).cloned(),
                                });
                            }
                        }
                        Event::Discard => discarded = true,
                        Event::Reject { reason, .. } => script_actions.push(Action::Reject(reason)),
                        Event::FileInto {
                            folder,
                            flags,
                            create,
                            message_id,
                            ..
                        } => script_actions.push(Action::Store {
                            folder,
                            flags,
                            create,
                            message: created.get(&message_id).cloned(),
                        }),
                        Event::SendMessage {
                            recipient,
                            message_id,
                            ..
                        } => {
                            let to: Vec<String> = match recipient {
                                Recipient::Address(a) => vec![a],
                                Recipient::List(l) => vec![l],
                                Recipient::Group(g) => g,
                            };
                            for to in to {
                                script_actions.push(Action::Send {
                                    to,
                                    message: created.get(&message_id).cloned(),
                                    is_auto_reply: message_id > 0,
                                });
                            }
                        }
                    },
                }
            }
            if failed {
                // Whatever the broken script had decided is dropped; the
                // implicit keep stands and the next script runs.
                continue;
            }
            let cancels_keep = kept.is_none() || discarded;
            actions.extend(script_actions);
            if cancels_keep {
                keep_flags = None;
                break;
            }
            keep_flags = kept;
        }
        if let Some(flags) = keep_flags {
            actions.push(Action::Store {
                folder: "INBOX".into(),
                flags,
                create: true,
                message: None,
            });
        }
        actions
    }
}

/// Generated messages come with CRLF; the store uses LF like the rest.
fn normalize_eol(m: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(m.len());
    let mut i = 0;
    while i < m.len() {
        if m[i] == b'\r' && m.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(m[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    struct Boxes(RefCell<Vec<String>>);
    impl Mailboxes for Boxes {
        fn exists(&self, f: &str) -> bool {
            f == "Spam"
        }
        fn seen_before(&self, id: &str, _: u64) -> bool {
            let seen = self.0.borrow().iter().any(|i| i == id);
            self.0.borrow_mut().push(id.to_owned());
            seen
        }
    }

    fn engine() -> Engine {
        Engine::new(
            "vm",
            Limits {
                max_instructions: 10_000,
                max_redirects: 4,
            },
        )
    }

    fn compile(e: &Engine, text: &str) -> (String, Arc<Sieve>) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.sieve");
        std::fs::write(&p, text).unwrap();
        (p.display().to_string(), e.load(&p).unwrap().unwrap())
    }

    const SPAM_GLOBAL: &str = include_str!("../testdata/spam-global.sieve");

    fn env() -> RunEnv {
        RunEnv {
            from: "a@remote.test".into(),
            to: "user+news@example.org".into(),
            user: "user@example.org".into(),
        }
    }

    fn folders(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Store { folder, .. } => Some(folder.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn guide_global_script_files_spam_and_stops() {
        let e = engine();
        let g = compile(&e, SPAM_GLOBAL);
        let user = compile(&e, "require \"fileinto\";\nfileinto \"Other\";\n");
        let boxes = Boxes(RefCell::new(vec![]));
        let spam = b"X-Spam: Yes\nSubject: x\n\nbody\n";
        let ham = b"Subject: x\n\nbody\n";
        assert_eq!(
            folders(&e.run(&[g.clone(), user.clone()], spam, &env(), &boxes)),
            vec!["Spam"]
        );
        assert_eq!(
            folders(&e.run(&[g.clone(), user.clone()], ham, &env(), &boxes)),
            vec!["Other"]
        );
        assert_eq!(
            folders(&e.run(std::slice::from_ref(&g), ham, &env(), &boxes)),
            vec!["INBOX"]
        );
        let flag = b"X-Spam-Flag: YES\n\nx\n";
        assert_eq!(folders(&e.run(&[g], flag, &env(), &boxes)), vec!["Spam"]);
    }

    #[test]
    fn flags_subaddress_discard_and_vacation() {
        let e = engine();
        let s = compile(
            &e,
            r#"require ["fileinto", "imap4flags", "envelope", "subaddress", "mailbox"];
if envelope :detail "to" "news" { addflag ["\\Seen", "$Label1"]; fileinto :create "News"; stop; }
"#,
        );
        let boxes = Boxes(RefCell::new(vec![]));
        let got = e.run(&[s], b"Subject: x\n\nb\n", &env(), &boxes);
        assert_eq!(
            got,
            vec![Action::Store {
                folder: "News".into(),
                flags: vec!["\\Seen".into(), "$Label1".into()],
                create: true,
                message: None
            }]
        );
        let d = compile(&e, "discard;");
        assert!(e.run(&[d], b"\n", &env(), &boxes).is_empty());
        let v = compile(
            &e,
            "require \"vacation\";\nvacation :days 1 :addresses [\"user@example.org\"] \"I am away\";\n",
        );
        let msg = b"From: a@remote.test\nTo: user@example.org\nSubject: hi\n\nb\n";
        let first = e.run(std::slice::from_ref(&v), msg, &env(), &boxes);
        assert!(
            first
                .iter()
                .any(|a| matches!(a, Action::Send { to, is_auto_reply: true, .. } if to == "a@remote.test")),
            "{first:?}"
        );
        assert_eq!(folders(&first), vec!["INBOX"]);
        let second = e.run(&[v], msg, &env(), &boxes);
        assert!(!second.iter().any(|a| matches!(a, Action::Send { .. })));
    }

    #[test]
    fn broken_and_runaway_scripts_keep() {
        let e = engine();
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("bad.sieve");
        std::fs::write(&p, "if true {").unwrap();
        assert!(matches!(e.load(&p), Err(ScriptError::Compile { .. })));
        assert!(e.load(&d.path().join("missing.sieve")).unwrap().is_none());
        let tiny = Engine::new(
            "vm",
            Limits {
                max_instructions: 100,
                max_redirects: 1,
            },
        );
        let mut text = String::from("require \"fileinto\";\n");
        for _ in 0..200 {
            text.push_str("if header :contains \"subject\" \"zz\" { stop; }\n");
        }
        text.push_str("fileinto \"Never\";\n");
        let runaway = compile(&tiny, &text);
        let boxes = Boxes(RefCell::new(vec![]));
        assert_eq!(
            folders(&tiny.run(&[runaway], b"Subject: x\n\nb\n", &env(), &boxes)),
            vec!["INBOX"]
        );
        assert_eq!(folders(&e.run(&[], b"\n", &env(), &boxes)), vec!["INBOX"]);
    }

    #[test]
    fn cache_recompiles_on_change() {
        let e = engine();
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.sieve");
        std::fs::write(&p, "keep;").unwrap();
        let a = e.load(&p).unwrap().unwrap();
        let b = e.load(&p).unwrap().unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        std::fs::write(&p, "discard; ").unwrap();
        let c = e.load(&p).unwrap().unwrap();
        assert!(!Arc::ptr_eq(&a, &c));
    }

    #[test]
    fn cache_follows_setactive_to_a_file_with_same_mtime_and_size() {
        // What ManageSieve's SETACTIVE does: the active-script symlink now
        // names another script, which may have the same size and mtime.
        let e = engine();
        let d = tempfile::tempdir().unwrap();
        let (one, two) = (d.path().join("one.sieve"), d.path().join("two.sieve"));
        std::fs::write(&one, "keep;   ").unwrap();
        std::fs::write(&two, "discard;").unwrap();
        let mtime = std::fs::metadata(&one).unwrap().modified().unwrap();
        std::fs::File::options()
            .write(true)
            .open(&two)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let active = d.path().join("active-script.sieve");
        std::os::unix::fs::symlink("one.sieve", &active).unwrap();
        let a = e.load(&active).unwrap().unwrap();
        std::fs::remove_file(&active).unwrap();
        std::os::unix::fs::symlink("two.sieve", &active).unwrap();
        let b = e.load(&active).unwrap().unwrap();
        assert!(
            !Arc::ptr_eq(&a, &b),
            "a stale script was run after SETACTIVE"
        );
    }
}

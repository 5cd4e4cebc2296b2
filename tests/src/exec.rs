//! Running peer programs: finding them (a missing one fails loudly, never
//! skips) and running them to completion with a deadline. No knowledge of
//! any particular peer here.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Directories searched after `PATH`: Postfix and Dovecot live in sbin, which
/// is not on every user's `PATH`.
const EXTRA_DIRS: &[&str] = &["/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/// What to tell the person running the tests when a peer is missing.
pub const INSTALL_HINT: &str =
    "run scripts/install-deps (as root) to install the peers the tests need";

/// Path of the peer program `name`, or a panic naming it and the fix.
///
/// A missing peer must fail the test (STYLE.md §7.6), never skip it.
pub fn require(name: &str) -> PathBuf {
    if name.contains('/') {
        let path = PathBuf::from(name);
        if is_executable(&path) {
            return path;
        }
        panic!("required peer program {name} is missing: {INSTALL_HINT}");
    }
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path_var)
        .chain(EXTRA_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
        .unwrap_or_else(|| {
            panic!("required peer program `{name}` is not installed: {INSTALL_HINT}")
        })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The result of a finished program.
#[derive(Debug)]
pub struct Output {
    /// How it ended.
    pub status: ExitStatus,
    /// Everything it wrote to stdout (lossy UTF-8).
    pub stdout: String,
    /// Everything it wrote to stderr (lossy UTF-8).
    pub stderr: String,
    /// The command line, for messages.
    pub command: String,
}

impl Output {
    /// True when the program exited with status 0.
    pub fn is_success(&self) -> bool {
        self.status.success()
    }

    /// The exit code, or -1 when it was killed by a signal.
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }

    /// Panics with the command and both outputs unless it exited with 0.
    #[track_caller]
    pub fn assert_success(self) -> Self {
        if !self.is_success() {
            panic!("{self}");
        }
        self
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "`{}` exited with {}", self.command, self.status)?;
        if !self.stdout.trim().is_empty() {
            writeln!(f, "--- stdout ---\n{}", self.stdout.trim_end())?;
        }
        if !self.stderr.trim().is_empty() {
            writeln!(f, "--- stderr ---\n{}", self.stderr.trim_end())?;
        }
        Ok(())
    }
}

/// A command line as a person would type it, for messages and the demo.
pub fn display(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(cmd.get_args().map(|a| {
        let a = a.to_string_lossy();
        if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"$&;|<>*?()".contains(c)) {
            format!("'{}'", a.replace('\'', r"'\''"))
        } else {
            a.into_owned()
        }
    }));
    parts.join(" ")
}

/// Runs `cmd` to completion, feeding it `stdin`, and kills it if it is still
/// running after `timeout`. Panics if it cannot be started or timed out; a
/// non-zero exit is returned, not a panic, so that callers can assert on it.
#[track_caller]
pub fn run(cmd: &mut Command, stdin: Option<&[u8]>, timeout: Duration) -> Output {
    let command = display(cmd);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{command}`: {e} ({INSTALL_HINT})"));

    // Feed stdin and drain both pipes on their own threads, so a chatty child
    // can never block on a full pipe while we wait for it.
    let feeder = child.stdin.take().map(|mut pipe| {
        let data = stdin.unwrap_or_default().to_vec();
        thread::spawn(move || {
            // A child that exits without reading its stdin is not our error.
            let _ = pipe.write_all(&data);
        })
    });
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());

    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                let stdout = collect(&out);
                let stderr = collect(&err);
                panic!(
                    "`{command}` did not finish within {timeout:?}; killed it\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
                );
            }
            Err(e) => panic!("waiting for `{command}`: {e}"),
        }
    };
    if let Some(feeder) = feeder {
        let _ = feeder.join();
    }
    Output {
        status,
        stdout: collect(&out),
        stderr: collect(&err),
        command,
    }
}

/// How long to wait for a pipe's end of file after the child exited. A
/// daemon forked by the child (`postfix start` starts master) may inherit the
/// pipe and hold it open for ever.
const PIPE_GRACE: Duration = Duration::from_secs(2);

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buf);
        }
        let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
    });
    rx
}

fn collect(rx: &mpsc::Receiver<String>) -> String {
    rx.recv_timeout(PIPE_GRACE).unwrap_or_else(|_| {
        "(output not collected: a background process keeps the pipe open)".to_owned()
    })
}

/// Polls `ready` every 20 ms until it returns true or `timeout` has passed.
/// Returns whether it became ready. This is the only way the harness waits:
/// never a fixed sleep.
pub fn poll_until(timeout: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

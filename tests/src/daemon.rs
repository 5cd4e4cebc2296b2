//! A postwerk daemon of this workspace (`postwerk-policyd`, …) running as a
//! child process with a config file in the test directory. Stopped with
//! SIGTERM on Drop (and its exit checked); its log is printed when the test
//! fails.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::cli::workspace_binary;
use crate::exec::poll_until;
use crate::net::{wait_for_port, wait_for_unix_socket};
use crate::testdir::TestDir;

const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(40);

/// What tells that a daemon is ready.
#[derive(Debug, Clone)]
pub enum Ready {
    /// A UNIX socket accepts connections.
    Unix(PathBuf),
    /// A TCP port on 127.0.0.1 accepts connections.
    Tcp(u16),
}

/// A running daemon.
#[derive(Debug)]
pub struct Daemon {
    name: String,
    child: Option<Child>,
    log: PathBuf,
    config: PathBuf,
}

impl Daemon {
    /// Writes `config` (TOML) to `DIR/<name>.toml` and starts `binary
    /// --config FILE`; returns when every `ready` endpoint accepts.
    pub fn start(dir: &TestDir, binary: &str, config: &str, ready: &[Ready]) -> Daemon {
        Daemon::start_logging(dir, binary, config, ready, "debug")
    }

    /// [`Daemon::start`] with `RUST_LOG=level`: benchmarks run daemons at
    /// `info`, as in production, since `debug` logs every request.
    pub fn start_logging(
        dir: &TestDir,
        binary: &str,
        config: &str,
        ready: &[Ready],
        level: &str,
    ) -> Daemon {
        let name = binary.to_owned();
        let config_path = dir.write(format!("{name}.toml"), config, 0o644);
        let log = dir.join(format!("{name}.log"));
        let log_file = File::create(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let err_file = log_file
            .try_clone()
            .unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let child = Command::new(workspace_binary(binary))
            .env("POSTWERK_ALLOW_ROOT", "1")
            .arg("--config")
            .arg(&config_path)
            .env("RUST_LOG", level)
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(err_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
        let mut d = Daemon {
            name,
            child: Some(child),
            log,
            config: config_path,
        };
        for r in ready {
            let res = match r {
                Ready::Unix(p) => wait_for_unix_socket(p, START_TIMEOUT),
                Ready::Tcp(port) => wait_for_port(*port, START_TIMEOUT),
            };
            if let Err(e) = res {
                let exited = d.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
                panic!(
                    "{} did not come up ({e}); exit: {exited:?}\n--- log ---\n{}",
                    d.name,
                    d.log()
                );
            }
        }
        d
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The config file.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends a signal (e.g. SIGHUP to reload).
    pub fn signal(&self, sig: Signal) {
        if let Some(c) = &self.child {
            let pid = i32::try_from(c.id()).unwrap_or(i32::MAX);
            let _ = kill(Pid::from_raw(pid), sig);
        }
    }

    /// Stops it with SIGTERM and waits; returns whether it exited cleanly.
    pub fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        self.signal_child(&child, Signal::SIGTERM);
        let mut status = None;
        poll_until(STOP_TIMEOUT, || {
            status = child.try_wait().ok().flatten();
            status.is_some()
        });
        match status {
            Some(s) => s.success(),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                false
            }
        }
    }

    fn signal_child(&self, c: &Child, sig: Signal) {
        let pid = i32::try_from(c.id()).unwrap_or(i32::MAX);
        let _ = kill(Pid::from_raw(pid), sig);
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let clean = self.stop();
        if std::thread::panicking() || !clean {
            eprintln!(
                "===== {} log (clean exit: {clean}) =====\n{}\n===== end of {} log =====",
                self.name,
                self.log(),
                self.name
            );
        }
    }
}

//! The newer peers: Dovecot 2.4 and Postfix 3.10 from the Debian 13
//! (trixie) root that `scripts/trixie-root` builds (run by
//! scripts/install-deps) in `/var/cache/postwerk-test/trixie`.
//!
//! A [`Jail`] runs one program of that root chrooted inside a private mount
//! namespace of its own (`unshare --mount --propagation private`), where
//! `/proc`, `/dev`, a private `/tmp` and the test directory (at
//! [`MOUNT_POINT`]) are mounted; the root itself is never written to.
//! Nothing is ever mounted in the host's namespace: the mounts exist only
//! as long as a process of the jail lives, so a failed or killed test
//! cannot leave one behind, and jails of parallel tests never see each
//! other's. Commands such as `doveadm` join a running jail with `nsenter`.
//! The network is the host's: peers listen on loopback ports, and the
//! postwerk daemons (on the host) are reached over loopback TCP or through
//! UNIX sockets in the test directory.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::exec::{Output, poll_until, require, run};
use crate::testdir::TestDir;

/// Where scripts/trixie-root puts the root unless `POSTWERK_TRIXIE_ROOT` says.
pub const DEFAULT_ROOT: &str = "/var/cache/postwerk-test/trixie";

/// Where the test directory appears inside a jail.
pub const MOUNT_POINT: &str = "/srv/postwerk-test";

const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// The trixie root.
#[derive(Debug, Clone)]
pub struct Root {
    path: PathBuf,
}

impl Root {
    /// The root, which must exist: a missing root fails the test (it is
    /// never skipped), telling how to make it.
    pub fn require() -> Root {
        let path = std::env::var_os("POSTWERK_TRIXIE_ROOT")
            .map_or_else(|| PathBuf::from(DEFAULT_ROOT), PathBuf::from);
        let stamp = path.join("etc/postwerk-test-root");
        assert!(
            stamp.is_file() && path.join(MOUNT_POINT.trim_start_matches('/')).is_dir(),
            "the Debian 13 root with Dovecot 2.4 and Postfix 3.10 is missing at {} \
             (no {}): run scripts/install-deps (it runs scripts/trixie-root)",
            path.display(),
            stamp.display()
        );
        for tool in ["unshare", "nsenter", "chroot"] {
            require(tool);
        }
        Root { path }
    }

    /// The root directory on the host.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// `path`, a path below the test directory, as a jail sees it.
pub fn jail_path(dir: &TestDir, path: &Path) -> PathBuf {
    let rel = path.strip_prefix(dir.path()).unwrap_or_else(|_| {
        panic!(
            "{} is not inside the test directory {}",
            path.display(),
            dir.path().display()
        )
    });
    Path::new(MOUNT_POINT).join(rel)
}

/// One program running in the root (see the module documentation).
/// Stopped with SIGTERM on Drop (SIGKILL after a while); its output is
/// printed when the test fails.
#[derive(Debug)]
pub struct Jail {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Jail {
    /// Starts `argv` (a program of the root and its arguments) in a new
    /// jail; its stdout and stderr go to `DIR/<name>.jail.log`.
    pub fn spawn(root: &Root, dir: &TestDir, name: &str, argv: &[&str]) -> Jail {
        let log = dir.join(format!("{name}.jail.log"));
        let out = File::create(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let err = out
            .try_clone()
            .unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        // The mounts are made inside the new namespace only; the exec chain
        // (unshare → sh → chroot → program) keeps one process, so the
        // child's pid is the program's and nsenter can join it.
        let script = r#"set -eu
root=$1; dir=$2; shift 2
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
mount --bind "$dir" "$root/srv/postwerk-test"
exec chroot "$root" "$@""#;
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
            .arg(script)
            .arg("sh")
            .arg(root.path())
            .arg(dir.path())
            .args(argv)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start unshare for {name}: {e}"));
        Jail {
            name: name.to_owned(),
            child: Some(child),
            log,
        }
    }

    /// The program's process id (the jail's first process).
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map_or_else(|| panic!("{} was stopped", self.name), Child::id)
    }

    /// Whether the program has exited, and how.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Runs `argv` inside the running jail (its mounts and its root), as
    /// `nsenter` does, to completion.
    #[track_caller]
    pub fn exec(&self, argv: &[&str], timeout: Duration) -> Output {
        let mut cmd = Command::new("nsenter");
        cmd.args([
            "--target",
            &self.pid().to_string(),
            "--mount",
            "--root",
            "--wd",
            "--",
        ])
        .args(argv);
        run(&mut cmd, None, timeout)
    }

    /// What the program wrote to stdout and stderr.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then waits; SIGKILL if it has not exited in time. With its
    /// last process the namespace and its mounts are gone.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        if !poll_until(STOP_TIMEOUT, || matches!(child.try_wait(), Ok(Some(_)))) {
            eprintln!(
                "postwerk-tests: {} ({pid}) ignored SIGTERM; killing it",
                self.name
            );
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Jail {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "===== {} (trixie jail) output =====\n{}\n===== end of {} output =====",
                self.name,
                self.log(),
                self.name
            );
        }
    }
}

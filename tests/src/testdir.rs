//! The per-test directory: every file a test's peers read or write lives
//! under one directory in /tmp, removed when the test passes and kept (with
//! its path printed) when it fails.

use std::fs;
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A fresh directory `/tmp/postwerk-<name>-<pid>-<n>`, mode 0755 so that the
/// unprivileged Postfix, Dovecot and vmail processes can reach what is below.
///
/// Dropped while the thread is panicking (a failed test), it is kept and its
/// path printed; otherwise it is removed.
#[derive(Debug)]
pub struct TestDir {
    path: PathBuf,
    keep: bool,
}

impl TestDir {
    /// Makes the directory. `name` should say which test it belongs to.
    pub fn new(name: &str) -> TestDir {
        let pid = std::process::id();
        loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = PathBuf::from(format!("/tmp/postwerk-{name}-{pid}-{n}"));
            match fs::create_dir(&path) {
                Ok(()) => {
                    set_mode(&path, 0o755);
                    return TestDir { path, keep: false };
                }
                // Left over from an earlier process that had our pid.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => panic!("cannot create test directory {}: {e}", path.display()),
            }
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path below the directory (not created).
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path.join(rel)
    }

    /// Creates `rel` (and its parents) with `mode`, owned by root.
    pub fn mkdir(&self, rel: impl AsRef<Path>, mode: u32) -> PathBuf {
        let path = self.path.join(rel);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        set_mode(&path, mode);
        path
    }

    /// Writes `contents` to `rel` with `mode`, creating parent directories.
    pub fn write(&self, rel: impl AsRef<Path>, contents: impl AsRef<[u8]>, mode: u32) -> PathBuf {
        let path = self.path.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("mkdir {}: {e}", parent.display()));
        }
        fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        set_mode(&path, mode);
        path
    }

    /// Keep the directory even when the test passes (the demo's `--keep`).
    pub fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if self.keep || std::thread::panicking() {
            eprintln!(
                "postwerk-tests: kept {} for inspection",
                self.path.display()
            );
            return;
        }
        if let Err(e) = fs::remove_dir_all(&self.path) {
            eprintln!("postwerk-tests: cannot remove {}: {e}", self.path.display());
        }
    }
}

/// Sets the permission bits of `path`.
pub fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

/// Changes the owner of `path` to the system user `user` and its group to
/// `group`, as `chown user:group path` does.
pub fn chown_to(path: &Path, user: &str, group: &str) {
    let uid = nix::unistd::User::from_name(user)
        .ok()
        .flatten()
        .unwrap_or_else(|| {
            panic!(
                "system user `{user}` does not exist: {}",
                crate::exec::INSTALL_HINT
            )
        })
        .uid;
    let gid = nix::unistd::Group::from_name(group)
        .ok()
        .flatten()
        .unwrap_or_else(|| {
            panic!(
                "system group `{group}` does not exist: {}",
                crate::exec::INSTALL_HINT
            )
        })
        .gid;
    chown(path, Some(uid.as_raw()), Some(gid.as_raw()))
        .unwrap_or_else(|e| panic!("chown {user}:{group} {}: {e}", path.display()));
}

/// `chown -R user:group path`.
pub fn chown_recursive(path: &Path, user: &str, group: &str) {
    chown_to(path, user, group);
    if path.is_dir() {
        let entries =
            fs::read_dir(path).unwrap_or_else(|e| panic!("read_dir {}: {e}", path.display()));
        for entry in entries.flatten() {
            chown_recursive(&entry.path(), user, group);
        }
    }
}

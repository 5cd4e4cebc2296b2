//! Secrets that never reach a log line or `--json` output.

use std::fmt;

/// The largest secret file we read (a password or key, never more).
pub const MAX_FILE_LEN: u64 = 64 * 1024;

/// A secret string (database password, HMAC key). `Debug` and `Display`
/// print `***`; use [`Secret::expose`] where the value is really needed.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret itself: only for handing it to the library that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Reads a secret from a file, stripping one trailing newline (as
    /// written by `echo pw > file`). Only a regular file of at most
    /// [`MAX_FILE_LEN`] bytes is read: `password_file = "/dev/zero"` or a
    /// FIFO must be a config error, not a hang or unbounded memory.
    pub fn from_file(path: &std::path::Path) -> std::io::Result<Self> {
        use std::io::{Error, ErrorKind, Read};
        // Checked before opening too: opening a FIFO blocks until a writer
        // comes.
        let not_regular = || Error::new(ErrorKind::InvalidInput, "not a regular file");
        if !std::fs::metadata(path)?.is_file() {
            return Err(not_regular());
        }
        let file = std::fs::File::open(path)?;
        if !file.metadata()?.is_file() {
            return Err(not_regular());
        }
        let mut s = String::new();
        file.take(MAX_FILE_LEN + 1).read_to_string(&mut s)?;
        if s.len() as u64 > MAX_FILE_LEN {
            return Err(Error::new(
                ErrorKind::InvalidData,
                format!("longer than {MAX_FILE_LEN} bytes"),
            ));
        }
        let s = s.strip_suffix('\n').unwrap_or(&s);
        let s = s.strip_suffix('\r').unwrap_or(s);
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn from_file_strips_one_newline() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pw");
        std::fs::write(&p, "pa ss\n").unwrap();
        assert_eq!(Secret::from_file(&p).unwrap().expose(), "pa ss");
    }

    // Found by the config fuzz target's review: `password_file = "/dev/zero"`
    // read forever, and a directory or FIFO was not refused up front.
    #[test]
    fn from_file_refuses_devices_directories_and_huge_files() {
        assert!(Secret::from_file(std::path::Path::new("/dev/zero")).is_err());
        let dir = tempfile::tempdir().unwrap();
        assert!(Secret::from_file(dir.path()).is_err());
        let p = dir.path().join("big");
        std::fs::write(&p, vec![b'x'; MAX_FILE_LEN as usize + 1]).unwrap();
        let e = Secret::from_file(&p).unwrap_err();
        assert!(e.to_string().contains("longer than"), "{e}");
    }
}

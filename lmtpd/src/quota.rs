//! STORAGE: Dovecot's maildir++ quota file `maildirsize` in the Maildir
//! root (`shared/reference/lmtp-maildir.md` §3): header `<bytes>S`, then
//! `"<bytes> <count>"` lines, one appended per delivery. Recalculated, as
//! Dovecot does, when it is missing, when its header does not match the
//! limit, or when it has grown to 5120 bytes. Blocking I/O: call from
//! `spawn_blocking`. No protocol and no database here.

use crate::maildir::{self, Owner};
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

pub use postwerk_core::maildirsize::{MAX_FILE_SIZE, Usage, header, parse, scan, size_from_name};

/// Reads the usage for a user with storage limit `limit_bytes` (0 =
/// unlimited), recalculating `maildirsize` when Dovecot would. Without a
/// limit no file is created (Dovecot does not keep one either) and usage is
/// read from an existing file or counted.
pub fn usage(root: &Path, limit_bytes: u64, owner: Owner) -> io::Result<Usage> {
    let path = root.join("maildirsize");
    let current = match fs::read_to_string(&path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let want = header(limit_bytes);
    if let Some(text) = &current
        && let Some((head, u)) = parse(text)
        && (head == want || limit_bytes == 0)
        && (text.len() as u64) < MAX_FILE_SIZE
    {
        return Ok(u);
    }
    if limit_bytes == 0 && current.is_none() {
        return Ok(Usage::default());
    }
    recalculate(root, limit_bytes, owner)
}

/// Rewrites `maildirsize` from a scan of the Maildir (like `doveadm quota
/// recalc`): header, then one `"<bytes> <count>"` line.
pub fn recalculate(root: &Path, limit_bytes: u64, owner: Owner) -> io::Result<Usage> {
    let u = scan(root)?;
    maildir::ensure_maildir(root, owner)?;
    let tmp = root
        .join("tmp")
        .join(format!("maildirsize.{}", maildir::unique_name("lmtpd")));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(format!("{}\n{} {}\n", header(limit_bytes), u.bytes, u.count).as_bytes())?;
        f.sync_all()?;
        owner.apply(&tmp)?;
        fs::rename(&tmp, root.join("maildirsize"))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map(|()| u)
}

/// Records one delivered message of `size` bytes: one `write` with
/// `O_APPEND`, so concurrent deliveries never interleave. A missing file
/// is left missing (the next check recalculates it from the disk, which
/// already has this message).
pub fn add(root: &Path, size: u64) -> io::Result<()> {
    let mut f = match OpenOptions::new()
        .append(true)
        .open(root.join("maildirsize"))
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    f.write_all(format!("{size} 1\n").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captured_file_parses() {
        let (h, u) = parse("10485760S\n0 0\n726 1\n2513 1\n300 1\n5931 1\n").unwrap();
        assert_eq!(h, "10485760S");
        assert_eq!(
            u,
            Usage {
                bytes: 9470,
                count: 4
            }
        );
        assert_eq!(
            parse("1024S,50C\n-726 -1\n").unwrap().1,
            Usage {
                bytes: -726,
                count: -1
            }
        );
        assert!(parse("10S\ngarbage\n").is_none());
        assert_eq!(
            size_from_name("1795930623.M225204P17564.vm,S=726,W=747:2,Sab"),
            Some(726)
        );
        assert_eq!(size_from_name("1795931000.M1P99999Q1.externalhost"), None);
    }

    #[test]
    fn recalculates_when_missing_stale_or_large() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("mail");
        let o = Owner::default();
        maildir::ensure_maildir(&root, o).unwrap();
        maildir::ensure_maildir(&root.join("Spam"), o).unwrap();
        maildir::store(&root, &[b"12345\n"], "", "h", o).unwrap();
        maildir::store(&root.join("Spam"), &[b"abc\n"], "S", "h", o).unwrap();
        assert_eq!(usage(&root, 0, o).unwrap(), Usage::default());
        assert!(!root.join("maildirsize").exists());
        assert_eq!(
            usage(&root, 1 << 20, o).unwrap(),
            Usage {
                bytes: 10,
                count: 2
            }
        );
        assert_eq!(
            fs::read_to_string(root.join("maildirsize")).unwrap(),
            "1048576S\n10 2\n"
        );
        add(&root, 100).unwrap();
        assert_eq!(
            usage(&root, 1 << 20, o).unwrap(),
            Usage {
                bytes: 110,
                count: 3
            }
        );
        // a changed limit means a stale header: recount from disk
        assert_eq!(
            usage(&root, 2 << 20, o).unwrap(),
            Usage {
                bytes: 10,
                count: 2
            }
        );
        let mut big = String::from("2097152S\n");
        for _ in 0..2000 {
            big.push_str("1 1\n");
        }
        fs::write(root.join("maildirsize"), big).unwrap();
        assert_eq!(
            usage(&root, 2 << 20, o).unwrap(),
            Usage {
                bytes: 10,
                count: 2
            }
        );
    }
}

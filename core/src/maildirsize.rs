//! Dovecot's maildir++ quota file `maildirsize` (reference/lmtp-maildir.md
//! §3), read-only: parsing it and counting a Maildir. lmtpd keeps the file
//! (lmtpd/src/quota.rs); policyd's quota check reads it. Blocking I/O.

use std::fs;
use std::io;
use std::path::Path;

/// Dovecot rewrites `maildirsize` once it reaches this size
/// (quota-maildir.c `MAILDIRSIZE_FILE_MAX_SIZE`... as documented in
/// Quota.Maildir: "when it grows to 5120 bytes").
pub const MAX_FILE_SIZE: u64 = 5120;

/// Current usage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes (sum of `S=` sizes).
    pub bytes: i64,
    /// Messages.
    pub count: i64,
}

/// The header Dovecot writes for a storage limit in bytes.
pub fn header(limit_bytes: u64) -> String {
    format!("{limit_bytes}S")
}

/// Parses `maildirsize`: the header and the summed lines. `None` if the
/// text is not a maildirsize file.
pub fn parse(text: &str) -> Option<(String, Usage)> {
    let mut lines = text.lines();
    let head = lines.next()?.trim().to_owned();
    let mut u = Usage::default();
    for l in lines {
        let mut it = l.split_whitespace();
        let (Some(b), Some(c)) = (it.next(), it.next()) else {
            if l.trim().is_empty() {
                continue;
            }
            return None;
        };
        u.bytes = u.bytes.checked_add(b.parse().ok()?)?;
        u.count = u.count.checked_add(c.parse().ok()?)?;
    }
    Some((head, u))
}

/// Sums every message of every folder below `root` (the root is INBOX),
/// taking `S=` from the file name where present, else the file size.
pub fn scan(root: &Path) -> io::Result<Usage> {
    let mut u = Usage::default();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for sub in ["cur", "new"] {
            let d = dir.join(sub);
            let entries = match fs::read_dir(&d) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for e in entries {
                let e = e?;
                let name = e.file_name();
                let name = name.to_string_lossy();
                if name.starts_with('.') {
                    continue;
                }
                let size = size_from_name(&name)
                    .map(Ok)
                    .unwrap_or_else(|| match e.metadata() {
                        Ok(m) => Ok(m.len()),
                        // Expunged meanwhile.
                        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
                        Err(e) => Err(e),
                    })?;
                u.bytes += size as i64;
                u.count += 1;
            }
        }
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for e in entries {
            let e = e?;
            let name = e.file_name();
            let name = name.to_string_lossy();
            if matches!(name.as_ref(), "cur" | "new" | "tmp") || name.starts_with('.') {
                continue;
            }
            if e.file_type()?.is_dir() {
                dirs.push(e.path());
            }
        }
    }
    Ok(u)
}

/// `S=<n>` from a Maildir file name.
pub fn size_from_name(name: &str) -> Option<u64> {
    let base = name.split(':').next()?;
    base.split(',')
        .find_map(|p| p.strip_prefix("S="))
        .and_then(|s| s.parse().ok())
}

/// The usage of the Maildir at `root` for a storage limit of
/// `limit_bytes`, without writing anything: from `maildirsize` when it is
/// valid for that limit, else by counting the messages.
pub fn read_usage(root: &Path, limit_bytes: u64) -> io::Result<Usage> {
    match fs::read_to_string(root.join("maildirsize")) {
        Ok(text) => {
            if let Some((head, u)) = parse(&text)
                && (head == header(limit_bytes) || limit_bytes == 0)
            {
                return Ok(u);
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    scan(root)
}

//! STORAGE: Dovecot 2.3 compatible Maildir with `LAYOUT=fs`, as described
//! in `shared/reference/lmtp-maildir.md` §2: unique file names with `,S=`
//! and `,W=`, write into `tmp/`, fsync, rename into `new/` (or `cur/` with
//! flags), fsync the directory. Folders are plain directories below the
//! Maildir root; the `subscriptions` file uses Dovecot's version-2 format.
//! Never touches `dovecot-uidlist` or `dovecot.index*`. Blocking I/O: call
//! from `spawn_blocking`. No protocol and no database here.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Who owns what we create; `None` leaves it to the running user.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Owner {
    /// uid to chown to.
    pub uid: Option<u32>,
    /// gid to chown to.
    pub gid: Option<u32>,
}

impl Owner {
    /// Applies the ownership to `path` (only as root; otherwise what we
    /// create is ours already).
    pub fn apply(&self, path: &Path) -> io::Result<()> {
        if (self.uid.is_none() && self.gid.is_none()) || !nix::unistd::geteuid().is_root() {
            return Ok(());
        }
        std::os::unix::fs::chown(path, self.uid, self.gid)
    }
}

/// IMAP system flags and keywords as Sieve `imap4flags` names them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags {
    /// Maildir flag letters (`D F P R S T`), sorted.
    pub system: Vec<char>,
    /// Keywords (`$Junk`, `mykeyword`).
    pub keywords: Vec<String>,
}

impl Flags {
    /// Sorts Sieve flag names into system flags and keywords (RFC 5232).
    pub fn from_names(names: &[String]) -> Self {
        let mut f = Flags::default();
        for n in names
            .iter()
            .flat_map(|n| n.split(' '))
            .filter(|n| !n.is_empty())
        {
            let letter = match n.to_ascii_lowercase().as_str() {
                "\\draft" => Some('D'),
                "\\flagged" => Some('F'),
                "\\answered" => Some('R'),
                "\\seen" => Some('S'),
                "\\deleted" => Some('T'),
                _ => None,
            };
            match letter {
                Some(l) if !f.system.contains(&l) => f.system.push(l),
                Some(_) => {}
                // `\Recent` and unknown system flags cannot be set (RFC 3501).
                None if n.starts_with('\\') => {}
                None => {
                    if !f.keywords.iter().any(|k| k == n) && n.chars().all(|c| c.is_ascii_graphic())
                    {
                        f.keywords.push(n.to_owned());
                    }
                }
            }
        }
        f.system.sort_unstable();
        f
    }

    /// No flags at all.
    pub fn is_empty(&self) -> bool {
        self.system.is_empty() && self.keywords.is_empty()
    }
}

/// A Maildir file name's unique part: `<secs>.M<usecs>P<pid>Q<n>.<host>`
/// (Dovecot's form plus a per-process counter, since many sessions deliver
/// within one microsecond).
pub fn unique_name(hostname: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{}.M{}P{}Q{}.{}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        n,
        encode_host(hostname)
    )
}

/// Maildir's encoding of `/` and `:` in the host part (`\057`, `\072`).
pub fn encode_host(h: &str) -> String {
    h.replace('/', "\\057").replace(':', "\\072")
}

/// Creates `dir` and missing parents with mode 0700 and the owner; an
/// existing directory (another session was faster) is fine.
pub fn make_dirs(dir: &Path, owner: Owner) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        make_dirs(parent, owner)?;
    }
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => owner.apply(dir),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Makes `dir` a Maildir (`cur/ new/ tmp/`), parents included. Parents of
/// a `LAYOUT=fs` child folder stay plain directories, as Dovecot leaves
/// them.
pub fn ensure_maildir(dir: &Path, owner: Owner) -> io::Result<()> {
    if dir.join("tmp").is_dir() && dir.join("new").is_dir() && dir.join("cur").is_dir() {
        return Ok(());
    }
    make_dirs(dir, owner)?;
    // tmp/ first: another session takes the folder as ready once cur/ and
    // new/ exist (is_maildir) and writes into tmp/ at once. Made last, a
    // concurrent first delivery got ENOENT and a 451.
    for sub in ["tmp", "new", "cur"] {
        make_dirs(&dir.join(sub), owner)?;
    }
    Ok(())
}

/// Whether `dir` is a Maildir.
pub fn is_maildir(dir: &Path) -> bool {
    dir.join("cur").is_dir() && dir.join("new").is_dir()
}

/// The directory of `folder` under the Maildir `root` (`INBOX` is the root;
/// `LAYOUT=fs` keeps `/` as the hierarchy separator).
pub fn folder_dir(root: &Path, folder: &str) -> PathBuf {
    if folder.eq_ignore_ascii_case("INBOX") {
        root.to_path_buf()
    } else {
        root.join(folder)
    }
}

fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A message stored in a Maildir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The final path.
    pub path: PathBuf,
    /// `S=`: bytes on disk (LF line ends).
    pub size: u64,
}

/// How many line feeds are not preceded by a carriage return: what
/// Dovecot adds to the file size for `,W=` (the size with CRLF line ends).
/// A line that already ends in CRLF counts once, as Dovecot counts it;
/// otherwise Dovecot renames the file and drops its cache record ("Maildir
/// filename has wrong W value").
pub fn bare_lfs(parts: &[&[u8]]) -> u64 {
    let mut prev = 0u8;
    let mut n = 0;
    for p in parts {
        for &b in *p {
            if b == b'\n' && prev != b'\r' {
                n += 1;
            }
            prev = b;
        }
    }
    n
}

/// Stores `parts` (concatenated: the headers we add, then the message with
/// LF line ends) into the Maildir `dir`: `tmp/`, fsync, rename into `new/`
/// (or `cur/` with a `:2,` info part when there are flags), fsync the
/// target directory. Nothing is visible before the rename and nothing is
/// left in `tmp/` on error. Keyword letters must already be resolved
/// (see [`keyword_letters`]).
pub fn store(
    dir: &Path,
    parts: &[&[u8]],
    info: &str,
    hostname: &str,
    owner: Owner,
) -> io::Result<Stored> {
    let size: u64 = parts.iter().map(|p| p.len() as u64).sum();
    let vsize = size + bare_lfs(parts);
    let unique = unique_name(hostname);
    let tmp = dir.join("tmp").join(&unique);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        for p in parts {
            f.write_all(p)?;
        }
        f.sync_all()?;
        drop(f);
        owner.apply(&tmp)?;
        let base = format!("{unique},S={size},W={vsize}");
        let (sub, name) = if info.is_empty() {
            ("new", base)
        } else {
            ("cur", format!("{base}:2,{info}"))
        };
        let target_dir = dir.join(sub);
        let path = target_dir.join(name);
        fs::rename(&tmp, &path)?;
        fsync_dir(&target_dir)?;
        Ok(Stored { path, size })
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Serialises edits of `subscriptions` and `dovecot-keywords` within this
/// process (read–modify–rename); Dovecot itself only replaces them whole.
static EDIT_LOCK: Mutex<()> = Mutex::new(());

/// Writes `content` to `path` atomically (temp file, fsync, rename).
fn replace_file(path: &Path, content: &[u8], owner: Owner) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.{}.tmp", unique_name("lmtpd")));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(content)?;
        f.sync_all()?;
        owner.apply(&tmp)?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Adds `folders` to `<root>/subscriptions` (Dovecot's version-2 format:
/// `V\t2`, an empty line, one mailbox per line with TAB as the hierarchy
/// separator), keeping what is there.
pub fn subscribe(root: &Path, folders: &[&str], owner: Owner) -> io::Result<()> {
    let _guard = EDIT_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let path = root.join("subscriptions");
    let existing = match fs::read_to_string(&path) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let mut names: Vec<String> = Vec::new();
    if existing.starts_with("V\t") {
        names.extend(
            existing
                .lines()
                .skip(1)
                .filter(|l| !l.is_empty())
                .map(str::to_owned),
        );
    } else {
        // Version 1 (pre-2.2.17): one name per line with the separator.
        names.extend(
            existing
                .lines()
                .filter(|l| !l.is_empty())
                .map(|l| l.replace('/', "\t")),
        );
    }
    let before = names.len();
    for f in folders {
        let n = f.replace('/', "\t");
        if !names.contains(&n) {
            names.push(n);
        }
    }
    if names.len() == before && existing.starts_with("V\t2\n") {
        return Ok(());
    }
    let mut out = String::from("V\t2\n\n");
    for n in &names {
        out.push_str(n);
        out.push('\n');
    }
    replace_file(&path, out.as_bytes(), owner)
}

/// Resolves keywords to Maildir letters via `<dir>/dovecot-keywords`
/// (`<index> <name>` lines, index 0 = `a`), appending new ones while there
/// is a free letter. Keywords beyond 26 are dropped (Dovecot keeps those
/// only in its index).
pub fn keyword_letters(dir: &Path, keywords: &[String], owner: Owner) -> io::Result<Vec<char>> {
    if keywords.is_empty() {
        return Ok(Vec::new());
    }
    let _guard = EDIT_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let path = dir.join("dovecot-keywords");
    let existing = match fs::read_to_string(&path) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let mut table: Vec<(usize, String)> = existing
        .lines()
        .filter_map(|l| {
            let (i, name) = l.split_once(' ')?;
            Some((i.parse().ok()?, name.to_owned()))
        })
        .filter(|(i, _)| *i < 26)
        .collect();
    let mut letters = Vec::new();
    let mut changed = false;
    for kw in keywords {
        let idx = match table.iter().find(|(_, n)| n == kw) {
            Some((i, _)) => Some(*i),
            None => {
                let free = (0..26).find(|i| !table.iter().any(|(j, _)| j == i));
                if let Some(i) = free {
                    table.push((i, kw.clone()));
                    changed = true;
                }
                free
            }
        };
        if let Some(i) = idx {
            // i < 26 by construction.
            letters.push(char::from(b'a' + i as u8));
        }
    }
    if changed {
        table.sort();
        let mut out = String::new();
        for (i, n) in &table {
            out.push_str(&format!("{i} {n}\n"));
        }
        replace_file(&path, out.as_bytes(), owner)?;
    }
    letters.sort_unstable();
    letters.dedup();
    Ok(letters)
}

/// The `:2,` info part for system flag letters and keyword letters, in
/// ASCII order as Dovecot writes it.
pub fn info(flags: &[char], keyword_letters: &[char]) -> String {
    let mut all: Vec<char> = flags.iter().chain(keyword_letters).copied().collect();
    all.sort_unstable();
    all.dedup();
    all.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_size_counts_only_bare_line_feeds() {
        // issue found by the demo: a header folded with CRLF inside an
        // LF-ended message made W too large and Dovecot dropped the record
        assert_eq!(bare_lfs(&[b"a\nb\r\nc\n"]), 2);
        assert_eq!(
            bare_lfs(&[b"a\r", b"\nb\n"]),
            1,
            "CR and LF split across parts"
        );
        assert_eq!(bare_lfs(&[]), 0);
    }

    #[test]
    fn store_names_sizes_and_flags() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("mail");
        ensure_maildir(&root, Owner::default()).unwrap();
        let s = store(
            &root,
            &[b"A: b\n", b"\nbody\n"],
            "",
            "vm/x:y",
            Owner::default(),
        )
        .unwrap();
        let name = s.path.file_name().unwrap().to_str().unwrap().to_owned();
        assert!(s.path.starts_with(root.join("new")));
        assert!(name.ends_with(".vm\\057x\\072y,S=11,W=14"), "{name}");
        assert_eq!(s.size, 11);
        assert_eq!(fs::read_dir(root.join("tmp")).unwrap().count(), 0);
        let flags =
            Flags::from_names(&["\\Seen \\Flagged".into(), "$Junk".into(), "\\Recent".into()]);
        assert_eq!(flags.system, vec!['F', 'S']);
        let spam = folder_dir(&root, "Spam");
        ensure_maildir(&spam, Owner::default()).unwrap();
        let kw = keyword_letters(&spam, &flags.keywords, Owner::default()).unwrap();
        let kw2 = keyword_letters(
            &spam,
            &["mykeyword".into(), "$Junk".into()],
            Owner::default(),
        )
        .unwrap();
        assert_eq!(kw, vec!['a']);
        assert_eq!(kw2, vec!['a', 'b']);
        assert_eq!(
            fs::read_to_string(spam.join("dovecot-keywords")).unwrap(),
            "0 $Junk\n1 mykeyword\n"
        );
        let s = store(
            &spam,
            &[b"x\n"],
            &info(&flags.system, &kw2),
            "vm",
            Owner::default(),
        )
        .unwrap();
        assert!(
            s.path.to_str().unwrap().ends_with(",S=2,W=3:2,FSab"),
            "{}",
            s.path.display()
        );
        assert!(s.path.starts_with(spam.join("cur")));
    }

    #[test]
    fn subscriptions_file_format() {
        let d = tempfile::tempdir().unwrap();
        subscribe(d.path(), &["Spam", "Archive/2024"], Owner::default()).unwrap();
        subscribe(d.path(), &["Spam", "Trash"], Owner::default()).unwrap();
        assert_eq!(
            fs::read_to_string(d.path().join("subscriptions")).unwrap(),
            "V\t2\n\nSpam\nArchive\t2024\nTrash\n"
        );
    }

    #[test]
    fn concurrent_folder_creation_is_safe() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("mail/Spam/Deep");
        std::thread::scope(|s| {
            for _ in 0..16 {
                s.spawn(|| ensure_maildir(&dir, Owner::default()).unwrap());
            }
        });
        assert!(is_maildir(&dir));
        assert!(!is_maildir(&d.path().join("mail/Spam")));
    }
}

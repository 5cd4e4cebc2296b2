//! LOGIC + STORAGE: the Bayes classifier (Rspamd's `classifier-bayes`):
//! tokenization of the decoded text, token counts per class in Redis or in
//! this process, learning (with duplicate detection and relearning into
//! the other class), and classification with Robinson's token
//! probabilities combined by Fisher's chi-square method (as Rspamd and
//! SpamBayes do).
//!
//! Tokens: every word of the subject and the text (decoded MIME, HTML as
//! text, lowercased, any script; runs of CJK characters as character
//! pairs), every pair of neighbouring words and of words one apart
//! (orthogonal sparse bigrams, like Rspamd's OSB tokenizer), and the host
//! names of links. Each is hashed to 64 bits (FNV-1a, stable across
//! versions and nodes).
//!
//! Redis layout under `redis_prefix`: `bayes:spam` and `bayes:ham` are
//! hashes token → count, `bayes:learns` a hash with the fields `spam` and
//! `ham`, `bayes:learned:<digest>` remembers the class a message was
//! learned as (for 90 days). Statistics are global (one set for all
//! users), Rspamd's default; with `per_user` each user's keys live under
//! `u:<user>:` ([`Store::for_user`]).

use super::content::Content;
use super::redis::{Redis, RedisError};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tracing::{error, info, warn};

/// Most tokens taken from one message.
pub const MAX_TOKENS: usize = 8192;
/// Tokens that decide a classification: the most significant ones.
pub const MAX_SIGNIFICANT: usize = 256;
/// Tokens with a probability closer than this to 0.5 say nothing.
pub const MIN_DEVIATION: f64 = 0.1;
/// The probability from which `BAYES_SPAM` (above) or `BAYES_HAM`
/// (below `1 - this`) is inserted.
pub const DECISION: f64 = 0.6;
/// How long a learned message is remembered, for "already learned".
pub const LEARNED_TTL_SECS: u64 = 90 * 86_400;
/// Most distinct tokens the in-process store keeps.
pub const MEMORY_MAX_TOKENS: usize = 4_000_000;
/// Most learned-message digests the in-process store keeps.
pub const MEMORY_MAX_LEARNED: usize = 1_000_000;

/// Spam or ham.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// Unwanted.
    Spam,
    /// Wanted.
    Ham,
}

impl Class {
    /// `spam` / `ham`.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Spam => "spam",
            Class::Ham => "ham",
        }
    }
    fn index(self) -> usize {
        match self {
            Class::Spam => 0,
            Class::Ham => 1,
        }
    }
    fn other(self) -> Class {
        match self {
            Class::Spam => Class::Ham,
            Class::Ham => Class::Spam,
        }
    }
}

/// What learning did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    /// Counted in the class.
    Learned,
    /// Moved from the other class.
    Relearned,
    /// Already learned as this class: nothing changed (rspamc gets 208).
    Already,
    /// The message has no text to learn from.
    Empty,
}

/// The store failed (temporary).
#[derive(Debug, Clone, thiserror::Error)]
pub enum BayesError {
    /// Redis failed.
    #[error(transparent)]
    Redis(#[from] RedisError),
    /// Redis answered something we did not ask for.
    #[error("unexpected answer from the Bayes store: {0}")]
    Protocol(String),
}

/// Learn counts and the number of tokens known.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stat {
    /// Messages learned as spam.
    pub spam_learns: u64,
    /// Messages learned as ham.
    pub ham_learns: u64,
    /// Distinct tokens known (spam, ham).
    pub tokens: (u64, u64),
}

/// FNV-1a, 64 bit.
fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h ^= 0xff;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        for b in *p {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30ff | 0x3400..=0x4dbf | 0x4e00..=0x9fff | 0xac00..=0xd7af | 0xf900..=0xfaff)
}

/// The words of `text`: lowercased runs of letters and digits; CJK runs
/// as overlapping character pairs; very short, very long and long
/// numeric words dropped.
pub fn words(text: &str, out: &mut Vec<String>, max: usize) {
    /// The word being read: its text and what `flush` needs to know,
    /// kept as the characters arrive (no second pass, no `Vec<char>`).
    #[derive(Default)]
    struct Word {
        text: String,
        chars: usize,
        digits_only: bool,
        cjk: bool,
    }
    fn flush(w: &mut Word, out: &mut Vec<String>) {
        if w.chars == 0 {
            return;
        }
        if w.cjk {
            let chars: Vec<char> = w.text.chars().collect();
            if chars.len() == 1 {
                out.push(w.text.clone());
            }
            for pair in chars.windows(2) {
                out.push(pair.iter().collect());
            }
        } else if (2..=32).contains(&w.chars) && !(w.digits_only && w.chars > 4) {
            out.push(w.text.clone());
        }
        w.text.clear();
        w.chars = 0;
        w.digits_only = true;
        w.cjk = false;
    }
    let mut w = Word {
        digits_only: true,
        ..Word::default()
    };
    for c in text.chars() {
        if out.len() >= max {
            return;
        }
        if c.is_ascii() {
            // Most mail text: no Unicode tables needed.
            if c.is_ascii_alphanumeric() {
                w.text.push(c.to_ascii_lowercase());
                w.chars += 1;
                w.digits_only &= c.is_ascii_digit();
            } else {
                flush(&mut w, out);
                continue;
            }
        } else if c.is_alphanumeric() {
            for l in c.to_lowercase() {
                w.text.push(l);
                w.chars += 1;
                w.digits_only &= l.is_ascii_digit();
                w.cjk |= is_cjk(l);
            }
        } else {
            flush(&mut w, out);
            continue;
        }
        if w.text.len() > 256 {
            w.text.clear();
            w.chars = 0;
            w.digits_only = true;
            w.cjk = false;
        }
    }
    flush(&mut w, out);
}

/// The tokens of a message, sorted and unique.
pub fn tokens(c: &Content) -> Vec<u64> {
    let mut ws = Vec::new();
    if let Some(s) = &c.subject {
        words(s, &mut ws, MAX_TOKENS);
    }
    words(&c.text, &mut ws, MAX_TOKENS);
    let mut t = Vec::with_capacity(ws.len() * 3 + c.url_hosts.len());
    for (i, w) in ws.iter().enumerate() {
        t.push(fnv(&[b"w", w.as_bytes()]));
        if let Some(n) = ws.get(i + 1) {
            t.push(fnv(&[b"b1", w.as_bytes(), n.as_bytes()]));
        }
        if let Some(n) = ws.get(i + 2) {
            t.push(fnv(&[b"b2", w.as_bytes(), n.as_bytes()]));
        }
    }
    for h in &c.url_hosts {
        t.push(fnv(&[b"u", h.as_bytes()]));
    }
    t.sort_unstable();
    t.dedup();
    t.truncate(MAX_TOKENS);
    t
}

/// The identity of a message for "already learned": its token set.
pub fn digest(tokens: &[u64]) -> String {
    let mut bytes = Vec::with_capacity(tokens.len() * 8);
    for t in tokens {
        bytes.extend_from_slice(&t.to_be_bytes());
    }
    let d = ring::digest::digest(&ring::digest::SHA256, &bytes);
    d.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `chi2Q(x2, v)`: the probability that chi-square with `v` (even) degrees
/// of freedom is at least `x2`.
fn chi2q(x2: f64, v: usize) -> f64 {
    let m = x2 / 2.0;
    let mut term = (-m).exp();
    let mut sum = term;
    for i in 1..v / 2 {
        term *= m / i as f64;
        sum += term;
    }
    sum.min(1.0)
}

/// The spam probability from per-token counts `(spam, ham)` and the learn
/// counts; `None` when no token says anything.
pub fn probability(counts: &[(u64, u64)], spam_learns: u64, ham_learns: u64) -> Option<f64> {
    if spam_learns == 0 || ham_learns == 0 {
        return None;
    }
    let (ns, nh) = (spam_learns as f64, ham_learns as f64);
    let mut fs: Vec<f64> = counts
        .iter()
        .filter(|(s, h)| s + h > 0)
        .map(|&(s, h)| {
            let ps = (s as f64 / ns).min(1.0);
            let ph = (h as f64 / nh).min(1.0);
            let p = ps / (ps + ph);
            let n = (s + h) as f64;
            // Robinson: shrink towards 0.5 for rare tokens (s = 1, x = 0.5).
            (0.5 + n * p) / (1.0 + n)
        })
        .filter(|f| (f - 0.5).abs() >= MIN_DEVIATION)
        .collect();
    if fs.is_empty() {
        return None;
    }
    fs.sort_by(|a, b| {
        (b - 0.5)
            .abs()
            .partial_cmp(&(a - 0.5).abs())
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    fs.truncate(MAX_SIGNIFICANT);
    let k = fs.len();
    let ln_f: f64 = fs.iter().map(|f| f.max(1e-9).ln()).sum();
    let ln_1f: f64 = fs.iter().map(|f| (1.0 - f).max(1e-9).ln()).sum();
    let spamminess = chi2q(-2.0 * ln_f, 2 * k);
    let hamminess = chi2q(-2.0 * ln_1f, 2 * k);
    Some(((1.0 + spamminess - hamminess) / 2.0).clamp(0.0, 1.0))
}

/// The in-process store (used when `redis_url` is not set). Lives as long
/// as the process, so a reload keeps what was learned. With
/// `[milterd.spam.bayes].file` it is loaded from that file at start and
/// written back (to a temporary file, then renamed) by a background thread
/// within [`SAVE_INTERVAL`] of a change.
#[derive(Debug, Default)]
pub struct Memory {
    inner: Mutex<MemoryInner>,
    file: Mutex<Option<PathBuf>>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    learns: [u64; 2],
    tokens: HashMap<u64, [u32; 2]>,
    learned: HashMap<String, Class>,
    is_dirty: bool,
}

/// How soon a change of the in-process store reaches its file.
pub const SAVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);
const MAGIC: &[u8; 8] = b"PWBAYES1";

impl MemoryInner {
    /// The file form: magic, learns, tokens (token, spam, ham), learned
    /// digests (hex text, class), all little-endian.
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + self.tokens.len() * 16 + self.learned.len() * 34);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.learns[0].to_le_bytes());
        out.extend_from_slice(&self.learns[1].to_le_bytes());
        out.extend_from_slice(&(self.tokens.len() as u64).to_le_bytes());
        for (t, c) in &self.tokens {
            out.extend_from_slice(&t.to_le_bytes());
            out.extend_from_slice(&c[0].to_le_bytes());
            out.extend_from_slice(&c[1].to_le_bytes());
        }
        let learned: Vec<(&String, &Class)> =
            self.learned.iter().filter(|(d, _)| d.len() == 32).collect();
        out.extend_from_slice(&(learned.len() as u64).to_le_bytes());
        for (d, c) in learned {
            out.extend_from_slice(d.as_bytes());
            out.push(match c {
                Class::Spam => b'S',
                Class::Ham => b'H',
            });
        }
        out
    }

    /// Reads [`MemoryInner::encode`]'s form; `None` for anything else.
    fn decode(b: &[u8]) -> Option<MemoryInner> {
        let mut r = Reader(b);
        if r.take(8)? != MAGIC {
            return None;
        }
        let mut m = MemoryInner {
            learns: [r.u64()?, r.u64()?],
            ..MemoryInner::default()
        };
        let n = usize::try_from(r.u64()?).ok()?;
        // Checked against the bytes there before anything is allocated.
        if n > MEMORY_MAX_TOKENS || n.checked_mul(16)? > r.0.len() {
            return None;
        }
        m.tokens.reserve(n);
        for _ in 0..n {
            let t = r.u64()?;
            m.tokens.insert(t, [r.u32()?, r.u32()?]);
        }
        let n = usize::try_from(r.u64()?).ok()?;
        if n > MEMORY_MAX_LEARNED || n.checked_mul(33)? > r.0.len() {
            return None;
        }
        for _ in 0..n {
            let d = std::str::from_utf8(r.take(32)?).ok()?.to_owned();
            let c = match r.take(1)?[0] {
                b'S' => Class::Spam,
                b'H' => Class::Ham,
                _ => return None,
            };
            m.learned.insert(d, c);
        }
        r.0.is_empty().then_some(m)
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
}

impl Memory {
    /// Keeps the store in `path`: loads it now (once per path; a missing
    /// file is an empty store) and starts the writer thread the first time.
    pub fn attach(self: &Arc<Self>, path: &Path) {
        {
            let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
            if f.as_deref() == Some(path) {
                return;
            }
            let is_first = f.is_none();
            *f = Some(path.to_owned());
            if is_first {
                let me = Arc::clone(self);
                let spawned = std::thread::Builder::new()
                    .name("bayes-writer".into())
                    .spawn(move || {
                        loop {
                            std::thread::sleep(SAVE_INTERVAL);
                            me.save_if_dirty();
                        }
                    });
                if let Err(e) = spawned {
                    warn!(error = %e, "cannot start the Bayes file writer; learning is kept in memory only");
                }
            }
        }
        match std::fs::read(path) {
            Ok(bytes) => match MemoryInner::decode(&bytes) {
                Some(m) => {
                    info!(file = %path.display(), spam = m.learns[0], ham = m.learns[1], tokens = m.tokens.len(), "bayes statistics loaded");
                    *self.inner.lock().unwrap_or_else(|e| e.into_inner()) = m;
                }
                None => {
                    error!(file = %path.display(), "bayes file is damaged or not ours; starting empty, it is overwritten at the next learn")
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                info!(file = %path.display(), "no bayes file yet; starting empty");
            }
            Err(e) => {
                error!(file = %path.display(), error = %e, "cannot read the bayes file; starting empty")
            }
        }
    }

    /// Writes the store to its file if it changed since the last write.
    pub fn save_if_dirty(&self) {
        let Some(path) = self.file.lock().unwrap_or_else(|e| e.into_inner()).clone() else {
            return;
        };
        let bytes = {
            let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            if !g.is_dirty {
                return;
            }
            g.is_dirty = false;
            g.encode()
        };
        let tmp = path.with_extension("tmp");
        let written = std::fs::File::create(&tmp)
            .and_then(|mut f| {
                use std::io::Write;
                f.write_all(&bytes)?;
                f.sync_all()
            })
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            error!(file = %path.display(), error = %e, "cannot write the bayes file; retrying");
            self.inner
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_dirty = true;
        }
    }
}

/// Where the counts live.
#[derive(Debug, Clone)]
pub enum Store {
    /// Redis, keys under the prefix.
    Redis(Arc<Redis>, String),
    /// This process.
    Memory(Arc<Memory>),
}

fn hex(t: u64) -> String {
    format!("{t:016x}")
}

/// A user name as a Redis key part: lowercase, only `a-z 0-9 @ . _ + -`,
/// at most 254 characters; `None` for anything else.
pub fn user_key(user: &str) -> Option<String> {
    let u = user.trim().trim_matches(['<', '>']).to_lowercase();
    let ok = !u.is_empty()
        && u.len() <= 254
        && u.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'@' | b'.' | b'_' | b'+' | b'-'));
    ok.then_some(u)
}

impl Store {
    /// The statistics of `user` (Rspamd's `per_user`): Redis keys under
    /// `u:<user>:`; the in-process store has only the global set.
    pub fn for_user(&self, user: &str) -> Store {
        match self {
            Store::Redis(r, p) => Store::Redis(r.clone(), format!("{p}u:{user}:")),
            Store::Memory(m) => Store::Memory(m.clone()),
        }
    }

    /// Learn counts and per-token counts of `tokens`.
    pub async fn counts(&self, tokens: &[u64]) -> Result<(u64, u64, Vec<(u64, u64)>), BayesError> {
        match self {
            Store::Memory(m) => {
                let g = m.inner.lock().unwrap_or_else(|e| e.into_inner());
                let c = tokens
                    .iter()
                    .map(|t| {
                        g.tokens
                            .get(t)
                            .map_or((0, 0), |c| (u64::from(c[0]), u64::from(c[1])))
                    })
                    .collect();
                Ok((g.learns[0], g.learns[1], c))
            }
            Store::Redis(r, p) => {
                let fields: Vec<String> = tokens.iter().map(|t| hex(*t)).collect();
                let mut pipe = redis::pipe();
                pipe.cmd("HMGET")
                    .arg(format!("{p}bayes:learns"))
                    .arg("spam")
                    .arg("ham");
                if !fields.is_empty() {
                    pipe.cmd("HMGET").arg(format!("{p}bayes:spam")).arg(&fields);
                    pipe.cmd("HMGET").arg(format!("{p}bayes:ham")).arg(&fields);
                }
                let mut out: Vec<Vec<Option<u64>>> = r.query(&pipe).await?;
                let learns = out.first().cloned().unwrap_or_default();
                let (s, h) = (
                    learns.first().copied().flatten().unwrap_or(0),
                    learns.get(1).copied().flatten().unwrap_or(0),
                );
                if fields.is_empty() {
                    return Ok((s, h, Vec::new()));
                }
                if out.len() != 3 || out[1].len() != fields.len() || out[2].len() != fields.len() {
                    return Err(BayesError::Protocol(format!("{} replies", out.len())));
                }
                let ham = out.pop().unwrap_or_default();
                let spam = out.pop().unwrap_or_default();
                let c = spam
                    .into_iter()
                    .zip(ham)
                    .map(|(s, h)| (s.unwrap_or(0), h.unwrap_or(0)))
                    .collect();
                Ok((s, h, c))
            }
        }
    }

    /// Learns `tokens` (digest `digest`) as `class`.
    pub async fn learn(
        &self,
        tokens: &[u64],
        digest: &str,
        class: Class,
    ) -> Result<Learned, BayesError> {
        if tokens.is_empty() {
            return Ok(Learned::Empty);
        }
        match self {
            Store::Memory(m) => {
                let mut g = m.inner.lock().unwrap_or_else(|e| e.into_inner());
                let previous = g.learned.get(digest).copied();
                if previous == Some(class) {
                    return Ok(Learned::Already);
                }
                if let Some(old) = previous {
                    g.learns[old.index()] = g.learns[old.index()].saturating_sub(1);
                    for t in tokens {
                        if let Some(c) = g.tokens.get_mut(t) {
                            c[old.index()] = c[old.index()].saturating_sub(1);
                        }
                    }
                }
                g.learns[class.index()] += 1;
                for t in tokens {
                    if g.tokens.len() >= MEMORY_MAX_TOKENS && !g.tokens.contains_key(t) {
                        continue;
                    }
                    let c = g.tokens.entry(*t).or_insert([0, 0]);
                    c[class.index()] = c[class.index()].saturating_add(1);
                }
                if g.learned.len() >= MEMORY_MAX_LEARNED {
                    // Only duplicate detection is lost, never counts.
                    g.learned.clear();
                }
                g.learned.insert(digest.to_owned(), class);
                g.is_dirty = true;
                Ok(if previous.is_some() {
                    Learned::Relearned
                } else {
                    Learned::Learned
                })
            }
            Store::Redis(r, p) => {
                let key = format!("{p}bayes:learned:{digest}");
                let mut get = redis::pipe();
                get.cmd("GET").arg(&key);
                let (previous,): (Option<String>,) = r.query(&get).await?;
                let previous = match previous.as_deref() {
                    Some("spam") => Some(Class::Spam),
                    Some("ham") => Some(Class::Ham),
                    _ => None,
                };
                if previous == Some(class) {
                    return Ok(Learned::Already);
                }
                let mut pipe = redis::pipe();
                pipe.atomic();
                if let Some(old) = previous {
                    debug_assert_eq!(old, class.other());
                    pipe.cmd("HINCRBY")
                        .arg(format!("{p}bayes:learns"))
                        .arg(old.as_str())
                        .arg(-1)
                        .ignore();
                    for t in tokens {
                        pipe.cmd("HINCRBY")
                            .arg(format!("{p}bayes:{}", old.as_str()))
                            .arg(hex(*t))
                            .arg(-1)
                            .ignore();
                    }
                }
                pipe.cmd("HINCRBY")
                    .arg(format!("{p}bayes:learns"))
                    .arg(class.as_str())
                    .arg(1)
                    .ignore();
                for t in tokens {
                    pipe.cmd("HINCRBY")
                        .arg(format!("{p}bayes:{}", class.as_str()))
                        .arg(hex(*t))
                        .arg(1)
                        .ignore();
                }
                pipe.cmd("SET")
                    .arg(&key)
                    .arg(class.as_str())
                    .arg("EX")
                    .arg(LEARNED_TTL_SECS)
                    .ignore();
                r.query::<()>(&pipe).await?;
                Ok(if previous.is_some() {
                    Learned::Relearned
                } else {
                    Learned::Learned
                })
            }
        }
    }

    /// Learn counts and token counts.
    pub async fn stat(&self) -> Result<Stat, BayesError> {
        match self {
            Store::Memory(m) => {
                let g = m.inner.lock().unwrap_or_else(|e| e.into_inner());
                let spam = g.tokens.values().filter(|c| c[0] > 0).count() as u64;
                let ham = g.tokens.values().filter(|c| c[1] > 0).count() as u64;
                Ok(Stat {
                    spam_learns: g.learns[0],
                    ham_learns: g.learns[1],
                    tokens: (spam, ham),
                })
            }
            Store::Redis(r, p) => {
                let mut pipe = redis::pipe();
                pipe.cmd("HMGET")
                    .arg(format!("{p}bayes:learns"))
                    .arg("spam")
                    .arg("ham");
                pipe.cmd("HLEN").arg(format!("{p}bayes:spam"));
                pipe.cmd("HLEN").arg(format!("{p}bayes:ham"));
                let (learns, s, h): (Vec<Option<u64>>, u64, u64) = r.query(&pipe).await?;
                Ok(Stat {
                    spam_learns: learns.first().copied().flatten().unwrap_or(0),
                    ham_learns: learns.get(1).copied().flatten().unwrap_or(0),
                    tokens: (s, h),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::content::parse;
    use super::*;

    #[test]
    fn words_of_any_script() {
        let mut w = Vec::new();
        words("Grüße, WORLD! it's 2026 and 1234567; 東京都", &mut w, 100);
        assert_eq!(w, ["grüße", "world", "it", "2026", "and", "東京", "京都"]);
        let mut w = Vec::new();
        words(&"a".repeat(10_000), &mut w, 100);
        assert!(w.is_empty());
        let mut w = Vec::new();
        words(&"ab ".repeat(10_000), &mut w, 100);
        assert_eq!(w.len(), 100);
    }

    /// The first, plain version of [`words`] (one pass over chars, a
    /// `Vec<char>` per word): the fast one must say the same, or learned
    /// Bayes data would stop matching.
    fn words_reference(text: &str, out: &mut Vec<String>, max: usize) {
        let mut cur = String::new();
        let flush = |cur: &mut String, out: &mut Vec<String>| {
            if cur.is_empty() {
                return;
            }
            let chars: Vec<char> = cur.chars().collect();
            if chars.iter().any(|c| is_cjk(*c)) {
                if chars.len() == 1 {
                    out.push(cur.clone());
                }
                for w in chars.windows(2) {
                    out.push(w.iter().collect());
                }
            } else {
                let n = chars.len();
                let is_number = chars.iter().all(|c| c.is_ascii_digit());
                if (2..=32).contains(&n) && !(is_number && n > 4) {
                    out.push(cur.clone());
                }
            }
            cur.clear();
        };
        for c in text.chars() {
            if out.len() >= max {
                return;
            }
            if c.is_alphanumeric() {
                cur.extend(c.to_lowercase());
                if cur.len() > 256 {
                    cur.clear();
                }
            } else {
                flush(&mut cur, out);
            }
        }
        flush(&mut cur, out);
    }

    #[test]
    fn fast_words_say_what_the_reference_says() {
        let mut texts: Vec<String> = [
            "Grüße, WORLD! it's 2026 and 1234567; 東京都",
            "ÀÉÎÕÜ İstanbul ǅemal ﬁnance ß ΣΑΣ Ωmega 12345 1234 x1 a",
            "東 東京 한국어 テスト ｱｲｳ mixed東京word 九十九 ١٢٣٤٥ ߀߁",
            "<b>Buy</b>now!!! http://bit.ly/x?y=1&z=2 e-mail: a.b@c.de",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        texts.push("x".repeat(300) + " tail " + &"é".repeat(200) + " ok");
        texts.push("ab ".repeat(50));
        // A deterministic mix of characters from many scripts.
        let pool: Vec<char> = "aZ9 .,-_東京한ßİǅΣ١߀\u{10400}\u{1F600}\tÅ"
            .chars()
            .collect();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..200 {
            let mut t = String::new();
            for _ in 0..120 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                t.push(pool[(x % pool.len() as u64) as usize]);
            }
            texts.push(t);
        }
        for t in &texts {
            for max in [3, 1000] {
                let (mut fast, mut slow) = (Vec::new(), Vec::new());
                words(t, &mut fast, max);
                words_reference(t, &mut slow, max);
                assert_eq!(fast, slow, "{t:?} (max {max})");
            }
        }
    }

    #[test]
    fn tokens_are_the_same_for_encoded_and_plain_text() {
        let plain = parse(b"Subject: Hallo\r\n\r\nK\xc3\xa4se und Brot, billig\r\n");
        let qp = parse(b"Subject: =?utf-8?Q?Hallo?=\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nK=C3=A4se und Brot, billig\r\n");
        let html = parse(b"Subject: Hallo\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\nPHA+S8Okc2UgPGI+dW5kPC9iPiBCcm90LCBiaWxsaWc8L3A+\r\n");
        assert_eq!(tokens(&plain), tokens(&qp));
        assert_eq!(tokens(&plain), tokens(&html));
        assert_eq!(digest(&tokens(&plain)), digest(&tokens(&qp)));
    }

    #[test]
    fn probability_follows_the_evidence() {
        // Tokens seen only in spam.
        let p = probability(&[(50, 0), (40, 1), (30, 0)], 100, 100).unwrap();
        assert!(p > 0.95, "{p}");
        let p = probability(&[(0, 50), (1, 40), (0, 30)], 100, 100).unwrap();
        assert!(p < 0.05, "{p}");
        // Balanced tokens say nothing.
        assert_eq!(probability(&[(10, 10), (5, 5)], 100, 100), None);
        assert_eq!(probability(&[(10, 0)], 0, 100), None);
    }

    #[tokio::test]
    async fn memory_store_survives_in_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bayes.db");
        let m = Arc::new(Memory::default());
        m.attach(&path);
        let s = Store::Memory(m.clone());
        let d = "0123456789abcdef0123456789abcdef";
        s.learn(&[1, 2], d, Class::Spam).await.unwrap();
        m.save_if_dirty();
        let again = Arc::new(Memory::default());
        again.attach(&path);
        let s2 = Store::Memory(again);
        assert_eq!(
            s2.counts(&[1, 3]).await.unwrap(),
            (1, 0, vec![(1, 0), (0, 0)])
        );
        assert_eq!(
            s2.learn(&[1, 2], d, Class::Spam).await.unwrap(),
            Learned::Already
        );
        // Damaged files are refused, never trusted.
        let good = std::fs::read(&path).unwrap();
        for cut in [0, 7, 8, 20, good.len() - 1] {
            assert!(MemoryInner::decode(&good[..cut]).is_none(), "{cut}");
        }
        let mut huge = good.clone();
        huge[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(MemoryInner::decode(&huge).is_none());
    }

    #[tokio::test]
    async fn memory_store_learns_relearns_and_detects_duplicates() {
        let s = Store::Memory(Arc::new(Memory::default()));
        let t = vec![1, 2, 3];
        assert_eq!(
            s.learn(&t, "d1", Class::Spam).await.unwrap(),
            Learned::Learned
        );
        assert_eq!(
            s.learn(&t, "d1", Class::Spam).await.unwrap(),
            Learned::Already
        );
        let (ns, nh, c) = s.counts(&[1, 9]).await.unwrap();
        assert_eq!((ns, nh, c), (1, 0, vec![(1, 0), (0, 0)]));
        assert_eq!(
            s.learn(&t, "d1", Class::Ham).await.unwrap(),
            Learned::Relearned
        );
        let (ns, nh, c) = s.counts(&[1]).await.unwrap();
        assert_eq!((ns, nh, c), (0, 1, vec![(0, 1)]));
        assert_eq!(
            s.learn(&[], "d2", Class::Ham).await.unwrap(),
            Learned::Empty
        );
        let st = s.stat().await.unwrap();
        assert_eq!((st.spam_learns, st.ham_learns, st.tokens), (0, 1, (0, 3)));
    }
}

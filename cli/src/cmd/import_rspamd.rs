//! `postwerk import-rspamd DIR`: reads the guide's Rspamd settings
//! (`DIR/local.d/*.conf`, `DIR/override.d/*.conf`, `worker-controller.inc`)
//! and prints the equivalent `[milterd…]` tables of postwerk.toml, saying on
//! stderr what it could not carry over. `override.d` wins over `local.d`,
//! as in Rspamd. Reads Rspamd's UCL syntax (the subset its config files
//! use: `key = value;`, sections `{ }`, arrays, comments, `.include`).

use anyhow::{Context, bail};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// `postwerk import-rspamd …`
#[derive(clap::Args, Debug)]
pub struct ImportRspamdArgs {
    /// Rspamd's configuration directory (the guide's /etc/rspamd)
    pub dir: PathBuf,
    /// Write the tables to this file instead of standard output
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// A UCL value.
#[derive(Debug, Clone, PartialEq)]
pub enum Ucl {
    /// A string (quoted or bare word).
    Str(String),
    /// A number.
    Num(f64),
    /// `true`/`false`/`yes`/`no`/`on`/`off`.
    Bool(bool),
    /// `[ … ]`.
    Array(Vec<Ucl>),
    /// `{ … }` or a file: keys in order (a key may repeat).
    Object(Vec<(String, Ucl)>),
}

impl Ucl {
    fn get(&self, key: &str) -> Option<&Ucl> {
        match self {
            Ucl::Object(items) => items.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn as_str(&self) -> Option<String> {
        match self {
            Ucl::Str(s) => Some(s.clone()),
            Ucl::Num(n) => Some(n.to_string()),
            Ucl::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    fn as_f64(&self) -> Option<f64> {
        match self {
            Ucl::Num(n) => Some(*n),
            Ucl::Str(s) => s.parse().ok(),
            _ => None,
        }
    }

    fn as_bool(&self) -> Option<bool> {
        match self {
            Ucl::Bool(b) => Some(*b),
            Ucl::Str(s) => word_bool(s),
            _ => None,
        }
    }

    fn strings(&self) -> Vec<String> {
        match self {
            Ucl::Array(a) => a.iter().filter_map(Ucl::as_str).collect(),
            other => other.as_str().into_iter().collect(),
        }
    }
}

fn word_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" => Some(true),
        "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Parses a UCL file. Errors name the line.
pub fn parse(text: &str) -> anyhow::Result<Ucl> {
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
    };
    let items = p.body(None)?;
    Ok(Ucl::Object(items))
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn line(&self) -> usize {
        self.s[..self.i.min(self.s.len())]
            .iter()
            .filter(|&&c| c == b'\n')
            .count()
            + 1
    }

    fn skip_ws(&mut self) {
        loop {
            while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
                self.i += 1;
            }
            if self.s[self.i..].starts_with(b"#") || self.s[self.i..].starts_with(b"//") {
                while self.i < self.s.len() && self.s[self.i] != b'\n' {
                    self.i += 1;
                }
            } else if self.s[self.i..].starts_with(b"/*") {
                match self.s[self.i + 2..].windows(2).position(|w| w == b"*/") {
                    Some(end) => self.i += 2 + end + 2,
                    None => self.i = self.s.len(),
                }
            } else {
                return;
            }
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.i).copied()
    }

    /// Statements until `close` (or the end of the file).
    fn body(&mut self, close: Option<u8>) -> anyhow::Result<Vec<(String, Ucl)>> {
        let mut items = Vec::new();
        loop {
            match self.peek() {
                None if close.is_none() => return Ok(items),
                None => bail!("line {}: missing `}}`", self.line()),
                Some(c) if Some(c) == close => {
                    self.i += 1;
                    return Ok(items);
                }
                Some(b';') | Some(b',') => self.i += 1,
                Some(b'.') => {
                    // `.include "…"` and other macros: skipped (their files
                    // are read by name where they matter).
                    while self.i < self.s.len() && self.s[self.i] != b'\n' {
                        self.i += 1;
                    }
                }
                Some(_) => {
                    let key = self.word()?;
                    let value = match self.peek() {
                        Some(b'=') | Some(b':') => {
                            self.i += 1;
                            self.value()?
                        }
                        Some(b'{') => self.value()?,
                        _ => bail!("line {}: `{key}` has no value", self.line()),
                    };
                    items.push((key, value));
                }
            }
        }
    }

    fn word(&mut self) -> anyhow::Result<String> {
        match self.peek() {
            Some(q @ (b'"' | b'\'')) => self.quoted(q),
            Some(_) => {
                let start = self.i;
                while self.i < self.s.len()
                    && !self.s[self.i].is_ascii_whitespace()
                    && !b"=:{}[];,#".contains(&self.s[self.i])
                {
                    self.i += 1;
                }
                if start == self.i {
                    bail!("line {}: expected a name", self.line());
                }
                Ok(String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
            }
            None => bail!("unexpected end of file"),
        }
    }

    fn quoted(&mut self, q: u8) -> anyhow::Result<String> {
        self.i += 1;
        let mut out = Vec::new();
        while self.i < self.s.len() {
            let c = self.s[self.i];
            self.i += 1;
            if c == q {
                return Ok(String::from_utf8_lossy(&out).into_owned());
            }
            if c == b'\\' && self.i < self.s.len() {
                let e = self.s[self.i];
                self.i += 1;
                out.push(match e {
                    b'n' => b'\n',
                    b't' => b'\t',
                    other => other,
                });
            } else {
                out.push(c);
            }
        }
        bail!("line {}: unterminated string", self.line())
    }

    fn value(&mut self) -> anyhow::Result<Ucl> {
        match self.peek() {
            Some(b'{') => {
                self.i += 1;
                Ok(Ucl::Object(self.body(Some(b'}'))?))
            }
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                loop {
                    match self.peek() {
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Ucl::Array(items));
                        }
                        Some(b',') | Some(b';') => self.i += 1,
                        Some(_) => items.push(self.value()?),
                        None => bail!("line {}: missing `]`", self.line()),
                    }
                }
            }
            Some(q @ (b'"' | b'\'')) => Ok(Ucl::Str(self.quoted(q)?)),
            Some(_) => {
                let w = self.word()?;
                Ok(if let Some(b) = word_bool(&w) {
                    Ucl::Bool(b)
                } else if let Ok(n) = w.parse::<f64>() {
                    Ucl::Num(n)
                } else {
                    Ucl::Str(w)
                })
            }
            None => bail!("unexpected end of file"),
        }
    }
}

/// Reads `name` from local.d and override.d, override winning key by key.
fn read_conf(dir: &Path, name: &str) -> anyhow::Result<Option<Ucl>> {
    let mut merged: Vec<(String, Ucl)> = Vec::new();
    let mut found = false;
    for sub in ["local.d", "override.d"] {
        let path = dir.join(sub).join(name);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        found = true;
        let Ucl::Object(items) = parse(&text).with_context(|| format!("{}", path.display()))?
        else {
            continue;
        };
        for (k, v) in items {
            merged.retain(|(mk, _)| *mk != k);
            merged.push((k, v));
        }
    }
    Ok(found.then_some(Ucl::Object(merged)))
}

/// TOML string literal.
fn q(s: &str) -> String {
    toml_quote(s)
}

fn toml_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The converted configuration and what could not be carried over.
#[derive(Debug, Default)]
pub struct Imported {
    /// TOML tables for postwerk.toml.
    pub toml: String,
    /// One line per setting left behind.
    pub skipped: Vec<String>,
}

/// Converts the Rspamd configuration in `dir`.
pub fn convert(dir: &Path) -> anyhow::Result<Imported> {
    if !dir.join("local.d").is_dir() && !dir.join("override.d").is_dir() {
        bail!(
            "{} has neither local.d/ nor override.d/: give Rspamd's configuration directory (/etc/rspamd)",
            dir.display()
        );
    }
    let confdir = dir.display().to_string();
    let local_confdir = dir.display().to_string();
    let expand = |s: &str| {
        s.replace("$LOCAL_CONFDIR", &local_confdir)
            .replace("${LOCAL_CONFDIR}", &local_confdir)
            .replace("$CONFDIR", &confdir)
            .replace("${CONFDIR}", &confdir)
    };
    let mut out = Imported::default();
    let t = &mut out.toml;
    let _ = writeln!(
        t,
        "# Imported by `postwerk import-rspamd {}`.",
        dir.display()
    );

    // DKIM signing.
    if let Some(d) = read_conf(dir, "dkim_signing.conf")? {
        let _ = writeln!(t, "\n[milterd.dkim]\nsign = true");
        if let Some(sel) = d.get("selector") {
            let s = sel.strings();
            match s.as_slice() {
                [one] => {
                    let _ = writeln!(t, "selector = {}", q(one));
                }
                many if !many.is_empty() => {
                    let list: Vec<String> = many.iter().map(|x| q(x)).collect();
                    let _ = writeln!(t, "selector = [{}]", list.join(", "));
                }
                _ => {}
            }
        }
        if let Some(p) = d.get("path").and_then(Ucl::as_str) {
            let _ = writeln!(t, "path = {}", q(&expand(&p)));
        }
        if let Some(b) = d.get("allow_username_mismatch").and_then(Ucl::as_bool) {
            let _ = writeln!(t, "allow_username_mismatch = {b}");
        }
        for (k, _) in object_items(&d) {
            if !["selector", "path", "allow_username_mismatch"].contains(&k.as_str()) {
                out.skipped.push(format!(
                    "dkim_signing.conf: `{k}` (milterd has no such setting)"
                ));
            }
        }
    }
    // ARC sealing: Rspamd's arc module has the dkim_signing settings; milterd
    // seals forwarded and outgoing mail with one RSA key (ARC allows one).
    if let Some(a) = read_conf(dir, "arc.conf")? {
        // Rspamd's defaults: sign_authenticated = false, sign_inbound = true.
        let outgoing = a
            .get("sign_authenticated")
            .and_then(Ucl::as_bool)
            .unwrap_or(false);
        let _ = writeln!(
            t,
            "\n[milterd.arc]\nseal_forwarded = true\nseal_outgoing = {outgoing}"
        );
        if let Some(sel) = a.get("selector") {
            let s = sel.strings();
            if let Some(first) = s.first() {
                let _ = writeln!(t, "selector = {}", q(first));
            }
            if s.len() > 1 {
                out.skipped.push(format!(
                    "arc.conf: selectors after `{}` (an ARC set has one signature; milterd seals with the first)",
                    s[0]
                ));
            }
        }
        if let Some(p) = a.get("path").and_then(Ucl::as_str) {
            let _ = writeln!(t, "path = {}", q(&expand(&p)));
        }
        for (k, _) in object_items(&a) {
            // allow_username_mismatch: milterd seals for any of our
            // domains' senders, as [milterd.dkim] signs them.
            if !["selector", "path", "allow_username_mismatch"].contains(&k.as_str()) {
                out.skipped
                    .push(format!("arc.conf: `{k}` (milterd has no such setting)"));
            }
        }
    }

    // Spam scoring.
    let _ = writeln!(t, "\n[milterd.spam]\nenabled = true");
    if let Some(r) = read_conf(dir, "redis.conf")? {
        let servers = r
            .get("servers")
            .or_else(|| r.get("write_servers"))
            .map(Ucl::strings)
            .unwrap_or_default();
        if let Some(first) = servers
            .first()
            .and_then(|s| s.split(',').next())
            .map(str::trim)
        {
            let url = if first.contains(':') {
                format!("redis://{first}")
            } else {
                format!("redis://{first}:6379")
            };
            let _ = writeln!(t, "redis_url = {}", q(&url));
        }
        if r.get("password").is_some() {
            out.skipped.push(
                "redis.conf: `password` (put it into redis_url as redis://:PASSWORD@host:port)"
                    .into(),
            );
        }
    }
    if let Some(a) = read_conf(dir, "actions.conf")? {
        let _ = writeln!(t, "\n[milterd.spam.actions]");
        for (ours, names) in [
            ("reject", &["reject"][..]),
            ("add_header", &["add_header", "add header"][..]),
            ("greylist", &["greylist"][..]),
        ] {
            let Some(v) = names.iter().find_map(|n| a.get(n)) else {
                continue;
            };
            match v.as_f64() {
                Some(n) => {
                    let _ = writeln!(t, "{ours} = {n:?}");
                }
                // `greylist = null;` / `false` switches the action off.
                None => {
                    let _ = writeln!(t, "{ours} = false");
                }
            }
        }
        for (k, _) in object_items(&a) {
            if !["reject", "add_header", "add header", "greylist"].contains(&k.as_str()) {
                out.skipped.push(format!("actions.conf: `{k}`"));
            }
        }
    }
    let bayes = read_conf(dir, "classifier-bayes.conf")?;
    if let Some(b) = &bayes {
        let _ = writeln!(t, "\n[milterd.spam.bayes]\nenabled = true");
        if let Some(al) = b.get("autolearn") {
            match al {
                Ucl::Bool(v) => {
                    let _ = writeln!(t, "autolearn = {v}");
                }
                Ucl::Array(a) if a.len() == 2 => {
                    let _ = writeln!(t, "autolearn = true");
                    if let (Some(ham), Some(spam)) = (a[0].as_f64(), a[1].as_f64()) {
                        let _ = writeln!(t, "autolearn_ham_score = {ham:?}");
                        let _ = writeln!(t, "autolearn_spam_score = {spam:?}");
                    }
                }
                _ => out.skipped.push(
                    "classifier-bayes.conf: `autolearn` in a form milterd does not read".into(),
                ),
            }
        }
        if let Some(n) = b.get("min_learns").and_then(Ucl::as_f64) {
            let _ = writeln!(t, "min_learns = {}", n as u64);
        }
        if let Some(backend) = b.get("backend").and_then(Ucl::as_str)
            && backend != "redis"
        {
            out.skipped.push(format!(
                "classifier-bayes.conf: backend `{backend}` (milterd keeps Bayes in Redis, or in its own file without Redis; learned data is not converted)"
            ));
        }
        out.skipped.push(
            "classifier-bayes.conf: the learned statistics themselves (Rspamd's Redis keys): train milterd again, e.g. with `rspamc learn_spam` on your Spam folders"
                .into(),
        );
    }
    if let Some(c) = read_controller(dir)? {
        let _ = writeln!(
            t,
            "\n[milterd.spam.controller]\nlisten = [\"inet:127.0.0.1:11334\"]"
        );
        if let Some(p) = c.get("password").and_then(Ucl::as_str) {
            let _ = writeln!(t, "password = {}", q(&p));
        }
        if let Some(p) = c.get("enable_password").and_then(Ucl::as_str) {
            let _ = writeln!(t, "enable_password = {}", q(&p));
        }
        if let Some(ips) = c.get("secure_ip") {
            let list: Vec<String> = ips.strings().iter().map(|x| q(x)).collect();
            let _ = writeln!(t, "secure_ip = [{}]", list.join(", "));
        }
    }
    if let Some(m) = read_conf(dir, "multimap.conf")? {
        for (name, rule) in object_items(&m) {
            let kind = rule.get("type").and_then(Ucl::as_str).unwrap_or_default();
            if !["ip", "from"].contains(&kind.as_str()) {
                out.skipped.push(format!(
                    "multimap.conf: {name} of type `{kind}` (milterd reads ip and from maps)"
                ));
                continue;
            }
            let _ = writeln!(
                t,
                "\n[[milterd.spam.multimap]]\nname = {}\ntype = {}",
                q(&name),
                q(&kind)
            );
            if let Some(map) = rule.get("map").and_then(Ucl::as_str) {
                let _ = writeln!(t, "map = {}", q(&expand(&map)));
            }
            for key in ["description", "action"] {
                if let Some(v) = rule.get(key).and_then(Ucl::as_str) {
                    let _ = writeln!(t, "{key} = {}", q(&v));
                }
            }
            if let Some(s) = rule.get("score").and_then(Ucl::as_f64) {
                let _ = writeln!(t, "score = {s:?}");
            }
        }
    }
    if let Some(h) = read_conf(dir, "milter_headers.conf")? {
        let known = [
            "x-spamd-bar",
            "x-spam-level",
            "x-spam-status",
            "authentication-results",
            "x-spamd-result",
            "spam-header",
        ];
        for u in h.get("use").map(Ucl::strings).unwrap_or_default() {
            if !known.contains(&u.as_str()) {
                out.skipped.push(format!(
                    "milter_headers.conf: header routine `{u}` (milterd adds X-Spamd-Bar, X-Spam-Level, X-Spam-Status, X-Spam/X-Spam-Flag on add header, and Authentication-Results)"
                ));
            }
        }
    }
    for (file, what) in [
        (
            "rbl.conf",
            "DNS lists: add [[milterd.spam.dnsbl]] entries by hand",
        ),
        (
            "greylist.conf",
            "greylisting settings: see [milterd.spam.greylist]",
        ),
        ("phishing.conf", "phishing module"),
        ("fuzzy_check.conf", "fuzzy hashes (not in milterd)"),
    ] {
        if read_conf(dir, file)?.is_some() {
            out.skipped.push(format!("{file}: {what}"));
        }
    }
    Ok(out)
}

/// `worker-controller.inc` of local.d (override.d wins).
fn read_controller(dir: &Path) -> anyhow::Result<Option<Ucl>> {
    read_conf(dir, "worker-controller.inc")
}

fn object_items(u: &Ucl) -> Vec<(String, Ucl)> {
    match u {
        Ucl::Object(items) => {
            let mut seen: BTreeMap<String, Ucl> = BTreeMap::new();
            for (k, v) in items {
                seen.insert(k.clone(), v.clone());
            }
            // Keep file order, last value per key.
            let mut out = Vec::new();
            for (k, _) in items {
                if let Some(v) = seen.remove(k) {
                    out.push((k.clone(), v));
                }
            }
            out
        }
        _ => Vec::new(),
    }
}

/// Runs `postwerk import-rspamd`.
pub fn run(args: ImportRspamdArgs) -> anyhow::Result<()> {
    let imported = convert(&args.dir)?;
    match &args.out {
        Some(path) => {
            std::fs::write(path, &imported.toml)
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!(
                "postwerk: wrote {}; add its tables to postwerk.toml and run `postwerk config check`",
                path.display()
            );
        }
        None => print!("{}", imported.toml),
    }
    if imported.skipped.is_empty() {
        eprintln!("postwerk: everything was carried over");
    } else {
        eprintln!("postwerk: not carried over:");
        for s in &imported.skipped {
            eprintln!("  - {s}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ucl_subset() {
        let u = parse(
            r#"
# comment
servers = "127.0.0.1"; // trailing
/* block
   comment */
autolearn = [-5, 15];
enabled = yes
WHITELIST_IP {
    type = "ip";
    map = "$CONFDIR/local.d/whitelist_ip.map";
}
.include(try=true) "$LOCAL_CONFDIR/other.conf"
reject: 15.5,
use = ["x-spamd-bar", 'x-spam-level'];
"#,
        )
        .unwrap();
        assert_eq!(u.get("servers"), Some(&Ucl::Str("127.0.0.1".into())));
        assert_eq!(
            u.get("autolearn"),
            Some(&Ucl::Array(vec![Ucl::Num(-5.0), Ucl::Num(15.0)]))
        );
        assert_eq!(u.get("enabled"), Some(&Ucl::Bool(true)));
        assert_eq!(
            u.get("WHITELIST_IP").and_then(|w| w.get("type")),
            Some(&Ucl::Str("ip".into()))
        );
        assert_eq!(u.get("reject").and_then(Ucl::as_f64), Some(15.5));
        assert_eq!(
            u.get("use").map(Ucl::strings),
            Some(vec!["x-spamd-bar".to_owned(), "x-spam-level".to_owned()])
        );
        assert!(parse("a = {").is_err());
        assert!(parse("a = \"x").is_err());
        assert!(parse("lonely").is_err());
    }
}

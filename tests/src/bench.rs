//! What the `bench-*` binaries share (bench/run, issue 10): the run's
//! settings from the environment, the statistics (medians with min–max of
//! alternating rounds, paired ratios), process probes (resident memory and
//! CPU seconds of a daemon or a whole process tree), the vmail fixture at
//! 1× or 10× scale loaded with bulk INSERTs, and the result rows, one JSON
//! object per line in `$BENCH_OUT`, that `bench-report` turns into the
//! Markdown table and the chart. A report, never a test: nothing here
//! asserts on time (STYLE.md §7.8).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::exec::run;

/// How this run was asked for (bench/run sets the variables).
#[derive(Debug, Clone)]
pub struct Settings {
    /// `BENCH_QUICK=1`: fewer rounds and less work per cell.
    pub is_quick: bool,
    /// `BENCH_SCALE`: 1 (1,000 domains, 10,000 accounts, 10,000 aliases)
    /// or 10 (ten times that).
    pub scale: usize,
    /// `BENCH_ROUNDS`: alternating A/B rounds (default 3, quick 2).
    pub rounds: usize,
    /// `BENCH_OUT`: the JSON-lines file rows are appended to.
    pub out: Option<PathBuf>,
}

impl Settings {
    /// Reads `BENCH_QUICK`, `BENCH_SCALE`, `BENCH_ROUNDS`, `BENCH_OUT`.
    pub fn from_env() -> Settings {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let is_quick = var("BENCH_QUICK").is_some_and(|v| v != "0");
        let scale = var("BENCH_SCALE")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1usize)
            .max(1);
        let rounds = var("BENCH_ROUNDS")
            .and_then(|v| v.parse().ok())
            .unwrap_or(if is_quick { 2 } else { 3 })
            .max(1);
        Settings {
            is_quick,
            scale,
            rounds,
            out: var("BENCH_OUT").map(PathBuf::from),
        }
    }

    /// `full` in a full run, `quick` with `--quick`.
    pub fn pick<T>(&self, full: T, quick: T) -> T {
        if self.is_quick { quick } else { full }
    }

    /// "1×" or "10×".
    pub fn scale_label(&self) -> String {
        format!("{}×", self.scale)
    }

    /// Appends `row` to `$BENCH_OUT` (and prints it).
    pub fn emit(&self, row: &Row) {
        println!("  {}", row.summary());
        let Some(out) = &self.out else { return };
        let line = row.to_json().to_string() + "\n";
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(out)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            eprintln!("cannot append to {}: {e}", out.display());
        }
    }
}

/// One measured series: a name and one sample per round.
#[derive(Debug, Clone, Default)]
pub struct Series {
    /// What was measured ("policyd", "proxy:mysql", …).
    pub name: String,
    /// One value per round, in round order.
    pub samples: Vec<f64>,
}

impl Series {
    /// An empty series named `name`.
    pub fn new(name: &str) -> Series {
        Series {
            name: name.to_owned(),
            samples: Vec::new(),
        }
    }

    /// Adds one round's value.
    pub fn push(&mut self, v: f64) {
        self.samples.push(v);
    }

    /// The median.
    pub fn median(&self) -> f64 {
        median(&self.samples)
    }
}

/// One line of the report: postwerk's series against its anchor's (or
/// against a bound) in the same run.
#[derive(Debug, Clone)]
pub struct Row {
    /// "policyd", "authd", "lmtpd", "milter".
    pub section: String,
    /// What is measured, e.g. "accounts lookups/s".
    pub measure: String,
    /// "1×" or "10×".
    pub scale: String,
    /// "lookups/s", "µs", "MiB", …
    pub unit: String,
    /// True for latency, memory and CPU: the ratio is then better below 1.
    pub is_lower_better: bool,
    /// postwerk's series.
    pub postwerk: Series,
    /// The program postwerk replaces, or a bound; `None` when there is no
    /// counterpart.
    pub anchor: Option<Series>,
}

impl Row {
    /// A row for `section`/`measure` at the run's scale.
    pub fn new(settings: &Settings, section: &str, measure: &str, unit: &str) -> Row {
        Row {
            section: section.to_owned(),
            measure: measure.to_owned(),
            scale: settings.scale_label(),
            unit: unit.to_owned(),
            is_lower_better: false,
            postwerk: Series::default(),
            anchor: None,
        }
    }

    /// Marks the measure as better when smaller.
    pub fn lower_is_better(mut self) -> Row {
        self.is_lower_better = true;
        self
    }

    /// postwerk's series.
    pub fn postwerk(mut self, s: &Series) -> Row {
        self.postwerk = s.clone();
        self
    }

    /// The anchor's series.
    pub fn anchor(mut self, s: &Series) -> Row {
        self.anchor = Some(s.clone());
        self
    }

    /// Ratios postwerk/anchor per round (paired: the same round).
    pub fn ratios(&self) -> Vec<f64> {
        let Some(a) = &self.anchor else {
            return Vec::new();
        };
        self.postwerk
            .samples
            .iter()
            .zip(&a.samples)
            .filter(|(_, a)| **a > 0.0)
            .map(|(p, a)| p / a)
            .collect()
    }

    fn summary(&self) -> String {
        let anchor = self.anchor.as_ref().map_or_else(String::new, |a| {
            format!(
                " vs {} {} → {}",
                a.name,
                fmt_samples(&a.samples),
                fmt_ratio(&self.ratios())
            )
        });
        format!(
            "{} {} [{}] {} {}{anchor} ({})",
            self.section,
            self.measure,
            self.scale,
            self.postwerk.name,
            fmt_samples(&self.postwerk.samples),
            self.unit
        )
    }

    /// The JSON form written to `$BENCH_OUT`.
    pub fn to_json(&self) -> serde_json::Value {
        let series = |s: &Series| serde_json::json!({"name": s.name, "samples": s.samples});
        serde_json::json!({
            "section": self.section,
            "measure": self.measure,
            "scale": self.scale,
            "unit": self.unit,
            "lower_is_better": self.is_lower_better,
            "postwerk": series(&self.postwerk),
            "anchor": self.anchor.as_ref().map(series),
        })
    }

    /// Reads a row back; `None` for a malformed line.
    pub fn from_json(v: &serde_json::Value) -> Option<Row> {
        let series = |v: &serde_json::Value| -> Option<Series> {
            Some(Series {
                name: v.get("name")?.as_str()?.to_owned(),
                samples: v
                    .get("samples")?
                    .as_array()?
                    .iter()
                    .filter_map(serde_json::Value::as_f64)
                    .collect(),
            })
        };
        let text = |k: &str| -> Option<String> { Some(v.get(k)?.as_str()?.to_owned()) };
        Some(Row {
            section: text("section")?,
            measure: text("measure")?,
            scale: text("scale")?,
            unit: text("unit")?,
            is_lower_better: v.get("lower_is_better")?.as_bool()?,
            postwerk: series(v.get("postwerk")?)?,
            anchor: v.get("anchor").and_then(series),
        })
    }
}

/// The median (the mean of the middle two for an even count); 0 for no
/// samples.
pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n.is_multiple_of(2) {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    } else {
        s[n / 2]
    }
}

/// `median (min–max)`, with a precision that suits the size.
pub fn fmt_samples(v: &[f64]) -> String {
    if v.is_empty() {
        return "—".to_owned();
    }
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if v.len() == 1 {
        return fmt_value(v[0]);
    }
    format!(
        "{} ({}–{})",
        fmt_value(median(v)),
        fmt_value(min),
        fmt_value(max)
    )
}

/// A value with 3 significant digits (whole numbers from 100 on).
pub fn fmt_value(x: f64) -> String {
    let a = x.abs();
    if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

/// `1.23× (1.01–1.40)` of paired ratios.
pub fn fmt_ratio(r: &[f64]) -> String {
    if r.is_empty() {
        return "—".to_owned();
    }
    let min = r.iter().copied().fold(f64::INFINITY, f64::min);
    let max = r.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if r.len() == 1 {
        format!("{:.2}×", r[0])
    } else {
        format!("{:.2}× ({:.2}–{:.2})", median(r), min, max)
    }
}

/// A field of /proc/PID/status in KiB (`VmRSS:`, `VmHWM:`).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// `pid` and all its descendants (a Dovecot, Postfix or Rspamd master
/// with its workers).
pub fn process_tree(pid: u32) -> Vec<u32> {
    let mut parent_of: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(pp) = stat_fields(p).and_then(|f| f.get(1)?.parse().ok()) {
                parent_of.push((p, pp));
            }
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let cur = tree[i];
        tree.extend(
            parent_of
                .iter()
                .filter(|(_, pp)| *pp == cur)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    tree
}

/// Fields of /proc/PID/stat after the command name: state is `[0]`, ppid
/// `[1]`, utime `[11]`, stime `[12]`.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = s.rsplit_once(')')?.1;
    Some(after.split_whitespace().map(str::to_owned).collect())
}

/// Resident memory of the process tree under `pid`, in MiB.
pub fn tree_rss_mib(pid: u32) -> f64 {
    process_tree(pid)
        .into_iter()
        .filter_map(|p| status_kib(p, "VmRSS:"))
        .sum::<u64>() as f64
        / 1024.0
}

/// CPU seconds (user + system) used so far by the process tree under
/// `pid` (of live processes; Postfix and Dovecot keep their workers).
pub fn tree_cpu_secs(pid: u32) -> f64 {
    let (user, system) = tree_cpu_split(pid);
    user + system
}

/// User and system CPU seconds of `pid` and its descendants, apart.
pub fn tree_cpu_split(pid: u32) -> (f64, f64) {
    // USER_HZ is 100 on every Linux architecture Debian ships.
    let (user, system) = process_tree(pid)
        .into_iter()
        .filter_map(|p| {
            let f = stat_fields(p)?;
            Some((
                f.get(11)?.parse::<u64>().ok()?,
                f.get(12)?.parse::<u64>().ok()?,
            ))
        })
        .fold((0u64, 0u64), |(u, s), (a, b)| (u + a, s + b));
    (user as f64 / 100.0, system as f64 / 100.0)
}

/// The pid in a pid file.
pub fn pid_file(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// This machine's host name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_or_else(|_| "unknown".into(), |s| s.trim().to_owned())
}

/// `date +FORMAT` (UTC).
pub fn date(format: &str) -> String {
    run(
        Command::new("date").arg("-u").arg(format!("+{format}")),
        None,
        Duration::from_secs(5),
    )
    .stdout
    .trim()
    .to_owned()
}

/// The test password of every fixture account.
pub const PASSWORD: &str = "bench password";

/// The size of the vmail fixture at `scale`.
#[derive(Debug, Clone, Copy)]
pub struct Fixture {
    /// Domains `d0.example` …
    pub domains: usize,
    /// Accounts per domain, `u0` … (`u9` disabled, `u5` send-only).
    pub accounts_per_domain: usize,
    /// Aliases per domain, `a0` … → `u<n>`, plus the distribution list
    /// `list` → u1, u2 and, in every fifth domain, a catch-all → u0.
    pub aliases_per_domain: usize,
}

impl Fixture {
    /// 1,000 domains / 10,000 accounts / 10,000 aliases per `scale`.
    pub fn at(scale: usize) -> Fixture {
        Fixture {
            domains: 1_000 * scale,
            accounts_per_domain: 10,
            aliases_per_domain: 10,
        }
    }

    /// Accounts in all.
    pub fn accounts(&self) -> usize {
        self.domains * self.accounts_per_domain
    }

    /// Aliases in all (named ones; lists and catch-alls come on top).
    pub fn aliases(&self) -> usize {
        self.domains * self.aliases_per_domain
    }

    /// Whether `u<u>` is enabled.
    pub fn is_enabled(u: usize) -> bool {
        u % 10 != 9
    }

    /// Whether `u<u>` is send-only.
    pub fn is_sendonly(u: usize) -> bool {
        u % 20 == 5
    }

    /// The fixture as bulk INSERT statements of at most 2,000 rows each,
    /// into the guide's tables (as `postwerk db init` makes them).
    /// `password` is the stored hash of every account.
    pub fn sql(&self, password: &str) -> String {
        let mut sql = String::new();
        let mut insert = |head: &str, rows: Vec<String>| {
            for chunk in rows.chunks(2_000) {
                sql.push_str(head);
                sql.push_str(&chunk.join(","));
                sql.push_str(";\n");
            }
        };
        insert(
            "INSERT INTO domains (domain) VALUES ",
            (0..self.domains)
                .map(|d| format!("('d{d}.example')"))
                .collect(),
        );
        let mut rows = Vec::new();
        for d in 0..self.domains {
            for u in 0..self.accounts_per_domain {
                rows.push(format!(
                    "('u{u}','d{d}.example','{password}',0,{},{})",
                    Self::is_enabled(u),
                    Self::is_sendonly(u)
                ));
            }
        }
        insert(
            "INSERT INTO accounts (username, domain, password, quota, enabled, sendonly) VALUES ",
            rows,
        );
        let mut rows = Vec::new();
        for d in 0..self.domains {
            for a in 0..self.aliases_per_domain {
                rows.push(format!(
                    "('a{a}','d{d}.example','u{}','d{d}.example',true)",
                    a % self.accounts_per_domain
                ));
            }
            rows.push(format!("('list','d{d}.example','u1','d{d}.example',true)"));
            rows.push(format!("('list','d{d}.example','u2','d{d}.example',true)"));
            if d % 5 == 0 {
                rows.push(format!("(NULL,'d{d}.example','u0','d{d}.example',true)"));
            }
        }
        insert(
            "INSERT INTO aliases (source_username, source_domain, destination_username, destination_domain, enabled) VALUES ",
            rows,
        );
        sql
    }

    /// The same data as Postfix `hash:` source files (`postmap` input):
    /// accounts (enabled ones, value `1`), aliases (comma lists), domains.
    pub fn hash_sources(&self) -> (String, String, String) {
        let (mut accounts, mut aliases, mut domains) =
            (String::new(), String::new(), String::new());
        for d in 0..self.domains {
            domains.push_str(&format!("d{d}.example 1\n"));
            for u in (0..self.accounts_per_domain).filter(|u| Self::is_enabled(*u)) {
                accounts.push_str(&format!("u{u}@d{d}.example 1\n"));
            }
            for a in 0..self.aliases_per_domain {
                aliases.push_str(&format!(
                    "a{a}@d{d}.example u{}@d{d}.example\n",
                    a % self.accounts_per_domain
                ));
            }
            aliases.push_str(&format!(
                "list@d{d}.example u1@d{d}.example,u2@d{d}.example\n"
            ));
            if d % 5 == 0 {
                aliases.push_str(&format!("@d{d}.example u0@d{d}.example\n"));
            }
        }
        (accounts, aliases, domains)
    }
}

/// An SHA512-CRYPT hash of [`PASSWORD`] in Dovecot's `{SCHEME}` form (the
/// `openssl passwd -6` form is the same crypt(3) string).
pub fn password_hash() -> String {
    let out = run(
        Command::new(crate::exec::require("openssl")).args(["passwd", "-6", PASSWORD]),
        None,
        Duration::from_secs(10),
    );
    format!("{{SHA512-CRYPT}}{}", out.stdout.trim())
}

/// Loads `sql` into the MariaDB database `db` through the client's stdin
/// (bulk INSERTs of 100,000 rows are far over the limit of one argument).
pub fn load_mariadb(db: &crate::MariaDb, sql: &str) {
    let mut cmd = Command::new(crate::exec::require("mariadb"));
    cmd.args(["-u", "root", "-D", db.name()]);
    let out = run(&mut cmd, Some(sql.as_bytes()), Duration::from_secs(600));
    if !out.is_success() {
        panic!("loading the fixture into {} failed:\n{out}", db.name());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_are_paired_per_round() {
        let s = Settings {
            is_quick: true,
            scale: 1,
            rounds: 2,
            out: None,
        };
        let mut p = Series::new("p");
        let mut a = Series::new("a");
        p.samples = vec![10.0, 30.0];
        a.samples = vec![5.0, 10.0];
        let row = Row::new(&s, "x", "y", "z").postwerk(&p).anchor(&a);
        assert_eq!(row.ratios(), vec![2.0, 3.0]);
        let back = Row::from_json(&row.to_json()).unwrap();
        assert_eq!(back.ratios(), vec![2.0, 3.0]);
        assert_eq!(fmt_ratio(&row.ratios()), "2.50× (2.00–3.00)");
    }

    #[test]
    fn fixture_sizes() {
        let f = Fixture::at(10);
        assert_eq!(
            (f.domains, f.accounts(), f.aliases()),
            (10_000, 100_000, 100_000)
        );
        assert!(f.sql("{PLAIN}x").contains("INSERT INTO aliases"));
    }
}

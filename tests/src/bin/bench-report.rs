//! bench-report: turns the rows the `bench-*` binaries appended to a
//! JSON-lines file (`postwerk_tests::bench::Row`) into the report of
//! bench/run: a Markdown table of medians with min–max and the paired
//! postwerk/anchor ratio, written to `bench/results/<date>-<host>.md`, and a
//! bar chart of the ratios (`.png`, drawn by bench/chart.py with Debian's
//! python3-matplotlib), with the rows themselves next to them (`.jsonl`).
//!
//! `bench-report ROWS.jsonl [HEADER-TEXT]`

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use postwerk_tests::bench::{self, Row, fmt_ratio, fmt_samples, median};
use postwerk_tests::exec::run;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(input) = args.next() else {
        eprintln!("usage: bench-report ROWS.jsonl [HEADER-TEXT]");
        std::process::exit(2);
    };
    let header = args.next().unwrap_or_default();
    let text = std::fs::read_to_string(&input).unwrap_or_else(|e| panic!("{input}: {e}"));
    let rows: Vec<Row> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter_map(|v| Row::from_json(&v))
        .collect();
    let (date, host) = (bench::date("%Y-%m-%d"), bench::hostname());
    let stem = format!("{date}-{host}");
    let results = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/results");
    let _ = std::fs::create_dir_all(&results);

    let mut md = format!("# postwerk against the programs it replaces\n\n{header}\n\n");
    md.push_str(&format!("![ratios]({stem}.png)\n\n"));
    md.push_str(
        "Each cell: median of the rounds (min–max). Ratio: postwerk / anchor, paired per round \
         (both measured back to back in the same round), median (min–max); for rows marked ↓ \
         (latency, memory, CPU) below 1 is better. \"bound\" rows compare with a physical \
         bound, not with a program postwerk replaces.\n",
    );
    let mut section = String::new();
    let mut chart = String::from("label\tmedian\tmin\tmax\tlower_is_better\n");
    for r in &rows {
        if r.section != section {
            section = r.section.clone();
            md.push_str(&format!(
                "\n## {section}\n\n| measure | data | postwerk | anchor | anchor's value | postwerk / anchor |\n|---|---|---:|---|---:|---:|\n"
            ));
        }
        let arrow = if r.is_lower_better { " ↓" } else { "" };
        let (anchor, anchor_value) = r.anchor.as_ref().map_or_else(
            || ("—".to_owned(), "—".to_owned()),
            |a| (a.name.clone(), fmt_samples(&a.samples)),
        );
        md.push_str(&format!(
            "| {} ({}){arrow} | {} | {}: {} | {anchor} | {anchor_value} | {} |\n",
            r.measure,
            r.unit,
            r.scale,
            r.postwerk.name,
            fmt_samples(&r.postwerk.samples),
            fmt_ratio(&r.ratios())
        ));
        let ratios = r.ratios();
        if !ratios.is_empty() {
            let min = ratios.iter().copied().fold(f64::INFINITY, f64::min);
            let max = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            chart.push_str(&format!(
                "{}: {} [{}]\t{}\t{min}\t{max}\t{}\n",
                r.section,
                r.measure,
                r.scale,
                median(&ratios),
                u8::from(r.is_lower_better)
            ));
        }
    }
    let md_path = results.join(format!("{stem}.md"));
    // The rows themselves, for charts and comparisons later.
    if let Err(e) = std::fs::write(results.join(format!("{stem}.jsonl")), &text) {
        eprintln!("cannot write the rows: {e}");
    }
    let tsv = std::env::temp_dir().join(format!("bench-chart-{}.tsv", std::process::id()));
    let png = results.join(format!("{stem}.png"));
    if let Err(e) = std::fs::write(&tsv, chart) {
        eprintln!("cannot write {}: {e}", tsv.display());
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/chart.py");
    let out = run(
        Command::new("/usr/bin/python3")
            .arg(&script)
            .arg(&tsv)
            .arg(&png)
            .arg(format!("postwerk / anchor, {date}, {host}")),
        None,
        Duration::from_secs(120),
    );
    if !out.is_success() {
        eprintln!("bench-report: the chart failed:\n{out}");
    }
    let _ = std::fs::remove_file(&tsv);
    println!("{md}");
    match std::fs::write(&md_path, &md) {
        Ok(()) => println!("written to {} and {}", md_path.display(), png.display()),
        Err(e) => eprintln!("cannot write {}: {e}", md_path.display()),
    }
}

//! Output for humans (aligned tables) and scripts (`--json`). Never prints
//! passwords or hashes.

use serde::Serialize;

/// Prints rows as an aligned table with a header, or `(none)` when empty.
pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    if rows.is_empty() {
        println!("(none)");
        return;
    }
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(c);
                s.push_str(&" ".repeat(w - c.chars().count() + 2));
            }
        }
        println!("{}", s.trim_end());
    };
    line(headers.to_vec());
    line(
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .iter()
            .map(|s| s.as_str())
            .collect(),
    );
    for row in rows {
        line(row.iter().map(|s| s.as_str()).collect());
    }
}

/// Prints a value as pretty JSON.
pub fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Prints a one-line confirmation (or `{"ok":true,"message":…}` in JSON).
pub fn done(json_mode: bool, message: &str) -> anyhow::Result<()> {
    if json_mode {
        json(&serde_json::json!({ "ok": true, "message": message }))
    } else {
        println!("{message}");
        Ok(())
    }
}

/// `yes`/`no` for tables.
pub fn yes_no(b: bool) -> String {
    if b { "yes".into() } else { "no".into() }
}

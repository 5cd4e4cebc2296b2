//! MAPPING: the web view on the controller port (`GET /`): counters,
//! actions as a bar chart (inline SVG, no scripts) and the recent scans
//! with score, action and symbols, like a light Rspamd web UI. Every
//! value from a message is HTML-escaped. No I/O.

use crate::spam::Action;
use crate::spam::stats::Snapshot;

/// Escapes text for HTML.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn colour(a: Action) -> &'static str {
    match a {
        Action::Reject => "#c0392b",
        Action::SoftReject => "#e67e22",
        Action::AddHeader => "#f1c40f",
        Action::Greylist => "#95a5a6",
        Action::NoAction => "#27ae60",
    }
}

/// Minutes shown in the throughput chart.
pub const CHART_MINUTES: u64 = 30;

/// Messages per minute over the last [`CHART_MINUTES`] minutes of the
/// history, stacked by action (inline SVG).
fn throughput(snap: &Snapshot) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // The current minute is the last bar.
    let first = (now / 60).saturating_sub(CHART_MINUTES - 1);
    let mut buckets = vec![[0u64; 5]; CHART_MINUTES as usize];
    for e in &snap.history {
        let minute = e.time / 60;
        if minute >= first && minute - first < CHART_MINUTES {
            let i = Action::ALL.iter().position(|a| *a == e.action).unwrap_or(4);
            buckets[(minute - first) as usize][i] += 1;
        }
    }
    let max = buckets
        .iter()
        .map(|b| b.iter().sum::<u64>())
        .max()
        .unwrap_or(0)
        .max(1);
    let mut h = format!(
        "<h2>Messages per minute (last {CHART_MINUTES} minutes of the history)</h2>\n<svg id=\"throughput\" width=\"{}\" height=\"120\" role=\"img\">\n",
        CHART_MINUTES * 14
    );
    for (m, b) in buckets.iter().enumerate() {
        let mut y = 110u64;
        for (i, n) in b.iter().enumerate() {
            if *n == 0 {
                continue;
            }
            let height = (n * 100).div_ceil(max);
            y = y.saturating_sub(height);
            h.push_str(&format!(
                "<rect x=\"{}\" y=\"{y}\" width=\"12\" height=\"{height}\" fill=\"{}\"><title>{n} {}</title></rect>\n",
                m * 14,
                colour(Action::ALL[i]),
                Action::ALL[i].as_str()
            ));
        }
    }
    h.push_str("<line x1=\"0\" y1=\"110\" x2=\"420\" y2=\"110\" stroke=\"#999\"/></svg>\n");
    h
}

/// The page.
pub fn render(snap: &Snapshot) -> String {
    let mut h = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>postwerk-milterd</title>\
         <meta http-equiv=\"refresh\" content=\"30\">\
         <style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}\
         td,th{border:1px solid #ccc;padding:.2em .5em;font-size:90%}th{background:#eee}</style>\
         </head><body><h1>postwerk-milterd</h1>\n",
    );
    h.push_str(&format!(
        "<p id=\"counters\">Uptime {} s &middot; scanned {} &middot; learned {}</p>\n",
        snap.uptime, snap.scanned, snap.learned
    ));
    let max = snap
        .actions
        .iter()
        .map(|(_, n)| *n)
        .max()
        .unwrap_or(0)
        .max(1);
    h.push_str(
        "<h2>Actions</h2>\n<svg id=\"actions\" width=\"420\" height=\"130\" role=\"img\">\n",
    );
    for (i, (a, n)) in snap.actions.iter().enumerate() {
        let w = (*n as f64 / max as f64 * 250.0).round() as u64;
        let y = i * 25 + 5;
        h.push_str(&format!(
            "<text x=\"0\" y=\"{}\" font-size=\"12\">{}</text><rect x=\"100\" y=\"{y}\" width=\"{w}\" height=\"18\" fill=\"{}\"/><text x=\"{}\" y=\"{}\" font-size=\"12\">{n}</text>\n",
            y + 14,
            a.as_str(),
            colour(*a),
            110 + w,
            y + 14
        ));
    }
    h.push_str("</svg>\n");
    h.push_str(&throughput(snap));
    h.push_str("<h2>Recent messages</h2>\n<table id=\"history\"><tr><th>time (UTC)</th><th>queue id</th><th>ip</th><th>sender</th><th>subject</th><th>score</th><th>action</th><th>symbols</th></tr>\n");
    for e in &snap.history {
        let secs = e.time % 86_400;
        h.push_str(&format!(
            "<tr><td>{:02}:{:02}:{:02}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2} / {:.2}</td><td style=\"color:{}\">{}</td><td>{}</td></tr>\n",
            secs / 3600,
            secs / 60 % 60,
            secs % 60,
            escape(&e.queue_id),
            escape(&e.ip),
            escape(&e.sender),
            escape(&e.subject),
            e.score,
            e.required_score,
            colour(e.action),
            e.action.as_str(),
            escape(
                &e.symbols
                    .iter()
                    .map(|(n, s)| format!("{n}({s:.2})"))
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        ));
    }
    h.push_str("</table>\n</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_minute_is_charted() {
        use crate::spam::stats::Entry;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let entry = |time, action| Entry {
            time,
            queue_id: "Q".into(),
            ip: "-".into(),
            sender: "<s>".into(),
            rcpts: Vec::new(),
            subject: "<b>".into(),
            score: 1.0,
            required_score: 15.0,
            action,
            symbols: Vec::new(),
            elapsed: 0.0,
        };
        let snap = Snapshot {
            uptime: 1,
            scanned: 3,
            learned: 0,
            actions: Action::ALL.map(|a| (a, 1)),
            control_connections: 0,
            scan_times: Vec::new(),
            history: vec![
                entry(now, Action::Reject),
                entry(now, Action::NoAction),
                entry(now - 3600, Action::AddHeader),
            ],
        };
        let page = render(&snap);
        assert!(page.contains("<title>1 reject</title>"), "{page}");
        assert!(page.contains("<title>1 no action</title>"), "{page}");
        assert!(!page.contains("<title>1 add header</title>"), "{page}");
        assert!(
            page.contains("&lt;s&gt;") && !page.contains("<b>"),
            "{page}"
        );
    }

    #[test]
    fn escapes_message_values() {
        assert_eq!(escape("<script>\"&'\n"), "&lt;script&gt;&quot;&amp;&#39; ");
    }
}

//! MAPPING: scan results and counters as Rspamd 3.4's JSON
//! (shared/reference/captures/*.json), the Prometheus text of
//! `/metrics`, and the `/history` JSON. No I/O.

use crate::spam::bayes::Stat;
use crate::spam::stats::Snapshot;
use crate::spam::{Scan, headers};
use serde_json::{Map, Value, json};

fn symbol(s: &crate::spam::Symbol, with_metric: bool) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), json!(s.name));
    m.insert("score".into(), json!(round(s.score)));
    if with_metric {
        m.insert("metric_score".into(), json!(round(s.weight)));
    }
    if let Some(d) = &s.description {
        m.insert("description".into(), json!(d));
    }
    if !s.options.is_empty() {
        m.insert("options".into(), json!(s.options));
    }
    Value::Object(m)
}

fn round(x: f64) -> f64 {
    (x * 1_000_000.0).round() / 1_000_000.0
}

/// The `milter` object: headers to remove and to add, as Rspamd's proxy
/// would apply them.
fn milter(s: &Scan, auth_results: Option<&str>) -> Value {
    let mut remove = Map::new();
    for n in headers::OWNED {
        remove.insert((*n).into(), json!(0));
    }
    let mut add = Map::new();
    for (n, v) in headers::added(s) {
        add.insert(n.into(), json!({"order": -1, "value": v}));
    }
    if let Some(ar) = auth_results {
        remove.insert("Authentication-Results".into(), json!(0));
        add.insert(
            "Authentication-Results".into(),
            json!({"order": 1, "value": ar}),
        );
    }
    json!({"remove_headers": remove, "add_headers": add})
}

fn messages(s: &Scan) -> Value {
    match &s.message {
        Some(m) => json!({"smtp_message": m}),
        None => json!({}),
    }
}

/// `/checkv2`.
pub fn check_v2(s: &Scan, auth_results: Option<&str>) -> Value {
    let mut symbols = Map::new();
    for x in &s.symbols {
        symbols.insert(x.name.clone(), symbol(x, true));
    }
    json!({
        "is_skipped": false,
        "score": round(s.score),
        "required_score": round(s.required_score),
        "action": s.action.as_str(),
        "symbols": symbols,
        "messages": messages(s),
        "urls": s.urls,
        "emails": [],
        "message-id": s.message_id.clone().unwrap_or_else(|| "undef".into()),
        "time_real": s.elapsed.as_secs_f64(),
        "milter": milter(s, auth_results),
    })
}

/// Legacy `/symbols` and `/check`.
pub fn check_v1(s: &Scan, auth_results: Option<&str>) -> Value {
    let mut default = Map::new();
    default.insert("is_spam".into(), json!(s.action.is_spam()));
    default.insert("is_skipped".into(), json!(false));
    default.insert("score".into(), json!(round(s.score)));
    default.insert("required_score".into(), json!(round(s.required_score)));
    default.insert("action".into(), json!(s.action.as_str()));
    for x in &s.symbols {
        default.insert(x.name.clone(), symbol(x, false));
    }
    json!({
        "default": default,
        "messages": messages(s),
        "urls": s.urls,
        "emails": [],
        "message-id": s.message_id.clone().unwrap_or_else(|| "undef".into()),
        "time_real": s.elapsed.as_secs_f64(),
        "rmilter": milter(s, auth_results),
    })
}

/// `/stat`, the shape rspamc 3.4 renders.
pub fn stat(snap: &Snapshot, bayes: &Stat, store: &str) -> Value {
    let mut actions = Map::new();
    for (a, n) in &snap.actions {
        actions.insert(a.as_str().into(), json!(n));
    }
    actions.insert("rewrite subject".into(), json!(0));
    let mut times: Vec<Value> = snap.scan_times.iter().map(|t| json!(t)).collect();
    while times.len() < crate::spam::stats::SCAN_TIMES {
        times.push(Value::Null);
    }
    let spam_count: u64 = snap
        .actions
        .iter()
        .filter(|(a, _)| a.is_spam())
        .map(|(_, n)| n)
        .sum();
    let statfile = |symbol: &str, learns: u64, tokens: u64| {
        json!({"revision": learns, "used": tokens, "total": tokens, "size": 0,
               "symbol": symbol, "type": store, "languages": 0, "users": 1})
    };
    json!({
        "version": "3.4",
        "config_id": "postwerk-milterd",
        "uptime": snap.uptime,
        "read_only": false,
        "scanned": snap.scanned,
        "learned": snap.learned,
        "actions": actions,
        "scan_times": times,
        "spam_count": spam_count,
        "ham_count": snap.scanned.saturating_sub(spam_count),
        "connections": snap.scanned,
        "control_connections": snap.control_connections,
        "pools_allocated": 0, "pools_freed": 0, "bytes_allocated": 0,
        "chunks_allocated": 0, "shared_chunks_allocated": 0, "chunks_freed": 0,
        "chunks_oversized": 0, "fragmented": 0,
        "total_learns": bayes.spam_learns + bayes.ham_learns,
        "statfiles": [
            statfile("BAYES_SPAM", bayes.spam_learns, bayes.tokens.0),
            statfile("BAYES_HAM", bayes.ham_learns, bayes.tokens.1),
        ],
    })
}

/// `/history`: the recent scans, newest first.
pub fn history(snap: &Snapshot) -> Value {
    let rows: Vec<Value> = snap
        .history
        .iter()
        .map(|e| {
            json!({
                "unix_time": e.time,
                "queue_id": e.queue_id,
                "ip": e.ip,
                "sender": e.sender,
                "rcpt": e.rcpts,
                "subject": e.subject,
                "score": round(e.score),
                "required_score": round(e.required_score),
                "action": e.action.as_str(),
                "symbols": e.symbols.iter().map(|(n, s)| json!({"name": n, "score": round(*s)})).collect::<Vec<_>>(),
                "time_real": e.elapsed,
            })
        })
        .collect();
    json!({"rows": rows})
}

/// `/metrics` in the Prometheus text format.
pub fn metrics(snap: &Snapshot, bayes: &Stat) -> String {
    let mut out = String::new();
    out.push_str("# HELP postwerk_milterd_scanned_total Messages scanned for spam.\n# TYPE postwerk_milterd_scanned_total counter\n");
    out.push_str(&format!(
        "postwerk_milterd_scanned_total {}\n",
        snap.scanned
    ));
    out.push_str("# HELP postwerk_milterd_actions_total Scan results by action.\n# TYPE postwerk_milterd_actions_total counter\n");
    for (a, n) in &snap.actions {
        out.push_str(&format!(
            "postwerk_milterd_actions_total{{action=\"{}\"}} {n}\n",
            a.as_str()
        ));
    }
    out.push_str("# HELP postwerk_milterd_learned_total Messages learned by Bayes.\n# TYPE postwerk_milterd_learned_total counter\n");
    out.push_str(&format!(
        "postwerk_milterd_learned_total {}\n",
        snap.learned
    ));
    out.push_str("# HELP postwerk_milterd_bayes_learns Messages in the Bayes statistics by class.\n# TYPE postwerk_milterd_bayes_learns gauge\n");
    out.push_str(&format!(
        "postwerk_milterd_bayes_learns{{class=\"spam\"}} {}\n",
        bayes.spam_learns
    ));
    out.push_str(&format!(
        "postwerk_milterd_bayes_learns{{class=\"ham\"}} {}\n",
        bayes.ham_learns
    ));
    out.push_str("# HELP postwerk_milterd_uptime_seconds Seconds since start.\n# TYPE postwerk_milterd_uptime_seconds gauge\n");
    out.push_str(&format!(
        "postwerk_milterd_uptime_seconds {}\n",
        snap.uptime
    ));
    out
}

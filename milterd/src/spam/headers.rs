//! MAPPING: the header fields milterd adds for a scan result, as the
//! guide's `milter_headers.conf` has Rspamd add them
//! (shared/reference/rspamd-compat.md §4), and the fields it owns, so
//! that stale or forged copies from outside are removed first:
//!
//! - `X-Spamd-Bar`: one `+` per whole point, one `-` per whole negative
//!   point, `/` in between;
//! - `X-Spam-Level`: one `*` per whole point (only when the score is at
//!   least 1);
//! - `X-Spam-Status`: `Yes, score=6.85` when the action is add header or
//!   worse, else `No, score=...`, then the symbols that fired
//!   (`tests=A,B`, as SpamAssassin writes it);
//! - `X-Spamd-Result`: Rspamd's extended header, every symbol with its
//!   score and options;
//! - `X-Spam: Yes` and `X-Spam-Flag: YES` on add header, the values the
//!   guide's `spam-global.sieve` files into Spam.
//!
//! Values are folded with bare LF TAB, as milter header values are. No
//! I/O.

use super::{Action, Scan};

/// Header fields milterd owns: removed from incoming mail before its own
/// are added. `X-Spam-Flag` is not among them: the guide's Rspamd leaves a
/// sender's own flag alone (it only files the sender's mail into Spam).
pub const OWNED: &[&str] = &[
    "X-Spam",
    "X-Spamd-Bar",
    "X-Spam-Level",
    "X-Spam-Status",
    "X-Spamd-Result",
];

/// Most characters of a bar or level.
pub const MAX_BAR: usize = 50;

/// `X-Spamd-Bar`.
pub fn bar(score: f64) -> String {
    if score >= 1.0 {
        "+".repeat((score.floor() as usize).min(MAX_BAR))
    } else if score <= -1.0 {
        "-".repeat(((-score).floor() as usize).min(MAX_BAR))
    } else {
        "/".to_owned()
    }
}

/// `X-Spam-Level`, when the score is at least 1.
pub fn level(score: f64) -> Option<String> {
    (score >= 1.0).then(|| "*".repeat((score.floor() as usize).min(MAX_BAR)))
}

/// Folds `items` joined by `sep` into lines of about 76 characters.
fn fold(first: &str, items: &[String], sep: &str) -> String {
    let mut out = first.to_owned();
    let mut line = out.len();
    for (i, it) in items.iter().enumerate() {
        let piece = if i + 1 < items.len() {
            format!("{it}{sep}")
        } else {
            it.clone()
        };
        if line + piece.len() > 76 && line > 0 {
            out.push_str("\n\t");
            line = 8;
        }
        out.push_str(&piece);
        line += piece.len();
    }
    out
}

/// `X-Spam-Status`.
pub fn status(s: &Scan) -> String {
    let yes = if s.action.is_spam() { "Yes" } else { "No" };
    let head = format!("{yes}, score={:.2}", s.score);
    if s.symbols.is_empty() {
        return head;
    }
    let names: Vec<String> = s.symbols.iter().map(|x| x.name.clone()).collect();
    fold(&format!("{head} tests="), &names, ",")
}

/// `X-Spamd-Result` (Rspamd's extended header).
pub fn result(s: &Scan) -> String {
    let mut out = format!(
        "default: {} [{:.2} / {:.2}]",
        if s.action.is_spam() { "True" } else { "False" },
        s.score,
        s.required_score
    );
    for x in &s.symbols {
        out.push_str(&format!(
            ";\n\t{}({:.2})[{}]",
            x.name,
            x.score,
            x.options.join(",").replace(['\r', '\n'], " ")
        ));
    }
    out
}

/// The fields to add for `s`, in order (name, value without leading
/// space).
pub fn added(s: &Scan) -> Vec<(&'static str, String)> {
    let mut v = vec![("X-Spamd-Bar", bar(s.score))];
    if let Some(l) = level(s.score) {
        v.push(("X-Spam-Level", l));
    }
    v.push(("X-Spam-Status", status(s)));
    v.push(("X-Spamd-Result", result(s)));
    if s.action == Action::AddHeader {
        v.push(("X-Spam", "Yes".to_owned()));
        v.push(("X-Spam-Flag", "YES".to_owned()));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::super::Symbol;
    use super::*;
    use std::time::Duration;

    fn scan(score: f64, action: Action) -> Scan {
        Scan {
            score,
            required_score: 15.0,
            action,
            symbols: vec![Symbol {
                name: "SUBJ_ALL_CAPS".into(),
                score: 1.95,
                weight: 3.0,
                description: None,
                options: vec!["26".into()],
            }],
            message: None,
            message_id: None,
            urls: Vec::new(),
            autolearned: None,
            elapsed: Duration::ZERO,
        }
    }

    #[test]
    fn bars_and_levels_as_rspamd_captured() {
        assert_eq!(bar(6.85), "++++++");
        assert_eq!(bar(4.55), "++++");
        assert_eq!(bar(20.25), "+".repeat(20));
        assert_eq!(bar(0.0), "/");
        assert_eq!(bar(0.99), "/");
        assert_eq!(bar(-2.3), "--");
        assert_eq!(bar(1e9).len(), MAX_BAR);
        assert_eq!(level(6.85).as_deref(), Some("******"));
        assert_eq!(level(0.5), None);
    }

    #[test]
    fn status_and_result() {
        assert_eq!(
            status(&scan(6.85, Action::AddHeader)),
            "Yes, score=6.85 tests=SUBJ_ALL_CAPS"
        );
        assert_eq!(
            status(&scan(4.55, Action::Greylist)),
            "No, score=4.55 tests=SUBJ_ALL_CAPS"
        );
        assert_eq!(
            result(&scan(4.55, Action::Greylist)),
            "default: False [4.55 / 15.00];\n\tSUBJ_ALL_CAPS(1.95)[26]"
        );
        let names: Vec<&str> = added(&scan(7.0, Action::AddHeader))
            .iter()
            .map(|(n, _)| *n)
            .collect();
        assert_eq!(
            names,
            [
                "X-Spamd-Bar",
                "X-Spam-Level",
                "X-Spam-Status",
                "X-Spamd-Result",
                "X-Spam",
                "X-Spam-Flag"
            ]
        );
        let names: Vec<&str> = added(&scan(0.2, Action::NoAction))
            .iter()
            .map(|(n, _)| *n)
            .collect();
        assert_eq!(names, ["X-Spamd-Bar", "X-Spam-Status", "X-Spamd-Result"]);
    }

    #[test]
    fn long_status_is_folded() {
        let mut s = scan(3.0, Action::NoAction);
        for i in 0..20 {
            s.symbols.push(Symbol {
                name: format!("SYMBOL_NUMBER_{i}"),
                score: 0.1,
                weight: 0.1,
                description: None,
                options: Vec::new(),
            });
        }
        let v = status(&s);
        assert!(v.contains("\n\t"), "{v}");
        assert!(v.split("\n\t").all(|l| l.len() <= 80), "{v}");
    }
}

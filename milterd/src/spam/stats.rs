//! STATE: counters and the recent history of scans, for the controller's
//! `/stat` (rspamc stat), `/metrics` (Prometheus) and `/history`. One per
//! process ([`super::local`]), so a reload keeps them. Bounded: the
//! history keeps the last [`HISTORY`] scans, the scan times the last
//! [`SCAN_TIMES`] (as Rspamd).

use super::{Action, Envelope, Scan};
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Scans kept in the history.
pub const HISTORY: usize = 200;
/// Scan times kept (Rspamd's `scan_times` has 31 entries).
pub const SCAN_TIMES: usize = 31;

/// One scan in the history.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Unix time.
    pub time: u64,
    /// Postfix queue id (or `-`).
    pub queue_id: String,
    /// Client address.
    pub ip: String,
    /// Envelope sender.
    pub sender: String,
    /// Envelope recipients.
    pub rcpts: Vec<String>,
    /// Subject (decoded, shortened).
    pub subject: String,
    /// Score.
    pub score: f64,
    /// Reject threshold.
    pub required_score: f64,
    /// Action.
    pub action: Action,
    /// Symbols that fired (name, score).
    pub symbols: Vec<(String, f64)>,
    /// Seconds the scan took.
    pub elapsed: f64,
}

/// The counters.
#[derive(Debug)]
pub struct Stats {
    started: Instant,
    scanned: AtomicU64,
    learned: AtomicU64,
    actions: [AtomicU64; 5],
    /// Connections to the controller.
    pub control_connections: AtomicU64,
    recent: Mutex<(VecDeque<Entry>, VecDeque<f64>)>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            started: Instant::now(),
            scanned: AtomicU64::new(0),
            learned: AtomicU64::new(0),
            actions: Default::default(),
            control_connections: AtomicU64::new(0),
            recent: Mutex::new((VecDeque::new(), VecDeque::new())),
        }
    }
}

fn index(a: Action) -> usize {
    match a {
        Action::Reject => 0,
        Action::SoftReject => 1,
        Action::AddHeader => 2,
        Action::Greylist => 3,
        Action::NoAction => 4,
    }
}

/// A copy of the counters.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Seconds since start.
    pub uptime: u64,
    /// Messages scanned.
    pub scanned: u64,
    /// Messages learned (by rspamc or autolearn).
    pub learned: u64,
    /// Per action, in [`Action::ALL`] order.
    pub actions: [(Action, u64); 5],
    /// Controller connections.
    pub control_connections: u64,
    /// The last scan times, newest last.
    pub scan_times: Vec<f64>,
    /// The history, newest first.
    pub history: Vec<Entry>,
}

impl Stats {
    /// Records one scan.
    pub fn scanned(&self, s: &Scan, env: &Envelope<'_>, subject: Option<&str>) {
        self.scanned.fetch_add(1, Ordering::Relaxed);
        self.actions[index(s.action)].fetch_add(1, Ordering::Relaxed);
        let entry = Entry {
            time: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            queue_id: if env.queue_id.is_empty() {
                "-".into()
            } else {
                env.queue_id.to_owned()
            },
            ip: env
                .client_ip
                .map_or_else(|| "-".to_owned(), |i| i.to_string()),
            sender: env.mail_from.to_owned(),
            rcpts: env.rcpts.iter().take(20).cloned().collect(),
            subject: subject.unwrap_or("").chars().take(120).collect(),
            score: s.score,
            required_score: s.required_score,
            action: s.action,
            symbols: s
                .symbols
                .iter()
                .map(|x| (x.name.clone(), x.score))
                .collect(),
            elapsed: s.elapsed.as_secs_f64(),
        };
        let mut r = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        r.0.push_front(entry);
        r.0.truncate(HISTORY);
        r.1.push_back(s.elapsed.as_secs_f64());
        while r.1.len() > SCAN_TIMES {
            r.1.pop_front();
        }
    }

    /// Records one learned message.
    pub fn learned(&self) {
        self.learned.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> Snapshot {
        let r = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        Snapshot {
            uptime: self.started.elapsed().as_secs(),
            scanned: self.scanned.load(Ordering::Relaxed),
            learned: self.learned.load(Ordering::Relaxed),
            actions: Action::ALL.map(|a| (a, self.actions[index(a)].load(Ordering::Relaxed))),
            control_connections: self.control_connections.load(Ordering::Relaxed),
            scan_times: r.1.iter().copied().collect(),
            history: r.0.iter().cloned().collect(),
        }
    }
}

//! The limits every daemon's accept loop enforces, with their defaults. No
//! I/O here; the daemon's config section fills these in.

use std::time::Duration;

/// Default [`Limits::max_connections`]: Postfix's `default_process_limit`
/// is 100, so Postfix never opens more than that to one service.
pub const DEFAULT_MAX_CONNECTIONS: usize = 100;

/// Default [`Limits::shutdown_timeout`]: how long sessions may take to
/// finish after SIGTERM. systemd's `TimeoutStopSec=` defaults to 90s, so
/// 30s leaves room for the rest of the stop.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// Limits of one [`serve`](super::serve::serve) loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most sessions open at once, over all listeners. When they are all
    /// busy the server stops accepting (clients wait in the kernel's
    /// backlog) until one closes. Must be at least 1.
    pub max_connections: usize,
    /// After shutdown is requested, how long sessions get to finish their
    /// current request before the rest are aborted.
    pub shutdown_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
        }
    }
}

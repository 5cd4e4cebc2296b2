//! A Redis key prefix that belongs to one test, on the shared local Redis,
//! and the removal of its keys when the test ends.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::exec::{INSTALL_HINT, require, run};

/// Where the local Redis listens (started by scripts/install-deps).
pub const REDIS_HOST: &str = "127.0.0.1";
/// Its port.
pub const REDIS_PORT: u16 = 6379;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// `postwerk:t:<pid>:<n>:`, unique per test; its keys are deleted on Drop.
#[derive(Debug)]
pub struct RedisPrefix {
    prefix: String,
}

fn redis_cli(args: &[&str]) -> crate::exec::Output {
    let mut cmd = Command::new(require("redis-cli"));
    cmd.args(["-h", REDIS_HOST, "-p", &REDIS_PORT.to_string()])
        .args(args);
    run(&mut cmd, None, Duration::from_secs(10))
}

impl RedisPrefix {
    /// A new prefix. Panics, telling to run scripts/install-deps, when Redis
    /// does not answer PING.
    pub fn fresh() -> RedisPrefix {
        let ping = redis_cli(&["PING"]);
        if !ping.is_success() || ping.stdout.trim() != "PONG" {
            panic!(
                "Redis is not reachable on {REDIS_HOST}:{REDIS_PORT}; {INSTALL_HINT} (it starts Redis)\n{ping}"
            );
        }
        RedisPrefix {
            prefix: format!(
                "postwerk:t:{}:{}:",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ),
        }
    }

    /// The prefix, ending in `:`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `prefix` + `key`.
    pub fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// The keys that exist under the prefix now.
    pub fn keys(&self) -> Vec<String> {
        let pattern = format!("{}*", self.prefix);
        let out = redis_cli(&["--scan", "--pattern", &pattern]);
        out.stdout
            .lines()
            .map(str::to_owned)
            .filter(|k| !k.is_empty())
            .collect()
    }
}

impl Drop for RedisPrefix {
    fn drop(&mut self) {
        let keys = self.keys();
        for chunk in keys.chunks(100) {
            let mut args = vec!["DEL"];
            args.extend(chunk.iter().map(String::as_str));
            let _ = redis_cli(&args);
        }
    }
}

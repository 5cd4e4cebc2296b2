//! The tracing subscriber every daemon installs (STYLE.md §5): formatted
//! events on stderr, filtered by the config's level or `RUST_LOG`. It only
//! sets up where logs go; what to log is decided where it happens.

use std::io::IsTerminal;
use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;

/// The environment variable that overrides the configured level.
pub const ENV_FILTER_VAR: &str = "RUST_LOG";

/// The log filter could not be parsed.
#[derive(Debug, thiserror::Error)]
#[error(
    "invalid log filter `{value}` (from {origin}): {reason}; use a level (error, warn, info, debug, trace) or directives such as `info,postwerk_policyd=debug`"
)]
pub struct LogError {
    /// Where the filter came from: `RUST_LOG` or `config`.
    pub origin: &'static str,
    /// The filter as given.
    pub value: String,
    /// What the parser said.
    pub reason: String,
}

/// Whether [`init`] has installed its subscriber; guarded so that two
/// callers racing both get `Ok` and only one subscriber is built.
static INSTALLED: Mutex<bool> = Mutex::new(false);

/// Installs the global subscriber: human-readable lines on stderr, filtered
/// by `RUST_LOG` when it is set and not empty, otherwise by `level` (a level
/// such as `info` or `EnvFilter` directives such as
/// `info,postwerk_policyd=debug`, from the config).
///
/// Under systemd (stderr is the journal stream named by `JOURNAL_STREAM`)
/// lines carry no timestamp, because journald adds its own, and no colours.
///
/// A bad filter is an error, checked on every call. Once a subscriber is
/// installed, by this function or anybody else, further calls do nothing
/// and return `Ok`, so tests may call it freely.
pub fn init(level: &str) -> Result<(), LogError> {
    let rust_log = std::env::var(ENV_FILTER_VAR).ok();
    let filter = filter(rust_log.as_deref(), level)?;
    let mut installed = INSTALLED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if *installed {
        return Ok(());
    }
    let journal = is_journal(std::env::var("JOURNAL_STREAM").ok().as_deref(), stderr_id());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(!journal && std::io::stderr().is_terminal());
    // An error here means another subscriber is already the global one
    // (a test harness, say); keep it, as documented.
    let _already_set = if journal {
        builder.without_time().try_init()
    } else {
        builder.try_init()
    };
    *installed = true;
    Ok(())
}

/// Chooses and parses the filter: `RUST_LOG` wins over the config's level.
fn filter(rust_log: Option<&str>, level: &str) -> Result<EnvFilter, LogError> {
    let (origin, value) = match rust_log {
        Some(v) if !v.trim().is_empty() => (ENV_FILTER_VAR, v),
        _ => ("config", level),
    };
    EnvFilter::builder().parse(value).map_err(|e| LogError {
        origin,
        value: value.to_owned(),
        reason: e.to_string(),
    })
}

/// Device and inode of our stderr, read through /proc without unsafe code.
fn stderr_id() -> Option<(u64, u64)> {
    std::fs::metadata("/proc/self/fd/2")
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

/// Whether stderr goes to journald. systemd.exec(5): `JOURNAL_STREAM` is
/// `DEVICE:INODE` of the stream; it is inherited by children whose stderr
/// may point elsewhere (a shell in a user session), so compare it with our
/// stderr. If stderr cannot be inspected, trust the variable.
fn is_journal(journal_stream: Option<&str>, stderr: Option<(u64, u64)>) -> bool {
    let Some(value) = journal_stream else {
        return false;
    };
    let Some(stderr) = stderr else {
        return true;
    };
    let parsed = value
        .split_once(':')
        .and_then(|(dev, ino)| Some((dev.parse().ok()?, ino.parse().ok()?)));
    parsed == Some(stderr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_log_wins_over_config() {
        let f = filter(Some("debug"), "warn").unwrap();
        assert_eq!(f.to_string(), "debug");
    }

    #[test]
    fn empty_rust_log_falls_back_to_config() {
        let f = filter(Some(""), "warn").unwrap();
        assert_eq!(f.to_string(), "warn");
        let f = filter(None, "info,postwerk_policyd=debug").unwrap();
        assert!(f.to_string().contains("postwerk_policyd=debug"));
    }

    #[test]
    fn bad_filter_names_its_origin() {
        let e = filter(None, "info,=[").unwrap_err();
        assert_eq!(e.origin, "config");
        let e = filter(Some("loud=[x"), "info").unwrap_err();
        assert_eq!(e.origin, "RUST_LOG");
        assert!(e.to_string().contains("loud=[x"));
    }

    #[test]
    fn journal_detection() {
        assert!(!is_journal(None, Some((1, 2))));
        assert!(is_journal(Some("1:2"), Some((1, 2))));
        assert!(!is_journal(Some("1:3"), Some((1, 2))));
        assert!(!is_journal(Some("garbage"), Some((1, 2))));
        assert!(is_journal(Some("1:2"), None));
    }
}

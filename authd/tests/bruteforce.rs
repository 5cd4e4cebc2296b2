//! Real peers: brute-force protection seen by `doveadm auth test -a
//! <authd auth socket>`, the auth-client protocol Postfix's
//! `smtpd_sasl_type = dovecot` speaks, with the remote IP passed as
//! `rip=` the way Postfix passes its client's address. In-process state
//! with one `postwerk-authd`, and Redis state (the local Redis on
//! 127.0.0.1:6379, a unique key prefix, keys removed afterwards) shared by
//! two `postwerk-authd` processes. A missing doveadm or Redis fails the
//! test. On failure the temp dir is kept and the authd logs are printed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::PASSWORD;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Readiness deadline for each authd.
const READY: Duration = Duration::from_secs(20);
/// The local Redis of scripts/install-deps.
const REDIS_URL: &str = "redis://127.0.0.1:6379";
/// Wrong passwords sent from the attacking IP (the `[authd]` IP budget).
const BUDGET: u32 = 20;
/// The attacker and an innocent neighbour (TEST-NET addresses).
const ATTACKER: &str = "192.0.2.66";
const NEIGHBOUR: &str = "198.51.100.9";
/// What authd answers a blocked attempt (reply.rs `BLOCKED_REASON`).
const BLOCKED: &str = "Too many failed logins";

struct Env {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    authds: Vec<Child>,
    doveconf: PathBuf,
    redis_prefix: Option<String>,
}

impl Env {
    /// `n` authd processes on one fixture database, each with its own
    /// auth socket `authd-<i>.sock`, the IP budget [`BUDGET`], a back-off of
    /// `backoff` and, if `redis_prefix` is set, the local Redis.
    async fn start(n: usize, backoff: &str, redis_prefix: Option<String>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let url = common::vmail_db(&path).await;
        // doveadm reads a config even for `auth test -a`: a private one.
        let doveconf = path.join("dovecot.conf");
        std::fs::create_dir_all(path.join("run")).unwrap();
        std::fs::write(
            &doveconf,
            format!(
                "base_dir = {p}/run\nstate_dir = {p}/run\nlog_path = {p}/dovecot.log\nprotocols =\nssl = no\n",
                p = path.display()
            ),
        )
        .unwrap();
        let mut env = Env {
            dir: Some(dir),
            path: path.clone(),
            authds: Vec::new(),
            doveconf,
            redis_prefix: redis_prefix.clone(),
        };
        let redis = redis_prefix
            .map(|p| format!("redis_url = \"{REDIS_URL}\"\nredis_prefix = \"{p}\"\n"))
            .unwrap_or_default();
        for i in 0..n {
            let toml = path.join(format!("postwerk-{i}.toml"));
            std::fs::write(
                &toml,
                format!(
                    "[database]\nurl = \"{url}\"\n[log]\nlevel = \"debug\"\n[authd]\n\
auth_listen = [\"unix:{sock}\"]\nsocket_mode = \"0666\"\nauth_failure_delay = \"100ms\"\n\
login_cache_ttl = \"0s\"\nbruteforce_ip_failures = {BUDGET}\nbruteforce_account_failures = 1000\n\
bruteforce_backoff = \"{backoff}\"\nbruteforce_backoff_max = \"{backoff}\"\n{redis}",
                    sock = env.sock(i).display()
                ),
            )
            .unwrap();
            let log = std::fs::File::create(path.join(format!("authd-{i}.log"))).unwrap();
            env.authds.push(
                Command::new(env!("CARGO_BIN_EXE_postwerk-authd"))
                    .env("POSTWERK_ALLOW_ROOT", "1")
                    .arg("--config")
                    .arg(&toml)
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()
                    .expect("start postwerk-authd"),
            );
        }
        for i in 0..n {
            env.wait_for(&env.sock(i));
        }
        env
    }

    fn sock(&self, i: usize) -> PathBuf {
        self.path.join(format!("authd-{i}.sock"))
    }

    /// Polls a UNIX socket until it accepts, with a deadline.
    fn wait_for(&mut self, sock: &Path) {
        let deadline = Instant::now() + READY;
        while std::os::unix::net::UnixStream::connect(sock).is_err() {
            for a in &mut self.authds {
                if let Ok(Some(status)) = a.try_wait() {
                    panic!("postwerk-authd exited early with {status}");
                }
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready after {READY:?}",
                sock.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `doveadm auth test -a <authd i>` as Postfix would ask after STARTTLS
    /// for a client at `rip`: (exit code, output).
    fn auth(&self, i: usize, rip: &str, user: &str, password: &str) -> (i32, String) {
        let out = Command::new("doveadm")
            .arg("-c")
            .arg(&self.doveconf)
            .args(["auth", "test", "-a"])
            .arg(self.sock(i))
            .args(["-x", "service=smtp", "-x", "secured", "-x"])
            .arg(format!("rip={rip}"))
            .args([user, password])
            .output()
            .expect("run doveadm (is dovecot-core installed?)");
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// Spends the attacker's budget on authd `i` with wrong passwords; each
    /// one is an ordinary failure, not yet a block.
    fn spend_budget(&self, i: usize) {
        for n in 1..=BUDGET {
            let (rc, out) = self.auth(i, ATTACKER, "user@example.org", "wrong");
            assert_eq!(rc, 77, "wrong password {n}: {out}");
            assert!(
                !out.contains(BLOCKED),
                "blocked before the budget was spent ({n}): {out}"
            );
        }
    }

    /// Asserts that authd `i` refuses the right password from the attacker
    /// with the block reason (so without checking the password).
    fn assert_blocked(&self, i: usize) {
        let (rc, out) = self.auth(i, ATTACKER, "user@example.org", PASSWORD);
        assert_eq!(rc, 77, "the right password while blocked: {out}");
        assert!(out.contains(BLOCKED), "{out}");
    }

    /// Asserts that `rip` logs in on authd `i`.
    fn assert_ok(&self, i: usize, rip: &str) {
        let (rc, out) = self.auth(i, rip, "user@example.org", PASSWORD);
        assert_eq!(rc, 0, "{rip} on authd {i}: {out}");
        assert!(out.contains("auth succeeded"), "{out}");
    }

    /// Polls until the attacker logs in again; returns how long it took.
    fn wait_until_unblocked(&self, i: usize, deadline: Duration) -> Duration {
        let start = Instant::now();
        loop {
            let (rc, out) = self.auth(i, ATTACKER, "user@example.org", PASSWORD);
            if rc == 0 {
                return start.elapsed();
            }
            assert!(out.contains(BLOCKED), "{out}");
            assert!(
                start.elapsed() < deadline,
                "still blocked after {deadline:?}: {out}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn redis_keys(&self) -> Vec<String> {
        let Some(p) = &self.redis_prefix else {
            return Vec::new();
        };
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", "6379", "--scan", "--pattern"])
            .arg(format!("{p}*"))
            .output()
            .expect("run redis-cli (is redis-tools installed?)");
        assert!(out.status.success(), "redis-cli --scan failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for a in &mut self.authds {
            let _ = a.kill();
            let _ = a.wait();
        }
        let keys = self.redis_keys();
        if !keys.is_empty() {
            let _ = Command::new("redis-cli")
                .args(["-h", "127.0.0.1", "-p", "6379", "DEL"])
                .args(&keys)
                .stdout(Stdio::null())
                .status();
        }
        if std::thread::panicking() {
            for i in 0..self.authds.len() {
                let log = format!("authd-{i}.log");
                eprintln!(
                    "===== {log} =====\n{}",
                    std::fs::read_to_string(self.path.join(&log)).unwrap_or_default()
                );
            }
            if let Some(dir) = self.dir.take() {
                eprintln!("kept temp dir {}", dir.keep().display());
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_wrong_passwords_block_that_ip_until_the_backoff_ends() {
    let env = Env::start(1, "3s", None).await;
    env.spend_budget(0);
    // Blocked: even the right password is refused, without a check.
    env.assert_blocked(0);
    env.assert_blocked(0);
    // Another IP is unaffected (and its success does not unblock the
    // attacker: only the attacker's own IP key was spent).
    env.assert_ok(0, NEIGHBOUR);
    env.assert_blocked(0);
    // The back-off ends and the right password works again.
    env.wait_until_unblocked(0, Duration::from_secs(15));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_shares_the_block_between_two_authd_processes() {
    let prefix = format!(
        "postwerk-test-{}-{}:",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    // Long back-off: the block must not run out while we look at it.
    let env = Env::start(2, "1h", Some(prefix.clone())).await;
    // The budget is spent on authd 0 ...
    env.spend_budget(0);
    env.assert_blocked(0);
    // ... and authd 1 refuses the attacker too: the state is in Redis.
    env.assert_blocked(1);
    let keys = env.redis_keys();
    assert!(
        keys.contains(&format!("{prefix}blocked:ip:{ATTACKER}")),
        "{keys:?}"
    );
    // Another IP is unaffected on both.
    env.assert_ok(1, NEIGHBOUR);
    env.assert_ok(0, NEIGHBOUR);
    env.assert_blocked(1);
    // Lifting the block in Redis (what the back-off's expiry does) frees
    // the attacker on both processes at once.
    let status = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", "6379", "DEL"])
        .arg(format!("{prefix}blocked:ip:{ATTACKER}"))
        .stdout(Stdio::null())
        .status()
        .expect("run redis-cli");
    assert!(status.success());
    env.assert_ok(1, ATTACKER);
    // That success cleared the attacker's counters, on authd 0 as well.
    let (rc, out) = env.auth(0, ATTACKER, "user@example.org", "wrong");
    assert_eq!(rc, 77, "{out}");
    assert!(!out.contains(BLOCKED), "{out}");
    env.assert_ok(0, ATTACKER);
    drop(env);
    // Drop removed every key under the prefix.
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", "6379", "--scan", "--pattern"])
        .arg(format!("{prefix}*"))
        .output()
        .expect("run redis-cli");
    assert!(
        String::from_utf8_lossy(&out.stdout).trim().is_empty(),
        "keys left behind"
    );
}

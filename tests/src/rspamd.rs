//! A private Rspamd 3.4 (Debian's package) as the guide runs it: Debian's
//! /etc/rspamd/rspamd.conf with the guide's local.d and override.d
//! (tests/templates/rspamd/, verbatim) as `LOCAL_CONFDIR`, Bayes in the
//! local Redis, the milter (rspamd_proxy with `self_scan`) that Postfix's
//! `smtpd_milters` points at. What a private instance has to change is
//! written in extra files marked TEST: loopback ports instead of
//! 11332-11334, logging to a file, DNS to the test server, the multimap
//! files under `$LOCAL_CONFDIR` instead of /etc/rspamd. Stopped on Drop;
//! its log is printed when the test fails.

use std::fs::File;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::exec::{poll_until, require};
use crate::net::{free_port, wait_for_port};
use crate::template::{RSPAMD_LOCAL_D, RSPAMD_OVERRIDE_D};
use crate::testdir::TestDir;

/// Rspamd compiles its regular expressions and loads every module at
/// start: tens of seconds on a busy 2-core machine.
const START_TIMEOUT: Duration = Duration::from_secs(180);
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// A running private Rspamd.
#[derive(Debug)]
pub struct Rspamd {
    child: Option<Child>,
    root: PathBuf,
    /// The milter (the guide's `inet:localhost:11332`).
    pub milter_port: u16,
    /// The controller (the guide's 11334).
    pub controller_port: u16,
}

impl Rspamd {
    /// Starts it in `DIR/rspamd/`, resolving through `dns`; returns when
    /// the milter accepts connections.
    pub fn start(dir: &TestDir, dns: SocketAddr) -> Rspamd {
        let rspamd = require("rspamd");
        let root = dir.join("rspamd");
        for t in RSPAMD_LOCAL_D.iter().chain(RSPAMD_OVERRIDE_D.iter()) {
            let rel = t.name.trim_start_matches("rspamd/");
            // The guide's maps live in /etc/rspamd/local.d ($CONFDIR); a
            // private instance keeps them in its own local.d.
            let text = t
                .text
                .replace("$CONFDIR/local.d/", "$LOCAL_CONFDIR/local.d/");
            dir.write(format!("rspamd/etc/{rel}"), text, 0o644);
        }
        // The guide: `touch whitelist_ip.map …` (empty lists).
        for map in [
            "whitelist_ip.map",
            "whitelist_from.map",
            "blacklist_ip.map",
            "blacklist_from.map",
        ] {
            dir.write(format!("rspamd/etc/local.d/{map}"), "", 0o644);
        }
        let (milter_port, normal_port, controller_port) = (free_port(), free_port(), free_port());
        let log = root.join("log/rspamd.log");
        let local = |name: &str, text: String| {
            let path = root.join("etc/local.d").join(name);
            let old = std::fs::read_to_string(&path).unwrap_or_default();
            dir.write(
                format!("rspamd/etc/local.d/{name}"),
                format!("{old}\n# TEST: a private instance\n{text}"),
                0o644,
            );
        };
        local(
            "worker-proxy.inc",
            format!(
                "bind_socket = \"127.0.0.1:{milter_port}\";\ncount = 1;\n\
                 upstream \"local\" {{\n  default = yes;\n  hosts = \"127.0.0.1:{normal_port}\";\n}}\n"
            ),
        );
        local(
            "worker-normal.inc",
            format!("bind_socket = \"127.0.0.1:{normal_port}\";\ncount = 1;\n"),
        );
        local(
            "worker-controller.inc",
            format!("bind_socket = \"127.0.0.1:{controller_port}\";\ncount = 1;\n"),
        );
        dir.write(
            "rspamd/etc/local.d/logging.inc",
            format!(
                "# TEST: a file instead of the guide's syslog\ntype = \"file\";\nfilename = \"{}\";\nlevel = \"info\";\n",
                log.display()
            ),
            0o644,
        );
        local(
            "options.inc",
            format!(
                "dns {{\n  nameserver = [\"{dns}\"];\n  timeout = 1s;\n  retransmits = 1;\n}}\n"
            ),
        );
        for d in ["db", "run", "log"] {
            dir.mkdir(format!("rspamd/{d}"), 0o755);
        }
        let out = File::create(root.join("stdout.log"))
            .unwrap_or_else(|e| panic!("{}: {e}", root.display()));
        let err = out.try_clone().unwrap_or_else(|e| panic!("{e}"));
        let child = Command::new(rspamd)
            .args([
                "-f",
                "-i",
                "-u",
                "root",
                "-g",
                "root",
                "-c",
                "/etc/rspamd/rspamd.conf",
            ])
            .arg("--var")
            .arg(format!("LOCAL_CONFDIR={}", root.join("etc").display()))
            .arg("--var")
            .arg(format!("DBDIR={}", root.join("db").display()))
            .arg("--var")
            .arg(format!("RUNDIR={}", root.join("run").display()))
            .arg("--var")
            .arg(format!("LOGDIR={}", root.join("log").display()))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start rspamd: {e}"));
        let mut r = Rspamd {
            child: Some(child),
            root,
            milter_port,
            controller_port,
        };
        for port in [milter_port, controller_port] {
            if let Err(e) = wait_for_port(port, START_TIMEOUT) {
                let exited = r.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
                panic!(
                    "rspamd did not come up ({e}); exit: {exited:?}\n--- log ---\n{}",
                    r.log()
                );
            }
        }
        r
    }

    /// Rspamd's log so far (its own file and what it printed).
    pub fn log(&self) -> String {
        format!(
            "{}{}",
            std::fs::read_to_string(self.root.join("stdout.log")).unwrap_or_default(),
            std::fs::read_to_string(self.root.join("log/rspamd.log")).unwrap_or_default()
        )
    }

    /// Stops it (SIGTERM to the main process, which stops its workers);
    /// returns whether it exited in time.
    pub fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let pid = i32::try_from(child.id()).unwrap_or(i32::MAX);
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        let stopped = poll_until(STOP_TIMEOUT, || child.try_wait().ok().flatten().is_some());
        if !stopped {
            let _ = child.kill();
            let _ = child.wait();
        }
        stopped
    }
}

impl Drop for Rspamd {
    fn drop(&mut self) {
        let clean = self.stop();
        if std::thread::panicking() || !clean {
            eprintln!(
                "===== rspamd log (clean exit: {clean}) =====\n{}\n===== end of rspamd log =====",
                self.log()
            );
        }
    }
}

//! Running the `postwerk` admin command built in this workspace against a
//! test database, exactly as an admin would type it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::exec::{Output, display, run};

const CLI_TIMEOUT: Duration = Duration::from_secs(60);

/// The `postwerk` binary and the database it works on.
#[derive(Debug, Clone)]
pub struct Postwerk {
    bin: PathBuf,
    database_url: String,
    config: Option<PathBuf>,
}

/// Finds `name` in the cargo target directory this executable was built
/// into: `target/debug/deps/test-…` and `target/debug/postwerk-demo` both
/// have it in `target/debug/`. Panics telling to build the workspace.
pub fn workspace_binary(name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os("POSTWERK_BIN_DIR") {
        let candidate = Path::new(&path).join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
    let mut dir = exe.parent();
    while let Some(d) = dir {
        let candidate = d.join(name);
        if candidate.is_file() {
            return candidate;
        }
        // Stop at the profile directory (target/debug): do not wander off.
        if d.file_name()
            .is_some_and(|n| n != "deps" && n != "examples")
        {
            break;
        }
        dir = d.parent();
    }
    panic!(
        "the `{name}` binary is not next to {}: run `cargo build --workspace` first",
        exe.display()
    );
}

impl Postwerk {
    /// `postwerk --database URL` using the workspace's binary.
    pub fn new(database_url: &str) -> Postwerk {
        Postwerk {
            bin: workspace_binary("postwerk"),
            database_url: database_url.to_owned(),
            config: None,
        }
    }

    /// Also pass `--config PATH`.
    pub fn with_config(mut self, path: PathBuf) -> Postwerk {
        self.config = Some(path);
        self
    }

    /// The command for `args`.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        if let Some(config) = &self.config {
            cmd.arg("--config").arg(config);
        }
        cmd.args(["--database", &self.database_url]).args(args);
        cmd.env_remove("POSTWERK_DATABASE_URL");
        cmd
    }

    /// The command line for `args`, as the demo prints it (`postwerk …`
    /// rather than the full path of the binary).
    pub fn command_line(&self, args: &[&str]) -> String {
        let full = display(&self.command(args));
        let bin = self.bin.display().to_string();
        match full.strip_prefix(&bin) {
            Some(rest) => format!("postwerk{rest}"),
            None => full,
        }
    }

    /// Runs `postwerk ARGS` (stdin: `stdin`), whatever its exit status.
    pub fn try_run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        run(
            &mut self.command(args),
            stdin.map(str::as_bytes),
            CLI_TIMEOUT,
        )
    }

    /// Runs `postwerk ARGS` and panics with its output unless it succeeds;
    /// returns its stdout.
    #[track_caller]
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> String {
        self.try_run(args, stdin).assert_success().stdout
    }
}

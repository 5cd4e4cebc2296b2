//! postwerk-demo: the mail server of the guide, run once for a person to
//! watch. It makes a fresh SQLite database with the `postwerk` command, starts
//! postwerk-policyd and postwerk-lmtpd and private Postfix and Dovecot
//! instances configured as the guide says — with Postfix's lookups going to
//! policyd and delivery to lmtpd — sends
//! mail as a mail client and as another server would, and reads it back over
//! IMAP, printing every step and command.
//!
//! ```text
//! cargo build --workspace && cargo run -p postwerk-tests --bin postwerk-demo [-- --keep] [-- --db mariadb|postgres]
//! ```
//!
//! Exits 0 when every step behaved as the guide says; otherwise prints the
//! peers' logs, keeps the directory, and exits 1. Needs root and the
//! packages of scripts/install-deps.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::ExitCode;

use postwerk_tests::guide::{Narrator, Swap, scenario};
use postwerk_tests::{Database, MariaDb, Postgres, Sqlite, TestDir};

const USAGE: &str = "usage: postwerk-demo [--keep] [--db sqlite|mariadb|postgres] [--guide]\n\
  --guide  run the guide's stack as written (SQL maps, Dovecot LMTP) instead of postwerk's daemons";

fn main() -> ExitCode {
    let mut keep = false;
    let mut swap = Swap::ALL;
    let mut backend = "sqlite".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--keep" => keep = true,
            "--guide" => swap = Swap::GUIDE,
            "--db" => match args.next() {
                Some(b) if ["sqlite", "mariadb", "postgres"].contains(&b.as_str()) => backend = b,
                _ => {
                    eprintln!("{USAGE}");
                    return ExitCode::from(2);
                }
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        }
    }

    println!(
        "postwerk demo: the mail server of the guide, on {backend}, provisioned with `postwerk`"
    );
    // The harness reports failure by panicking; unwinding through the
    // instances prints their logs and keeps the directory.
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let mut dir = TestDir::new("demo");
        if keep {
            dir.keep();
        }
        println!("working directory: {}", dir.path().display());
        let db: Box<dyn Database> = match backend.as_str() {
            "mariadb" => Box::new(MariaDb::fresh()),
            "postgres" => Box::new(Postgres::fresh()),
            _ => Box::new(Sqlite::fresh(&dir)),
        };
        scenario(&dir, db.as_ref(), &Narrator::default(), swap);
        println!("\nstopping Postfix and Dovecot and cleaning up");
    }));
    match outcome {
        Ok(()) => {
            println!("\nAll steps passed.");
            ExitCode::SUCCESS
        }
        Err(_) => {
            eprintln!("\npostwerk-demo: FAILED (the reason and the peers' logs are above)");
            ExitCode::FAILURE
        }
    }
}

//! Fresh vmail databases for one test: a SQLite file, or a uniquely named
//! database on the running MariaDB / PostgreSQL with a read-only user for
//! Postfix and Dovecot, as the guide creates one. Dropped with the test.
//!
//! Everything goes through the `sqlite3`, `mariadb` and `psql` command-line
//! clients, so the harness needs no database driver of its own.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::exec::{INSTALL_HINT, Output, require, run};
use crate::testdir::{TestDir, set_mode};

const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
/// The MariaDB server's socket on Debian (the guide's `hosts = unix:...`).
pub const MARIADB_SOCKET: &str = "/run/mysqld/mysqld.sock";
/// Where PostgreSQL listens (trust authentication for local tests).
pub const PG_HOST: &str = "127.0.0.1";
/// PostgreSQL's port.
pub const PG_PORT: u16 = 5432;
/// The PostgreSQL superuser the tests use.
pub const PG_ADMIN: &str = "root";
/// Prefix of every database and user the harness creates.
pub const NAME_PREFIX: &str = "postwerk_t_";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A name unique in this process and across processes: `postwerk_t_<pid>_<n>`.
fn unique_name() -> String {
    format!(
        "{NAME_PREFIX}{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A password for a test's read-only database user.
fn unique_password() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("pw{:x}{}", nanos, NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Which SQL dialect, and which Postfix/Dovecot driver, a database needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite: Postfix `sqlite:` maps, Dovecot `driver = sqlite`.
    Sqlite,
    /// MySQL/MariaDB, the guide's own: Postfix `mysql:`, Dovecot `driver = mysql`.
    Mysql,
    /// PostgreSQL: Postfix `pgsql:`, Dovecot `driver = pgsql`.
    Pgsql,
}

impl Dialect {
    /// The Postfix map type and Dovecot driver name.
    pub fn driver(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::Mysql => "mysql",
            Dialect::Pgsql => "pgsql",
        }
    }
}

/// A database a test's peers read.
pub trait Database {
    /// The URL for `postwerk --database` (a user allowed to write).
    fn url(&self) -> String;
    /// The URL for postwerk's daemons: the read-only user Postfix and
    /// Dovecot get (the guide's `grant select`), after `grant_readers`.
    fn reader_url(&self) -> String {
        let vars = self.template_vars();
        let var = |k: &str| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        match self.dialect() {
            Dialect::Sqlite => self.url(),
            Dialect::Mysql => format!(
                "mysql://{}:{}@localhost/{}?socket={MARIADB_SOCKET}",
                var("db_user"),
                var("db_password"),
                var("db_name")
            ),
            Dialect::Pgsql => format!(
                "postgres://{}:{}@{}:{}/{}",
                var("db_user"),
                var("db_password"),
                var("pg_host"),
                var("pg_port"),
                var("db_name")
            ),
        }
    }
    /// Which dialect the templates need.
    fn dialect(&self) -> Dialect;
    /// Values for the template placeholders (`db_name`, `db_user`,
    /// `db_password`, `sqlite_path`, `pg_hosts`, `pg_host`, `pg_port`): the
    /// read-only access Postfix and Dovecot get, as in the guide.
    fn template_vars(&self) -> Vec<(&'static str, String)>;
    /// Runs `sql` (one or more statements) with the admin client: its
    /// output, one row a line, columns separated by tabs, or the client's
    /// error message. For assertions.
    fn try_query(&self, sql: &str) -> Result<String, String>;
    /// [`Database::try_query`], panicking on an error.
    #[track_caller]
    fn query(&self, sql: &str) -> String {
        self.try_query(sql)
            .unwrap_or_else(|e| panic!("{sql}\nfailed: {e}"))
    }
    /// Gives the read-only user access to the tables, once `postwerk db
    /// init` has made them (the guide's grant comes after its CREATE TABLEs
    /// only in PostgreSQL's case; MariaDB's `vmail.*` grant covers them
    /// already, and a SQLite file only needs to be readable).
    fn grant_readers(&self);
}

/// A client's stdout, or its complaint.
fn outcome(out: Output) -> Result<String, String> {
    if out.is_success() {
        Ok(out.stdout)
    } else {
        Err(format!("{}{}", out.stderr.trim(), out.stdout.trim()))
    }
}

// ---------------------------------------------------------------------------

/// A fresh SQLite database file, `TESTDIR/db/vmail.db` (not created: `postwerk
/// db init` creates it). Removed with the test directory.
#[derive(Debug)]
pub struct Sqlite {
    path: PathBuf,
}

impl Sqlite {
    /// A path for the database in `dir`; the directory is readable by the
    /// unprivileged Postfix proxymap and Dovecot auth-worker processes.
    pub fn fresh(dir: &TestDir) -> Sqlite {
        require("sqlite3");
        let db_dir = dir.mkdir("db", 0o755);
        Sqlite {
            path: db_dir.join("vmail.db"),
        }
    }

    /// The database file.
    pub fn path(&self) -> &PathBuf {
        &self.path
    }
}

impl Database for Sqlite {
    fn url(&self) -> String {
        format!("sqlite://{}", self.path.display())
    }
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }
    fn template_vars(&self) -> Vec<(&'static str, String)> {
        vec![("sqlite_path", self.path.display().to_string())]
    }
    fn try_query(&self, sql: &str) -> Result<String, String> {
        let mut cmd = Command::new(require("sqlite3"));
        // SQLite enforces foreign keys per connection; postwerk turns them
        // on, so the assertions do too.
        cmd.args(["-batch", "-bail", "-separator", "\t"])
            .arg(&self.path)
            .arg(format!("PRAGMA foreign_keys = ON;\n{sql}"));
        outcome(run(&mut cmd, None, CLIENT_TIMEOUT))
    }
    fn grant_readers(&self) {
        // Postfix's proxymap runs as postfix and Dovecot's auth-worker as
        // dovecot: both open the file read-only.
        if !self.path.exists() {
            panic!(
                "{} does not exist: did `postwerk db init` create it?",
                self.path.display()
            );
        }
        set_mode(&self.path, 0o644);
    }
}

// ---------------------------------------------------------------------------

/// A fresh database `postwerk_t_<pid>_<n>` on the local MariaDB, plus a user
/// of the same name with only `SELECT` on it — the guide's
/// `grant select on vmail.* to 'vmail'@'localhost'`. Both are dropped on Drop.
#[derive(Debug)]
pub struct MariaDb {
    name: String,
    password: String,
}

fn mariadb(sql: &str) -> Output {
    let mut cmd = Command::new(require("mariadb"));
    cmd.args([
        "--protocol=socket",
        "-S",
        MARIADB_SOCKET,
        "-u",
        "root",
        "--batch",
        "--skip-column-names",
        "-e",
        sql,
    ]);
    run(&mut cmd, None, CLIENT_TIMEOUT)
}

impl MariaDb {
    /// Creates the database and its read-only user. Panics, telling to run
    /// scripts/install-deps, when MariaDB is not running.
    pub fn fresh() -> MariaDb {
        let ping = mariadb("SELECT 1");
        if !ping.is_success() {
            panic!(
                "MariaDB is not reachable on {MARIADB_SOCKET} as root; {INSTALL_HINT} (it starts MariaDB)\n{ping}"
            );
        }
        static SWEEP: Once = Once::new();
        SWEEP.call_once(sweep_mariadb);
        let db = MariaDb {
            name: unique_name(),
            password: unique_password(),
        };
        let n = &db.name;
        let sql = format!(
            "CREATE DATABASE `{n}` CHARACTER SET 'utf8'; \
             CREATE USER '{n}'@'localhost' IDENTIFIED BY '{pw}'; \
             GRANT SELECT ON `{n}`.* TO '{n}'@'localhost';",
            pw = db.password
        );
        let out = mariadb(&sql);
        if !out.is_success() {
            panic!("cannot create the test database {n}:\n{out}");
        }
        db
    }

    /// The database name (also the read-only user's name).
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Drops databases and users left by earlier test processes that were killed
/// before their Drop ran (their pid is no longer alive).
fn sweep_mariadb() {
    let out = mariadb(&format!(
        "SHOW DATABASES LIKE '{}%'",
        NAME_PREFIX.replace('_', "\\_")
    ));
    for name in out.stdout.lines().map(str::trim).filter(|n| is_stale(n)) {
        let _ = mariadb(&format!(
            "DROP DATABASE IF EXISTS `{name}`; DROP USER IF EXISTS '{name}'@'localhost';"
        ));
    }
}

/// True for `postwerk_t_<pid>_<n>` whose pid is not running.
fn is_stale(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(NAME_PREFIX) else {
        return false;
    };
    let Some((pid, _)) = rest.split_once('_') else {
        return false;
    };
    match pid.parse::<u32>() {
        Ok(pid) => pid != std::process::id() && !PathBuf::from(format!("/proc/{pid}")).exists(),
        Err(_) => false,
    }
}

impl Database for MariaDb {
    fn url(&self) -> String {
        format!(
            "mysql://root@localhost/{}?socket={MARIADB_SOCKET}",
            self.name
        )
    }
    fn dialect(&self) -> Dialect {
        Dialect::Mysql
    }
    fn template_vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("db_name", self.name.clone()),
            ("db_user", self.name.clone()),
            ("db_password", self.password.clone()),
        ]
    }
    fn try_query(&self, sql: &str) -> Result<String, String> {
        let mut cmd = Command::new(require("mariadb"));
        cmd.args([
            "--protocol=socket",
            "-S",
            MARIADB_SOCKET,
            "-u",
            "root",
            "--batch",
            "--skip-column-names",
        ])
        .args(["-D", &self.name, "-e", sql]);
        outcome(run(&mut cmd, None, CLIENT_TIMEOUT))
    }
    fn grant_readers(&self) {}
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        let n = &self.name;
        let out = mariadb(&format!(
            "DROP DATABASE IF EXISTS `{n}`; DROP USER IF EXISTS '{n}'@'localhost';"
        ));
        if !out.is_success() {
            eprintln!("postwerk-tests: cannot drop the test database {n}:\n{out}");
        }
    }
}

// ---------------------------------------------------------------------------

/// A fresh database `postwerk_t_<pid>_<n>` on the local PostgreSQL, plus a
/// login role of the same name that may only `SELECT` its tables (granted by
/// [`Database::grant_readers`] once `postwerk db init` has made them). Both
/// are dropped on Drop.
#[derive(Debug)]
pub struct Postgres {
    name: String,
    password: String,
}

fn psql(database: &str, sql: &str) -> Output {
    let mut cmd = Command::new(require("psql"));
    cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-A", "-t", "-F", "\t"])
        .args([
            "-h",
            PG_HOST,
            "-p",
            &PG_PORT.to_string(),
            "-U",
            PG_ADMIN,
            "-d",
            database,
            "-c",
            sql,
        ]);
    run(&mut cmd, None, CLIENT_TIMEOUT)
}

impl Postgres {
    /// Creates the database and its read-only role. Panics, telling to run
    /// scripts/install-deps, when PostgreSQL is not running.
    pub fn fresh() -> Postgres {
        let ping = psql("postgres", "SELECT 1");
        if !ping.is_success() {
            panic!(
                "PostgreSQL is not reachable on {PG_HOST}:{PG_PORT} as {PG_ADMIN}; {INSTALL_HINT} (it starts PostgreSQL)\n{ping}"
            );
        }
        static SWEEP: Once = Once::new();
        SWEEP.call_once(sweep_postgres);
        let db = Postgres {
            name: unique_name(),
            password: unique_password(),
        };
        let n = &db.name;
        for sql in [
            format!("CREATE DATABASE \"{n}\""),
            format!("CREATE ROLE \"{n}\" LOGIN PASSWORD '{}'", db.password),
        ] {
            let out = psql("postgres", &sql);
            if !out.is_success() {
                panic!("cannot create the test database {n}:\n{out}");
            }
        }
        db
    }

    /// The database name (also the read-only role's name).
    pub fn name(&self) -> &str {
        &self.name
    }
}

fn sweep_postgres() {
    let out = psql(
        "postgres",
        &format!("SELECT datname FROM pg_database WHERE datname LIKE '{NAME_PREFIX}%'"),
    );
    for name in out.stdout.lines().map(str::trim).filter(|n| is_stale(n)) {
        let _ = psql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
        );
        let _ = psql("postgres", &format!("DROP ROLE IF EXISTS \"{name}\""));
    }
}

impl Database for Postgres {
    fn url(&self) -> String {
        format!("postgres://{PG_ADMIN}@{PG_HOST}:{PG_PORT}/{}", self.name)
    }
    fn dialect(&self) -> Dialect {
        Dialect::Pgsql
    }
    fn template_vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("db_name", self.name.clone()),
            ("db_user", self.name.clone()),
            ("db_password", self.password.clone()),
            ("pg_hosts", format!("inet:{PG_HOST}:{PG_PORT}")),
            ("pg_host", PG_HOST.to_owned()),
            ("pg_port", PG_PORT.to_string()),
        ]
    }
    fn try_query(&self, sql: &str) -> Result<String, String> {
        outcome(psql(&self.name, sql))
    }
    fn grant_readers(&self) {
        let n = &self.name;
        self.query(&format!(
            "GRANT SELECT ON ALL TABLES IN SCHEMA public TO \"{n}\""
        ));
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let n = &self.name;
        // FORCE: Postfix's proxymap or Dovecot's auth-worker may still hold a
        // connection for a moment after they were told to stop.
        for sql in [
            format!("DROP DATABASE IF EXISTS \"{n}\" WITH (FORCE)"),
            format!("DROP ROLE IF EXISTS \"{n}\""),
        ] {
            let out = psql("postgres", &sql);
            if !out.is_success() {
                eprintln!("postwerk-tests: cannot drop the test database {n}:\n{out}");
            }
        }
    }
}

/// The read-only user of `db` for TCP clients (`'u'@'127.0.0.1'`; the
/// harness makes only `'u'@'localhost'`, which matches the UNIX socket).
/// Dropped with the guard.
pub struct TcpReader<'a>(&'a MariaDb);

impl<'a> TcpReader<'a> {
    /// Creates the user.
    pub fn create(db: &'a MariaDb) -> TcpReader<'a> {
        let vars: std::collections::BTreeMap<_, _> = db.template_vars().into_iter().collect();
        let (user, pw) = (&vars["db_user"], &vars["db_password"]);
        db.query(&format!(
            "CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY '{pw}'; \
             GRANT SELECT ON `{}`.* TO '{user}'@'127.0.0.1';",
            db.name()
        ));
        TcpReader(db)
    }

    /// The daemons' URL, through `proxy`.
    pub fn url_via(&self, proxy: &crate::net::TcpProxy) -> String {
        let vars: std::collections::BTreeMap<_, _> = self.0.template_vars().into_iter().collect();
        format!(
            "mysql://{}:{}@127.0.0.1:{}/{}",
            vars["db_user"], vars["db_password"], proxy.port, vars["db_name"]
        )
    }
}

impl Drop for TcpReader<'_> {
    fn drop(&mut self) {
        let _ = self.0.try_query(&format!(
            "DROP USER IF EXISTS '{}'@'127.0.0.1'",
            self.0.name()
        ));
    }
}

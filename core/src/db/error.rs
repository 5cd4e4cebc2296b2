//! Database errors, classified once: an outage is temporary, a duplicate
//! row is a definite answer for the CLI. No SQL here.

use crate::error::{Transience, Transient};

/// What went wrong talking to the vmail database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The server cannot be reached, the pool timed out, or the connection
    /// broke: the peer should retry.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// The database is reachable but a statement failed (wrong schema,
    /// missing privilege, bad row): an admin must act; peers retry.
    #[error("database query `{what}` failed: {source}")]
    Query {
        /// Which query (its function name in `queries.rs`).
        what: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// An INSERT hit a UNIQUE key: the row exists already.
    #[error("{what} already exists")]
    Duplicate {
        /// What the admin tried to add.
        what: String,
    },
    /// An INSERT or DELETE broke a FOREIGN KEY.
    #[error("{what}")]
    ForeignKey {
        /// What is missing or still referenced.
        what: String,
    },
    /// A value in the database cannot be used (e.g. an unknown TLS policy).
    #[error("bad row in table {table}: {detail}")]
    BadRow {
        /// The table.
        table: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// The database URL or options are unusable.
    #[error("database configuration: {0}")]
    Config(String),
}

impl Transient for DbError {
    fn transience(&self) -> Transience {
        match self {
            DbError::Unavailable(_) => Transience::Temporary,
            DbError::Query { .. } => Transience::Temporary,
            DbError::BadRow { .. } => Transience::Temporary,
            DbError::Config(_) => Transience::Temporary,
            DbError::Duplicate { .. } => Transience::Permanent,
            DbError::ForeignKey { .. } => Transience::Permanent,
        }
    }
}

impl DbError {
    /// Classifies a driver error from query `what`.
    pub fn from_sqlx(what: &'static str, e: sqlx::Error) -> Self {
        use sqlx::Error as E;
        match e {
            E::PoolTimedOut
            | E::PoolClosed
            | E::Io(_)
            | E::Tls(_)
            | E::Protocol(_)
            | E::WorkerCrashed
            | E::BeginFailed => DbError::Unavailable(e),
            E::Database(ref d) => match d.kind() {
                sqlx::error::ErrorKind::UniqueViolation => DbError::Duplicate {
                    what: what.to_owned(),
                },
                sqlx::error::ErrorKind::ForeignKeyViolation => DbError::ForeignKey {
                    what: format!("{what}: a referenced row is missing or still in use"),
                },
                _ if is_connection_lost(d.as_ref()) => DbError::Unavailable(e),
                _ => DbError::Query { what, source: e },
            },
            other => DbError::Query {
                what,
                source: other,
            },
        }
    }
}

/// MySQL/MariaDB report some outages as server errors (1040 too many
/// connections, 1053 server shutdown in progress, 2006/2013 server gone
/// away); PostgreSQL as SQLSTATE class 08 (connection exception) and 57P0x
/// (operator intervention, e.g. admin shutdown).
fn is_connection_lost(d: &dyn sqlx::error::DatabaseError) -> bool {
    match d.code().as_deref() {
        Some(code) => {
            code.starts_with("08")
                || code.starts_with("57P0")
                || matches!(code, "1040" | "1053" | "2006" | "2013")
        }
        None => false,
    }
}

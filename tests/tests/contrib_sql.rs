//! contrib/sql/{mysql,sqlite,postgres}.sql are the guide's four tables: the
//! same columns, uniqueness, foreign keys, defaults and allowed values on
//! every database. Each schema file is loaded twice (it must be idempotent,
//! `postwerk db init` embeds it) through the database's own command-line
//! client, then the same statements must succeed or fail alike everywhere.

use postwerk_tests::{Database, MariaDb, Postgres, Sqlite, TestDir};

const MYSQL_SQL: &str = include_str!("../../contrib/sql/mysql.sql");
const SQLITE_SQL: &str = include_str!("../../contrib/sql/sqlite.sql");
const POSTGRES_SQL: &str = include_str!("../../contrib/sql/postgres.sql");

/// The columns of the guide's schema (shared/guide/schema-mysql.sql), in order.
const COLUMNS: &[(&str, &[&str])] = &[
    ("domains", &["id", "domain"]),
    (
        "accounts",
        &[
            "id", "username", "domain", "password", "quota", "enabled", "sendonly",
        ],
    ),
    (
        "aliases",
        &[
            "id",
            "source_username",
            "source_domain",
            "destination_username",
            "destination_domain",
            "enabled",
        ],
    ),
    ("tlspolicies", &["id", "domain", "policy", "params"]),
];

/// One query's answer with PostgreSQL's booleans (`t`/`f`) written as
/// MySQL's and SQLite's (`1`/`0`), trimmed.
fn normalized(out: &str) -> String {
    out.lines()
        .map(|line| {
            line.split('\t')
                .map(|v| match v {
                    "t" => "1",
                    "f" => "0",
                    other => other,
                })
                .collect::<Vec<_>>()
                .join("\t")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[track_caller]
fn accepts(db: &dyn Database, sql: &str) {
    if let Err(e) = db.try_query(sql) {
        panic!("{:?} refused\n  {sql}\nwith: {e}", db.dialect());
    }
}

#[track_caller]
fn refuses(db: &dyn Database, sql: &str, why: &str) {
    if db.try_query(sql).is_ok() {
        panic!("{:?} accepted ({why})\n  {sql}", db.dialect());
    }
}

fn behaves_like_the_guide(db: &dyn Database, schema: &str, columns_sql: &str) {
    // Twice: CREATE TABLE IF NOT EXISTS.
    db.query(schema);
    db.query(schema);

    for (table, expected) in COLUMNS {
        let got = db.query(&columns_sql.replace("TABLE", table));
        let got: Vec<&str> = got.lines().map(str::trim).collect();
        assert_eq!(&got, expected, "columns of {table} on {:?}", db.dialect());
    }

    // domains: unique domain.
    accepts(db, "INSERT INTO domains (domain) VALUES ('example.org')");
    accepts(db, "INSERT INTO domains (domain) VALUES ('example.net')");
    refuses(
        db,
        "INSERT INTO domains (domain) VALUES ('example.org')",
        "duplicate domain",
    );

    // accounts: defaults quota 0, enabled and sendonly false.
    accepts(
        db,
        "INSERT INTO accounts (username, domain, password) VALUES ('user1', 'example.org', 'x')",
    );
    assert_eq!(
        normalized(
            &db.query("SELECT quota, enabled, sendonly FROM accounts WHERE username = 'user1'")
        ),
        "0\t0\t0",
        "defaults of accounts on {:?}",
        db.dialect()
    );
    refuses(
        db,
        "INSERT INTO accounts (username, domain, password) VALUES ('user1', 'example.org', 'y')",
        "duplicate (username, domain)",
    );
    accepts(
        db,
        "INSERT INTO accounts (username, domain, password) VALUES ('user1', 'example.net', 'y')",
    );
    refuses(
        db,
        "INSERT INTO accounts (username, domain, password) VALUES ('u', 'unknown.test', 'x')",
        "foreign key to domains",
    );
    refuses(
        db,
        "INSERT INTO accounts (username, domain) VALUES ('u', 'example.org')",
        "password is NOT NULL",
    );
    // quota is int unsigned: 0 ..= 4294967295.
    accepts(
        db,
        "INSERT INTO accounts (username, domain, password, quota, enabled, sendonly) \
         VALUES ('big', 'example.org', 'x', 4294967295, true, true)",
    );
    refuses(
        db,
        "INSERT INTO accounts (username, domain, password, quota) VALUES ('neg', 'example.org', 'x', -1)",
        "negative quota",
    );
    refuses(
        db,
        "INSERT INTO accounts (username, domain, password, quota) \
         VALUES ('huge', 'example.org', 'x', 4294967296)",
        "quota beyond int unsigned",
    );
    // The guide's queries compare booleans with `= true`.
    assert_eq!(
        db.query("SELECT username FROM accounts WHERE enabled = true AND sendonly = true")
            .trim(),
        "big"
    );

    // aliases: catch-alls have source_username NULL, and NULLs do not collide
    // in the unique key; enabled defaults to false.
    let catch_all = "INSERT INTO aliases (source_username, source_domain, destination_username, \
                     destination_domain, enabled) VALUES (NULL, 'example.net', 'user1', 'example.org', true)";
    accepts(db, catch_all);
    accepts(db, catch_all);
    let alias = "INSERT INTO aliases (source_username, source_domain, destination_username, \
                 destination_domain) VALUES ('alias', 'example.org', 'user1', 'example.org')";
    accepts(db, alias);
    refuses(db, alias, "duplicate alias");
    assert_eq!(
        normalized(&db.query("SELECT enabled FROM aliases WHERE source_username = 'alias'")),
        "0"
    );
    refuses(
        db,
        "INSERT INTO aliases (source_username, source_domain, destination_username, \
         destination_domain) VALUES ('a', 'unknown.test', 'user1', 'example.org')",
        "foreign key to domains",
    );

    // tlspolicies: the guide's eight policies only, one row per domain, no
    // foreign key (policies are for other people's domains).
    for (i, policy) in [
        "none",
        "may",
        "encrypt",
        "dane",
        "dane-only",
        "fingerprint",
        "verify",
        "secure",
    ]
    .iter()
    .enumerate()
    {
        accepts(
            db,
            &format!("INSERT INTO tlspolicies (domain, policy) VALUES ('d{i}.test', '{policy}')"),
        );
    }
    refuses(
        db,
        "INSERT INTO tlspolicies (domain, policy) VALUES ('x.test', 'bogus')",
        "policy outside the enum",
    );
    refuses(
        db,
        "INSERT INTO tlspolicies (domain, policy) VALUES ('d0.test', 'may')",
        "duplicate domain",
    );
    // MySQL gives an ENUM NOT NULL column its first value as the default.
    accepts(db, "INSERT INTO tlspolicies (domain) VALUES ('y.test')");
    assert_eq!(
        db.query("SELECT policy FROM tlspolicies WHERE domain = 'y.test'")
            .trim(),
        "none",
        "default policy on {:?}",
        db.dialect()
    );
    refuses(
        db,
        "INSERT INTO tlspolicies (domain, policy) VALUES ('w.test', NULL)",
        "policy is NOT NULL",
    );
    accepts(
        db,
        "INSERT INTO tlspolicies (domain, policy, params) VALUES ('z.test', 'secure', 'match=.z.test')",
    );
}

#[test]
fn sqlite_schema_behaves_like_the_guides() {
    let dir = TestDir::new("contrib-sql-sqlite");
    let db = Sqlite::fresh(&dir);
    behaves_like_the_guide(
        &db,
        SQLITE_SQL,
        "SELECT name FROM pragma_table_info('TABLE') ORDER BY cid",
    );
}

#[test]
fn mysql_schema_behaves_like_the_guides() {
    let db = MariaDb::fresh();
    behaves_like_the_guide(
        &db,
        MYSQL_SQL,
        "SELECT column_name FROM information_schema.columns \
         WHERE table_schema = DATABASE() AND table_name = 'TABLE' ORDER BY ordinal_position",
    );
}

#[test]
fn postgres_schema_behaves_like_the_guides() {
    let db = Postgres::fresh();
    behaves_like_the_guide(
        &db,
        POSTGRES_SQL,
        "SELECT column_name FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name = 'TABLE' ORDER BY ordinal_position",
    );
}

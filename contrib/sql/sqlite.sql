-- postwerk: the vmail schema of the guide, translated to SQLite.
--
-- Same four tables, columns, uniqueness, foreign keys and defaults as the
-- MySQL schema of the guide (contrib/sql/mysql.sql). Translation rules:
--   int unsigned AUTO_INCREMENT  ->  INTEGER PRIMARY KEY AUTOINCREMENT
--   int unsigned                 ->  INTEGER with CHECK (0 .. 4294967295)
--   boolean                      ->  BOOLEAN (stored as 0 / 1, and SQLite
--                                    understands TRUE and FALSE, so the
--                                    "enabled = true" of the guide still works)
--   enum(...)                    ->  TEXT with a CHECK on the same values
--                                    and DEFAULT 'none': MySQL gives an ENUM
--                                    NOT NULL column its first value as the
--                                    default, so the schema of the guide has one
-- SQLite enforces the foreign keys only on connections that turn on
-- PRAGMA foreign_keys. Like MySQL, a UNIQUE key allows several NULLs, so
-- catch-all aliases (source_username NULL) behave the same.
CREATE TABLE IF NOT EXISTS domains (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    domain VARCHAR(255) NOT NULL,
    UNIQUE (domain)
);
CREATE TABLE IF NOT EXISTS accounts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    username VARCHAR(64) NOT NULL,
    domain VARCHAR(255) NOT NULL,
    password VARCHAR(255) NOT NULL,
    quota INTEGER DEFAULT 0 CHECK (quota >= 0 AND quota <= 4294967295),
    enabled BOOLEAN DEFAULT 0,
    sendonly BOOLEAN DEFAULT 0,
    UNIQUE (username, domain),
    FOREIGN KEY (domain) REFERENCES domains (domain)
);
CREATE TABLE IF NOT EXISTS aliases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source_username VARCHAR(64),
    source_domain VARCHAR(255) NOT NULL,
    destination_username VARCHAR(64) NOT NULL,
    destination_domain VARCHAR(255) NOT NULL,
    enabled BOOLEAN DEFAULT 0,
    UNIQUE (source_username, source_domain, destination_username, destination_domain),
    FOREIGN KEY (source_domain) REFERENCES domains (domain)
);
CREATE TABLE IF NOT EXISTS tlspolicies (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    domain VARCHAR(255) NOT NULL,
    policy TEXT NOT NULL DEFAULT 'none' CHECK (policy IN ('none', 'may', 'encrypt', 'dane', 'dane-only', 'fingerprint', 'verify', 'secure')),
    params VARCHAR(255),
    UNIQUE (domain)
);
-- postwerk matches user names and domains whatever their case (as the
-- guide's MariaDB collation does), and these indexes keep those lookups fast.
CREATE INDEX IF NOT EXISTS accounts_lower_name ON accounts (lower(username), lower(domain));
CREATE INDEX IF NOT EXISTS aliases_lower_source ON aliases (lower(source_username), lower(source_domain));
CREATE INDEX IF NOT EXISTS domains_lower ON domains (lower(domain));

//! The config templates under tests/templates/, compiled into the harness,
//! and the one substitution they use: `{{name}}` → value.

/// A template file: its path below tests/templates/ and its text.
#[derive(Debug, Clone, Copy)]
pub struct Template {
    /// Path below tests/templates/, for messages.
    pub name: &'static str,
    /// The file's text.
    pub text: &'static str,
}

macro_rules! template {
    ($path:literal) => {
        Template {
            name: $path,
            text: include_str!(concat!("../templates/", $path)),
        }
    };
}

/// Postfix: the guide's main.cf for a private instance.
pub const POSTFIX_MAIN_CF: Template = template!("postfix/main.cf");
/// Postfix: the guide's master.cf for a private instance.
pub const POSTFIX_MASTER_CF: Template = template!("postfix/master.cf");
/// Postfix: the guide's submission_header_cleanup (verbatim).
pub const POSTFIX_SUBMISSION_HEADER_CLEANUP: Template =
    template!("postfix/submission_header_cleanup");

/// Postfix: the guide's six sql/*.cf maps, in MySQL dialect (the guide's own).
pub const POSTFIX_SQL_MYSQL: [Template; 6] = [
    template!("postfix/sql/mysql/accounts.cf"),
    template!("postfix/sql/mysql/aliases.cf"),
    template!("postfix/sql/mysql/domains.cf"),
    template!("postfix/sql/mysql/recipient-access.cf"),
    template!("postfix/sql/mysql/sender-login-maps.cf"),
    template!("postfix/sql/mysql/tls-policy.cf"),
];
/// Postfix: the six maps translated to SQLite.
pub const POSTFIX_SQL_SQLITE: [Template; 6] = [
    template!("postfix/sql/sqlite/accounts.cf"),
    template!("postfix/sql/sqlite/aliases.cf"),
    template!("postfix/sql/sqlite/domains.cf"),
    template!("postfix/sql/sqlite/recipient-access.cf"),
    template!("postfix/sql/sqlite/sender-login-maps.cf"),
    template!("postfix/sql/sqlite/tls-policy.cf"),
];
/// Postfix: the six maps translated to PostgreSQL.
pub const POSTFIX_SQL_PGSQL: [Template; 6] = [
    template!("postfix/sql/pgsql/accounts.cf"),
    template!("postfix/sql/pgsql/aliases.cf"),
    template!("postfix/sql/pgsql/domains.cf"),
    template!("postfix/sql/pgsql/recipient-access.cf"),
    template!("postfix/sql/pgsql/sender-login-maps.cf"),
    template!("postfix/sql/pgsql/tls-policy.cf"),
];

/// Dovecot: the guide's dovecot.conf for a private instance.
pub const DOVECOT_CONF: Template = template!("dovecot/dovecot.conf");
/// Dovecot: the guide's dovecot-sql.conf (MySQL).
pub const DOVECOT_SQL_MYSQL: Template = template!("dovecot/dovecot-sql.mysql.conf");
/// Dovecot: dovecot-sql.conf translated to SQLite.
pub const DOVECOT_SQL_SQLITE: Template = template!("dovecot/dovecot-sql.sqlite.conf");
/// Dovecot: dovecot-sql.conf translated to PostgreSQL.
pub const DOVECOT_SQL_PGSQL: Template = template!("dovecot/dovecot-sql.pgsql.conf");
/// Dovecot: the guide's global Sieve scripts (verbatim), by file name.
pub const SIEVE_GLOBAL: [Template; 3] = [
    template!("dovecot/sieve/global/spam-global.sieve"),
    template!("dovecot/sieve/global/learn-spam.sieve"),
    template!("dovecot/sieve/global/learn-ham.sieve"),
];

/// Rspamd: the guide's local.d (verbatim).
pub const RSPAMD_LOCAL_D: [Template; 8] = [
    template!("rspamd/local.d/arc.conf"),
    template!("rspamd/local.d/classifier-bayes.conf"),
    template!("rspamd/local.d/dkim_signing.conf"),
    template!("rspamd/local.d/logging.inc"),
    template!("rspamd/local.d/milter_headers.conf"),
    template!("rspamd/local.d/multimap.conf"),
    template!("rspamd/local.d/redis.conf"),
    template!("rspamd/local.d/worker-controller.inc"),
];
/// Rspamd: the guide's override.d (verbatim).
pub const RSPAMD_OVERRIDE_D: [Template; 1] = [template!("rspamd/override.d/classifier-bayes.conf")];

/// The python IMAP client (tests/scripts/imap_fetch.py).
pub const IMAP_FETCH_PY: &str = include_str!("../scripts/imap_fetch.py");

impl Template {
    /// The file name (last path component).
    pub fn file_name(&self) -> &'static str {
        self.name.rsplit('/').next().unwrap_or(self.name)
    }

    /// Replaces every `{{key}}` by its value. Panics if a placeholder is left
    /// without a value, so a template and its caller cannot drift apart
    /// silently. Values not used by this template are fine (one set of
    /// database values serves several files).
    pub fn render(&self, vars: &[(&str, &str)]) -> String {
        let mut out = self.text.to_owned();
        for (key, value) in vars {
            out = out.replace(&format!("{{{{{key}}}}}"), value);
        }
        if let Some(start) = out.find("{{") {
            let rest = &out[start..];
            let end = rest.find("}}").map_or(rest.len().min(40), |e| e + 2);
            panic!("template {}: no value for {}", self.name, &rest[..end]);
        }
        out
    }
}

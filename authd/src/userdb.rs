//! LOGIC: what Dovecot's `passdb/userdb { driver = dict }` asks through
//! the dict protocol, answered from the guide's `dovecot-sql.conf` queries:
//! `shared/passdb/<user>` → `{"password": ...}` of an enabled account
//! (Dovecot verifies it), `shared/userdb/<user>` → `home`, `uid`, `gid`,
//! `quota_rule` of an account with a mailbox (send-only accounts have
//! none), and iterating `shared/userdb/` lists those accounts for
//! `doveadm -A`. Knows nothing about bytes on the wire.

use postwerk_core::address::Address;
use postwerk_core::config::authd::expand_home;
use postwerk_core::db::{Db, DbError};
use std::time::Duration;

/// The namespace prefix Dovecot puts before every auth key.
pub const SHARED: &str = "shared/";
/// The passdb key prefix of `contrib/dovecot/dovecot-dict-auth.conf.ext`.
pub const PASSDB: &str = "passdb/";
/// The userdb key prefix (and `iterate_prefix`).
pub const USERDB: &str = "userdb/";

/// Why a dict request could not be answered: Dovecot tempfails.
#[derive(Debug, thiserror::Error)]
pub enum DictError {
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// `lookup_timeout` passed.
    #[error("lookup took longer than {0:?}")]
    Timeout(Duration),
    /// A key outside `shared/passdb/` and `shared/userdb/`: the Dovecot
    /// side is configured differently from `contrib/dovecot/`.
    #[error("unknown key `{0}`; dovecot-dict-auth.conf.ext must use key = passdb/%u and userdb/%u")]
    UnknownKey(String),
}

/// The dict service's logic.
#[derive(Debug, Clone)]
pub struct Userdb {
    db: Db,
    home: String,
    uid: Option<u32>,
    gid: Option<u32>,
    timeout: Duration,
}

impl Userdb {
    /// Builds one from the database and `[authd]` settings.
    pub fn new(
        db: Db,
        home: String,
        uid: Option<u32>,
        gid: Option<u32>,
        timeout: Duration,
    ) -> Self {
        Self {
            db,
            home,
            uid,
            gid,
            timeout,
        }
    }

    /// Answers `L<key>`: `Ok(None)` is "not found".
    pub async fn lookup(&self, key: &str) -> Result<Option<String>, DictError> {
        let rest = key.strip_prefix(SHARED).unwrap_or(key);
        let work = async {
            if let Some(user) = rest.strip_prefix(PASSDB) {
                let Ok(addr) = Address::parse(user) else {
                    return Ok(None);
                };
                let entry = self.db.passdb_lookup(addr.local(), addr.domain()).await?;
                Ok(entry
                    .map(|e| serde_json::json!({ "password": e.password.expose() }).to_string()))
            } else if let Some(user) = rest.strip_prefix(USERDB) {
                let Ok(addr) = Address::parse(user) else {
                    return Ok(None);
                };
                let entry = self.db.userdb_lookup(addr.local(), addr.domain()).await?;
                Ok(entry.map(|e| {
                    let mut o = serde_json::Map::new();
                    o.insert(
                        "home".into(),
                        expand_home(&self.home, addr.local(), addr.domain()).into(),
                    );
                    if let Some(uid) = self.uid {
                        o.insert("uid".into(), uid.into());
                    }
                    if let Some(gid) = self.gid {
                        o.insert("gid".into(), gid.into());
                    }
                    o.insert("quota_rule".into(), e.quota_rule().into());
                    serde_json::Value::Object(o).to_string()
                }))
            } else {
                Err(DictError::UnknownKey(key.chars().take(64).collect()))
            }
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| DictError::Timeout(self.timeout))?
    }

    /// Answers `I<flags>\t<max>\t<path>`: `(key, value)` rows. Only
    /// `shared/userdb/` can be iterated; values are left empty (Dovecot's
    /// userdb iteration reads only the keys).
    pub async fn iterate(
        &self,
        path: &str,
        max_rows: u64,
    ) -> Result<Vec<(String, String)>, DictError> {
        let rest = path.strip_prefix(SHARED).unwrap_or(path);
        if rest != USERDB {
            return Err(DictError::UnknownKey(path.chars().take(64).collect()));
        }
        let users = tokio::time::timeout(self.timeout, self.db.userdb_iterate())
            .await
            .map_err(|_| DictError::Timeout(self.timeout))??;
        let limit = if max_rows == 0 {
            usize::MAX
        } else {
            usize::try_from(max_rows).unwrap_or(usize::MAX)
        };
        Ok(users
            .into_iter()
            .take(limit)
            .map(|u| (format!("{SHARED}{USERDB}{u}"), String::new()))
            .collect())
    }
}

//! LOGIC: the SASL mechanisms PLAIN (RFC 4616) and LOGIN
//! (draft-murchison-sasl-login) as pure state machines, and the check of
//! one set of credentials against the guide's `password_query` (enabled
//! accounts only; send-only accounts may log in). Knows nothing about
//! bytes on the wire or the failure delay; never logs a password.

use crate::bruteforce::{BruteForce, Check};
use crate::login_cache::LoginCache;
use postwerk_core::address::Address;
use postwerk_core::db::{Db, DbError};
use postwerk_core::password::{PasswordError, Scheme, verify_blocking};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// A mechanism we serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// `PLAIN`.
    Plain,
    /// `LOGIN`.
    Login,
}

impl Mechanism {
    /// By wire name (already uppercased by the codec).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "PLAIN" => Some(Mechanism::Plain),
            "LOGIN" => Some(Mechanism::Login),
            _ => None,
        }
    }

    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
        }
    }
}

/// What the handshake announces: both send the password in the clear, so
/// both carry Dovecot's `plaintext` flag (Postfix hides them with
/// `noplaintext` until TLS).
pub const ANNOUNCED: [crate::proto::auth_client::Mechanism; 2] = [
    crate::proto::auth_client::Mechanism {
        name: "PLAIN",
        flags: &["plaintext"],
    },
    crate::proto::auth_client::Mechanism {
        name: "LOGIN",
        flags: &["plaintext"],
    },
];

/// A login name and password from a finished exchange.
#[derive(Clone)]
pub struct Credentials {
    /// The authentication identity as the client typed it.
    pub authcid: String,
    /// The password bytes.
    pub password: Vec<u8>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("authcid", &self.authcid)
            .field("password", &"***")
            .finish()
    }
}

/// Where an unfinished exchange stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exchange {
    /// PLAIN without initial response: waiting for the response.
    Plain,
    /// LOGIN: waiting for the user name.
    LoginUser,
    /// LOGIN: waiting for the password of this user.
    LoginPassword {
        /// The user name given.
        user: String,
    },
}

/// Why a mechanism gave up on the client's input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MechFailure {
    /// The response is not what the mechanism expects.
    InvalidInput(&'static str),
    /// PLAIN with an authorization identity other than the login name
    /// (a master-user login, which we do not offer).
    Authz {
        /// The login name.
        authcid: String,
    },
}

/// The next step of an exchange.
#[derive(Debug)]
pub enum Step {
    /// Send `CONT` with this challenge, then continue from the state.
    Challenge(Vec<u8>, Exchange),
    /// The credentials are complete.
    Done(Credentials),
    /// Fail the request.
    Fail(MechFailure),
}

/// Starts `mech` with the decoded initial response (`None` or empty: none,
/// as Dovecot treats `resp=`).
pub fn start(mech: Mechanism, initial: Option<Vec<u8>>) -> Step {
    let initial = initial.filter(|i| !i.is_empty());
    match (mech, initial) {
        (Mechanism::Plain, None) => Step::Challenge(Vec::new(), Exchange::Plain),
        (Mechanism::Plain, Some(r)) => plain(&r),
        (Mechanism::Login, None) => Step::Challenge(b"Username:".to_vec(), Exchange::LoginUser),
        (Mechanism::Login, Some(u)) => login_user(u),
    }
}

/// Continues an exchange with the client's decoded response.
pub fn next(state: Exchange, data: Vec<u8>) -> Step {
    match state {
        Exchange::Plain => plain(&data),
        Exchange::LoginUser => login_user(data),
        Exchange::LoginPassword { user } => Step::Done(Credentials {
            authcid: user,
            password: data,
        }),
    }
}

fn login_user(data: Vec<u8>) -> Step {
    match String::from_utf8(data) {
        Ok(user) if !user.is_empty() && !user.contains('\0') => {
            Step::Challenge(b"Password:".to_vec(), Exchange::LoginPassword { user })
        }
        _ => Step::Fail(MechFailure::InvalidInput("user name is empty or not UTF-8")),
    }
}

/// RFC 4616: `authzid NUL authcid NUL passwd`.
fn plain(r: &[u8]) -> Step {
    let mut parts = r.splitn(3, |&b| b == 0);
    let (Some(authzid), Some(authcid), Some(password)) = (parts.next(), parts.next(), parts.next())
    else {
        return Step::Fail(MechFailure::InvalidInput(
            "PLAIN response is not authzid NUL authcid NUL password",
        ));
    };
    if password.contains(&0) {
        return Step::Fail(MechFailure::InvalidInput(
            "PLAIN response has more than two NULs",
        ));
    }
    let Ok(authcid) = std::str::from_utf8(authcid) else {
        return Step::Fail(MechFailure::InvalidInput("user name is not UTF-8"));
    };
    if authcid.is_empty() {
        return Step::Fail(MechFailure::InvalidInput("user name is empty"));
    }
    // Empty authzid (swaks) or the login name itself (doveadm) is a normal
    // login; anything else asks to act as another user.
    if !authzid.is_empty() && authzid != authcid.as_bytes() {
        let same = std::str::from_utf8(authzid)
            .ok()
            .and_then(|z| Address::parse(z).ok())
            .zip(Address::parse(authcid).ok())
            .is_some_and(|(z, c)| z == c);
        if !same {
            return Step::Fail(MechFailure::Authz {
                authcid: authcid.to_owned(),
            });
        }
    }
    Step::Done(Credentials {
        authcid: authcid.to_owned(),
        password: password.to_vec(),
    })
}

/// The definite answer to a login attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Authenticated as this canonical `user@domain`.
    Ok {
        /// Postfix's `sasl_username`.
        user: String,
    },
    /// Not authenticated.
    Fail {
        /// The user as we understood it (normalised when possible).
        user: String,
        /// Why, for our log; the client is told nothing more than "failed"
        /// except for [`FailReason::Blocked`].
        reason: FailReason,
    },
}

/// Why a login failed (log text; never sent to the client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailReason {
    /// No enabled account by that name (or not an address).
    UnknownUser,
    /// Wrong password.
    BadPassword,
    /// The brute-force budget of the remote IP or the account is spent;
    /// the password was not checked.
    Blocked {
        /// `ip` or `account`.
        scope: &'static str,
        /// Time left.
        retry_after: Duration,
    },
}

/// A failure to decide: the client gets a temporary failure.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The stored hash is unusable (bad row or unknown scheme).
    #[error("stored password of {user}: {source}")]
    Password {
        /// Whose.
        user: String,
        /// What is wrong.
        #[source]
        source: PasswordError,
    },
    /// `lookup_timeout` passed.
    #[error("lookup and verification took longer than {0:?}")]
    Timeout(Duration),
}

/// Checks credentials: one per login attempt, shared by all sessions.
#[derive(Debug)]
pub struct Authenticator {
    db: Db,
    default_scheme: Scheme,
    verify_permits: Arc<Semaphore>,
    lookup_timeout: Duration,
    bruteforce: BruteForce,
    cache: LoginCache,
    username_chars: String,
}

impl Authenticator {
    /// Builds one from its parts.
    pub fn new(
        db: Db,
        default_scheme: Scheme,
        verify_parallelism: usize,
        lookup_timeout: Duration,
        bruteforce: BruteForce,
        cache: LoginCache,
    ) -> Self {
        Self {
            db,
            default_scheme,
            verify_permits: Arc::new(Semaphore::new(verify_parallelism.max(1))),
            lookup_timeout,
            bruteforce,
            cache,
            username_chars: postwerk_core::address::DOVECOT_USERNAME_CHARS.to_owned(),
        }
    }

    /// `[mail].username_chars` (Dovecot's `auth_username_chars`): a user
    /// name with other characters is refused like an unknown user, as
    /// Dovecot refuses it, so SMTP AUTH and IMAP agree.
    pub fn with_username_chars(mut self, chars: &str) -> Self {
        self.username_chars = chars.to_owned();
        self
    }

    /// Decides a login attempt from `remote_ip` (Postfix's `rip=`).
    /// A blocked attempt is refused without touching the database or the
    /// password; database and hash problems are errors (temporary for the
    /// client) and never count as failures.
    pub async fn check(
        &self,
        creds: &Credentials,
        remote_ip: Option<IpAddr>,
    ) -> Result<Verdict, AuthError> {
        let addr = Address::parse(&creds.authcid).ok();
        let user = addr
            .as_ref()
            .map(|a| a.to_string())
            .unwrap_or_else(|| creds.authcid.to_lowercase());
        if let Check::Blocked { scope, retry_after } = self.bruteforce.check(remote_ip, &user).await
        {
            return Ok(Verdict::Fail {
                user,
                reason: FailReason::Blocked { scope, retry_after },
            });
        }
        let verdict = match addr {
            // Not an address: the guide's query (`%Ln`/`%Ld`) finds nothing.
            None => Verdict::Fail {
                user: user.clone(),
                reason: FailReason::UnknownUser,
            },
            Some(addr) => {
                match tokio::time::timeout(
                    self.lookup_timeout,
                    self.verify(&addr, &user, &creds.password),
                )
                .await
                {
                    Ok(r) => r?,
                    Err(_) => return Err(AuthError::Timeout(self.lookup_timeout)),
                }
            }
        };
        match &verdict {
            Verdict::Ok { user } => self.bruteforce.success(remote_ip, user).await,
            Verdict::Fail { user, .. } => self.bruteforce.failure(remote_ip, user).await,
        }
        Ok(verdict)
    }

    async fn verify(
        &self,
        addr: &Address,
        user: &str,
        password: &[u8],
    ) -> Result<Verdict, AuthError> {
        if !postwerk_core::address::usable_user_name(addr, &self.username_chars) {
            return Ok(Verdict::Fail {
                user: user.to_owned(),
                reason: FailReason::UnknownUser,
            });
        }
        let Some(entry) = self.db.passdb_lookup(addr.local(), addr.domain()).await? else {
            return Ok(Verdict::Fail {
                user: user.to_owned(),
                reason: FailReason::UnknownUser,
            });
        };
        let stored = entry.password.expose();
        if self.cache.hit(user, stored, password) {
            return Ok(Verdict::Ok {
                user: user.to_owned(),
            });
        }
        let is_match = {
            // Closed only if dropped, which never happens: the semaphore
            // lives as long as `self`.
            let _permit = self
                .verify_permits
                .acquire()
                .await
                .map_err(|e| AuthError::Password {
                    user: user.to_owned(),
                    source: PasswordError::Task(e.to_string()),
                })?;
            verify_blocking(password.to_vec(), stored.to_owned(), self.default_scheme)
                .await
                .map_err(|source| AuthError::Password {
                    user: user.to_owned(),
                    source,
                })?
        };
        if is_match {
            self.cache.insert(user, stored, password);
            Ok(Verdict::Ok {
                user: user.to_owned(),
            })
        } else {
            Ok(Verdict::Fail {
                user: user.to_owned(),
                reason: FailReason::BadPassword,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(s: Step) -> Credentials {
        match s {
            Step::Done(c) => c,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn plain_with_and_without_authzid() {
        let c = done(start(
            Mechanism::Plain,
            Some(b"\0user@example.org\0secret".to_vec()),
        ));
        assert_eq!(
            (c.authcid.as_str(), c.password.as_slice()),
            ("user@example.org", &b"secret"[..])
        );
        let c = done(start(
            Mechanism::Plain,
            Some(b"user@example.org\0user@example.org\0secret".to_vec()),
        ));
        assert_eq!(c.authcid, "user@example.org");
        let c = done(start(
            Mechanism::Plain,
            Some(b"User@Example.org\0user@example.org\0pw".to_vec()),
        ));
        assert_eq!(c.authcid, "user@example.org");
        assert!(matches!(
            start(
                Mechanism::Plain,
                Some(b"boss@example.org\0user@example.org\0pw".to_vec())
            ),
            Step::Fail(MechFailure::Authz { .. })
        ));
    }

    #[test]
    fn plain_without_initial_response_asks_with_empty_challenge() {
        let Step::Challenge(ch, st) = start(Mechanism::Plain, Some(Vec::new())) else {
            panic!()
        };
        assert!(ch.is_empty());
        let c = done(next(st, b"\0u@example.org\0pw".to_vec()));
        assert_eq!(c.authcid, "u@example.org");
    }

    #[test]
    fn plain_garbage_fails() {
        for r in [
            &b"nonul"[..],
            b"\0onlyone",
            b"\0\0pw",
            b"\0u\xff@x\0pw",
            b"\0u@x\0p\0w",
        ] {
            assert!(
                matches!(
                    start(Mechanism::Plain, Some(r.to_vec())),
                    Step::Fail(MechFailure::InvalidInput(_))
                ),
                "{r:?}"
            );
        }
    }

    #[test]
    fn login_exchange() {
        let Step::Challenge(ch, st) = start(Mechanism::Login, None) else {
            panic!()
        };
        assert_eq!(ch, b"Username:");
        let Step::Challenge(ch, st) = next(st, b"user@example.org".to_vec()) else {
            panic!()
        };
        assert_eq!(ch, b"Password:");
        let c = done(next(st, b"secret".to_vec()));
        assert_eq!(
            (c.authcid.as_str(), c.password.as_slice()),
            ("user@example.org", &b"secret"[..])
        );
        // AUTH LOGIN <b64 user>: the user name is the initial response.
        let Step::Challenge(ch, _) = start(Mechanism::Login, Some(b"user@example.org".to_vec()))
        else {
            panic!()
        };
        assert_eq!(ch, b"Password:");
        assert!(matches!(
            next(Exchange::LoginUser, vec![0xff]),
            Step::Fail(_)
        ));
        assert!(!format!("{c:?}").contains("secret"));
    }
}

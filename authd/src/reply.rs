//! MAPPING: logic results → protocol replies. The only place that chooses
//! OK / FAIL / `code=temp_fail` (auth-client) and O / N / F (dict), with
//! exhaustive matches (STYLE.md §3). Clients get generic text; the detail
//! goes to our log.

use crate::authenticate::{AuthError, FailReason, MechFailure, Verdict};
use crate::proto::{auth_client, dict};
use crate::userdb::DictError;
use postwerk_core::db::DbError;

/// The reason sent with a temporary failure. Postfix 3.7 shows it to the
/// SMTP client after `535 5.7.8 Error: authentication failed:` (it ignores
/// `code=temp_fail`), so it must not sound like a wrong password.
pub const TEMP_REASON: &str = "Temporary authentication failure, try again later";
/// The reason sent when the brute-force budget is spent.
pub const BLOCKED_REASON: &str = "Too many failed logins, try again later";
/// Dovecot login-common's text for plaintext mechanisms without TLS.
pub const PLAINTEXT_REASON: &str =
    "Plaintext authentication disallowed on non-secure (SSL/TLS) connections.";
/// What the dict client is told on a failure (Dovecot logs it).
pub const DICT_TEMP_TEXT: &str = "authd: temporary lookup failure";

/// The auth-client reply to a finished credential check for `user` (the
/// normalised name tried; Dovecot names it in every FAIL it can).
pub fn auth_client(id: u32, user: &str, result: &Result<Verdict, AuthError>) -> auth_client::Reply {
    use auth_client::{FailCode, Reply};
    match result {
        Ok(Verdict::Ok { user }) => Reply::Ok {
            id,
            user: user.clone(),
        },
        Ok(Verdict::Fail { user, reason }) => match reason {
            // Dovecot never tells "unknown user" from "bad password".
            FailReason::UnknownUser | FailReason::BadPassword => Reply::Fail {
                id,
                user: Some(user.clone()),
                code: None,
                reason: None,
            },
            FailReason::Blocked { .. } => Reply::Fail {
                id,
                user: Some(user.clone()),
                code: None,
                reason: Some(BLOCKED_REASON.into()),
            },
        },
        Err(e) => {
            // Dovecot 2.3.19 sends `FAIL\t<id>\tuser=<u>\tcode=temp_fail`
            // (testdata/dovecot-2.3.19-auth-client.txt); the reason is ours,
            // for Postfix, which shows it instead of "(reason unavailable)".
            let temp = || Reply::Fail {
                id,
                user: Some(user.to_owned()),
                code: Some(FailCode::TempFail),
                reason: Some(TEMP_REASON.into()),
            };
            match e {
                AuthError::Db(
                    DbError::Unavailable(_)
                    | DbError::Query { .. }
                    | DbError::BadRow { .. }
                    | DbError::Config(_)
                    | DbError::Duplicate { .. }
                    | DbError::ForeignKey { .. },
                ) => temp(),
                AuthError::Password { .. } => temp(),
                AuthError::Timeout(_) => temp(),
            }
        }
    }
}

/// The auth-client reply when a mechanism gives up on the client's input.
pub fn mech_failure(id: u32, f: &MechFailure) -> auth_client::Reply {
    use auth_client::{FailCode, Reply};
    match f {
        MechFailure::InvalidInput(_) => Reply::Fail {
            id,
            user: None,
            code: None,
            reason: None,
        },
        MechFailure::Authz { authcid } => Reply::Fail {
            id,
            user: Some(authcid.clone()),
            code: Some(FailCode::AuthzFail),
            reason: None,
        },
    }
}

/// Dovecot's reason for an undecodable initial response.
pub const BAD_BASE64_INITIAL: &str = "Invalid base64 data in initial response";
/// Dovecot's reason for an undecodable continued response.
pub const BAD_BASE64_CONT: &str = "Invalid base64 data in continued response";
/// Dovecot's reply to CONT for a request it does not know.
pub const UNKNOWN_REQUEST: &str = "Authentication request timed out";
/// Dovecot's reason for CONT while no challenge is outstanding.
pub const UNEXPECTED_CONT: &str = "Unexpected continuation";

/// An immediate FAIL for a protocol-level problem (plaintext refused,
/// unknown request id, unexpected CONT), with Dovecot's wording.
pub fn refused(id: u32, reason: &str) -> auth_client::Reply {
    auth_client::Reply::Fail {
        id,
        user: None,
        code: None,
        reason: Some(reason.to_owned()),
    }
}

/// The immediate FAIL for bad base64, as Dovecot 2.3.19 sends it.
pub fn bad_base64(id: u32, reason: &str) -> auth_client::Reply {
    auth_client::Reply::Fail {
        id,
        user: None,
        code: Some(auth_client::FailCode::InvalidBase64),
        reason: Some(reason.to_owned()),
    }
}

/// The dict reply to a lookup.
pub fn dict_lookup(result: &Result<Option<String>, DictError>) -> dict::Reply {
    match result {
        Ok(Some(v)) => dict::Reply::Found(v.clone()),
        Ok(None) => dict::Reply::NotFound,
        Err(e) => dict_failure(e),
    }
}

/// The dict reply to a failed request (lookup or iterate).
pub fn dict_failure(e: &DictError) -> dict::Reply {
    match e {
        DictError::Db(
            DbError::Unavailable(_)
            | DbError::Query { .. }
            | DbError::BadRow { .. }
            | DbError::Config(_)
            | DbError::Duplicate { .. }
            | DbError::ForeignKey { .. },
        )
        | DictError::Timeout(_)
        | DictError::UnknownKey(_) => dict::Reply::Fail(DICT_TEMP_TEXT.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn classes() {
        let ok = auth_client(1, "u@x", &Ok(Verdict::Ok { user: "u@x".into() }));
        assert_eq!(ok.to_bytes(), b"OK\t1\tuser=u@x\t\n");
        let bad = auth_client(
            2,
            "u@x",
            &Ok(Verdict::Fail {
                user: "u@x".into(),
                reason: FailReason::BadPassword,
            }),
        );
        assert_eq!(bad.to_bytes(), b"FAIL\t2\tuser=u@x\n");
        let unknown = auth_client(
            2,
            "u@x",
            &Ok(Verdict::Fail {
                user: "u@x".into(),
                reason: FailReason::UnknownUser,
            }),
        );
        assert_eq!(unknown, bad);
        let down = auth_client(
            3,
            "u@x",
            &Err(AuthError::Db(DbError::Unavailable(
                postwerk_core::db::SqlxError::PoolTimedOut,
            ))),
        );
        assert_eq!(
            down.to_bytes(),
            b"FAIL\t3\tuser=u@x\tcode=temp_fail\treason=Temporary authentication failure, try again later\n"
        );
        let slow = auth_client(4, "u@x", &Err(AuthError::Timeout(Duration::from_secs(1))));
        assert!(
            String::from_utf8(slow.to_bytes())
                .unwrap()
                .contains("code=temp_fail")
        );
        assert_eq!(dict_lookup(&Ok(None)), dict::Reply::NotFound);
        assert_eq!(
            bad_base64(3, BAD_BASE64_INITIAL).to_bytes(),
            b"FAIL\t3\tcode=invalid_base64\treason=Invalid base64 data in initial response\n"
        );
        assert_eq!(
            refused(9, UNKNOWN_REQUEST).to_bytes(),
            b"FAIL\t9\treason=Authentication request timed out\n"
        );
        assert!(matches!(
            dict_lookup(&Err(DictError::Timeout(Duration::from_secs(1)))),
            dict::Reply::Fail(_)
        ));
    }
}

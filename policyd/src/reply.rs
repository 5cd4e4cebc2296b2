//! MAPPING: lookup results → protocol replies. The only place that chooses
//! OK / NOTFOUND / TEMP / TIMEOUT / PERM (STYLE.md §3). Peers get generic
//! text; the detail goes to our log.

use crate::lookup::LookupError;
use crate::proto::{netstring::POSTFIX_MAX_REPLY, socketmap, tcp_table};
use postwerk_core::db::DbError;

/// What a peer is told when we fail; the log has the detail.
pub const TEMP_TEXT: &str = "temporary lookup failure";

/// The socketmap reply for a lookup result.
pub fn socketmap(result: &Result<Option<String>, LookupError>) -> socketmap::Reply {
    match result {
        Ok(Some(v)) if v.is_empty() => socketmap::Reply::NotFound,
        // Postfix refuses longer replies ("input exceeds size limit").
        Ok(Some(v)) if v.len() + 3 > POSTFIX_MAX_REPLY => {
            socketmap::Reply::Temp("result too large".into())
        }
        Ok(Some(v)) => socketmap::Reply::Ok(v.clone()),
        Ok(None) => socketmap::Reply::NotFound,
        Err(LookupError::Timeout(_)) => socketmap::Reply::Timeout("lookup timed out".into()),
        Err(LookupError::Db(e)) => match e {
            DbError::Unavailable(_)
            | DbError::Query { .. }
            | DbError::BadRow { .. }
            | DbError::Config(_)
            | DbError::Duplicate { .. }
            | DbError::ForeignKey { .. } => socketmap::Reply::Temp(TEMP_TEXT.into()),
        },
    }
}

/// The socketmap reply for a map name we do not serve: Postfix logs it as
/// a configuration error (and still answers 451 to its client).
pub fn unknown_map(name: &str) -> socketmap::Reply {
    socketmap::Reply::Perm(format!("unknown map name {name}"))
}

/// The tcp_table reply for a lookup result.
pub fn tcp_table(result: &Result<Option<String>, LookupError>) -> tcp_table::Reply {
    match result {
        Ok(Some(v)) if v.is_empty() => tcp_table::Reply::NotFound,
        Ok(Some(v)) => tcp_table::Reply::Found(v.clone()),
        Ok(None) => tcp_table::Reply::NotFound,
        Err(LookupError::Timeout(_)) => tcp_table::Reply::Temp("lookup timed out".into()),
        Err(LookupError::Db(e)) => match e {
            DbError::Unavailable(_)
            | DbError::Query { .. }
            | DbError::BadRow { .. }
            | DbError::Config(_)
            | DbError::Duplicate { .. }
            | DbError::ForeignKey { .. } => tcp_table::Reply::Temp(TEMP_TEXT.into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn classes() {
        assert_eq!(
            socketmap(&Ok(Some("a@b".into()))),
            socketmap::Reply::Ok("a@b".into())
        );
        assert_eq!(socketmap(&Ok(None)), socketmap::Reply::NotFound);
        assert_eq!(
            socketmap(&Ok(Some(String::new()))),
            socketmap::Reply::NotFound
        );
        assert!(matches!(
            socketmap(&Err(LookupError::Timeout(Duration::from_secs(1)))),
            socketmap::Reply::Timeout(_)
        ));
        let down = LookupError::Db(DbError::Unavailable(sqlx_io_error()));
        assert_eq!(
            socketmap(&Err(down)),
            socketmap::Reply::Temp(TEMP_TEXT.into())
        );
        assert!(matches!(
            socketmap(&Ok(Some("x".repeat(100_000)))),
            socketmap::Reply::Temp(_)
        ));
        assert_eq!(tcp_table(&Ok(None)), tcp_table::Reply::NotFound);
        let down = LookupError::Db(DbError::Unavailable(sqlx_io_error()));
        assert!(matches!(tcp_table(&Err(down)), tcp_table::Reply::Temp(_)));
    }

    fn sqlx_io_error() -> postwerk_core::db::SqlxError {
        postwerk_core::db::SqlxError::PoolTimedOut
    }
}

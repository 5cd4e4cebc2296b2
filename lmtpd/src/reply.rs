//! MAPPING: results of the logic → LMTP replies. The only place that
//! chooses codes (STYLE.md §3); texts follow Dovecot's LMTP
//! (`shared/reference/lmtp-maildir.md` §1.2). Peers get generic text for
//! our failures; the detail goes to our log.

use crate::deliver::{Delivered, DeliveryError};
use crate::lookup::{LookupError, Verdict};
use crate::proto::lmtp::{DataError, Reply, SyntaxError};
use postwerk_core::db::DbError;

/// The greeting.
pub fn greeting(hostname: &str) -> Reply {
    Reply::plain(220, vec![format!("{hostname} postwerk LMTP ready")])
}

/// The LHLO reply with our extensions (RFC 2033 requires PIPELINING and
/// ENHANCEDSTATUSCODES). CHUNKING is not offered: Postfix never uses BDAT.
pub fn lhlo(hostname: &str, max_size: usize) -> Reply {
    Reply::plain(
        250,
        vec![
            hostname.to_owned(),
            "8BITMIME".into(),
            "ENHANCEDSTATUSCODES".into(),
            "PIPELINING".into(),
            format!("SIZE {max_size}"),
            "SMTPUTF8".into(),
        ],
    )
}

/// A line the codec could not parse.
pub fn syntax(e: &SyntaxError) -> Reply {
    match e {
        SyntaxError::Unknown => Reply::new(500, "5.5.1", "Unknown command"),
        SyntaxError::BadArguments(why) => {
            Reply::new(501, "5.5.4", format!("Invalid arguments: {why}"))
        }
        SyntaxError::BadParameter(p) => {
            Reply::new(555, "5.5.4", format!("Unsupported parameter {p}"))
        }
        SyntaxError::TooLong => Reply::new(500, "5.5.2", "Line too long"),
        SyntaxError::NotUtf8 => Reply::new(500, "5.5.2", "Invalid characters in command"),
    }
}

/// A command in the wrong state.
pub fn bad_sequence(what: &str) -> Reply {
    Reply::new(503, "5.5.1", what.to_owned())
}

/// MAIL accepted.
pub fn mail_ok() -> Reply {
    Reply::new(250, "2.1.0", "OK")
}

/// MAIL with `SIZE=` above our limit.
pub fn mail_too_big() -> Reply {
    Reply::new(
        552,
        "5.3.4",
        "Message size exceeds fixed maximum message size",
    )
}

/// Too many RCPTs in one transaction.
pub fn too_many_recipients() -> Reply {
    Reply::new(452, "4.5.3", "Too many recipients")
}

/// The RCPT reply for a lookup result. `quota_text` is
/// `quota_exceeded_message` with `%u` expanded.
pub fn rcpt(
    rcpt: &str,
    result: &Result<Verdict, LookupError>,
    quota_text: &str,
    quota_tempfail: bool,
) -> Reply {
    match result {
        Ok(Verdict::Accept(_)) => Reply::new(250, "2.1.5", "OK"),
        Ok(Verdict::NoSuchUser) => {
            Reply::new(550, "5.1.1", format!("<{rcpt}> User doesn't exist: {rcpt}"))
        }
        Ok(Verdict::UnusableName) => Reply::new(
            550,
            "5.1.1",
            format!("<{rcpt}> Mailbox name has characters the mail store does not accept"),
        ),
        Ok(Verdict::OverQuota(_)) => over_quota(rcpt, quota_text, quota_tempfail),
        Ok(Verdict::BadAddress) => {
            Reply::new(501, "5.1.3", format!("<{rcpt}> Invalid recipient address"))
        }
        Err(e) => match e {
            LookupError::Db(d) => match d {
                DbError::Unavailable(_)
                | DbError::Query { .. }
                | DbError::BadRow { .. }
                | DbError::Config(_)
                | DbError::Duplicate { .. }
                | DbError::ForeignKey { .. } => temp_lookup(rcpt),
            },
            LookupError::Timeout(_) | LookupError::Storage { .. } | LookupError::UnsafeName(_) => {
                temp_lookup(rcpt)
            }
        },
    }
}

fn temp_lookup(rcpt: &str) -> Reply {
    Reply::new(451, "4.3.0", format!("<{rcpt}> Temporary internal error"))
}

fn over_quota(rcpt: &str, text: &str, tempfail: bool) -> Reply {
    if tempfail {
        Reply::new(452, "4.2.2", format!("<{rcpt}> {text}"))
    } else {
        Reply::new(552, "5.2.2", format!("<{rcpt}> {text}"))
    }
}

/// DATA accepted.
pub fn data_go() -> Reply {
    Reply::plain(354, vec!["OK".into()])
}

/// The per-recipient reply when the message itself was refused.
pub fn data_error(e: DataError) -> Reply {
    match e {
        DataError::TooBig => Reply::new(
            552,
            "5.3.4",
            "Message size exceeds fixed maximum message size",
        ),
        DataError::LineTooLong => Reply::new(552, "5.3.4", "Message line too long"),
        DataError::TooManyHeaders => Reply::new(552, "5.3.4", "Too many header lines"),
    }
}

/// The per-recipient reply after DATA.
pub fn delivered(
    rcpt: &str,
    id: &str,
    result: &Result<Delivered, DeliveryError>,
    quota_text: &str,
    quota_tempfail: bool,
) -> Reply {
    match result {
        Ok(Delivered::Stored(_)) | Ok(Delivered::Discarded) => {
            Reply::new(250, "2.0.0", format!("<{rcpt}> {id} Saved"))
        }
        Ok(Delivered::Rejected(reason)) => Reply::new(550, "5.7.1", format!("<{rcpt}> {reason}")),
        Ok(Delivered::OverQuota) => over_quota(rcpt, quota_text, quota_tempfail),
        Err(DeliveryError::NoSpace { .. }) => Reply::new(
            452,
            "4.3.1",
            format!("<{rcpt}> Insufficient system storage"),
        ),
        Err(DeliveryError::Io { .. }) | Err(DeliveryError::Task(_)) => {
            Reply::new(451, "4.3.0", format!("<{rcpt}> Temporary internal error"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_match_dovecot() {
        let r = rcpt("nosuch@example.org", &Ok(Verdict::NoSuchUser), "", false);
        assert_eq!(
            r.to_string(),
            "550 5.1.1 <nosuch@example.org> User doesn't exist: nosuch@example.org\r\n"
        );
        let down = Err(LookupError::Db(DbError::Unavailable(
            postwerk_core::db::SqlxError::PoolTimedOut,
        )));
        assert_eq!(rcpt("a@b", &down, "", false).code, 451);
        assert_eq!(data_go().to_string(), "354 OK\r\n");
        let full = delivered(
            "u@x",
            "id",
            &Ok(Delivered::OverQuota),
            "User u@x has exhausted allowed storage space.",
            false,
        );
        assert_eq!(
            full.to_string(),
            "552 5.2.2 <u@x> User u@x has exhausted allowed storage space.\r\n"
        );
        let enospc = Err(DeliveryError::NoSpace {
            user: "u".into(),
            source: std::io::Error::from_raw_os_error(28),
        });
        assert_eq!(delivered("u@x", "id", &enospc, "", false).code, 452);
    }
}

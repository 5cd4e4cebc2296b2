//! MAPPING: what the milter answers Postfix when it cannot do its job. The
//! only place that turns a configured [`FailureAction`] into a milter reply
//! (STYLE.md §3): `a` accept, `t` tempfail (Postfix: `451 4.7.1 Service
//! unavailable - try again later`), `r` reject (`550 5.7.1 Command
//! rejected`). The peer gets Postfix's generic text; our log has the cause.

use indymilter::{SetErrorReply, SmtpReply, Status};
use postwerk_core::config::milterd::FailureAction;

/// The end-of-message reply for a failure handled with `action`.
pub fn failure(action: FailureAction) -> Status {
    match action {
        FailureAction::Accept => Status::Accept,
        FailureAction::Tempfail => Status::Tempfail,
        FailureAction::Reject => Status::Reject,
    }
}

/// The end-of-message reply for mail that fails DMARC for a domain with
/// `p=reject` (RFC 7489 §6.7: reject during the SMTP transaction;
/// `550 5.7.1` as Rspamd and OpenDMARC answer). The text names no host
/// and no result detail.
pub fn dmarc_reject(reply: &mut SmtpReply) -> Status {
    match reply.set_error_reply(
        "550",
        Some("5.7.1"),
        ["Rejected by the sender domain's DMARC policy"],
    ) {
        Ok(()) => Status::Reject,
        // Our literal is valid; plain `r` gives Postfix's default 5xx.
        Err(_) => Status::Reject,
    }
}

/// Makes `text` safe for an SMTP reply line: printable ASCII only, at
/// most 200 characters.
fn reply_text(text: &str) -> String {
    text.chars()
        // `%` would be a format directive to libmilter-style MTAs.
        .map(|c| {
            if (c.is_ascii_graphic() && c != '%') || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(200)
        .collect()
}

/// The end-of-message reply for mail the spam scan rejects: `554 5.7.1`
/// with the reason (the symbols that decided, or the GTUBE string), as
/// the issue asks: "reject texts that tell the sender why".
pub fn spam_reject(reply: &mut SmtpReply, text: &str) -> Status {
    match reply.set_error_reply("554", Some("5.7.1"), [reply_text(text)]) {
        Ok(()) => Status::Reject,
        Err(_) => Status::Reject,
    }
}

/// The end-of-message reply for greylisted mail: `451 4.7.1` (Rspamd:
/// "Try again later"); the client retries after the greylist delay.
pub fn spam_tempfail(reply: &mut SmtpReply, text: &str) -> Status {
    match reply.set_error_reply("451", Some("4.7.1"), [reply_text(text)]) {
        Ok(()) => Status::Tempfail,
        Err(_) => Status::Tempfail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions() {
        assert_eq!(failure(FailureAction::Accept), Status::Accept);
        assert_eq!(failure(FailureAction::Tempfail), Status::Tempfail);
        assert_eq!(failure(FailureAction::Reject), Status::Reject);
    }

    #[test]
    fn reply_text_is_one_printable_line() {
        assert_eq!(reply_text("a\r\nb\u{e4}"), "a??b?");
        assert_eq!(reply_text(&"x".repeat(500)).len(), 200);
    }
}

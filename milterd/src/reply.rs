//! MAPPING: what the milter answers Postfix when it cannot do its job. The
//! only place that turns a configured [`FailureAction`] into a milter reply
//! (STYLE.md §3): `a` accept, `t` tempfail (Postfix: `451 4.7.1 Service
//! unavailable - try again later`), `r` reject (`550 5.7.1 Command
//! rejected`). The peer gets Postfix's generic text; our log has the cause.

use indymilter::Status;
use postwerk_core::config::milterd::FailureAction;

/// The end-of-message reply for a failure handled with `action`.
pub fn failure(action: FailureAction) -> Status {
    match action {
        FailureAction::Accept => Status::Accept,
        FailureAction::Tempfail => Status::Tempfail,
        FailureAction::Reject => Status::Reject,
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
}

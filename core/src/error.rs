//! Temporary versus permanent: the one question every error that can reach a
//! peer must answer. No I/O here.

/// Whether a peer should retry (Postfix defers, Dovecot tempfails) or give up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transience {
    /// Infrastructure failed or we are misconfigured: the peer retries later.
    Temporary,
    /// A definite answer: retrying cannot change it.
    Permanent,
}

/// Implemented by every error type that can reach a peer.
///
/// Anything unclassified is [`Transience::Temporary`]; permanent must be
/// proven (see STYLE.md §3).
pub trait Transient {
    /// How a peer should treat this error.
    fn transience(&self) -> Transience;

    /// Shorthand for `transience() == Temporary`.
    fn is_temporary(&self) -> bool {
        self.transience() == Transience::Temporary
    }
}

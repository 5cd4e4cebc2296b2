//! Dovecot-compatible password schemes (filled in by the password work).

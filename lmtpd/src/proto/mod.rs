//! Wire codecs. No I/O, no database and no Maildir here.

pub mod lmtp;

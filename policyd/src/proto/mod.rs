//! Wire codecs, one module per protocol. No I/O and no database here.

pub mod netstring;
pub mod policy;
pub mod socketmap;
pub mod tcp_table;

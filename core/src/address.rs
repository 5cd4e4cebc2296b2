//! Mail addresses.

//! The tracing subscriber every daemon installs.

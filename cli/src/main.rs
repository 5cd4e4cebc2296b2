//! postwerk: the admin command.
fn main() {}

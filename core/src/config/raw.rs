//! Stage one of the config: serde types holding only what the admin wrote.
//! Every field is optional here; defaults and validation live in `mod.rs`.

use serde::Deserialize;
use std::path::PathBuf;

/// `[database]`: shared by every daemon and the CLI.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    pub url: Option<String>,
    pub password_file: Option<PathBuf>,
    pub max_connections: Option<u32>,
    pub acquire_timeout: Option<String>,
}

/// `[log]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    pub level: Option<String>,
}

/// `[mail]`: settings Postfix and Dovecot share with postwerk.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mail {
    pub recipient_delimiter: Option<String>,
    pub default_pass_scheme: Option<String>,
    pub username_chars: Option<String>,
}

//! `[authd]`: the authentication daemon's settings, raw and validated.
//! (Filled in by the authd work; the shared listener keys are here already.)

use super::ConfigError;
use super::daemon::{RawService, ServiceConfig, check_listen, check_service};
use crate::service::ListenAddr;
use serde::Deserialize;
use std::time::Duration;

/// Where Postfix's `smtpd_sasl_path = private/auth` finds authd by default.
pub const DEFAULT_AUTH_LISTEN: &str = "unix:/var/spool/postfix/private/auth";
/// Idle connections are closed after this long.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// Raw `[authd]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Raw {
    pub auth_listen: Option<Vec<String>>,
    pub dict_listen: Option<Vec<String>>,
    pub socket_mode: Option<String>,
    pub socket_owner: Option<String>,
    pub socket_group: Option<String>,
    pub max_connections: Option<usize>,
    pub shutdown_timeout: Option<String>,
    pub idle_timeout: Option<String>,
}

impl Raw {
    fn service(&self) -> RawService {
        RawService {
            socket_mode: self.socket_mode.clone(),
            socket_owner: self.socket_owner.clone(),
            socket_group: self.socket_group.clone(),
            max_connections: self.max_connections,
            shutdown_timeout: self.shutdown_timeout.clone(),
            idle_timeout: self.idle_timeout.clone(),
        }
    }
}

/// Validated `[authd]`.
#[derive(Debug, Clone)]
pub struct AuthdConfig {
    /// Dovecot auth-client protocol listeners (for Postfix SASL).
    pub auth_listen: Vec<ListenAddr>,
    /// Dovecot dict protocol listeners (for Dovecot passdb/userdb).
    pub dict_listen: Vec<ListenAddr>,
    /// Shared listener settings.
    pub service: ServiceConfig,
}

/// Checks `[authd]`.
pub fn check(raw: &Raw, errors: &mut Vec<ConfigError>) -> AuthdConfig {
    let default_auth = vec![DEFAULT_AUTH_LISTEN.to_owned()];
    AuthdConfig {
        auth_listen: check_listen(
            "[authd].auth_listen",
            raw.auth_listen.as_ref().unwrap_or(&default_auth),
            errors,
        ),
        dict_listen: check_listen(
            "[authd].dict_listen",
            raw.dict_listen.as_deref().unwrap_or(&[]),
            errors,
        ),
        service: check_service("authd", &raw.service(), DEFAULT_IDLE_TIMEOUT, errors),
    }
}

/// `postwerk config check` rows for `[authd]`.
pub fn describe(a: &AuthdConfig) -> Vec<(String, String)> {
    let mut rows = vec![
        (
            "[authd].auth_listen".to_owned(),
            super::list(&a.auth_listen),
        ),
        (
            "[authd].dict_listen".to_owned(),
            super::list(&a.dict_listen),
        ),
    ];
    rows.extend(super::daemon::describe_service("authd", &a.service));
    rows
}

//! Settings every daemon section shares (`[policyd]`, `[authd]`, …):
//! listeners, UNIX socket ownership, connection limits, drain time, and the
//! user to run as. No I/O here except resolving user and group names.

use super::{ConfigError, units};
use crate::service::{Limits, ListenAddr, UnixOptions};
use std::time::Duration;

/// The raw, shared keys of a daemon section. Each section's raw type gets
/// these fields from [`daemon_raw!`] (serde cannot combine `flatten` with
/// `deny_unknown_fields`) and builds this with `service()`.
#[derive(Debug, Default)]
pub struct RawService {
    pub user: Option<String>,
    pub group: Option<String>,
    pub socket_mode: Option<String>,
    pub socket_owner: Option<String>,
    pub socket_group: Option<String>,
    pub max_connections: Option<usize>,
    pub shutdown_timeout: Option<String>,
    pub idle_timeout: Option<String>,
}

/// Defines a daemon section's raw type: the given fields plus the eight
/// shared keys (`user`, `group`, `socket_mode`, `socket_owner`,
/// `socket_group`, `max_connections`, `shutdown_timeout`, `idle_timeout`), with
/// `deny_unknown_fields` and a `service()` that collects the shared ones.
macro_rules! daemon_raw {
    ($(#[$meta:meta])* pub struct $name:ident { $(pub $field:ident: $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Default, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $(pub $field: $ty,)*
            pub user: Option<String>,
            pub group: Option<String>,
            pub socket_mode: Option<String>,
            pub socket_owner: Option<String>,
            pub socket_group: Option<String>,
            pub max_connections: Option<usize>,
            pub shutdown_timeout: Option<String>,
            pub idle_timeout: Option<String>,
        }

        impl $name {
            fn service(&self) -> $crate::config::daemon::RawService {
                $crate::config::daemon::RawService {
                    user: self.user.clone(),
                    group: self.group.clone(),
                    socket_mode: self.socket_mode.clone(),
                    socket_owner: self.socket_owner.clone(),
                    socket_group: self.socket_group.clone(),
                    max_connections: self.max_connections,
                    shutdown_timeout: self.shutdown_timeout.clone(),
                    idle_timeout: self.idle_timeout.clone(),
                }
            }
        }
    };
}
pub(crate) use daemon_raw;

/// The shared keys, validated.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// `user` and `group`: whom a daemon started as root becomes once its
    /// listeners are bound.
    pub run_as: Option<RunAs>,
    /// `socket_mode`, `socket_owner`, `socket_group` for UNIX listeners.
    pub unix: UnixOptions,
    /// `max_connections`, `shutdown_timeout`.
    pub limits: Limits,
    /// `idle_timeout`: close a connection that sends nothing this long.
    pub idle_timeout: Duration,
}

/// `user` / `group` of a daemon section: started as root (by an init
/// system without systemd's `User=`, say), the daemon binds its listeners
/// and then becomes this user, with this group (default: the user's
/// primary group) and the user's supplementary groups (initgroups(3)), as
/// Postfix's `mail_owner` and Dovecot's `default_internal_user` do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    /// The user name (or numeric uid) as written.
    pub user: String,
    /// The group name (or numeric gid) as written, if set.
    pub group: Option<String>,
}

/// Checks a list of listen addresses under `key`.
pub fn check_listen(key: &str, raw: &[String], errors: &mut Vec<ConfigError>) -> Vec<ListenAddr> {
    raw.iter()
        .filter_map(|s| match s.parse::<ListenAddr>() {
            Ok(a) => Some(a),
            Err(e) => {
                errors.push(ConfigError::new(key, e.to_string()));
                None
            }
        })
        .collect()
}

/// A duration that may be zero but not above `max`.
pub fn bounded_duration(
    key: &str,
    raw: Option<&str>,
    default: Duration,
    max: Duration,
    errors: &mut Vec<ConfigError>,
) -> Duration {
    match raw.map(units::parse_duration) {
        None => default,
        Some(Ok(d)) if d <= max => d,
        Some(Ok(_)) => {
            errors.push(ConfigError::new(
                key,
                format!("at most {}", units::format_duration(max)),
            ));
            default
        }
        Some(Err(e)) => {
            errors.push(ConfigError::new(key, e));
            default
        }
    }
}

/// Parses an optional duration under `key`, which must be more than 0.
pub fn check_duration(
    key: &str,
    raw: Option<&str>,
    default: Duration,
    errors: &mut Vec<ConfigError>,
) -> Duration {
    match raw {
        None => default,
        Some(s) => match units::parse_duration(s) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                errors.push(ConfigError::new(key, "must be more than 0"));
                default
            }
            Err(e) => {
                errors.push(ConfigError::new(key, e));
                default
            }
        },
    }
}

/// Validates the shared keys of section `[name]`.
pub fn check_service(
    name: &str,
    raw: &RawService,
    default_idle: Duration,
    errors: &mut Vec<ConfigError>,
) -> ServiceConfig {
    let mut unix = UnixOptions {
        owner: raw.socket_owner.clone(),
        group: raw.socket_group.clone(),
        ..UnixOptions::default()
    };
    if let Some(m) = &raw.socket_mode {
        match u32::from_str_radix(m.trim_start_matches("0o"), 8) {
            Ok(v) if v <= 0o777 => unix.mode = v,
            _ => errors.push(ConfigError::new(
                format!("[{name}].socket_mode"),
                format!(
                    "`{m}` is not a permission mode; write it in octal as a string, e.g. \"0660\""
                ),
            )),
        }
    }
    if let Err(e) = unix.resolve() {
        errors.push(ConfigError::new(
            format!("[{name}].socket_owner/socket_group"),
            e.to_string(),
        ));
    }
    let run_as = match (&raw.user, &raw.group) {
        (None, None) => None,
        (None, Some(_)) => {
            errors.push(ConfigError::new(
                format!("[{name}].group"),
                "is only used together with `user`: set the user to run as too",
            ));
            None
        }
        (Some(user), group) => {
            let run_as = RunAs {
                user: user.clone(),
                group: group.clone(),
            };
            if let Err(e) = crate::service::privileges::resolve(&run_as) {
                errors.push(ConfigError::new(
                    format!("[{name}].user/group"),
                    e.to_string(),
                ));
            }
            Some(run_as)
        }
    };
    let mut limits = Limits::default();
    if let Some(n) = raw.max_connections {
        if n == 0 || n > 100_000 {
            errors.push(ConfigError::new(
                format!("[{name}].max_connections"),
                format!("{n} is out of range; allowed 1 to 100000"),
            ));
        } else {
            limits.max_connections = n;
        }
    }
    limits.shutdown_timeout = check_duration(
        &format!("[{name}].shutdown_timeout"),
        raw.shutdown_timeout.as_deref(),
        limits.shutdown_timeout,
        errors,
    );
    let idle_timeout = check_duration(
        &format!("[{name}].idle_timeout"),
        raw.idle_timeout.as_deref(),
        default_idle,
        errors,
    );
    ServiceConfig {
        run_as,
        unix,
        limits,
        idle_timeout,
    }
}

/// `postwerk config check` rows for the shared keys of `[name]`.
pub fn describe_service(name: &str, s: &ServiceConfig) -> Vec<(String, String)> {
    vec![
        (
            format!("[{name}].user"),
            s.run_as
                .as_ref()
                .map_or_else(|| "(the user that starts it)".into(), |r| r.user.clone()),
        ),
        (
            format!("[{name}].group"),
            match &s.run_as {
                None => "(the user's)".into(),
                Some(r) => r
                    .group
                    .clone()
                    .unwrap_or_else(|| "(the user's primary group)".into()),
            },
        ),
        (
            format!("[{name}].socket_mode"),
            format!("{:04o}", s.unix.mode),
        ),
        (
            format!("[{name}].socket_owner"),
            s.unix.owner.clone().unwrap_or_else(|| "(ours)".into()),
        ),
        (
            format!("[{name}].socket_group"),
            s.unix.group.clone().unwrap_or_else(|| "(ours)".into()),
        ),
        (
            format!("[{name}].max_connections"),
            s.limits.max_connections.to_string(),
        ),
        (
            format!("[{name}].shutdown_timeout"),
            units::format_duration(s.limits.shutdown_timeout),
        ),
        (
            format!("[{name}].idle_timeout"),
            units::format_duration(s.idle_timeout),
        ),
    ]
}

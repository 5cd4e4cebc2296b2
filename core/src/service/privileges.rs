//! Dropping root: a daemon started as root with `user =` in its section
//! binds its listeners (chowning UNIX sockets as configured), then becomes
//! that user for good — supplementary groups (initgroups(3)), group, user,
//! in that order — and proves it cannot get root back before it serves.
//! glibc applies set*id(2) to every thread of the process, so the runtime's
//! threads change with it.

use crate::config::daemon::RunAs;
use nix::unistd::{Gid, Group, Uid, User};
use std::ffi::CString;

/// Why the switch failed; the daemon then exits instead of serving as root.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    /// No such user.
    #[error("user `{0}` does not exist")]
    UnknownUser(String),
    /// No such group.
    #[error("group `{0}` does not exist")]
    UnknownGroup(String),
    /// Running as root is what this setting avoids.
    #[error("`user = \"{0}\"` is root; name an unprivileged user")]
    Root(String),
    /// The user database failed.
    #[error("looking up {what} `{name}`: {source}")]
    Lookup {
        /// `user` or `group`.
        what: &'static str,
        /// The name.
        name: String,
        /// The error.
        source: nix::Error,
    },
    /// A set*id call failed.
    #[error("{call} failed: {source}")]
    Switch {
        /// The call.
        call: &'static str,
        /// The error.
        source: nix::Error,
    },
    /// After the switch, root could be regained or an id is wrong.
    #[error("after switching to {user}: {what}")]
    NotDropped {
        /// The user.
        user: String,
        /// What is wrong.
        what: String,
    },
}

/// The ids `run_as` names: (user name, uid, gid).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ids {
    /// The user's name as in the passwd database (for initgroups).
    pub name: String,
    /// The uid.
    pub uid: Uid,
    /// The gid: `group`, or the user's primary group.
    pub gid: Gid,
}

fn numeric(s: &str) -> Option<u32> {
    s.parse().ok()
}

/// Resolves `run_as` in the user database; refuses root.
pub fn resolve(run_as: &RunAs) -> Result<Ids, PrivilegeError> {
    let lookup = |source| PrivilegeError::Lookup {
        what: "user",
        name: run_as.user.clone(),
        source,
    };
    let user = match User::from_name(&run_as.user).map_err(lookup)? {
        Some(u) => u,
        None => match numeric(&run_as.user) {
            Some(id) => User::from_uid(Uid::from_raw(id))
                .map_err(lookup)?
                .ok_or_else(|| PrivilegeError::UnknownUser(run_as.user.clone()))?,
            None => return Err(PrivilegeError::UnknownUser(run_as.user.clone())),
        },
    };
    if user.uid.is_root() {
        return Err(PrivilegeError::Root(run_as.user.clone()));
    }
    let gid = match &run_as.group {
        None => user.gid,
        Some(g) => {
            let lookup = |source| PrivilegeError::Lookup {
                what: "group",
                name: g.clone(),
                source,
            };
            match Group::from_name(g).map_err(lookup)? {
                Some(group) => group.gid,
                None => match numeric(g) {
                    Some(id) => Gid::from_raw(id),
                    None => return Err(PrivilegeError::UnknownGroup(g.clone())),
                },
            }
        }
    };
    if gid.as_raw() == 0 {
        return Err(PrivilegeError::Root(format!(
            "{} (group {})",
            run_as.user,
            run_as.group.as_deref().unwrap_or("of the user")
        )));
    }
    Ok(Ids {
        name: user.name,
        uid: user.uid,
        gid,
    })
}

/// Becomes `run_as` for good. Call as root, after binding, before serving.
pub fn drop_to(run_as: &RunAs) -> Result<Ids, PrivilegeError> {
    let ids = resolve(run_as)?;
    let switch = |call| move |source| PrivilegeError::Switch { call, source };
    let name = CString::new(ids.name.clone()).map_err(|_| PrivilegeError::NotDropped {
        user: ids.name.clone(),
        what: "the user name contains a NUL byte".into(),
    })?;
    nix::unistd::initgroups(&name, ids.gid).map_err(switch("initgroups"))?;
    nix::unistd::setresgid(ids.gid, ids.gid, ids.gid).map_err(switch("setresgid"))?;
    nix::unistd::setresuid(ids.uid, ids.uid, ids.uid).map_err(switch("setresuid"))?;
    let not_dropped = |what: String| PrivilegeError::NotDropped {
        user: ids.name.clone(),
        what,
    };
    // As OpenSSH's permanently_set_uid(): prove root cannot come back.
    if nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
        return Err(not_dropped("setuid(0) succeeded".into()));
    }
    let (uid, euid) = (nix::unistd::getuid(), nix::unistd::geteuid());
    let (gid, egid) = (nix::unistd::getgid(), nix::unistd::getegid());
    if uid != ids.uid || euid != ids.uid || gid != ids.gid || egid != ids.gid {
        return Err(not_dropped(format!(
            "ids are uid {uid} euid {euid} gid {gid} egid {egid}"
        )));
    }
    let groups = nix::unistd::getgroups().map_err(switch("getgroups"))?;
    if groups.iter().any(|g| g.as_raw() == 0) {
        return Err(not_dropped("still in group root".into()));
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_as(user: &str, group: Option<&str>) -> RunAs {
        RunAs {
            user: user.into(),
            group: group.map(Into::into),
        }
    }

    #[test]
    fn resolves_names_and_numbers_and_refuses_root() {
        let ids = resolve(&run_as("nobody", None)).unwrap();
        assert_eq!(ids.name, "nobody");
        assert!(!ids.uid.is_root());
        let by_number = resolve(&run_as(&ids.uid.as_raw().to_string(), None)).unwrap();
        assert_eq!(by_number, ids);
        let with_group = resolve(&run_as("nobody", Some("nogroup"))).unwrap();
        assert_eq!(with_group.uid, ids.uid);
        assert!(matches!(
            resolve(&run_as("root", None)),
            Err(PrivilegeError::Root(_))
        ));
        assert!(matches!(
            resolve(&run_as("0", None)),
            Err(PrivilegeError::Root(_))
        ));
        assert!(matches!(
            resolve(&run_as("nobody", Some("root"))),
            Err(PrivilegeError::Root(_))
        ));
        assert!(matches!(
            resolve(&run_as("no-such-user-postwerk", None)),
            Err(PrivilegeError::UnknownUser(_))
        ));
        assert!(matches!(
            resolve(&run_as("nobody", Some("no-such-group-postwerk"))),
            Err(PrivilegeError::UnknownGroup(_))
        ));
    }
}

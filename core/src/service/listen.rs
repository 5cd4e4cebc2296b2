//! Listen addresses and listening sockets: parsing what admins write in
//! postwerk.toml, binding UNIX and TCP sockets, taking sockets passed by
//! systemd, and the connected [`Stream`] handed to a session. No protocol and
//! no database here; what happens on a connection is the daemon's business.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Mutex, OnceLock};
use std::task::{Context, Poll};

use listenfd::ListenFd;
use nix::unistd::{Gid, Group, Uid, User};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tracing::{debug, info, warn};

/// Longest path a UNIX socket can be bound to: `sun_path` holds 108 bytes
/// on Linux, including the terminating NUL (unix(7)).
pub const MAX_UNIX_PATH: usize = 107;

/// Default permissions of a UNIX socket we create: owner and group may
/// connect, others may not (Postfix's `private/` sockets are 0666 inside a
/// 0700 directory; we default to the stricter mode).
pub const DEFAULT_UNIX_MODE: u32 = 0o660;

/// The forms [`ListenAddr`] accepts, quoted in every parse error.
const ALLOWED_FORMS: &str = "allowed: unix:/absolute/path, /absolute/path, \
     inet:IP:PORT, IP:PORT, [IPv6]:PORT, localhost:PORT, systemd:NAME, systemd:INDEX";

/// Where a daemon listens, as written in postwerk.toml (`listen = [...]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// A UNIX-domain stream socket at an absolute path: `unix:/path` or a
    /// bare `/path`. Postfix reaches it as `unix:private/NAME` (master.cf) or
    /// `socketmap:unix:/path:NAME` (main.cf).
    Unix(PathBuf),
    /// A TCP socket: `inet:IP:PORT`, `IP:PORT`, `[IPv6]:PORT` or
    /// `localhost:PORT` (which means `127.0.0.1:PORT`). Postfix writes
    /// `inet:127.0.0.1:11332`.
    Tcp(SocketAddr),
    /// A listening socket passed by systemd socket activation
    /// (`LISTEN_FDS`): `systemd:NAME` or `systemd:INDEX`.
    Systemd(SystemdSocket),
}

/// Which of the sockets passed by systemd a [`ListenAddr::Systemd`] means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SystemdSocket {
    /// `systemd:NAME`: a socket whose unit sets `FileDescriptorName=NAME`
    /// (`LISTEN_FDNAMES`). When several sockets share a name (one `.socket`
    /// unit with several `ListenStream=`), each `systemd:NAME` in the config
    /// takes the next one.
    Name(String),
    /// `systemd:INDEX`: the INDEX-th passed socket, counting from 0 (fd 3).
    Index(usize),
}

/// A listen address that could not be parsed. Its message quotes the input
/// and lists the allowed forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid listen address `{input}`: {reason}; {ALLOWED_FORMS}")]
pub struct ParseError {
    /// What the admin wrote.
    pub input: String,
    /// Why it was refused.
    pub reason: String,
}

impl ParseError {
    fn new(input: &str, reason: impl Into<String>) -> Self {
        ParseError {
            input: input.to_owned(),
            reason: reason.into(),
        }
    }
}

impl FromStr for ListenAddr {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(ParseError::new(s, "empty"));
        }
        if let Some(path) = s.strip_prefix("unix:") {
            return parse_unix(s, path);
        }
        if s.starts_with('/') {
            return parse_unix(s, s);
        }
        if let Some(rest) = s.strip_prefix("systemd:") {
            return parse_systemd(s, rest);
        }
        if let Some(rest) = s.strip_prefix("inet:") {
            return parse_inet(s, rest);
        }
        if let Some((prefix, rest)) = s.split_once(':')
            && !prefix.is_empty()
            && prefix.bytes().all(|b| b.is_ascii_alphabetic())
            && rest.contains([':', '/'])
        {
            return Err(ParseError::new(s, format!("unknown prefix `{prefix}:`")));
        }
        parse_inet(s, s)
    }
}

fn parse_unix(input: &str, path: &str) -> Result<ListenAddr, ParseError> {
    if path.is_empty() {
        return Err(ParseError::new(input, "missing socket path"));
    }
    if !path.starts_with('/') {
        return Err(ParseError::new(
            input,
            "the socket path must be absolute (e.g. unix:/var/spool/postfix/private/policyd)",
        ));
    }
    if path.contains('\0') {
        return Err(ParseError::new(
            input,
            "the socket path contains a NUL byte",
        ));
    }
    if path.len() > MAX_UNIX_PATH {
        return Err(ParseError::new(
            input,
            format!(
                "the socket path is {} bytes long; a UNIX socket path may have at most {MAX_UNIX_PATH}",
                path.len()
            ),
        ));
    }
    Ok(ListenAddr::Unix(PathBuf::from(path)))
}

fn parse_systemd(input: &str, rest: &str) -> Result<ListenAddr, ParseError> {
    if rest.is_empty() {
        return Err(ParseError::new(
            input,
            "missing socket name (FileDescriptorName= of the .socket unit) or index",
        ));
    }
    if rest.bytes().all(|b| b.is_ascii_digit()) {
        let index = rest
            .parse()
            .map_err(|_| ParseError::new(input, "socket index is too large"))?;
        return Ok(ListenAddr::Systemd(SystemdSocket::Index(index)));
    }
    // systemd.socket(5), FileDescriptorName=: at most 255 characters, ASCII,
    // no control characters and no ':'.
    if rest.len() > 255 || !rest.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
        return Err(ParseError::new(
            input,
            "a systemd socket name has at most 255 printable ASCII characters and no ':'",
        ));
    }
    Ok(ListenAddr::Systemd(SystemdSocket::Name(rest.to_owned())))
}

fn parse_inet(input: &str, rest: &str) -> Result<ListenAddr, ParseError> {
    if let Ok(addr) = rest.parse::<SocketAddr>() {
        return Ok(ListenAddr::Tcp(addr));
    }
    if rest.contains('/') {
        return Err(ParseError::new(
            input,
            "a relative path is not allowed; write unix:/absolute/path",
        ));
    }
    let Some((host, port)) = rest.rsplit_once(':').filter(|_| !rest.ends_with(']')) else {
        return Err(ParseError::new(input, "missing `:PORT`"));
    };
    let bracketed = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
    if bracketed.is_none() && host.contains(':') {
        return Err(ParseError::new(
            input,
            "write IPv6 addresses in brackets, e.g. [::1]:25",
        ));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| ParseError::new(input, format!("port `{port}` is not a number 0-65535")))?;
    let host = bracketed.unwrap_or(host);
    if host.is_empty() {
        return Err(ParseError::new(input, "missing IP address before `:PORT`"));
    }
    if host.eq_ignore_ascii_case("localhost") {
        // Resolved here, without DNS or /etc/hosts, so that startup does not
        // depend on the resolver and `localhost` can never mean a public
        // address.
        return Ok(ListenAddr::Tcp(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            port,
        )));
    }
    match host.parse::<IpAddr>() {
        Ok(ip) if bracketed.is_some() == ip.is_ipv6() => {
            Ok(ListenAddr::Tcp(SocketAddr::new(ip, port)))
        }
        Ok(_) => Err(ParseError::new(input, "only IPv6 addresses go in brackets")),
        Err(_) => Err(ParseError::new(
            input,
            format!(
                "`{host}` is not an IP address; host names other than localhost are not resolved"
            ),
        )),
    }
}

impl fmt::Display for ListenAddr {
    /// The canonical form, which parses back to the same value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Unix(path) => write!(f, "unix:{}", path.display()),
            ListenAddr::Tcp(addr) => write!(f, "inet:{addr}"),
            ListenAddr::Systemd(SystemdSocket::Name(name)) => write!(f, "systemd:{name}"),
            ListenAddr::Systemd(SystemdSocket::Index(index)) => write!(f, "systemd:{index}"),
        }
    }
}

/// Ownership and permissions of a UNIX socket we create (ignored for TCP
/// and for sockets passed by systemd, whose unit sets `SocketMode=`,
/// `SocketUser=`, `SocketGroup=`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnixOptions {
    /// Permission bits, e.g. `0o660` (see [`DEFAULT_UNIX_MODE`]). Only the
    /// low nine bits are allowed. Connecting needs write permission.
    pub mode: u32,
    /// User name (or numeric uid) to own the socket; `None` keeps ours.
    pub owner: Option<String>,
    /// Group name (or numeric gid) of the socket; `None` keeps ours.
    pub group: Option<String>,
}

impl Default for UnixOptions {
    fn default() -> Self {
        UnixOptions {
            mode: DEFAULT_UNIX_MODE,
            owner: None,
            group: None,
        }
    }
}

/// The owner and group of a UNIX socket, resolved to ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ownership {
    /// Owner, or `None` to keep the process's uid.
    pub uid: Option<Uid>,
    /// Group, or `None` to keep the process's gid.
    pub gid: Option<Gid>,
}

impl UnixOptions {
    /// Checks the mode and resolves owner and group through the system's
    /// user database (NSS). Config checking calls this so that an unknown
    /// user is reported before anything is bound.
    pub fn resolve(&self) -> Result<Ownership, ListenError> {
        if self.mode & !0o777 != 0 {
            return Err(ListenError::BadMode { mode: self.mode });
        }
        let uid = match &self.owner {
            None => None,
            Some(name) => Some(resolve_user(name)?),
        };
        let gid = match &self.group {
            None => None,
            Some(name) => Some(resolve_group(name)?),
        };
        Ok(Ownership { uid, gid })
    }
}

fn resolve_user(name: &str) -> Result<Uid, ListenError> {
    match User::from_name(name) {
        Ok(Some(user)) => Ok(user.uid),
        Ok(None) => match numeric_id(name) {
            Some(id) => Ok(Uid::from_raw(id)),
            None => Err(ListenError::UnknownUser {
                name: name.to_owned(),
            }),
        },
        Err(source) => Err(ListenError::UserDb {
            kind: "user",
            name: name.to_owned(),
            source,
        }),
    }
}

fn resolve_group(name: &str) -> Result<Gid, ListenError> {
    match Group::from_name(name) {
        Ok(Some(group)) => Ok(group.gid),
        Ok(None) => match numeric_id(name) {
            Some(id) => Ok(Gid::from_raw(id)),
            None => Err(ListenError::UnknownGroup {
                name: name.to_owned(),
            }),
        },
        Err(source) => Err(ListenError::UserDb {
            kind: "group",
            name: name.to_owned(),
            source,
        }),
    }
}

/// A numeric uid/gid, for containers without a passwd entry. A name wins
/// over a number (names are looked up first).
fn numeric_id(name: &str) -> Option<u32> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse().ok()
}

/// Why a listener could not be set up. Every message names the address or
/// path and, where there is one, what the admin can do.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// `mode` has bits outside 0o777.
    #[error(
        "socket mode {mode:#o} is not allowed; use permission bits only (0o000-0o777, e.g. 0o660)"
    )]
    BadMode {
        /// The mode as configured.
        mode: u32,
    },
    /// The configured owner does not exist.
    #[error("unknown user `{name}` for socket owner; create it or fix the name")]
    UnknownUser {
        /// The user name as configured.
        name: String,
    },
    /// The configured group does not exist.
    #[error("unknown group `{name}` for socket group; create it or fix the name")]
    UnknownGroup {
        /// The group name as configured.
        name: String,
    },
    /// The user database (NSS) failed while resolving a name.
    #[error("cannot look up {kind} `{name}`: {source}")]
    UserDb {
        /// `user` or `group`.
        kind: &'static str,
        /// The name as configured.
        name: String,
        /// The error from getpwnam_r/getgrnam_r.
        source: nix::Error,
    },
    /// The directory that should hold the socket does not exist (or is not
    /// a directory); we do not create it, because its ownership and mode
    /// are the real access control.
    #[error(
        "cannot create socket {path}: {} is not an existing directory (it is not created automatically; create it with the owner and mode that should guard the socket)",
        dir.display()
    )]
    ParentMissing {
        /// The socket path.
        path: ListenAddr,
        /// The missing directory.
        dir: PathBuf,
    },
    /// Something that is not a socket sits where the socket should go.
    #[error(
        "cannot create socket {path}: the path exists and is not a socket; refusing to remove it"
    )]
    NotASocket {
        /// The socket path.
        path: ListenAddr,
    },
    /// Another process accepts connections on the socket file.
    #[error(
        "cannot create socket {path}: another process is listening on it; stop it or choose another path"
    )]
    InUse {
        /// The socket path.
        path: ListenAddr,
    },
    /// An existing socket file could neither be proven stale nor live.
    #[error(
        "cannot create socket {path}: cannot tell whether the existing socket is in use: {source}"
    )]
    StaleCheck {
        /// The socket path.
        path: ListenAddr,
        /// The error from connect(2) or stat(2).
        source: io::Error,
    },
    /// bind(2)/listen(2) failed (address in use, permission denied …).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: ListenAddr,
        /// The error from the system.
        source: io::Error,
    },
    /// chmod(2)/chown(2) on a fresh socket failed.
    #[error("cannot set {what} of socket {path}: {source}")]
    Permissions {
        /// The socket path.
        path: ListenAddr,
        /// `mode` or `owner`.
        what: &'static str,
        /// The error from the system.
        source: io::Error,
    },
    /// `systemd:` was configured but this process got no sockets.
    #[error(
        "{addr}: no sockets were passed by systemd (LISTEN_FDS is unset or LISTEN_PID is another process); start the daemon through its .socket unit or listen on unix: or inet: instead"
    )]
    SystemdNone {
        /// The address.
        addr: ListenAddr,
    },
    /// No passed socket matches the configured name or index.
    #[error(
        "{addr}: no such socket among those passed by systemd (passed: {passed}); check FileDescriptorName= in the .socket unit"
    )]
    SystemdMissing {
        /// The address.
        addr: ListenAddr,
        /// The passed sockets, `index=name`, for the message.
        passed: String,
    },
    /// The passed socket is not a listening stream socket.
    #[error("{addr}: the socket passed by systemd is not a TCP or UNIX stream socket: {source}")]
    SystemdType {
        /// The address.
        addr: ListenAddr,
        /// Why listenfd refused it.
        source: io::Error,
    },
}

/// Binds `addr` and returns a listener ready to [`accept`](Listener::accept).
///
/// - UNIX: the parent directory must exist. An existing socket file is
///   replaced only if it is a socket nobody listens on (a connect is
///   refused); a live socket or a non-socket file is an error. The socket
///   then gets `unix.mode`, `unix.owner`, `unix.group`, and it is removed
///   again when the [`Listener`] is dropped.
/// - TCP: bound with `SO_REUSEADDR` (tokio sets it on UNIX systems), so a
///   restart does not wait for TIME_WAIT.
/// - systemd: taken from `LISTEN_FDS`/`LISTEN_PID`/`LISTEN_FDNAMES`; TCP
///   and UNIX stream sockets both work. Each passed socket can be taken
///   once.
pub async fn bind(addr: &ListenAddr, unix: &UnixOptions) -> Result<Listener, ListenError> {
    match addr {
        ListenAddr::Unix(path) => bind_unix(addr, path, unix).await,
        ListenAddr::Tcp(sa) => {
            let listener = TcpListener::bind(sa)
                .await
                .map_err(|source| ListenError::Bind {
                    addr: addr.clone(),
                    source,
                })?;
            Listener::from_tcp(addr, listener)
        }
        ListenAddr::Systemd(which) => take_systemd(addr, which),
    }
}

async fn bind_unix(
    addr: &ListenAddr,
    path: &Path,
    opts: &UnixOptions,
) -> Result<Listener, ListenError> {
    let ownership = opts.resolve()?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("/"),
    };
    if !dir.is_dir() {
        return Err(ListenError::ParentMissing {
            path: addr.clone(),
            dir: dir.to_owned(),
        });
    }
    remove_stale(addr, path).await?;

    // The file bind(2) creates has the socket inode's mode minus the umask
    // (Linux, af_unix.c), and chmod/chown can only follow the bind: so the
    // socket is made owner-only first and widened to `opts.mode` after the
    // chown below. Nobody but us can connect before the final permissions.
    let listener = bind_owner_only(path).map_err(|source| ListenError::Bind {
        addr: addr.clone(),
        source,
    })?;
    let meta = std::fs::symlink_metadata(path).map_err(|source| ListenError::Bind {
        addr: addr.clone(),
        source,
    })?;
    let listener = Listener {
        inner: Inner::Unix(listener),
        addr: addr.clone(),
        local: LocalAddr::Unix(Some(path.to_owned())),
        // From here on, an early return drops the Listener and so removes
        // the file we just created.
        owned_file: Some(OwnedFile {
            path: path.to_owned(),
            dev: meta.dev(),
            ino: meta.ino(),
        }),
    };
    if ownership.uid.is_some() || ownership.gid.is_some() {
        nix::unistd::chown(path, ownership.uid, ownership.gid).map_err(|errno| {
            ListenError::Permissions {
                path: addr.clone(),
                what: "owner",
                source: io::Error::from(errno),
            }
        })?;
    }
    // Widened only now that owner and group are final.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(opts.mode)).map_err(
        |source| ListenError::Permissions {
            path: addr.clone(),
            what: "mode",
            source,
        },
    )?;
    Ok(listener)
}

/// A listening UNIX socket at `path` whose file is created with at most
/// mode 0700 (owner only) whatever the umask: fchmod(2) on the unbound
/// socket sets the mode bind(2) gives the file.
fn bind_owner_only(path: &Path) -> io::Result<UnixListener> {
    use socket2::{Domain, SockAddr, Socket, Type};
    use std::os::fd::AsRawFd;
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    nix::sys::stat::fchmod(
        socket.as_raw_fd(),
        nix::sys::stat::Mode::from_bits_truncate(0o700),
    )
    .map_err(io::Error::from)?;
    socket.bind(&SockAddr::unix(path)?)?;
    // tokio's UnixListener::bind uses the same backlog.
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    UnixListener::from_std(std::os::unix::net::UnixListener::from(socket))
}

/// Removes a socket file left behind by a process that died without
/// cleaning up, after proving nobody listens on it.
async fn remove_stale(addr: &ListenAddr, path: &Path) -> Result<(), ListenError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(ListenError::StaleCheck {
                path: addr.clone(),
                source,
            });
        }
    };
    if !meta.file_type().is_socket() {
        return Err(ListenError::NotASocket { path: addr.clone() });
    }
    match UnixStream::connect(path).await {
        // A full backlog (EAGAIN) also means somebody is listening; only
        // ECONNREFUSED proves the socket is dead (unix(7)).
        Ok(_) => Err(ListenError::InUse { path: addr.clone() }),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            Err(ListenError::InUse { path: addr.clone() })
        }
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            warn!(path = %path.display(), "removing stale socket file");
            match std::fs::remove_file(path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(source) => Err(ListenError::StaleCheck {
                    path: addr.clone(),
                    source,
                }),
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(ListenError::StaleCheck {
            path: addr.clone(),
            source,
        }),
    }
}

/// The sockets systemd passed to this process. listenfd reads (and unsets)
/// `LISTEN_FDS`/`LISTEN_PID` once, so the result is kept for the whole
/// process.
struct Activation {
    fds: ListenFd,
    names: Vec<String>,
    taken: Vec<bool>,
}

static ACTIVATION: OnceLock<Mutex<Activation>> = OnceLock::new();

fn activation() -> &'static Mutex<Activation> {
    ACTIVATION.get_or_init(|| {
        // LIMITATION: listenfd unsets LISTEN_FDS/LISTEN_PID with
        // std::env::remove_var, which is not thread-safe against a
        // concurrent getenv in another thread. Daemons bind their
        // listeners at startup, before other threads read the environment.
        let fds = ListenFd::from_env();
        let n = fds.len();
        let names = if n == 0 {
            Vec::new()
        } else {
            fd_names(std::env::var("LISTEN_FDNAMES").ok().as_deref(), n)
        };
        Mutex::new(Activation {
            fds,
            names,
            taken: vec![false; n],
        })
    })
}

/// Splits `LISTEN_FDNAMES` into one name per passed socket.
///
/// sd_listen_fds_with_names(3) names every socket `unknown` when the
/// variable is missing; we do the same for a count mismatch (and warn)
/// rather than guess which name belongs to which socket.
fn fd_names(value: Option<&str>, n: usize) -> Vec<String> {
    match value {
        Some(v) => {
            let names: Vec<String> = v.split(':').map(str::to_owned).collect();
            if names.len() == n {
                names
            } else {
                warn!(
                    listen_fdnames = v,
                    listen_fds = n,
                    "LISTEN_FDNAMES does not name every passed socket; ignoring the names"
                );
                vec!["unknown".to_owned(); n]
            }
        }
        None => vec!["unknown".to_owned(); n],
    }
}

/// Chooses the passed socket a `systemd:` address means, skipping sockets
/// that were already taken.
fn pick_fd(which: &SystemdSocket, names: &[String], taken: &[bool]) -> Option<usize> {
    match which {
        SystemdSocket::Index(i) => (*i < names.len()).then_some(*i),
        SystemdSocket::Name(name) => names
            .iter()
            .enumerate()
            .position(|(i, n)| n == name && !taken.get(i).copied().unwrap_or(true)),
    }
}

fn take_systemd(addr: &ListenAddr, which: &SystemdSocket) -> Result<Listener, ListenError> {
    // A poisoned lock only means another bind panicked; the data is a plain
    // list of fds and stays consistent.
    let mut act = activation()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if act.names.is_empty() {
        return Err(ListenError::SystemdNone { addr: addr.clone() });
    }
    let missing = |act: &Activation| ListenError::SystemdMissing {
        addr: addr.clone(),
        passed: act
            .names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let state = if act.taken.get(i).copied().unwrap_or(false) {
                    " (taken)"
                } else {
                    ""
                };
                format!("{i}={n}{state}")
            })
            .collect::<Vec<_>>()
            .join(", "),
    };
    let Some(idx) = pick_fd(which, &act.names, &act.taken) else {
        return Err(missing(&act));
    };
    let type_error = |source| ListenError::SystemdType {
        addr: addr.clone(),
        source,
    };
    // listenfd checks the socket's family and type and leaves the fd in
    // place when they do not match, so TCP and UNIX can be tried in turn.
    let listener = match act.fds.take_tcp_listener(idx) {
        Ok(Some(tcp)) => {
            tcp.set_nonblocking(true).map_err(type_error)?;
            let tcp = TcpListener::from_std(tcp).map_err(type_error)?;
            Listener::from_tcp(addr, tcp)?
        }
        Ok(None) => return Err(missing(&act)),
        Err(_) => match act.fds.take_unix_listener(idx) {
            Ok(Some(unix)) => {
                unix.set_nonblocking(true).map_err(type_error)?;
                let unix = UnixListener::from_std(unix).map_err(type_error)?;
                let local = unix
                    .local_addr()
                    .ok()
                    .and_then(|a| a.as_pathname().map(Path::to_owned));
                Listener {
                    inner: Inner::Unix(unix),
                    addr: addr.clone(),
                    local: LocalAddr::Unix(local),
                    // systemd created the file and removes it; we must not.
                    owned_file: None,
                }
            }
            Ok(None) => return Err(missing(&act)),
            Err(source) => return Err(type_error(source)),
        },
    };
    if let Some(t) = act.taken.get_mut(idx) {
        *t = true;
    }
    // LIMITATION: a socket unit with Accept=yes passes a connected socket,
    // not a listening one; listenfd cannot tell them apart and accept()
    // then fails with EINVAL. postwerk units use Accept=no.
    debug!(listen = %addr, fd_index = idx, local = %listener.local, "took socket from systemd");
    Ok(listener)
}

/// The address a [`Listener`] is actually bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalAddr {
    /// A TCP address; the real port when `:0` was configured.
    Tcp(SocketAddr),
    /// A UNIX socket path; `None` for an unnamed or abstract socket passed
    /// by systemd.
    Unix(Option<PathBuf>),
}

impl fmt::Display for LocalAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LocalAddr::Tcp(addr) => write!(f, "inet:{addr}"),
            LocalAddr::Unix(Some(path)) => write!(f, "unix:{}", path.display()),
            LocalAddr::Unix(None) => f.write_str("unix:(unnamed)"),
        }
    }
}

/// A socket file we created, identified by device and inode so that we
/// never remove a file somebody else put there after us.
#[derive(Debug)]
struct OwnedFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

#[derive(Debug)]
enum Inner {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// A listening socket. Dropping it closes the socket and removes the UNIX
/// socket file if [`bind`] created it.
#[derive(Debug)]
pub struct Listener {
    inner: Inner,
    addr: ListenAddr,
    local: LocalAddr,
    owned_file: Option<OwnedFile>,
}

impl Listener {
    fn from_tcp(addr: &ListenAddr, listener: TcpListener) -> Result<Self, ListenError> {
        let local = listener.local_addr().map_err(|source| ListenError::Bind {
            addr: addr.clone(),
            source,
        })?;
        Ok(Listener {
            inner: Inner::Tcp(listener),
            addr: addr.clone(),
            local: LocalAddr::Tcp(local),
            owned_file: None,
        })
    }

    /// Waits for the next connection. Cancel-safe: dropping the future
    /// loses no connection.
    pub async fn accept(&self) -> io::Result<(Stream, Peer)> {
        match &self.inner {
            Inner::Tcp(l) => {
                let (stream, peer) = l.accept().await?;
                Ok((Stream::Tcp(stream), Peer::Tcp(peer)))
            }
            Inner::Unix(l) => {
                let (stream, _) = l.accept().await?;
                Ok((Stream::Unix(stream), Peer::Unix))
            }
        }
    }

    /// The address as configured.
    pub fn addr(&self) -> &ListenAddr {
        &self.addr
    }

    /// The address actually bound (the real port for `127.0.0.1:0`).
    pub fn local_addr(&self) -> &LocalAddr {
        &self.local
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let Some(file) = &self.owned_file else {
            return;
        };
        match std::fs::symlink_metadata(&file.path) {
            Ok(meta) if meta.dev() == file.dev && meta.ino() == file.ino => {
                if let Err(e) = std::fs::remove_file(&file.path) {
                    warn!(path = %file.path.display(), error = %e, "cannot remove socket file");
                }
            }
            // Replaced or removed by someone else: theirs now, leave it.
            Ok(_) | Err(_) => {}
        }
    }
}

/// Who connected, for logs: `ip:port` for TCP, `unix` for a UNIX socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// A TCP client's address and port.
    Tcp(SocketAddr),
    /// A client on a UNIX socket (Postfix, Dovecot on the same host).
    Unix,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Tcp(addr) => write!(f, "{addr}"),
            Peer::Unix => f.write_str("unix"),
        }
    }
}

/// An accepted connection, TCP or UNIX; a session reads and writes it
/// without caring which.
#[derive(Debug)]
pub enum Stream {
    /// Accepted on a TCP listener.
    Tcp(TcpStream),
    /// Accepted on a UNIX listener.
    Unix(UnixStream),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Tcp(s) => s.is_write_vectored(),
            Stream::Unix(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// Logs a listener at startup, in one place so every daemon says it alike.
pub(crate) fn log_listening(listener: &Listener) {
    info!(listen = %listener.addr, local = %listener.local, "accepting connections");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    /// The file bind(2) makes is owner-only before chmod widens it, whatever
    /// the umask (022 here: a plain bind would give 0755).
    #[tokio::test]
    async fn a_fresh_socket_file_is_owner_only_until_its_mode_is_set() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = bind_owner_only(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "fresh socket file has mode {mode:o}");
        // And it works: a client connects (as root or the owner).
        let (accepted, connected) = tokio::join!(listener.accept(), UnixStream::connect(&path));
        accepted.unwrap();
        connected.unwrap();
        let opts = UnixOptions {
            mode: 0o666,
            ..UnixOptions::default()
        };
        let path2 = dir.path().join("t.sock");
        let _l = bind(&ListenAddr::Unix(path2.clone()), &opts).await.unwrap();
        let mode = std::fs::metadata(&path2).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o666);
    }

    #[test]
    fn fd_names_match_count() {
        assert_eq!(fd_names(Some("a:b"), 2), names(&["a", "b"]));
    }

    #[test]
    fn fd_names_missing_are_unknown() {
        assert_eq!(fd_names(None, 2), names(&["unknown", "unknown"]));
    }

    #[test]
    fn fd_names_count_mismatch_is_ignored() {
        assert_eq!(fd_names(Some("a"), 2), names(&["unknown", "unknown"]));
    }

    #[test]
    fn pick_fd_by_name_skips_taken() {
        let n = names(&["policy", "smtp", "smtp"]);
        let name = SystemdSocket::Name("smtp".into());
        assert_eq!(pick_fd(&name, &n, &[false, false, false]), Some(1));
        assert_eq!(pick_fd(&name, &n, &[false, true, false]), Some(2));
        assert_eq!(pick_fd(&name, &n, &[false, true, true]), None);
        assert_eq!(
            pick_fd(&SystemdSocket::Name("x".into()), &n, &[false; 3]),
            None
        );
    }

    #[test]
    fn pick_fd_by_index() {
        let n = names(&["a", "b"]);
        assert_eq!(pick_fd(&SystemdSocket::Index(1), &n, &[false; 2]), Some(1));
        assert_eq!(pick_fd(&SystemdSocket::Index(2), &n, &[false; 2]), None);
    }

    #[test]
    fn numeric_ids() {
        assert_eq!(numeric_id("107"), Some(107));
        assert_eq!(numeric_id(""), None);
        assert_eq!(numeric_id("-1"), None);
        assert_eq!(numeric_id("99999999999"), None);
    }
}

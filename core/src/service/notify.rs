//! Readiness notification for systemd units with `Type=notify`: the
//! sd_notify(3) datagrams (`READY=1` …) sent to `$NOTIFY_SOCKET`. Never
//! fatal and a no-op outside systemd; this module does not decide when a
//! daemon is ready, it only tells.

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::time::Duration;

use tracing::{debug, warn};

/// How long a notification may block when systemd's queue is full. A
/// bound, so a stuck manager cannot hang startup or shutdown.
pub const NOTIFY_TIMEOUT: Duration = Duration::from_secs(1);

/// Tells systemd that startup is complete (`READY=1`): call it after the
/// listeners are bound, just before serving. Returns whether a notification
/// was sent; `false` when `NOTIFY_SOCKET` is unset or sending failed (then
/// a warning is logged).
pub fn notify_ready() -> bool {
    notify("READY=1")
}

/// Tells systemd that the daemon is reloading its config (`RELOADING=1`);
/// send [`notify_ready`] when done.
///
/// LIMITATION: `Type=notify-reload` (systemd 253 and later) also wants
/// `MONOTONIC_USEC=`; reading CLOCK_MONOTONIC as a number needs a
/// dependency we do not have, so use `Type=notify` with
/// `ExecReload=kill -HUP $MAINPID`.
pub fn notify_reloading() -> bool {
    notify("RELOADING=1")
}

/// Tells systemd that the daemon is shutting down (`STOPPING=1`).
pub fn notify_stopping() -> bool {
    notify("STOPPING=1")
}

/// Sends any sd_notify(3) state, e.g. `STATUS=draining 3 sessions`, to
/// `$NOTIFY_SOCKET`. Returns whether it was sent; errors are logged with
/// `warn!`, never returned, because a daemon must not fail over them.
pub fn notify(state: &str) -> bool {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return false;
    };
    match notify_to(&socket, state) {
        Ok(()) => {
            debug!(state, "notified systemd");
            true
        }
        Err(e) => {
            warn!(
                notify_socket = %socket.to_string_lossy(),
                state,
                error = %e,
                "cannot notify systemd"
            );
            false
        }
    }
}

/// Sends `state` to the given notify socket: an absolute path or `@name`
/// for an abstract socket, as systemd puts in `NOTIFY_SOCKET`. This is
/// what [`notify`] does, with the error returned instead of logged.
///
/// LIMITATION: `vsock:` addresses (systemd 254 and later, for VMs) are not
/// supported; they are refused with `InvalidInput`.
pub fn notify_to(socket: &OsStr, state: &str) -> io::Result<()> {
    let bytes = socket.as_bytes();
    let addr = if let Some(name) = bytes.strip_prefix(b"@") {
        SocketAddr::from_abstract_name(name)?
    } else if bytes.starts_with(b"/") {
        SocketAddr::from_pathname(Path::new(socket))?
    } else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "NOTIFY_SOCKET is neither an absolute path nor an @abstract name",
        ));
    };
    let sock = UnixDatagram::unbound()?;
    sock.set_write_timeout(Some(NOTIFY_TIMEOUT))?;
    let sent = sock.send_to_addr(state.as_bytes(), &addr)?;
    if sent != state.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "notification datagram was truncated",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recv(sock: &UnixDatagram) -> String {
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = [0u8; 256];
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn notify_to_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let sock = UnixDatagram::bind(&path).unwrap();
        notify_to(path.as_os_str(), "READY=1").unwrap();
        assert_eq!(recv(&sock), "READY=1");
    }

    #[test]
    fn notify_to_abstract_socket() {
        let name = format!("postwerk-test-notify-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let sock = UnixDatagram::bind_addr(&addr).unwrap();
        notify_to(OsStr::new(&format!("@{name}")), "STOPPING=1").unwrap();
        assert_eq!(recv(&sock), "STOPPING=1");
    }

    #[test]
    fn notify_to_relative_or_vsock_is_refused() {
        for bad in ["notify", "vsock:2:1234", ""] {
            let e = notify_to(OsStr::new(bad), "READY=1").unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad}");
        }
    }

    #[test]
    fn notify_to_missing_socket_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nobody");
        assert!(notify_to(path.as_os_str(), "READY=1").is_err());
    }
}

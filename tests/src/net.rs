//! Loopback ports and readiness: free ports for the peers' listeners, and
//! waiting (by polling, with a deadline) until a port or UNIX socket accepts.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use crate::exec::poll_until;

/// Ports already handed out by this process, so that two tests running at the
/// same time never get the same one even before either has bound it.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A TCP port on 127.0.0.1 that is free now: the kernel picks it (bind to
/// port 0) and this process never hands it out twice.
///
/// LIMITATION: another process may take it between now and the moment the
/// peer binds it; the peer then fails to start and the test says so.
pub fn free_port() -> u16 {
    let mut guard = HANDED_OUT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let handed_out = guard.get_or_insert_with(HashSet::new);
    loop {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("cannot bind 127.0.0.1:0 to find a free port: {e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("local_addr of 127.0.0.1:0: {e}"))
            .port();
        if handed_out.insert(port) {
            return port;
        }
    }
}

/// Waits until 127.0.0.1:`port` accepts a TCP connection.
pub fn wait_for_port(port: u16, timeout: Duration) -> Result<(), String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    if poll_until(timeout, || {
        TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
    }) {
        Ok(())
    } else {
        Err(format!(
            "nothing accepted connections on {addr} within {timeout:?}"
        ))
    }
}

/// Waits until the UNIX stream socket at `path` accepts a connection.
pub fn wait_for_unix_socket(path: &Path, timeout: Duration) -> Result<(), String> {
    if poll_until(timeout, || UnixStream::connect(path).is_ok()) {
        Ok(())
    } else {
        Err(format!(
            "nothing accepted connections on {} within {timeout:?}",
            path.display()
        ))
    }
}

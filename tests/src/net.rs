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

/// A TCP forwarder between a client and a server (127.0.0.1:`port` →
/// `target`) that a test can cut and restore, to take a database "down"
/// for one daemon without stopping the server other tests use.
#[derive(Debug)]
pub struct TcpProxy {
    /// The port clients connect to.
    pub port: u16,
    target: std::net::SocketAddr,
    running: Option<ProxyRun>,
}

#[derive(Debug)]
struct ProxyRun {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
    accept: std::thread::JoinHandle<()>,
}

impl TcpProxy {
    /// Starts forwarding from a free port to `target`.
    pub fn start(target: std::net::SocketAddr) -> TcpProxy {
        let mut p = TcpProxy {
            port: free_port(),
            target,
            running: None,
        };
        p.resume();
        p
    }

    /// Cuts every connection and refuses new ones (connection refused).
    pub fn cut(&mut self) {
        use std::sync::atomic::Ordering;
        let Some(run) = self.running.take() else {
            return;
        };
        run.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag and drops the listener.
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
        let _ = run.accept.join();
        for c in run
            .conns
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
        {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Accepts and forwards again on the same port.
    pub fn resume(&mut self) {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        if self.running.is_some() {
            return;
        }
        let listener = std::net::TcpListener::bind(("127.0.0.1", self.port))
            .unwrap_or_else(|e| panic!("proxy cannot bind 127.0.0.1:{}: {e}", self.port));
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<std::net::TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
        let (stop2, conns2, target) = (stop.clone(), conns.clone(), self.target);
        let accept = std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = std::net::TcpStream::connect(target) else {
                    continue;
                };
                let pairs = [
                    (client.try_clone(), server.try_clone()),
                    (server.try_clone(), client.try_clone()),
                ];
                if let Ok(mut v) = conns2.lock() {
                    v.extend(client.try_clone().ok());
                    v.extend(server.try_clone().ok());
                }
                for (from, to) in pairs {
                    if let (Ok(mut from), Ok(mut to)) = (from, to) {
                        std::thread::spawn(move || {
                            let _ = std::io::copy(&mut from, &mut to);
                            let _ = to.shutdown(std::net::Shutdown::Both);
                        });
                    }
                }
            }
        });
        self.running = Some(ProxyRun {
            stop,
            conns,
            accept,
        });
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
    }
}

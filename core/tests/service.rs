//! Integration tests of `postwerk_core::service` on real sockets: UNIX
//! sockets in temp dirs, TCP on 127.0.0.1:0, systemd socket activation
//! through `systemd-socket-activate`, sd_notify through a datagram socket.
//!
//! Readiness is polled with a deadline, never slept for. Tests that need
//! their own environment (NOTIFY_SOCKET, LISTEN_FDS) run this binary again
//! as a child process: setting environment variables in-process needs
//! `unsafe` in edition 2024, and they are process-global anyway. Those
//! child halves are `#[ignore]`d `child_*` tests that do nothing unless
//! `POSTWERK_TEST_CHILD` names them.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use postwerk_core::service::{
    self, Limits, ListenAddr, ListenError, Listener, LocalAddr, Peer, ServeError, Stream,
    SystemdSocket, UnixOptions,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Upper bound for anything that should happen "soon". A bound, not a
/// timing assertion: passing tests never wait for it.
const DEADLINE: Duration = Duration::from_secs(20);

/// Environment variable naming the child test a child process should run.
const CHILD_VAR: &str = "POSTWERK_TEST_CHILD";

fn init_log() {
    postwerk_core::log::init("debug").expect("valid filter");
}

async fn within<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(DEADLINE, fut).await {
        Ok(out) => out,
        Err(_) => panic!("{what}: not done within {DEADLINE:?}"),
    }
}

async fn connect_tcp(addr: std::net::SocketAddr) -> TcpStream {
    within("connect tcp", async {
        loop {
            match TcpStream::connect(addr).await {
                Ok(s) => return s,
                Err(_) => tokio::task::yield_now().await,
            }
        }
    })
    .await
}

async fn connect_unix(path: &Path) -> UnixStream {
    within("connect unix", async {
        loop {
            match UnixStream::connect(path).await {
                Ok(s) => return s,
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    })
    .await
}

/// Sends one line and returns the line that comes back.
async fn round_trip<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
    line: &str,
) -> String {
    stream
        .write_all(format!("{line}\n").as_bytes())
        .await
        .expect("write request");
    read_line(stream).await
}

async fn read_line<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> String {
    within("read line", async {
        let mut out = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            match stream.read(&mut byte).await {
                Ok(0) | Err(_) => break,
                Ok(_) if byte[0] == b'\n' => break,
                Ok(_) => out.push(byte[0]),
            }
        }
        String::from_utf8(out).expect("reply is UTF-8")
    })
    .await
}

/// Reads until the server closes the connection; true if it did so without
/// sending anything more.
async fn closed_by_server<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> bool {
    within("server closes", async {
        let mut rest = Vec::new();
        match stream.read_to_end(&mut rest).await {
            Ok(_) => rest.is_empty(),
            // A reset also means closed (an aborted session may leave
            // unread input behind).
            Err(_) => true,
        }
    })
    .await
}

/// The session loop STYLE.md §2 asks for, minus a codec: read a line
/// (or stop when shut down), answer it, check the token after answering.
async fn echo(stream: Stream, _peer: Peer, token: CancellationToken) {
    let (read, mut write) = tokio::io::split(stream);
    let mut lines = BufReader::new(read).lines();
    loop {
        let line = tokio::select! {
            line = lines.next_line() => line,
            () = token.cancelled() => break,
        };
        let Ok(Some(line)) = line else { break };
        if write
            .write_all(format!("{line}\n").as_bytes())
            .await
            .is_err()
        {
            break;
        }
        if token.is_cancelled() {
            break;
        }
    }
}

/// A running `serve` with a way to stop it.
struct Server {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), ServeError>>,
}

impl Server {
    fn start<H, Fut>(listeners: Vec<Listener>, limits: Limits, handler: H) -> Server
    where
        H: Fn(Stream, Peer, CancellationToken) -> Fut + Clone + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let task = tokio::spawn(service::serve(listeners, limits, shutdown, handler));
        Server { stop, task }
    }

    fn shutdown(self) -> JoinHandle<Result<(), ServeError>> {
        let _ = self.stop.send(());
        self.task
    }

    async fn stop(self) {
        within("serve returns", self.shutdown())
            .await
            .expect("serve task did not panic")
            .expect("serve returned Ok");
    }
}

async fn bind_tcp() -> (Listener, std::net::SocketAddr) {
    let addr: ListenAddr = "127.0.0.1:0".parse().expect("valid address");
    let listener = service::bind(&addr, &UnixOptions::default())
        .await
        .expect("bind 127.0.0.1:0");
    let LocalAddr::Tcp(local) = listener.local_addr().clone() else {
        panic!("tcp listener has a tcp address");
    };
    assert_ne!(local.port(), 0, "local_addr reports the real port");
    (listener, local)
}

fn unix_addr(path: &Path) -> ListenAddr {
    format!("unix:{}", path.display())
        .parse()
        .expect("temp dir paths are short enough")
}

fn limits(max_connections: usize, shutdown_timeout: Duration) -> Limits {
    Limits {
        max_connections,
        shutdown_timeout,
    }
}

// ---------------------------------------------------------------- parsing

#[test]
fn listen_addr_parse_table() {
    use std::net::SocketAddr;
    let tcp = |s: &str| ListenAddr::Tcp(s.parse::<SocketAddr>().unwrap());
    let good: &[(&str, ListenAddr)] = &[
        (
            "unix:/var/spool/postfix/private/policyd",
            ListenAddr::Unix("/var/spool/postfix/private/policyd".into()),
        ),
        (
            "/run/postwerk/authd.sock",
            ListenAddr::Unix("/run/postwerk/authd.sock".into()),
        ),
        ("inet:127.0.0.1:11332", tcp("127.0.0.1:11332")),
        ("127.0.0.1:11332", tcp("127.0.0.1:11332")),
        ("0.0.0.0:24", tcp("0.0.0.0:24")),
        ("[::1]:25", tcp("[::1]:25")),
        ("inet:[::]:25", tcp("[::]:25")),
        ("localhost:11332", tcp("127.0.0.1:11332")),
        ("inet:LocalHost:0", tcp("127.0.0.1:0")),
        (
            "systemd:policyd",
            ListenAddr::Systemd(SystemdSocket::Name("policyd".into())),
        ),
        ("systemd:0", ListenAddr::Systemd(SystemdSocket::Index(0))),
        ("systemd:12", ListenAddr::Systemd(SystemdSocket::Index(12))),
    ];
    for (input, want) in good {
        let got: ListenAddr = input
            .parse()
            .unwrap_or_else(|e| panic!("`{input}` should parse: {e}"));
        assert_eq!(&got, want, "{input}");
        // The canonical form parses back to the same address.
        let again: ListenAddr = got.to_string().parse().unwrap();
        assert_eq!(again, got, "round trip of {input}");
    }

    let long = format!("unix:/{}", "x".repeat(120));
    let bad: &[(&str, &str)] = &[
        ("", "empty"),
        ("unix:", "missing socket path"),
        ("unix:private/policyd", "must be absolute"),
        ("private/policyd", "relative path"),
        (&long, "at most 107"),
        ("127.0.0.1", "missing `:PORT`"),
        ("policyd", "missing `:PORT`"),
        ("[::1]", "missing `:PORT`"),
        ("127.0.0.1:99999", "not a number"),
        ("127.0.0.1:smtp", "not a number"),
        ("::1:25", "brackets"),
        ("[127.0.0.1]:25", "only IPv6"),
        ("mail.example.org:25", "not an IP address"),
        ("inet:*:25", "not an IP address"),
        (":25", "missing IP address"),
        ("tcp:127.0.0.1:25", "unknown prefix `tcp:`"),
        ("local:/run/x", "unknown prefix"),
        ("systemd:", "missing socket name"),
        ("systemd:a:b", "no ':'"),
        ("systemd:with space", "printable"),
        ("systemd:99999999999999999999999", "too large"),
    ];
    for (input, reason) in bad {
        let e = input
            .parse::<ListenAddr>()
            .expect_err(&format!("`{input}` should be refused"));
        let msg = e.to_string();
        assert!(msg.contains(reason), "`{input}`: {msg}");
        assert!(
            msg.contains(&format!("`{input}`")),
            "quotes the input: {msg}"
        );
        assert!(
            msg.contains("allowed: unix:/absolute/path"),
            "lists the forms: {msg}"
        );
    }
}

// ------------------------------------------------------------ UNIX bind

#[tokio::test]
async fn unix_socket_gets_configured_mode_and_is_removed_on_drop() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policyd");
    let opts = UnixOptions {
        mode: 0o600,
        ..UnixOptions::default()
    };
    let listener = service::bind(&unix_addr(&path), &opts).await.unwrap();
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
    assert_eq!(listener.local_addr(), &LocalAddr::Unix(Some(path.clone())));
    drop(listener);
    assert!(!path.exists(), "socket file removed with the listener");
}

#[tokio::test]
async fn default_unix_mode_is_0660() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let _listener = service::bind(&unix_addr(&path), &UnixOptions::default())
        .await
        .unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o660);
}

#[tokio::test]
async fn stale_unix_socket_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stale");
    // std's listener does not remove its file: a crashed daemon's leftover.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let listener = service::bind(&unix_addr(&path), &UnixOptions::default())
        .await
        .unwrap();
    let server = Server::start(vec![listener], Limits::default(), echo);
    let mut client = connect_unix(&path).await;
    assert_eq!(round_trip(&mut client, "fresh").await, "fresh");
    server.stop().await;
}

#[tokio::test]
async fn live_unix_socket_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live");
    let other = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let err = service::bind(&unix_addr(&path), &UnixOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ListenError::InUse { .. }), "{err}");
    assert!(err.to_string().contains("another process is listening"));
    // The other process's socket is untouched and still works.
    let _c = std::os::unix::net::UnixStream::connect(&path).unwrap();
    assert!(other.accept().is_ok());
}

#[tokio::test]
async fn regular_file_in_the_way_is_not_removed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("file");
    std::fs::write(&path, "keep me").unwrap();
    let err = service::bind(&unix_addr(&path), &UnixOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ListenError::NotASocket { .. }), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");
}

#[tokio::test]
async fn missing_parent_directory_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("private").join("policyd");
    let err = service::bind(&unix_addr(&path), &UnixOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ListenError::ParentMissing { .. }), "{err}");
    assert!(
        err.to_string().contains("is not an existing directory"),
        "{err}"
    );
    assert!(!dir.path().join("private").exists(), "not created");
}

#[tokio::test]
async fn unknown_owner_or_group_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let opts = UnixOptions {
        owner: Some("postwerk-no-such-user".into()),
        ..UnixOptions::default()
    };
    let err = service::bind(&unix_addr(&path), &opts).await.unwrap_err();
    assert!(matches!(err, ListenError::UnknownUser { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("unknown user `postwerk-no-such-user`"),
        "{err}"
    );
    assert!(!path.exists(), "checked before binding");

    let opts = UnixOptions {
        group: Some("postwerk-no-such-group".into()),
        ..UnixOptions::default()
    };
    let err = opts.resolve().unwrap_err();
    assert!(matches!(err, ListenError::UnknownGroup { .. }), "{err}");
}

#[tokio::test]
async fn owner_and_group_are_resolved_by_name() {
    use std::os::unix::fs::MetadataExt;
    let me = nix::unistd::User::from_uid(nix::unistd::getuid())
        .unwrap()
        .expect("the test user has a passwd entry");
    let group = nix::unistd::Group::from_gid(me.gid)
        .unwrap()
        .expect("the test user's group has a group entry");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let opts = UnixOptions {
        mode: 0o660,
        owner: Some(me.name.clone()),
        group: Some(group.name.clone()),
    };
    let _listener = service::bind(&unix_addr(&path), &opts).await.unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.uid(), me.uid.as_raw());
    assert_eq!(meta.gid(), group.gid.as_raw());
}

#[test]
fn mode_with_special_bits_is_refused() {
    let opts = UnixOptions {
        mode: 0o4770,
        ..UnixOptions::default()
    };
    let err = opts.resolve().unwrap_err();
    assert!(matches!(err, ListenError::BadMode { .. }), "{err}");
    assert!(err.to_string().contains("0o4770"), "{err}");
}

#[tokio::test]
async fn tcp_port_in_use_names_the_address() {
    let (_held, local) = bind_tcp().await;
    let addr = ListenAddr::Tcp(local);
    let err = service::bind(&addr, &UnixOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ListenError::Bind { .. }), "{err}");
    assert!(err.to_string().contains(&local.to_string()), "{err}");
}

#[tokio::test]
async fn systemd_address_without_activation_is_a_clear_error() {
    // cargo test does not pass LISTEN_FDS, so nothing was passed to us.
    let addr: ListenAddr = "systemd:policyd".parse().unwrap();
    let err = service::bind(&addr, &UnixOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ListenError::SystemdNone { .. }), "{err}");
    assert!(err.to_string().contains("LISTEN_FDS"), "{err}");
}

// ------------------------------------------------------------------ serve

#[tokio::test]
async fn serve_echoes_over_tcp_and_unix_and_removes_the_socket_file() {
    init_log();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("echo");
    let (tcp, local) = bind_tcp().await;
    let unix = service::bind(&unix_addr(&path), &UnixOptions::default())
        .await
        .unwrap();
    let server = Server::start(vec![tcp, unix], Limits::default(), echo);

    let mut t = connect_tcp(local).await;
    let mut u = connect_unix(&path).await;
    assert_eq!(round_trip(&mut t, "over tcp").await, "over tcp");
    assert_eq!(round_trip(&mut u, "over unix").await, "over unix");
    assert_eq!(round_trip(&mut t, "again").await, "again");

    server.stop().await;
    assert!(!path.exists(), "socket file removed at shutdown");
    // Sessions were told to stop and closed their connections.
    assert!(closed_by_server(&mut t).await);
    assert!(closed_by_server(&mut u).await);
}

#[tokio::test]
async fn peer_is_displayed_for_logs() {
    let (tcp, local) = bind_tcp().await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let server = Server::start(vec![tcp], Limits::default(), move |_s, peer, _t| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(peer.to_string());
        }
    });
    let client = connect_tcp(local).await;
    let shown = within("peer", rx.recv()).await.unwrap();
    assert_eq!(shown, client.local_addr().unwrap().to_string());
    assert_eq!(Peer::Unix.to_string(), "unix");
    server.stop().await;
}

#[tokio::test]
async fn serve_refuses_bad_limits_and_no_listeners() {
    let err = service::serve(Vec::new(), Limits::default(), async {}, echo)
        .await
        .unwrap_err();
    assert!(matches!(err, ServeError::NoListeners), "{err}");
    let (tcp, _) = bind_tcp().await;
    let err = service::serve(vec![tcp], limits(0, DEADLINE), async {}, echo)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ServeError::MaxConnections { value: 0, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn max_connections_one_makes_the_second_client_wait() {
    init_log();
    let (tcp, local) = bind_tcp().await;
    let active = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let handler = {
        let (active, peak) = (Arc::clone(&active), Arc::clone(&peak));
        move |s, p, t| {
            let (active, peak) = (Arc::clone(&active), Arc::clone(&peak));
            async move {
                let now = active.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                echo(s, p, t).await;
                active.fetch_sub(1, Ordering::SeqCst);
            }
        }
    };
    let server = Server::start(vec![tcp], limits(1, DEADLINE), handler);

    let mut first = connect_tcp(local).await;
    assert_eq!(round_trip(&mut first, "one").await, "one");

    // The kernel completes the second connect (backlog), but the server
    // must not accept it while the first session holds the only slot.
    let mut second = connect_tcp(local).await;
    second.write_all(b"two\n").await.unwrap();
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(300), second.read(&mut byte)).await;
    assert!(
        early.is_err(),
        "second client answered while the first was open"
    );

    drop(first);
    assert_eq!(read_line(&mut second).await, "two");
    assert_eq!(peak.load(Ordering::SeqCst), 1, "never two sessions at once");
    server.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_lets_the_in_flight_request_finish() {
    init_log();
    let (tcp, local) = bind_tcp().await;
    // The handler reads a request, reports it, then "works" until the test
    // opens the gate; it answers and only then checks its token.
    let gate = Arc::new(Semaphore::new(0));
    let (got_tx, mut got_rx) = mpsc::unbounded_channel::<CancellationToken>();
    let handler = {
        let gate = Arc::clone(&gate);
        move |stream: Stream, _peer, token: CancellationToken| {
            let (gate, got_tx) = (Arc::clone(&gate), got_tx.clone());
            async move {
                let (read, mut write) = tokio::io::split(stream);
                let mut lines = BufReader::new(read).lines();
                loop {
                    let line = tokio::select! {
                        line = lines.next_line() => line,
                        () = token.cancelled() => break,
                    };
                    let Ok(Some(line)) = line else { break };
                    let _ = got_tx.send(token.clone());
                    let _permit = gate.acquire().await.unwrap();
                    write
                        .write_all(format!("done {line}\n").as_bytes())
                        .await
                        .unwrap();
                    if token.is_cancelled() {
                        break;
                    }
                }
            }
        }
    };
    let server = Server::start(vec![tcp], limits(10, DEADLINE), handler);
    let mut client = connect_tcp(local).await;
    client.write_all(b"req\n").await.unwrap();
    let token = within("request arrives", got_rx.recv()).await.unwrap();

    let serving = server.shutdown();
    within("sessions are told to stop", token.cancelled()).await;
    assert!(!serving.is_finished(), "serve waits for the session");
    gate.add_permits(1);

    assert_eq!(read_line(&mut client).await, "done req");
    assert!(closed_by_server(&mut client).await);
    within("serve returns", serving).await.unwrap().unwrap();
}

#[tokio::test]
async fn session_stuck_past_shutdown_timeout_is_aborted() {
    init_log();
    let (tcp, local) = bind_tcp().await;
    let dropped = Arc::new(AtomicBool::new(false));
    let (started_tx, mut started_rx) = mpsc::unbounded_channel::<()>();

    struct SetOnDrop(Arc<AtomicBool>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    let handler = {
        let dropped = Arc::clone(&dropped);
        move |stream: Stream, _peer, _token| {
            let (dropped, started_tx) = (Arc::clone(&dropped), started_tx.clone());
            async move {
                let _stream = stream;
                let _guard = SetOnDrop(dropped);
                let _ = started_tx.send(());
                // Ignores its token: a session that never finishes.
                std::future::pending::<()>().await;
            }
        }
    };
    // 200ms bounds how long serve waits before aborting; nothing here
    // asserts on elapsed time.
    let server = Server::start(vec![tcp], limits(10, Duration::from_millis(200)), handler);
    let mut client = connect_tcp(local).await;
    within("session starts", started_rx.recv()).await.unwrap();
    server.stop().await;
    assert!(dropped.load(Ordering::SeqCst), "stuck session was aborted");
    assert!(closed_by_server(&mut client).await);
}

#[tokio::test]
async fn panicking_session_does_not_stop_the_server() {
    init_log();
    let (tcp, local) = bind_tcp().await;
    let sessions = Arc::new(AtomicUsize::new(0));
    let handler = {
        let sessions = Arc::clone(&sessions);
        move |stream: Stream, peer, token| {
            let n = sessions.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    panic!("session bug");
                }
                echo(stream, peer, token).await;
            }
        }
    };
    // One slot: the panicked session must also give its slot back.
    let server = Server::start(vec![tcp], limits(1, DEADLINE), handler);
    let mut first = connect_tcp(local).await;
    assert!(
        closed_by_server(&mut first).await,
        "panicked session closed"
    );
    let mut second = connect_tcp(local).await;
    assert_eq!(round_trip(&mut second, "still here").await, "still here");
    server.stop().await;
}

#[tokio::test]
async fn handler_panicking_before_its_future_does_not_stop_the_server() {
    let (tcp, local) = bind_tcp().await;
    let sessions = Arc::new(AtomicUsize::new(0));
    let handler = {
        let sessions = Arc::clone(&sessions);
        move |stream: Stream, peer, token| {
            assert!(
                sessions.fetch_add(1, Ordering::SeqCst) > 0,
                "handler bug outside its future"
            );
            echo(stream, peer, token)
        }
    };
    let server = Server::start(vec![tcp], limits(1, DEADLINE), handler);
    let mut first = connect_tcp(local).await;
    assert!(closed_by_server(&mut first).await);
    let mut second = connect_tcp(local).await;
    assert_eq!(round_trip(&mut second, "ok").await, "ok");
    server.stop().await;
}

// ---------------------------------------------------------------- signals

#[tokio::test]
async fn reload_stream_reports_sighup() {
    let mut reloads = service::reload_stream().unwrap();
    // The handler is installed, so SIGHUP cannot kill the test process.
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(within("SIGHUP", reloads.recv()).await, Some(()));
}

#[tokio::test]
async fn terminate_resolves_on_sigterm() {
    // Install a SIGTERM handler before sending anything, so the signal can
    // never take the default action (kill the test process) even before
    // terminate() is first polled.
    let _guard = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
    let mut term = tokio::spawn(service::terminate());
    within("SIGTERM", async {
        loop {
            let status = std::process::Command::new("kill")
                .args(["-TERM", &std::process::id().to_string()])
                .status()
                .unwrap();
            assert!(status.success());
            // terminate() installs its own handlers on first poll; a signal
            // sent before that is not seen by it, so send again until it is.
            tokio::select! {
                r = &mut term => { r.unwrap(); break; }
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    })
    .await;
}

#[tokio::test]
async fn terminate_installs_its_handlers_when_called() {
    // Regression: the handlers used to be installed on first poll, so a
    // SIGTERM right after a daemon started (before serving) killed it
    // without draining. If they are not installed at call time, this
    // signal kills the test process and the test fails.
    let stop = service::terminate();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    within("SIGTERM", stop).await;
}

// ------------------------------------------------------------------ log

#[test]
fn log_init_twice_is_ok_and_bad_filters_are_refused() {
    postwerk_core::log::init("info").unwrap();
    postwerk_core::log::init("debug").unwrap();
    if std::env::var_os("RUST_LOG").is_none() {
        let e = postwerk_core::log::init("info,=[").unwrap_err();
        assert!(e.to_string().contains("invalid log filter"), "{e}");
    }
}

// --------------------------------------------- child processes (env vars)

fn child_command(program: impl AsRef<std::ffi::OsStr>) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(program);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

fn child_test_args(name: &str) -> [String; 5] {
    [
        name.to_owned(),
        "--exact".into(),
        "--ignored".into(),
        "--nocapture".into(),
        "--test-threads=1".into(),
    ]
}

fn this_test_binary() -> PathBuf {
    std::env::current_exe().expect("path of this test binary")
}

async fn wait_success(child: tokio::process::Child, what: &str) {
    let out = within(what, child.wait_with_output())
        .await
        .expect("child output");
    assert!(
        out.status.success(),
        "{what} failed: {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // An ignored child test that did not run would also "succeed".
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 passed"),
        "{what}: the child test did not run:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

fn is_child(name: &str) -> bool {
    std::env::var(CHILD_VAR).as_deref() == Ok(name)
}

#[tokio::test]
async fn notify_ready_reaches_notify_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let sock = tokio::net::UnixDatagram::bind(&path).unwrap();
    let child = child_command(this_test_binary())
        .args(child_test_args("child_notify"))
        .env(CHILD_VAR, "child_notify")
        .env("NOTIFY_SOCKET", &path)
        .spawn()
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        let mut buf = [0u8; 64];
        let n = within("notification", sock.recv(&mut buf)).await.unwrap();
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert_eq!(got, ["READY=1", "RELOADING=1", "STOPPING=1"]);
    wait_success(child, "child_notify").await;
}

#[test]
#[ignore = "child half of notify_ready_reaches_notify_socket"]
fn child_notify() {
    if !is_child("child_notify") {
        return;
    }
    assert!(service::notify_ready());
    assert!(service::notify_reloading());
    assert!(service::notify_stopping());
}

#[tokio::test]
async fn notify_without_notify_socket_is_a_no_op() {
    let child = child_command(this_test_binary())
        .args(child_test_args("child_notify_unset"))
        .env(CHILD_VAR, "child_notify_unset")
        .env_remove("NOTIFY_SOCKET")
        .spawn()
        .unwrap();
    wait_success(child, "child_notify_unset").await;
}

#[test]
#[ignore = "child half of notify_without_notify_socket_is_a_no_op"]
fn child_notify_unset() {
    if !is_child("child_notify_unset") {
        return;
    }
    assert!(!service::notify_ready());
}

/// Picks a TCP port that is free right now. systemd-socket-activate does
/// not accept port 0; if another process takes the port before it binds,
/// the activation test retries with a new one.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local address").port()
}

#[tokio::test]
async fn systemd_socket_activation_unix_by_name_and_tcp_by_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.sock");
    // `systemd-socket-activate` (package systemd) binds the sockets, waits
    // for the first connection, then execs the child with LISTEN_FDS=2,
    // LISTEN_PID and LISTEN_FDNAMES=policy:smtp, as systemd would.
    for attempt in 1..=5 {
        let port = free_port();
        let mut child = child_command("systemd-socket-activate")
            .arg("-l")
            .arg(&path)
            .arg("-l")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--fdname=policy:smtp")
            .arg("-E")
            .arg(format!("{CHILD_VAR}=child_systemd"))
            .arg("-E")
            .arg(format!("POSTWERK_TEST_SOCKET={}", path.display()))
            .arg("-E")
            .arg(format!("POSTWERK_TEST_PORT={port}"))
            .arg(this_test_binary())
            .args(child_test_args("child_systemd"))
            .spawn()
            .expect("systemd-socket-activate is installed (Debian package systemd)");

        // Poll until the UNIX socket accepts, or the activator gave up
        // (the TCP port was taken meanwhile).
        let unix = within("activation socket", async {
            loop {
                if let Ok(s) = UnixStream::connect(&path).await {
                    return Some(s);
                }
                if child.try_wait().unwrap().is_some() {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        let Some(mut unix) = unix else {
            let out = child.wait_with_output().await.unwrap();
            eprintln!(
                "attempt {attempt}: systemd-socket-activate exited: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let _ = std::fs::remove_file(&path);
            continue;
        };
        assert_eq!(
            round_trip(&mut unix, "via systemd unix").await,
            "via systemd unix"
        );
        let mut tcp = connect_tcp(([127, 0, 0, 1], port).into()).await;
        assert_eq!(
            round_trip(&mut tcp, "via systemd tcp").await,
            "via systemd tcp"
        );
        drop(unix);
        drop(tcp);
        wait_success(child, "child_systemd").await;
        assert!(
            path.exists(),
            "a socket file created by systemd is left for systemd to remove"
        );
        return;
    }
    panic!("systemd-socket-activate could not bind a free port in 5 attempts");
}

#[tokio::test]
#[ignore = "child half of systemd_socket_activation_unix_by_name_and_tcp_by_index"]
async fn child_systemd() {
    if !is_child("child_systemd") {
        return;
    }
    init_log();
    let path = PathBuf::from(std::env::var("POSTWERK_TEST_SOCKET").unwrap());
    let port: u16 = std::env::var("POSTWERK_TEST_PORT")
        .unwrap()
        .parse()
        .unwrap();
    let opts = UnixOptions::default();

    let policy = service::bind(&"systemd:policy".parse().unwrap(), &opts)
        .await
        .unwrap();
    assert_eq!(policy.local_addr(), &LocalAddr::Unix(Some(path)));
    let smtp = service::bind(&"systemd:1".parse().unwrap(), &opts)
        .await
        .unwrap();
    assert_eq!(
        smtp.local_addr(),
        &LocalAddr::Tcp(([127, 0, 0, 1], port).into())
    );

    // Each passed socket is taken once; the error lists what was passed.
    let err = service::bind(&"systemd:policy".parse().unwrap(), &opts)
        .await
        .unwrap_err();
    assert!(matches!(err, ListenError::SystemdMissing { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("0=policy (taken)") && msg.contains("1=smtp (taken)"),
        "{msg}"
    );
    let err = service::bind(&"systemd:nosuch".parse().unwrap(), &opts)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("FileDescriptorName="), "{err}");

    // Serve until both clients have been answered and hung up.
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<()>();
    let handler = move |s, p, t| {
        let done_tx = done_tx.clone();
        async move {
            echo(s, p, t).await;
            let _ = done_tx.send(());
        }
    };
    let shutdown = async move {
        let _ = done_rx.recv().await;
        let _ = done_rx.recv().await;
    };
    within(
        "child serve",
        service::serve(vec![policy, smtp], Limits::default(), shutdown, handler),
    )
    .await
    .unwrap();
}

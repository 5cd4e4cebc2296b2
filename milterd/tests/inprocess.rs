//! milterd in-process: the daemon's `run` on 127.0.0.1:0 with a real SQLite
//! database, driven by a small milter client that sends what Postfix 3.7
//! sends (shared/reference/milter.md §3): negotiation, macros, connect,
//! MAIL, headers, end of headers, body, end of message, abort, quit.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use postwerk_core::config::Config;
use postwerk_core::db::Db;
use postwerk_core::service::{self, ListenAddr, LocalAddr, UnixOptions};
use postwerk_milterd::keys::{self, Algo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};

/// A milter client speaking as Postfix does.
struct Client {
    s: TcpStream,
}

impl Client {
    async fn connect(port: u16) -> Client {
        Client {
            s: TcpStream::connect(("127.0.0.1", port)).await.unwrap(),
        }
    }

    async fn send(&mut self, cmd: u8, data: &[u8]) {
        let len = u32::try_from(data.len() + 1).unwrap();
        let mut p = len.to_be_bytes().to_vec();
        p.push(cmd);
        p.extend_from_slice(data);
        self.s.write_all(&p).await.unwrap();
    }

    /// The next reply packet, or `None` when the server closed.
    async fn reply(&mut self) -> Option<(u8, Vec<u8>)> {
        let mut len = [0u8; 4];
        match tokio::time::timeout(Duration::from_secs(10), self.s.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return None,
            Err(_) => panic!("no reply within 10 s"),
        }
        let len = u32::from_be_bytes(len) as usize;
        let mut buf = vec![0u8; len];
        self.s.read_exact(&mut buf).await.unwrap();
        Some((buf[0], buf[1..].to_vec()))
    }

    /// Option negotiation as Postfix 3.7 does it; returns (actions, opts).
    async fn negotiate(&mut self) -> (u32, u32) {
        let mut d = Vec::new();
        d.extend(6u32.to_be_bytes());
        d.extend(0x1ffu32.to_be_bytes());
        d.extend(0x1f_ffffu32.to_be_bytes());
        self.send(b'O', &d).await;
        let (cmd, data) = self.reply().await.unwrap();
        assert_eq!(cmd, b'O');
        let word = |i: usize| u32::from_be_bytes(data[i..i + 4].try_into().unwrap());
        (word(4), word(8))
    }

    async fn macros(&mut self, stage: u8, pairs: &[(&str, &str)]) {
        let mut d = vec![stage];
        for (k, v) in pairs {
            d.extend_from_slice(k.as_bytes());
            d.push(0);
            d.extend_from_slice(v.as_bytes());
            d.push(0);
        }
        self.send(b'D', &d).await;
    }

    /// Connect from 127.0.0.1 with `{daemon_name}`.
    async fn hello(&mut self, daemon_name: &str) {
        self.macros(
            b'C',
            &[("{daemon_name}", daemon_name), ("j", "mx.example.org")],
        )
        .await;
        let mut d = b"localhost\0".to_vec();
        d.push(b'4');
        d.extend(25000u16.to_be_bytes());
        d.extend(b"127.0.0.1\0");
        self.send(b'C', &d).await;
    }

    /// A message up to end of headers; returns the EOH reply.
    async fn headers(&mut self, auth: Option<&str>, headers: &[(&str, &str)]) -> u8 {
        let mut m = vec![("i", "4ABC123")];
        if let Some(a) = auth {
            m.push(("{auth_authen}", a));
        }
        self.macros(b'M', &m).await;
        self.send(b'M', b"<user1@example.org>\0").await;
        // RCPT: negotiated without a reply (milterd keeps the recipients
        // for greylisting).
        self.macros(b'R', &[("{rcpt_addr}", "someone@remote.test")])
            .await;
        self.send(b'R', b"<someone@remote.test>\0").await;
        for (name, value) in headers {
            let mut d = name.as_bytes().to_vec();
            d.push(0);
            d.extend_from_slice(value.as_bytes());
            d.push(0);
            self.send(b'L', &d).await;
        }
        self.send(b'N', b"").await;
        self.reply().await.unwrap().0
    }

    /// Body and end of message; returns every reply up to the final one.
    async fn finish(&mut self, body: &[u8]) -> Vec<(u8, Vec<u8>)> {
        self.send(b'B', body).await;
        self.send(b'E', b"").await;
        let mut out = Vec::new();
        loop {
            let r = self.reply().await.unwrap();
            let is_final = matches!(r.0, b'a' | b'c' | b't' | b'r' | b'y' | b'd');
            out.push(r);
            if is_final {
                return out;
            }
        }
    }
}

struct Milterd {
    port: u16,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Milterd {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), self.done)
            .await
            .expect("milterd did not stop")
            .unwrap();
    }
}

const HEADERS: &[(&str, &str)] = &[
    ("From", " User One <user1@example.org>"),
    ("To", " someone@remote.test"),
    ("Subject", " hello\n\tfolded"),
    ("Message-ID", " <1@example.org>"),
];

/// Starts milterd with keys for example.org (selectors rsa and ed) and
/// `extra` TOML in `[milterd]`.
async fn start(extra: &str, make_keys: bool) -> Milterd {
    let dir = tempfile::tempdir().unwrap();
    let keydir = dir.path().join("keys");
    std::fs::create_dir(&keydir).unwrap();
    if make_keys {
        for (sel, algo) in [("rsa", Algo::Rsa), ("ed", Algo::Ed25519)] {
            let pem = keys::generate(algo, 2048).unwrap();
            std::fs::write(keydir.join(format!("example.org.{sel}.key")), pem).unwrap();
        }
    }
    let db_path = dir.path().join("vmail.db");
    // Hermetic: no test asks the system's resolver (port 9 is discard).
    let dns = if extra.contains("dns_servers") {
        ""
    } else {
        "dns_servers = [\"127.0.0.1:9\"]\ndns_timeout = \"1s\"\n"
    };
    let text = format!(
        "[database]\nurl = \"sqlite://{}\"\n[milterd]\nlisten = [\"127.0.0.1:0\"]\n{dns}{extra}\n[milterd.dkim]\nselector = [\"rsa\", \"ed\"]\npath = \"{}/$domain.$selector.key\"\n",
        db_path.display(),
        keydir.display()
    );
    let cfg = Config::parse(&text).unwrap();
    let db = Db::connect_lazy(&cfg.database, true).unwrap();
    db.init_schema().await.unwrap();
    db.domain_add("example.org").await.unwrap();
    db.close().await;
    let listener = service::bind(
        &ListenAddr::Tcp("127.0.0.1:0".parse().unwrap()),
        &UnixOptions::default(),
    )
    .await
    .unwrap();
    let port = match listener.local_addr() {
        LocalAddr::Tcp(a) => a.port(),
        other => panic!("{other:?}"),
    };
    let shared = postwerk_milterd::shared(&cfg).unwrap();
    let (_tx, rx) = watch::channel::<Arc<postwerk_milterd::Shared>>(shared);
    let (stop, stopped) = oneshot::channel::<()>();
    let limits = cfg.milterd.service.limits;
    let done = tokio::spawn(async move {
        let _tx = _tx;
        let listeners = postwerk_milterd::Listeners {
            milter: vec![listener],
            controller: Vec::new(),
        };
        postwerk_milterd::run(limits, listeners, rx, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    Milterd {
        port,
        stop: Some(stop),
        done,
        _dir: dir,
    }
}

fn inserted_headers(replies: &[(u8, Vec<u8>)]) -> Vec<(u32, String, String)> {
    replies
        .iter()
        .filter(|(c, _)| *c == b'i')
        .map(|(_, d)| {
            let index = u32::from_be_bytes(d[..4].try_into().unwrap());
            let mut parts = d[4..].split(|b| *b == 0);
            let name = String::from_utf8_lossy(parts.next().unwrap()).into_owned();
            let value = String::from_utf8_lossy(parts.next().unwrap()).into_owned();
            (index, name, value)
        })
        .collect()
}

#[tokio::test]
async fn negotiates_only_what_it_needs() {
    let m = start("", true).await;
    let mut c = Client::connect(m.port).await;
    let (actions, opts) = c.negotiate().await;
    // ADDHDRS, CHGHDRS (forged Authentication-Results) and SETSYMLIST.
    assert_eq!(actions, 0x111, "{actions:#x}");
    // NODATA NOUNKNOWN, NR_CONN NR_HELO NR_MAIL NR_RCPT NR_HDR NR_BODY,
    // HDR_LEADSPC
    assert_eq!(
        opts,
        0x200 | 0x100 | 0x1000 | 0x2000 | 0x4000 | 0x8000 | 0x80 | 0x80000 | 0x100000,
        "{opts:#x}"
    );
    drop(c);
    m.stop().await;
}

#[tokio::test]
async fn authenticated_mail_is_signed_with_both_keys() {
    let m = start("", true).await;
    let mut c = Client::connect(m.port).await;
    c.negotiate().await;
    c.hello("mx.example.org").await;
    assert_eq!(c.headers(Some("user1@example.org"), HEADERS).await, b'c');
    let replies = c.finish(b"hello\r\nworld\r\n").await;
    assert_eq!(replies.last().unwrap().0, b'a');
    let added = inserted_headers(&replies);
    // Two signatures, each at the top; no ARC set (seal_outgoing is off
    // by default, as Rspamd's sign_authenticated).
    let names: Vec<&str> = added.iter().map(|(_, n, _)| n.as_str()).collect();
    assert_eq!(names, ["DKIM-Signature", "DKIM-Signature"], "{replies:?}");
    for (index, name, value) in added.iter().filter(|(_, n, _)| n == "DKIM-Signature") {
        assert_eq!((*index, name.as_str()), (0, "DKIM-Signature"));
        // HDR_LEADSPC was negotiated: we supply the space.
        assert!(value.starts_with(" v=1; a="), "{value}");
        let flat: String = value.split_whitespace().collect();
        assert!(
            flat.contains("d=example.org;") && flat.contains("c=relaxed/relaxed"),
            "{flat}"
        );
        let h = flat
            .split("h=")
            .nth(1)
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_ascii_lowercase();
        for name in ["from", "to", "subject"] {
            assert_eq!(h.split(':').filter(|n| *n == name).count(), 2, "{h}");
        }
        assert!(h.contains("message-id"), "{h}");
    }
    let algos: Vec<bool> = added
        .iter()
        .map(|(_, _, v)| v.contains("a=ed25519-sha256"))
        .collect();
    assert_eq!(algos.iter().filter(|x| **x).count(), 1);

    // Abort, then a second transaction on the same connection.
    c.send(b'A', b"").await;
    // Without AUTH on the MX service: incoming, verified at end of message.
    assert_eq!(c.headers(None, HEADERS).await, b'c');
    let replies = c.finish(b"x\r\n").await;
    assert_eq!(replies.last().unwrap().0, b'a');
    let added = inserted_headers(&replies);
    assert_eq!(added.len(), 1, "{replies:?}");
    assert_eq!(added[0].1, "Authentication-Results");
    m.stop().await;
}

#[tokio::test]
async fn originating_daemon_name_is_outgoing_and_other_servers_are_incoming() {
    let m = start("", true).await;
    let mut c = Client::connect(m.port).await;
    c.negotiate().await;
    c.hello("ORIGINATING").await;
    assert_eq!(c.headers(None, HEADERS).await, b'c');
    let replies = c.finish(b"x\r\n").await;
    let signatures = inserted_headers(&replies)
        .into_iter()
        .filter(|(_, n, _)| n == "DKIM-Signature")
        .count();
    assert_eq!(signatures, 2, "{replies:?}");

    let mut c = Client::connect(m.port).await;
    c.negotiate().await;
    c.hello("mx.example.org").await;
    // Incoming: verified at end of message, not signed.
    assert_eq!(c.headers(None, HEADERS).await, b'c');
    let replies = c.finish(b"x\r\n").await;
    let added = inserted_headers(&replies);
    assert_eq!(added.len(), 1, "{replies:?}");
    assert_eq!(added[0].1, "Authentication-Results");
    m.stop().await;
}

#[tokio::test]
async fn forged_authentication_results_are_removed_and_dns_silence_is_temperror() {
    // A DNS server that never answers: every lookup runs into dns_timeout.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dns = silent.local_addr().unwrap();
    let m = start(
        &format!(
            "dns_servers = [\"{dns}\"]\ndns_timeout = \"1s\"\n[milterd.verify]\nauthserv_id = \"mx.example.org\"\ntimeout = \"3s\"\n"
        ),
        true,
    )
    .await;
    let mut c = Client::connect(m.port).await;
    c.negotiate().await;
    c.hello("mx.example.org").await;
    let headers: &[(&str, &str)] = &[
        ("Authentication-Results", " mx.other.test; dkim=pass"),
        (
            "Authentication-Results",
            " MX.example.org; dkim=pass header.d=paypal.com",
        ),
        ("From", " Someone <someone@remote.test>"),
        (
            "Authentication-Results",
            "\n\t(comment) mx.example.org;\n\tspf=pass",
        ),
        ("Subject", " forged"),
    ];
    assert_eq!(c.headers(None, headers).await, b'c');
    let started = std::time::Instant::now();
    let replies = c.finish(b"x\r\n").await;
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(replies.last().unwrap().0, b'a', "{replies:?}");
    // `m` for occurrences 3 and 2 (highest first), each with an empty
    // value; the first (another host's) stays.
    let changed: Vec<(u32, Vec<u8>)> = replies
        .iter()
        .filter(|(c, _)| *c == b'm')
        .map(|(_, d)| {
            (
                u32::from_be_bytes(d[..4].try_into().unwrap()),
                d[4..].to_vec(),
            )
        })
        .collect();
    assert_eq!(
        changed,
        vec![
            (3, b"Authentication-Results\0\0".to_vec()),
            (2, b"Authentication-Results\0\0".to_vec())
        ]
    );
    // Then ours, at the top, after the removals.
    let last_m = replies.iter().rposition(|(c, _)| *c == b'm').unwrap();
    let first_i = replies.iter().position(|(c, _)| *c == b'i').unwrap();
    assert!(last_m < first_i, "{replies:?}");
    let added = inserted_headers(&replies);
    assert_eq!(added.len(), 1, "{replies:?}");
    let (index, name, value) = &added[0];
    assert_eq!((*index, name.as_str()), (0, "Authentication-Results"));
    assert!(value.starts_with(" mx.example.org;\n\t"), "{value}");
    assert!(!value.contains('\r'), "{value}");
    assert!(value.contains("spf=temperror"), "{value}");
    assert!(value.contains("dkim=none"), "{value}");
    assert!(value.contains("dmarc=temperror"), "{value}");
    assert!(value.contains("header.from=remote.test"), "{value}");
    drop(silent);
    m.stop().await;
}

#[tokio::test]
async fn missing_key_passes_unsigned_and_broken_key_tempfails() {
    let m = start("", false).await;
    let mut c = Client::connect(m.port).await;
    c.negotiate().await;
    c.hello("ORIGINATING").await;
    c.headers(None, HEADERS).await;
    let replies = c.finish(b"x\r\n").await;
    assert_eq!(replies, vec![(b'a', vec![])]);
    m.stop().await;

    let m = start("", false).await;
    let keydir = m._dir.path().join("keys");
    std::fs::write(
        keydir.join("example.org.rsa.key"),
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let mut c = Client::connect(m.port).await;
    c.negotiate().await;
    c.hello("ORIGINATING").await;
    c.headers(None, HEADERS).await;
    let replies = c.finish(b"x\r\n").await;
    assert_eq!(
        replies,
        vec![(b't', vec![])],
        "sign_error_action = tempfail by default"
    );
    m.stop().await;
}

#[tokio::test]
async fn other_domains_and_oversized_messages_pass_unsigned() {
    let m = start("max_headers = 10\n", true).await;
    let mut c = Client::connect(m.port).await;
    c.negotiate().await;
    c.hello("ORIGINATING").await;
    c.headers(None, &[("From", " a@not-ours.test")]).await;
    assert_eq!(c.finish(b"x\r\n").await, vec![(b'a', vec![])]);

    let many: Vec<(&str, &str)> = (0..20).map(|_| ("X-Filler", " yes")).collect();
    let mut all = HEADERS.to_vec();
    all.extend(many);
    c.headers(None, &all).await;
    assert_eq!(
        c.finish(b"x\r\n").await,
        vec![(b'a', vec![])],
        "error_action = accept"
    );
    m.stop().await;
}

#[tokio::test]
async fn garbage_and_oversized_packets_close_only_that_connection() {
    let m = start("", true).await;
    let mut c = Client::connect(m.port).await;
    // A declared length of 2 GiB: refused before allocating.
    c.s.write_all(&[0x80, 0, 0, 0, b'O']).await.unwrap();
    assert!(c.reply().await.is_none());
    let mut c = Client::connect(m.port).await;
    c.send(b'Z', b"nonsense").await;
    assert!(c.reply().await.is_none());
    // The daemon still serves.
    let mut c = Client::connect(m.port).await;
    c.negotiate().await;
    c.send(b'Q', b"").await;
    assert!(c.reply().await.is_none());
    m.stop().await;
}

#[test]
fn key_files_of_rspamd_load() {
    // Rspamd's ed25519 format: the base64 seed on one line.
    let k = keys::parse(b"BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n").unwrap();
    assert_eq!(k.algo(), Algo::Ed25519);
}

const GTUBE: &[u8] = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\r\n";

#[tokio::test]
async fn gtube_is_rejected_with_a_reason_and_stale_spam_headers_are_replaced() {
    let m = start("[milterd.verify]\nenabled = false\n", true).await;
    let mut c = Client::connect(m.port).await;
    c.negotiate().await;
    c.hello("mx.example.org").await;
    let headers: &[(&str, &str)] = &[
        ("From", " Someone <someone@remote.test>"),
        ("Subject", " test"),
        ("Date", " Mon, 01 Jun 2026 10:00:00 +0000"),
        ("Message-ID", " <gtube1@remote.test>"),
        ("X-Spam", " Yes"),
    ];
    assert_eq!(c.headers(None, headers).await, b'c');
    let replies = c.finish(GTUBE).await;
    let (code, data) = replies.last().unwrap();
    assert_eq!(*code, b'y', "{replies:?}");
    let text = String::from_utf8_lossy(data);
    assert!(
        text.starts_with("554 5.7.1 ") && text.contains("GTUBE"),
        "{text}"
    );
    c.send(b'A', b"").await;

    // A clean message in the same session: the sender's own X-Spam goes,
    // ours (X-Spamd-Bar, X-Spam-Status, ...) are appended.
    assert_eq!(c.headers(None, headers).await, b'c');
    let replies = c.finish(b"Just a normal note about lunch.\r\n").await;
    assert_eq!(replies.last().unwrap().0, b'a', "{replies:?}");
    let removed: Vec<&[u8]> = replies
        .iter()
        .filter(|(c, _)| *c == b'm')
        .map(|(_, d)| &d[4..])
        .collect();
    assert_eq!(removed, vec![&b"X-Spam\0\0"[..]], "{replies:?}");
    let added: Vec<String> = replies
        .iter()
        .filter(|(c, _)| *c == b'h')
        .map(|(_, d)| String::from_utf8_lossy(d).into_owned())
        .collect();
    assert!(
        added.iter().any(|h| h.starts_with("X-Spamd-Bar\0 /\0")),
        "{added:?}"
    );
    assert!(
        added
            .iter()
            .any(|h| h.starts_with("X-Spam-Status\0 No, score=")),
        "{added:?}"
    );
    assert!(
        !added.iter().any(|h| h.starts_with("X-Spam\0")),
        "{added:?}"
    );
    drop(c);
    m.stop().await;
}

#[tokio::test]
async fn shadow_mode_scores_but_neither_rejects_nor_changes_headers() {
    let m = start(
        "[milterd.verify]\nenabled = false\n[milterd.spam]\nshadow = true\n",
        true,
    )
    .await;
    let mut c = Client::connect(m.port).await;
    c.negotiate().await;
    c.hello("mx.example.org").await;
    let headers: &[(&str, &str)] = &[
        ("From", " Someone <someone@remote.test>"),
        ("Subject", " test"),
        ("X-Spam-Status", " Yes, score=17.20"),
    ];
    assert_eq!(c.headers(None, headers).await, b'c');
    let replies = c.finish(GTUBE).await;
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert_eq!(replies[0].0, b'a', "{replies:?}");
    drop(c);
    m.stop().await;
}

/// Sends `request` to the controller and returns everything it answered.
async fn http(port: u16, request: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("no answer within 10 s")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn controller_answers_garbage_with_4xx_and_keeps_serving() {
    let text = "[milterd]\nlisten = [\"127.0.0.1:0\"]\nmax_message_size = 65536\ndns_servers = [\"127.0.0.1:9\"]\n\
                [milterd.verify]\nenabled = false\n\
                [milterd.spam.controller]\nlisten = [\"inet:127.0.0.1:0\"]\ntimeout = \"2s\"\n";
    let cfg = Config::parse(text).unwrap();
    let listener = service::bind(
        &ListenAddr::Tcp("127.0.0.1:0".parse().unwrap()),
        &UnixOptions::default(),
    )
    .await
    .unwrap();
    let port = match listener.local_addr() {
        LocalAddr::Tcp(a) => a.port(),
        other => panic!("{other:?}"),
    };
    let shared = postwerk_milterd::shared(&cfg).unwrap();
    let (_tx, rx) = watch::channel::<Arc<postwerk_milterd::Shared>>(shared);
    let (stop, stopped) = oneshot::channel::<()>();
    let limits = cfg.milterd.service.limits;
    let done = tokio::spawn(async move {
        let _tx = _tx;
        let listeners = postwerk_milterd::Listeners {
            milter: Vec::new(),
            controller: vec![listener],
        };
        postwerk_milterd::run(limits, listeners, rx, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });

    for (request, status) in [
        (&b"GARBAGE\r\n\r\n"[..], "400"),
        (b"GET / SPDY/3\r\n\r\n", "400"),
        (
            b"POST /checkv2 HTTP/1.0\r\nContent-Length: 99999999\r\n\r\n",
            "413",
        ),
        (
            b"POST /checkv2 HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "411",
        ),
        (b"GET /nothing-here HTTP/1.0\r\n\r\n", "404"),
        (b"GET /learnspam HTTP/1.0\r\n\r\n", "405"),
        // A body shorter than declared: the client gives up, we answer.
        (
            b"POST /checkv2 HTTP/1.0\r\nContent-Length: 10\r\n\r\nabc",
            "408",
        ),
    ] {
        let answer = http(port, request).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "{}: {answer}",
            String::from_utf8_lossy(request)
        );
    }
    let answer = http(port, b"GET /ping HTTP/1.0\r\n\r\n").await;
    assert!(answer.ends_with("\r\n\r\npong\r\n"), "{answer}");
    let gtube = b"Subject: t\r\n\r\nXJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\r\n";
    let mut req = format!(
        "POST /checkv2 HTTP/1.0\r\nContent-Length: {}\r\n\r\n",
        gtube.len()
    )
    .into_bytes();
    req.extend_from_slice(gtube);
    let answer = http(port, &req).await;
    let body = answer.split("\r\n\r\n").nth(1).unwrap();
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["action"], "reject", "{v}");
    assert!(v["symbols"]["GTUBE"].is_object(), "{v}");
    assert_eq!(v["required_score"], 15.0, "{v}");
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), done)
        .await
        .expect("milterd did not stop")
        .unwrap();
}

#[tokio::test]
async fn an_arc_chain_that_cannot_be_checked_is_temperror_in_time() {
    // A DNS server that never answers: the sealer's key cannot be fetched.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dns = silent.local_addr().unwrap();
    let m = start(
        &format!(
            "dns_servers = [\"{dns}\"]\ndns_timeout = \"1s\"\n[milterd.verify]\nauthserv_id = \"mx.example.org\"\ntimeout = \"3s\"\n"
        ),
        true,
    )
    .await;
    let mut c = Client::connect(m.port).await;
    c.negotiate().await;
    c.hello("mx.example.org").await;
    // A well-formed set whose body hash matches the body below, so the
    // verifier has to ask DNS for the key.
    let headers: &[(&str, &str)] = &[
        (
            "ARC-Seal",
            " i=1; a=rsa-sha256; d=remote.test; s=arc; cv=none; b=AAAA",
        ),
        (
            "ARC-Message-Signature",
            " i=1; a=rsa-sha256; c=relaxed/relaxed; d=remote.test; s=arc; h=from:subject; bh=s14J+iztnrytnRYzb7lhFG/jS/vrxWJnnahfijFMnco=; b=AAAA",
        ),
        (
            "ARC-Authentication-Results",
            " i=1; mx.remote.test; spf=pass smtp.mailfrom=remote.test",
        ),
        ("From", " Someone <someone@remote.test>"),
        ("Subject", " forwarded"),
    ];
    assert_eq!(c.headers(None, headers).await, b'c');
    let started = std::time::Instant::now();
    let replies = c.finish(b"x\r\n").await;
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(replies.last().unwrap().0, b'a', "{replies:?}");
    let added = inserted_headers(&replies);
    let ar = added
        .iter()
        .find(|(_, n, _)| n == "Authentication-Results")
        .unwrap_or_else(|| panic!("{replies:?}"));
    assert!(ar.2.contains("arc=temperror"), "{}", ar.2);
    drop(silent);
    m.stop().await;
}

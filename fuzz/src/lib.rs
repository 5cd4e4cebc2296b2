//! The checks behind every fuzz target: one function per codec or parser,
//! taking arbitrary bytes. Each must never panic; where a property can be
//! stated (the same stream decodes the same whatever its segmentation, an
//! encoded value decodes back to itself, normalisation is idempotent) it is
//! asserted, so a violation is a crash that libFuzzer reports.
//!
//! This file has no libFuzzer dependency: `fuzz_targets/*.rs` call it, and
//! `tests/tests/fuzz_corpus.rs` includes it with `#[path]` to replay the
//! committed corpora on stable Rust in every `cargo test` run.

use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

/// One check: arbitrary bytes in, a panic on a bug.
pub type Check = fn(&[u8]);

/// Every target, by name (the directory names under `corpus/`).
pub const TARGETS: &[(&str, Check)] = &[
    ("netstring", netstring),
    ("socketmap", socketmap),
    ("tcp_table", tcp_table),
    ("policy", policy),
    ("auth_client", auth_client),
    ("sasl", sasl),
    ("dict", dict),
    ("lmtp", lmtp),
    ("config", config),
    ("password", password),
    ("address", address),
    ("milter_headers", milter_headers),
    ("dkim_verify", dkim_verify),
    ("rspamd_map", rspamd_map),
    ("srs", srs),
    ("mta_sts", mta_sts),
];

/// Splits off the first byte as a chunk size (1..=32), so that one input
/// also says how the stream is segmented.
fn chunking(data: &[u8]) -> (usize, &[u8]) {
    match data.split_first() {
        Some((&b, rest)) => (usize::from(b % 32) + 1, rest),
        None => (1, data),
    }
}

/// What a decoder made of a stream: the frames, then whether it stopped on
/// an error. Which error may differ with the segmentation (`0648x` is a
/// bad prefix whole, but too long already at `0648`); that the connection
/// closes after the same frames may not.
#[derive(Debug, PartialEq)]
struct Run<T> {
    frames: Vec<T>,
    is_error: bool,
}

/// Feeds `data` to `codec` in pieces of `chunk` bytes, decoding after
/// each, until an error; `on_frame` may switch the codec's mode.
fn run<C, T>(
    mut codec: C,
    data: &[u8],
    chunk: usize,
    mut on_frame: impl FnMut(&mut C, &T),
) -> Run<T>
where
    C: Decoder<Item = T>,
    C::Error: std::fmt::Debug,
{
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for piece in data.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(f)) => {
                    on_frame(&mut codec, &f);
                    frames.push(f);
                }
                Ok(None) => break,
                Err(_) => {
                    return Run {
                        frames,
                        is_error: true,
                    };
                }
            }
        }
    }
    Run {
        frames,
        is_error: false,
    }
}

/// Decodes `data` whole and in chunks and asserts both give the same.
fn same_whatever_the_chunks<C, T>(
    make: impl Fn() -> C,
    data: &[u8],
    on_frame: impl Fn(&mut C, &T) + Copy,
) -> Run<T>
where
    C: Decoder<Item = T>,
    C::Error: std::fmt::Debug,
    T: PartialEq + std::fmt::Debug,
{
    let (chunk, data) = chunking(data);
    let whole = run(make(), data, data.len(), on_frame);
    let pieces = run(make(), data, chunk, on_frame);
    assert_eq!(whole, pieces, "chunk size {chunk} changes the decoding");
    whole
}

/// socketmap framing (policyd): netstrings, then the request inside.
pub fn netstring(data: &[u8]) {
    use postwerk_policyd::proto::netstring::NetstringCodec;
    const MAX: usize = 100;
    let run = same_whatever_the_chunks(|| NetstringCodec::new(MAX), data, |_, _| {});
    for payload in &run.frames {
        assert!(payload.len() <= MAX, "payload over the limit");
        let mut out = BytesMut::new();
        NetstringCodec::new(MAX)
            .encode(&payload[..], &mut out)
            .expect("encoding into memory");
        let back = NetstringCodec::new(MAX).decode(&mut out);
        assert_eq!(back.ok().flatten().as_deref(), Some(&payload[..]));
        assert!(out.is_empty());
        let _ = postwerk_policyd::proto::socketmap::Request::parse(payload);
    }
}

/// socketmap payloads (`<name> <key>`) and the replies we encode.
pub fn socketmap(data: &[u8]) {
    use postwerk_policyd::proto::socketmap::{Reply, Request};
    if let Ok(req) = Request::parse(data) {
        assert!(!req.name.is_empty() && !req.name.contains(' '));
        let name_len = req.name.len();
        assert_eq!(data[name_len], b' ');
        if let Some(key) = &req.key {
            assert_eq!(key.as_bytes(), &data[name_len + 1..]);
        }
    }
    let text = String::from_utf8_lossy(data).into_owned();
    for reply in [
        Reply::Ok(text.clone()),
        Reply::Temp(text.clone()),
        Reply::Timeout(text.clone()),
        Reply::Perm(text.clone()),
        Reply::NotFound,
    ] {
        let p = reply.to_payload();
        let sp = p
            .iter()
            .position(|&b| b == b' ')
            .expect("status then space");
        assert!(p[..sp].iter().all(u8::is_ascii_uppercase));
    }
}

/// tcp_table(5) request lines and the `%XX` codec.
pub fn tcp_table(data: &[u8]) {
    use postwerk_policyd::proto::tcp_table::{self, Reply, TcpTableCodec};
    let run = same_whatever_the_chunks(|| TcpTableCodec::new(256), data, |_, _| {});
    assert!(run.frames.len() <= data.len());
    // Strict: only `%` and two hex digits is an escape.
    if tcp_table::decode(data).is_ok() {
        for (i, _) in data.iter().enumerate().filter(|(_, b)| **b == b'%') {
            assert!(
                data.get(i + 1..i + 3)
                    .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
            );
        }
    }
    // Whatever the bytes, what we encode decodes back to them and is one
    // printable token (no space, no line end).
    let mut enc = BytesMut::new();
    tcp_table::encode(data, &mut enc);
    assert!(enc.iter().all(u8::is_ascii_graphic));
    assert_eq!(tcp_table::decode(&enc).expect("own encoding decodes"), data);
    // A reply is exactly one line, whatever its text.
    let text = String::from_utf8_lossy(data).into_owned();
    for reply in [
        Reply::Found(text.clone()),
        Reply::Temp(text),
        Reply::NotFound,
    ] {
        let mut out = BytesMut::new();
        TcpTableCodec::new(256)
            .encode(&reply, &mut out)
            .expect("encoding into memory");
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        assert_eq!(out.last(), Some(&b'\n'));
    }
}

/// Postfix policy delegation attribute blocks and the action we write.
pub fn policy(data: &[u8]) {
    use postwerk_policyd::proto::policy::{MAX_ATTRIBUTES, PolicyCodec, Reply};
    let run = same_whatever_the_chunks(|| PolicyCodec::new(512), data, |_, _| {});
    assert!(run.frames.len() <= data.len().max(1));
    for req in &run.frames {
        let _ = req.get("request");
    }
    let _ = MAX_ATTRIBUTES;
    let mut out = BytesMut::new();
    let action = String::from_utf8_lossy(data).into_owned();
    PolicyCodec::new(512)
        .encode(&Reply { action }, &mut out)
        .expect("encoding into memory");
    // One `action=` line and the empty line: Postfix reads nothing else.
    assert!(out.starts_with(b"action="));
    assert!(out.ends_with(b"\n\n"));
    assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 2);
    assert!(!out.contains(&b'\r'));
}

/// Dovecot auth-client request lines.
pub fn auth_client(data: &[u8]) {
    use postwerk_authd::proto::auth_client::{Codec, Command};
    let run = same_whatever_the_chunks(Codec::new, data, |_, _| {});
    for cmd in &run.frames {
        if let Command::Auth(a) = cmd {
            assert!(!a.service.is_empty());
            assert!(a.mechanism.bytes().all(|b| !b.is_ascii_lowercase()));
            // The password-bearing field never shows in Debug output.
            if a.resp.is_some() {
                assert!(format!("{a:?}").contains("resp: Some(\"***\")"));
            }
        }
    }
    for line in data.split(|&b| b == b'\n') {
        let _ = Command::parse(line);
    }
    // Dovecot's tab-escaping is a bijection on text.
    let text = String::from_utf8_lossy(data);
    let escaped = postwerk_authd::proto::tab_escape(&text);
    assert!(!escaped.contains(['\t', '\n', '\r', '\0']));
    assert_eq!(postwerk_authd::proto::tab_unescape(&escaped), text);
}

/// SASL PLAIN and LOGIN exchanges on decoded payloads: the first byte
/// picks the mechanism, the rest is NUL-free pieces split at `0xff`.
pub fn sasl(data: &[u8]) {
    use postwerk_authd::authenticate::{self, Exchange, Mechanism, Step};
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let mech = if sel & 1 == 0 {
        Mechanism::Plain
    } else {
        Mechanism::Login
    };
    let mut pieces = rest.split(|&b| b == 0xff);
    let initial = if sel & 2 == 0 {
        None
    } else {
        pieces.next().map(<[u8]>::to_vec)
    };
    let mut step = authenticate::start(mech, initial);
    for _ in 0..4 {
        match step {
            Step::Challenge(_, exchange) => match pieces.next() {
                Some(p) => step = authenticate::next(exchange, p.to_vec()),
                None => return,
            },
            Step::Done(c) => {
                assert!(!c.authcid.is_empty());
                assert!(!c.authcid.contains('\0'));
                assert!(format!("{c:?}").contains("password: \"***\""));
                return;
            }
            Step::Fail(_) => return,
        }
    }
    // PLAIN ends after one response, LOGIN after two.
    assert!(!matches!(step, Step::Challenge(_, Exchange::Plain)));
}

/// Dovecot dict proxy request lines.
pub fn dict(data: &[u8]) {
    use postwerk_authd::proto::dict::{Codec, Command, Reply};
    let run = same_whatever_the_chunks(Codec::new, data, |_, _| {});
    for cmd in &run.frames {
        if let Command::Lookup { key } = cmd {
            assert!(!key.is_empty() || data.contains(&1));
        }
    }
    // Every reply is one line, whatever the value holds.
    let text = String::from_utf8_lossy(data).into_owned();
    let mut out = BytesMut::new();
    Reply::Found(text).encode_into(&mut out);
    assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
    assert_eq!(out.last(), Some(&b'\n'));
}

/// LMTP commands and DATA: the stream decodes the same in any chunking
/// (switching to DATA after a `DATA` command, as the session does), and
/// a dot-stuffed message reads back as itself.
pub fn lmtp(data: &[u8]) {
    use postwerk_lmtpd::proto::lmtp::{Command, Frame, LmtpCodec, Message};
    let make = || LmtpCodec::new(128, 1024, 8);
    let switch = |c: &mut LmtpCodec, f: &Frame| {
        if *f == Frame::Command(Ok(Command::Data)) {
            c.start_data();
        }
    };
    let run = same_whatever_the_chunks(make, data, switch);
    for f in &run.frames {
        if let Frame::Data(Ok(m)) = f {
            assert!(m.wire_size <= 1024 && m.body.len() <= m.wire_size);
            assert!(m.body.is_empty() || m.body.ends_with(b"\n"));
        }
    }
    for line in data.split(|&b| b == b'\n') {
        let _ = postwerk_lmtpd::proto::lmtp::parse_command(line);
    }

    // Dot-stuff `data` as a message (LF lines, no CR) and read it back.
    let (_, data) = chunking(data);
    let body: Vec<u8> = data.iter().copied().filter(|&b| b != b'\r').collect();
    let mut lines: Vec<&[u8]> = body.split(|&b| b == b'\n').collect();
    if body.ends_with(b"\n") {
        lines.pop();
    }
    let mut wire = b"DATA\r\n".to_vec();
    let mut want = Vec::new();
    for line in &lines {
        if line.starts_with(b".") {
            wire.push(b'.');
        }
        wire.extend_from_slice(line);
        wire.extend_from_slice(b"\r\n");
        want.extend_from_slice(line);
        want.push(b'\n');
    }
    wire.extend_from_slice(b".\r\n");
    let big = LmtpCodec::new(1 << 20, 1 << 20, 1 << 20);
    let got = run_lmtp(big, &wire);
    assert_eq!(
        got,
        vec![
            Frame::Command(Ok(Command::Data)),
            Frame::Data(Ok(Message {
                wire_size: want.len() + lines.len(),
                body: want,
            })),
        ]
    );
}

fn run_lmtp(
    codec: postwerk_lmtpd::proto::lmtp::LmtpCodec,
    wire: &[u8],
) -> Vec<postwerk_lmtpd::proto::lmtp::Frame> {
    use postwerk_lmtpd::proto::lmtp::{Command, Frame};
    run(codec, wire, wire.len(), |c, f: &Frame| {
        if *f == Frame::Command(Ok(Command::Data)) {
            c.start_data();
        }
    })
    .frames
}

/// postwerk.toml: parse and check never panic, and a config that checks
/// describes itself.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cfg) = postwerk_core::config::Config::parse(text) {
        let _ = cfg.describe();
    }
}

/// Stored password strings (`{SCHEME.ENC}hash`, `$1$…`) against a
/// password. The input is `password NUL stored`; stored strings asking
/// for an expensive computation (explicit rounds, bcrypt, Argon2) are
/// checked only up to the prefix, so that one run stays fast.
pub fn password(data: &[u8]) {
    use postwerk_core::password::{self, Scheme};
    let Some(nul) = data.iter().position(|&b| b == 0) else {
        return;
    };
    let (pw, stored) = (&data[..nul], &data[nul + 1..]);
    let Ok(stored) = std::str::from_utf8(stored) else {
        return;
    };
    let lower = stored.to_ascii_lowercase();
    let defaults = [
        Scheme::Plain,
        Scheme::Sha512,
        Scheme::Ssha256,
        Scheme::Md5Crypt,
    ];
    let default = defaults[pw.len() % defaults.len()];
    let expensive = [
        "rounds=", "$2", "argon", "blf", "crypt}", "crypt.", "$6$", "$5$",
    ]
    .iter()
    .any(|p| lower.contains(p));
    // An error never depends on the password (so it cannot leak it).
    if !expensive {
        let a = password::verify(pw, stored, default).map_err(|e| e.to_string());
        let b = password::verify(b"other", stored, default).map_err(|e| e.to_string());
        assert_eq!(a.err(), b.err());
    }
}

/// Addresses: parsing is total, normalisation idempotent, and the
/// recipient delimiter split puts the address back together.
pub fn address(data: &[u8]) {
    use postwerk_core::address::{self, Address};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = address::normalize_domain(text);
    let _ = address::domain_to_unicode(text);
    let Ok(a) = Address::parse(text) else {
        return;
    };
    let again = Address::parse(&a.to_string()).expect("a normalised address parses");
    assert_eq!(again, a, "normalisation is not idempotent");
    assert!(a.local().len() <= address::MAX_LOCAL_LEN);
    assert!(a.domain().len() <= address::MAX_DOMAIN_LEN);
    assert!(a.domain().is_ascii());
    let (base, detail) = a.split_detail("+-");
    match detail {
        Some(d) => {
            let sep = &a.local()[base.local().len()..base.local().len() + 1];
            assert_eq!(format!("{}{sep}{d}", base.local()), a.local());
            assert!(!base.local().is_empty());
        }
        None => assert_eq!(base, a),
    }
    let _ = a.domain_unicode();
}

/// Header values milterd reads itself: `Authentication-Results:` (forged
/// or not) and `From:` (the signing domain).
pub fn milter_headers(data: &[u8]) {
    use postwerk_milterd::{sign, verify};
    if let Some(id) = verify::authserv_id_of(data) {
        assert!(!id.is_empty());
        assert!(!id.chars().any(|c| c.is_whitespace() || c == ';'));
        assert!(verify::is_forged(data, &id.to_ascii_uppercase()));
    }
    let _ = verify::summary(&String::from_utf8_lossy(data));
    if let Some(d) = sign::from_domain(data) {
        assert_eq!(
            postwerk_core::address::normalize_domain(&d).ok().as_deref(),
            Some(d.as_str())
        );
    }
}

/// A DNS server on loopback that answers every UDP query at once with
/// NXDOMAIN (and refuses TCP), so that verification runs all its lookups
/// without waiting; returns its address.
fn nxdomain_server() -> std::net::SocketAddr {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("a UDP port on loopback");
    let addr = sock.local_addr().expect("a bound socket has an address");
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, peer)) = sock.recv_from(&mut buf) {
            if n < 12 {
                continue;
            }
            let mut reply = buf[..n].to_vec();
            reply[2] = 0x80 | (reply[2] & 0x79); // QR, keep opcode and RD
            reply[3] = 0x80 | 3; // RA, NXDOMAIN
            reply[6..12].fill(0); // no answer, authority or additional
            // Drop everything after the first question (an EDNS OPT).
            let mut end = 12;
            while end < n && buf[end] != 0 {
                end += usize::from(buf[end]) + 1;
            }
            reply.truncate((end + 5).min(n));
            let _ = sock.send_to(&reply, peer);
        }
    });
    addr
}

/// A whole raw message through milterd's verifier (SPF, DKIM, DMARC) with
/// a resolver that answers NXDOMAIN for everything: whatever the message,
/// the verdict is a well-formed header and nothing panics.
pub fn dkim_verify(data: &[u8]) {
    use postwerk_milterd::verify::{Envelope, Verifier};
    use std::sync::OnceLock;
    static VERIFIER: OnceLock<(tokio::runtime::Runtime, Verifier)> = OnceLock::new();
    let (rt, verifier) = VERIFIER.get_or_init(|| {
        let dns = nxdomain_server();
        let cfg = postwerk_core::config::Config::parse(&format!(
            "[milterd]\ndns_servers = [\"{dns}\"]\ndns_timeout = \"1s\"\n\
             [milterd.verify]\nauthserv_id = \"mx.fuzz.test\"\ntimeout = \"2s\"\n"
        ))
        .expect("fuzz config is valid");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let v = rt
            .block_on(async { Verifier::new(&cfg.milterd) })
            .expect("a resolver");
        (rt, v)
    });
    // The envelope comes from the message's first line, so the fuzzer
    // varies it too: `ip helo from`.
    let (first, raw) = match data.iter().position(|&b| b == b'\n') {
        Some(i) if i < 200 => (
            String::from_utf8_lossy(&data[..i]).into_owned(),
            &data[i + 1..],
        ),
        _ => (String::new(), data),
    };
    let mut words = first.split(' ');
    let client_ip = words.next().and_then(|w| w.parse().ok());
    let helo = words.next().unwrap_or("mail.fuzz.test");
    let mail_from = words.next().unwrap_or("someone@fuzz.test");
    let env = Envelope {
        client_ip,
        helo,
        mail_from,
    };
    let verdict = rt.block_on(verifier.verify(raw, &env));
    assert!(verdict.header.starts_with("mx.fuzz.test"));
    // The header is folded with CRLF TAB only: no bare LF or CR a client
    // could use to inject another header field.
    let h = verdict.header.as_bytes();
    for (i, &b) in h.iter().enumerate() {
        if b == b'\r' {
            assert_eq!(
                h.get(i + 1..i + 3),
                Some(&b"\n\t"[..]),
                "{:?}",
                verdict.header
            );
        }
        if b == b'\n' {
            assert_eq!(i.checked_sub(1).map(|j| h[j]), Some(b'\r'));
        }
    }
}

/// Rspamd multimap map files (the guide's whitelist_ip.map …): never
/// panics; every IP entry prints to a network that parses back the same;
/// names are lowercased and have no `#`.
pub fn rspamd_map(data: &[u8]) {
    use postwerk_core::config::milterd::Network;
    use postwerk_core::config::milterd::spam::MultimapKind;
    use postwerk_milterd::spam::multimap::parse;
    let text = String::from_utf8_lossy(data);
    let (ips, _bad) = parse(&text, MultimapKind::Ip);
    for n in &ips.networks {
        let again: Network = n
            .to_string()
            .parse()
            .expect("a parsed network prints to one that parses");
        assert_eq!(&again, n);
    }
    let (names, _) = parse(&text, MultimapKind::From);
    for n in &names.names {
        assert!(!n.contains('#'), "comment kept in {n:?}");
        assert_eq!(n, &n.to_lowercase());
    }
}

/// SRS: never panics; what `forward` makes, `reverse` turns back into the
/// sender (same day), and forwarding it again makes an SRS1 address that
/// reverses to the SRS0 one; reversal of arbitrary input is an error or an
/// address.
pub fn srs(data: &[u8]) {
    use postwerk_policyd::srs::Srs;
    use std::time::{Duration, UNIX_EPOCH};
    let text = String::from_utf8_lossy(data);
    let now = UNIX_EPOCH + Duration::from_secs(20_000 * 86_400);
    let s = Srs::new(
        "srs.example.org",
        vec![b"fuzz".to_vec(), b"old".to_vec()],
        21,
    );
    let _ = s.reverse(&text, now);
    let Some((user, host)) = text.rsplit_once('@') else {
        return;
    };
    if user.is_empty() || host.is_empty() || user.contains('=') || Srs::is_srs(user) {
        return;
    }
    if let Some(fwd) = s.forward(&text, now) {
        assert_eq!(s.reverse(&fwd, now).as_deref(), Ok(&*text), "{fwd}");
        let hop = fwd.replace("@srs.example.org", "@hop.example");
        if let Some(s1) = s.forward(&hop, now) {
            assert_eq!(s.reverse(&s1, now).as_deref(), Ok(&*hop), "{s1}");
        }
    }
}

/// MTA-STS policy files and TXT records: never panics; an enforce policy
/// answers `secure match=…` with one pattern per `mx`, others nothing.
pub fn mta_sts(data: &[u8]) {
    use postwerk_policyd::mta_sts::{Mode, Policy, txt_id};
    let text = String::from_utf8_lossy(data);
    let _ = txt_id(&text);
    if let Ok(p) = Policy::parse(&text) {
        assert!(p.max_age <= postwerk_policyd::mta_sts::MAX_AGE_LIMIT);
        match (p.mode, p.answer()) {
            (Mode::Enforce, Some(a)) => {
                assert!(a.starts_with("secure match="), "{a}");
                assert!(!a.contains('\n'), "{a:?}");
            }
            (Mode::Enforce, None) => panic!("enforce without an answer"),
            (_, a) => assert_eq!(a, None),
        }
    }
}

//! A small authoritative DNS server on loopback for test zones (RFC 1035),
//! so that SPF, DKIM and DMARC tests need no internet: UDP and TCP on
//! 127.0.0.1 and one free port, answering TXT and A queries from a map the
//! test gives, and MX, AAAA, CNAME, SRV and TLSA queries for the records
//! `postwerk dns --check` reads (a CNAME is returned as is, not followed). A name in the map with no record of the asked type gets an
//! empty NOERROR answer (NODATA); an unknown name gets NXDOMAIN; a name
//! marked [`Dns::servfail`] gets SERVFAIL. UDP answers larger than the
//! client's buffer (512 bytes, or its EDNS size) are truncated with TC set,
//! and the client retries over TCP. Stops on Drop.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

const TYPE_A: u16 = 1;
const TYPE_CNAME: u16 = 5;
const TYPE_MX: u16 = 15;
const TYPE_TXT: u16 = 16;
const TYPE_AAAA: u16 = 28;
const TYPE_SRV: u16 = 33;
const TYPE_TLSA: u16 = 52;
const TYPE_OPT: u16 = 41;
const CLASS_IN: u16 = 1;
const RCODE_SERVFAIL: u8 = 2;
const RCODE_NXDOMAIN: u8 = 3;
const RCODE_NOTIMP: u8 = 4;
const TTL: u32 = 60;
const TYPE_SOA: u16 = 6;

/// The records of the test zones.
#[derive(Debug, Default, Clone)]
struct Zone {
    txt: HashMap<String, Vec<String>>,
    a: HashMap<String, Vec<Ipv4Addr>>,
    /// Records of the other types, as (name, type) → RDATA in wire form.
    other: HashMap<(String, u16), Vec<Vec<u8>>>,
    servfail: Vec<String>,
    /// With a value, NXDOMAIN and NODATA answers carry an SOA record with
    /// this negative TTL (RFC 2308 §3), as real zones' answers do, so
    /// resolvers may cache them.
    negative_ttl: Option<u32>,
}

impl Zone {
    fn has_name(&self, name: &str) -> bool {
        self.txt.contains_key(name)
            || self.a.contains_key(name)
            || self.other.keys().any(|(n, _)| n == name)
    }
}

/// A domain name in wire form, uncompressed (RFC 1035 §3.1).
fn wire_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in key(name).split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

/// A running test DNS server.
#[derive(Debug)]
pub struct Dns {
    /// Where it listens (UDP and TCP): `127.0.0.1:PORT`.
    pub addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// `Example.ORG.` → `example.org`.
fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl Dns {
    /// Starts a server with no records on a free port of 127.0.0.1.
    pub fn start() -> Dns {
        // One port for both: bind UDP first, then TCP on the same number;
        // retry if another test took the TCP port in between.
        for _ in 0..50 {
            let udp = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket on 127.0.0.1");
            let addr = udp.local_addr().expect("local address of a bound socket");
            let Ok(tcp) = TcpListener::bind(addr) else {
                continue;
            };
            let zone = Arc::new(Mutex::new(Zone::default()));
            let stop = Arc::new(AtomicBool::new(false));
            udp.set_read_timeout(Some(Duration::from_millis(100)))
                .expect("set a UDP read timeout");
            tcp.set_nonblocking(true)
                .expect("make the listener nonblocking");
            let udp_thread = {
                let (zone, stop) = (zone.clone(), stop.clone());
                std::thread::spawn(move || serve_udp(&udp, &zone, &stop))
            };
            let tcp_thread = {
                let (zone, stop) = (zone.clone(), stop.clone());
                std::thread::spawn(move || serve_tcp(&tcp, &zone, &stop))
            };
            return Dns {
                addr,
                zone,
                stop,
                threads: vec![udp_thread, tcp_thread],
            };
        }
        panic!("no free port for the test DNS server on 127.0.0.1");
    }

    /// From now on NXDOMAIN and NODATA answers carry an SOA record with a
    /// negative TTL of `ttl` seconds, as real zones do (without it,
    /// resolvers do not cache them: RFC 2308 §5).
    pub fn negative_caching(&self, ttl: u32) -> &Dns {
        self.lock().negative_ttl = Some(ttl);
        self
    }

    /// Adds a TXT record (`v=spf1 -all`); the value is split into
    /// character-strings of at most 255 bytes.
    pub fn txt(&self, name: &str, value: &str) -> &Dns {
        self.lock()
            .txt
            .entry(key(name))
            .or_default()
            .push(value.to_owned());
        self
    }

    /// Replaces the TXT records of `name` with `value`.
    pub fn set_txt(&self, name: &str, value: &str) -> &Dns {
        self.lock().txt.insert(key(name), vec![value.to_owned()]);
        self
    }

    /// Adds an A record.
    pub fn a(&self, name: &str, addr: Ipv4Addr) -> &Dns {
        self.lock().a.entry(key(name)).or_default().push(addr);
        self
    }

    /// Adds an AAAA record.
    pub fn aaaa(&self, name: &str, addr: Ipv6Addr) -> &Dns {
        self.record(name, TYPE_AAAA, addr.octets().to_vec())
    }

    /// Adds an MX record.
    pub fn mx(&self, name: &str, preference: u16, exchange: &str) -> &Dns {
        let mut rdata = preference.to_be_bytes().to_vec();
        rdata.extend(wire_name(exchange));
        self.record(name, TYPE_MX, rdata)
    }

    /// Adds a CNAME record (answered for CNAME queries only; the server
    /// does not follow it).
    pub fn cname(&self, name: &str, target: &str) -> &Dns {
        self.record(name, TYPE_CNAME, wire_name(target))
    }

    /// Adds an SRV record (RFC 2782).
    pub fn srv(&self, name: &str, priority: u16, weight: u16, port: u16, target: &str) -> &Dns {
        let mut rdata = Vec::new();
        for v in [priority, weight, port] {
            rdata.extend_from_slice(&v.to_be_bytes());
        }
        rdata.extend(wire_name(target));
        self.record(name, TYPE_SRV, rdata)
    }

    /// Adds a TLSA record (RFC 6698 §2.1).
    pub fn tlsa(&self, name: &str, usage: u8, selector: u8, matching: u8, data: &[u8]) -> &Dns {
        let mut rdata = vec![usage, selector, matching];
        rdata.extend_from_slice(data);
        self.record(name, TYPE_TLSA, rdata)
    }

    fn record(&self, name: &str, rtype: u16, rdata: Vec<u8>) -> &Dns {
        self.lock()
            .other
            .entry((key(name), rtype))
            .or_default()
            .push(rdata);
        self
    }

    /// Every query for `name` gets SERVFAIL.
    pub fn servfail(&self, name: &str) -> &Dns {
        self.lock().servfail.push(key(name));
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Zone> {
        self.zone.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn serve_udp(sock: &UdpSocket, zone: &Mutex<Zone>, stop: &AtomicBool) {
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, peer)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let zone = zone.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(reply) = answer(&buf[..n], &zone, true) {
            let _ = sock.send_to(&reply, peer);
        }
    }
}

fn serve_tcp(listener: &TcpListener, zone: &Mutex<Zone>, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let zone = zone.lock().unwrap_or_else(|e| e.into_inner()).clone();
                std::thread::spawn(move || {
                    let _ = serve_tcp_conn(stream, &zone);
                });
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// RFC 1035 §4.2.2: each message has a two-byte length prefix.
fn serve_tcp_conn(mut stream: TcpStream, zone: &Zone) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    loop {
        let mut len = [0u8; 2];
        stream.read_exact(&mut len)?;
        let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut msg)?;
        let Some(reply) = answer(&msg, zone, false) else {
            return Ok(());
        };
        let n = u16::try_from(reply.len()).unwrap_or(u16::MAX);
        stream.write_all(&n.to_be_bytes())?;
        stream.write_all(&reply)?;
    }
}

/// Reads a name at `pos` (no compression: queries don't use it).
fn read_name(msg: &[u8], mut pos: usize) -> Option<(String, usize)> {
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*msg.get(pos)?);
        pos += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        labels.push(String::from_utf8_lossy(msg.get(pos..pos + len)?).into_owned());
        pos += len;
    }
    Some((labels.join("."), pos))
}

fn u16_at(msg: &[u8], pos: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*msg.get(pos)?, *msg.get(pos + 1)?]))
}

/// The reply to one query message, or `None` for garbage.
fn answer(query: &[u8], zone: &Zone, is_udp: bool) -> Option<Vec<u8>> {
    let header = query.get(..12)?;
    if header[2] & 0x80 != 0 || u16_at(query, 4)? != 1 {
        return None; // a response, or not exactly one question
    }
    let (name, end) = read_name(query, 12)?;
    let qtype = u16_at(query, end)?;
    let qclass = u16_at(query, end + 2)?;
    let question = query.get(12..end + 4)?;
    // EDNS (RFC 6891): the client's UDP buffer size in an OPT record.
    let mut max_udp = 512usize;
    if u16_at(query, 10)? > 0
        && let Some((_, p)) = read_name(query, end + 4)
        && u16_at(query, p) == Some(TYPE_OPT)
    {
        max_udp = usize::from(u16_at(query, p + 2)?).max(512);
    }
    let k = key(&name);
    let opcode = (header[2] >> 3) & 0x0f;
    let mut rcode = 0u8;
    let mut answers: Vec<(u16, Vec<u8>)> = Vec::new();
    if opcode != 0 {
        rcode = RCODE_NOTIMP;
    } else if zone.servfail.contains(&k) {
        rcode = RCODE_SERVFAIL;
    } else if !zone.has_name(&k) {
        rcode = RCODE_NXDOMAIN;
    } else if qclass == CLASS_IN {
        if qtype == TYPE_TXT {
            for v in zone.txt.get(&k).into_iter().flatten() {
                let mut rdata = Vec::new();
                for chunk in v.as_bytes().chunks(255) {
                    rdata.push(chunk.len() as u8);
                    rdata.extend_from_slice(chunk);
                }
                if v.is_empty() {
                    rdata.push(0);
                }
                answers.push((TYPE_TXT, rdata));
            }
        } else if qtype == TYPE_A {
            for a in zone.a.get(&k).into_iter().flatten() {
                answers.push((TYPE_A, a.octets().to_vec()));
            }
        } else {
            for rdata in zone.other.get(&(k.clone(), qtype)).into_iter().flatten() {
                answers.push((qtype, rdata.clone()));
            }
        }
    }
    // RFC 2308 §3: the SOA of the zone in the authority section; its
    // owner here is the asked name (the test zones have no apex).
    let soa = zone
        .negative_ttl
        .filter(|_| opcode == 0 && (rcode == RCODE_NXDOMAIN || (rcode == 0 && answers.is_empty())))
        .map(|ttl| {
            let mut rdata = vec![0u8, 0u8]; // MNAME and RNAME: the root
            for v in [1u32, 3600, 600, 86400, ttl] {
                rdata.extend_from_slice(&v.to_be_bytes());
            }
            (ttl, rdata)
        });
    let build = |answers: &[(u16, Vec<u8>)], truncated: bool| {
        let mut out = Vec::with_capacity(512);
        out.extend_from_slice(&header[..2]); // ID
        // QR, opcode, AA; RD copied; TC when truncated.
        out.push(
            0x80 | (opcode << 3) | 0x04 | (header[2] & 0x01) | if truncated { 0x02 } else { 0 },
        );
        out.push(rcode);
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&(answers.len() as u16).to_be_bytes());
        let authority = soa.as_ref().filter(|_| !truncated);
        out.extend_from_slice(&u16::from(authority.is_some()).to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(question);
        let records = answers
            .iter()
            .map(|(rtype, rdata)| (*rtype, TTL, rdata))
            .chain(authority.map(|(ttl, rdata)| (TYPE_SOA, *ttl, rdata)));
        for (rtype, ttl, rdata) in records {
            out.extend_from_slice(&[0xc0, 0x0c]); // the name of the question
            out.extend_from_slice(&rtype.to_be_bytes());
            out.extend_from_slice(&CLASS_IN.to_be_bytes());
            out.extend_from_slice(&ttl.to_be_bytes());
            out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            out.extend_from_slice(rdata);
        }
        out
    };
    let full = build(&answers, false);
    if is_udp && full.len() > max_udp {
        return Some(build(&[], true));
    }
    Some(full)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name.split('.') {
            q.push(l.len() as u8);
            q.extend_from_slice(l.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&CLASS_IN.to_be_bytes());
        q
    }

    #[test]
    fn txt_nodata_nxdomain_servfail_truncation() {
        let mut zone = Zone::default();
        zone.txt.insert("a.test".into(), vec!["v=spf1 -all".into()]);
        zone.txt.insert("big.test".into(), vec!["x".repeat(600)]);
        zone.servfail.push("bad.test".into());
        let r = answer(&query("A.test", TYPE_TXT), &zone, true).unwrap();
        assert_eq!(&r[..2], &[0x12, 0x34]);
        assert_eq!(r[3] & 0x0f, 0);
        assert_eq!(u16_at(&r, 6), Some(1));
        assert!(r.ends_with(b"\x0bv=spf1 -all"));
        let r = answer(&query("a.test", TYPE_A), &zone, true).unwrap();
        assert_eq!((r[3] & 0x0f, u16_at(&r, 6)), (0, Some(0)));
        let r = answer(&query("none.test", TYPE_TXT), &zone, true).unwrap();
        assert_eq!(r[3] & 0x0f, RCODE_NXDOMAIN);
        let r = answer(&query("bad.test", TYPE_TXT), &zone, true).unwrap();
        assert_eq!(r[3] & 0x0f, RCODE_SERVFAIL);
        let r = answer(&query("big.test", TYPE_TXT), &zone, true).unwrap();
        assert_eq!((r[2] & 0x02, u16_at(&r, 6)), (0x02, Some(0)));
        let r = answer(&query("big.test", TYPE_TXT), &zone, false).unwrap();
        assert_eq!(u16_at(&r, 6), Some(1));
        assert!(answer(&[1, 2, 3], &zone, true).is_none());
    }

    #[test]
    fn negative_answers_carry_an_soa_when_asked() {
        let mut zone = Zone::default();
        zone.txt.insert("a.test".into(), vec!["v=spf1 -all".into()]);
        // Off by default: no authority record.
        let r = answer(&query("none.test", TYPE_TXT), &zone, true).unwrap();
        assert_eq!(u16_at(&r, 8), Some(0));
        zone.negative_ttl = Some(300);
        for (name, qtype, rcode) in [
            ("none.test", TYPE_TXT, RCODE_NXDOMAIN),
            ("a.test", TYPE_A, 0),
        ] {
            let r = answer(&query(name, qtype), &zone, true).unwrap();
            assert_eq!(
                (r[3] & 0x0f, u16_at(&r, 6), u16_at(&r, 8)),
                (rcode, Some(0), Some(1))
            );
            // The SOA's MINIMUM, last in the message, is the negative TTL.
            assert!(r.ends_with(&300u32.to_be_bytes()), "{r:?}");
        }
        // A positive answer has none.
        let r = answer(&query("a.test", TYPE_TXT), &zone, true).unwrap();
        assert_eq!((u16_at(&r, 6), u16_at(&r, 8)), (Some(1), Some(0)));
    }

    #[test]
    fn other_types_answer_their_rdata() {
        let mut zone = Zone::default();
        zone.other
            .insert(("a.test".into(), TYPE_MX), vec![vec![0, 5, 1, b'm', 0]]);
        let r = answer(&query("a.test", TYPE_MX), &zone, true).unwrap();
        assert_eq!(u16_at(&r, 6), Some(1));
        assert!(r.ends_with(&[0, 5, 0, 5, 1, b'm', 0]));
        let r = answer(&query("a.test", TYPE_TXT), &zone, true).unwrap();
        assert_eq!((r[3] & 0x0f, u16_at(&r, 6)), (0, Some(0)));
        assert_eq!(wire_name("Mail.Example."), b"\x04mail\x07example\x00");
    }
}

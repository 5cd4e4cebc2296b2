//! A throwaway certificate authority and server certificate, made with the
//! `openssl` command line, for the peers' TLS listeners. Clients verify the
//! server against [`TestCa::ca_file`], so the tests exercise real
//! verification, not "accept anything".

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::exec::{require, run};
use crate::testdir::{TestDir, set_mode};

/// Names the server certificate is valid for.
pub const SERVER_NAMES: &[&str] = &["mail.example.org", "localhost", "mta-sts.example.net"];

const OPENSSL_TIMEOUT: Duration = Duration::from_secs(30);

/// Files of a test CA and of one server certificate it signed, all under
/// `TESTDIR/tls/`.
#[derive(Debug, Clone)]
pub struct TestCa {
    /// The CA certificate (PEM); what clients trust.
    pub ca_file: PathBuf,
    /// The server certificate followed by the CA certificate, like the
    /// guide's acme.sh `fullchain.pem`.
    pub fullchain: PathBuf,
    /// The server key (PEM, mode 0600), like the guide's `privkey.pem`.
    pub key: PathBuf,
    /// 2048-bit DH parameters (RFC 7919 ffdhe2048), for Postfix's
    /// `smtpd_tls_dh1024_param_file`.
    pub dh2048: PathBuf,
    /// 4096-bit DH parameters (RFC 7919 ffdhe4096), for Dovecot's `ssl_dh`.
    pub dh4096: PathBuf,
}

impl TestCa {
    /// Makes the CA, a P-256 server key and a certificate for
    /// [`SERVER_NAMES`] and 127.0.0.1, valid for two days.
    pub fn new(dir: &TestDir) -> TestCa {
        let openssl = require("openssl");
        let tls = dir.mkdir("tls", 0o755);
        let ca_key = tls.join("ca.key");
        let ca_file = tls.join("ca.pem");
        let csr = tls.join("server.csr");
        let cert = tls.join("server.pem");
        let key = tls.join("privkey.pem");
        let fullchain = tls.join("fullchain.pem");
        let ext = tls.join("server.ext");
        let dh2048 = tls.join("dh2048.pem");
        let dh4096 = tls.join("dh4096.pem");

        let openssl_run = |args: &[&str]| {
            let mut cmd = Command::new(&openssl);
            cmd.args(args).current_dir(&tls);
            run(&mut cmd, None, OPENSSL_TIMEOUT).assert_success();
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];

        let mut args = vec!["req", "-x509"];
        args.extend(ec);
        args.extend([
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=postwerk test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl_run(&args);

        let mut args = vec!["req"];
        args.extend(ec);
        args.extend([
            "-keyout",
            "privkey.pem",
            "-out",
            "server.csr",
            "-subj",
            "/CN=mail.example.org",
        ]);
        openssl_run(&args);

        let san: Vec<String> = SERVER_NAMES
            .iter()
            .map(|n| format!("DNS:{n}"))
            .chain(["IP:127.0.0.1".to_owned()])
            .collect();
        std::fs::write(
            &ext,
            format!(
                "basicConstraints = CA:FALSE\nkeyUsage = critical, digitalSignature\n\
                 extendedKeyUsage = serverAuth\nsubjectAltName = {}\n",
                san.join(", ")
            ),
        )
        .unwrap_or_else(|e| panic!("write {}: {e}", ext.display()));
        openssl_run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-set_serial",
            "2",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ]);
        // Named RFC 7919 groups: generated instantly, unlike `openssl dhparam`.
        openssl_run(&[
            "genpkey",
            "-genparam",
            "-algorithm",
            "DH",
            "-pkeyopt",
            "group:ffdhe2048",
            "-out",
            "dh2048.pem",
        ]);
        openssl_run(&[
            "genpkey",
            "-genparam",
            "-algorithm",
            "DH",
            "-pkeyopt",
            "group:ffdhe4096",
            "-out",
            "dh4096.pem",
        ]);

        let read = |p: &PathBuf| {
            std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        };
        std::fs::write(&fullchain, read(&cert) + &read(&ca_file))
            .unwrap_or_else(|e| panic!("write {}: {e}", fullchain.display()));
        for secret in [&key, &ca_key] {
            set_mode(secret, 0o600);
        }
        for public in [&ca_file, &cert, &fullchain, &dh2048, &dh4096] {
            set_mode(public, 0o644);
        }
        let _ = std::fs::remove_file(&csr);
        TestCa {
            ca_file,
            fullchain,
            key,
            dh2048,
            dh4096,
        }
    }
}

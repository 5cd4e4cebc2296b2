//! `postwerk autoconfig --out DIR`: the client configuration files of every
//! domain in the database, for a web server to serve — the guide's
//! hand-written Thunderbird `config-v1.1.xml` ("Autoconfig für Mozilla
//! Thunderbird"), made for each domain, plus Outlook's Autodiscover
//! response, an Apple `.mobileconfig` profile and, if `[server].mta_sts` is
//! on, the MTA-STS policy file. A new domain needs no hand-edited XML: run
//! this again (the packaged postwerk-autoconfig.timer does, every 10
//! minutes).
//!
//! Why files and not a daemon: the guide already runs nginx with an
//! autoconfig vhost and its certificates; static files add no listening
//! service and no TLS code to postwerk, and nginx serves them with one
//! `root` line (contrib/nginx/postwerk-autoconfig.conf).
//!
//! Layout, one directory per domain, served as the web root of
//! `autoconfig.DOMAIN`, `autodiscover.DOMAIN` and `mta-sts.DOMAIN`:
//!
//! ```text
//! DIR/DOMAIN/mail/config-v1.1.xml            Thunderbird
//! DIR/DOMAIN/autodiscover/autodiscover.xml   Outlook (and Autodiscover/Autodiscover.xml)
//! DIR/DOMAIN/email.mobileconfig              Apple Mail (iOS, macOS)
//! DIR/DOMAIN/.well-known/mta-sts.txt         MTA-STS policy (if enabled)
//! ```

use super::Ctx;
use super::server::{IMAPS_PORT, SUBMISSIONS_PORT, Server, ServerArgs};
use anyhow::{Context, bail};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Marks a directory as ours, so that a domain's directory is only removed
/// (after the domain was deleted) when postwerk wrote it.
const MARKER: &str = ".postwerk-autoconfig";

/// `postwerk autoconfig …`
#[derive(clap::Args, Debug)]
pub struct AutoconfigArgs {
    /// Directory to write into, one subdirectory per domain (created if missing)
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Only this domain [default: every domain in the database]
    #[arg(long)]
    domain: Option<String>,
    #[command(flatten)]
    server: ServerArgs,
}

/// Escapes text for XML element content and attribute values.
fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Thunderbird's autoconfig file, in the structure of the guide's
/// `/var/www/…/autoconfig.mysystems.tld/mail/config-v1.1.xml`: IMAP on 993
/// and SMTP on 465, both TLS, the full address as user name.
pub fn thunderbird(server: &Server, domain: &str) -> String {
    let (d, imap, smtp) = (xml(domain), xml(&server.imap_host), xml(&server.smtp_host));
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>

<clientConfig version="1.1">
  <emailProvider id="{d}">
    <domain>{d}</domain>
    <displayName>{d} Mail</displayName>
    <displayShortName>{d}</displayShortName>
    <incomingServer type="imap">
      <hostname>{imap}</hostname>
      <port>{IMAPS_PORT}</port>
      <socketType>SSL</socketType>
      <authentication>password-cleartext</authentication>
      <username>%EMAILADDRESS%</username>
    </incomingServer>
    <outgoingServer type="smtp">
      <hostname>{smtp}</hostname>
      <port>{SUBMISSIONS_PORT}</port>
      <socketType>SSL</socketType>
      <authentication>password-cleartext</authentication>
      <username>%EMAILADDRESS%</username>
    </outgoingServer>
  </emailProvider>
</clientConfig>
"#
    )
}

/// Outlook's Autodiscover (POX) response: IMAP and SMTP with TLS and
/// password authentication. Outlook POSTs its request; the answer does
/// not depend on it (no `LoginName`: Outlook then logs in with the full
/// address, which is the guide's user name).
pub fn autodiscover(server: &Server) -> String {
    let (imap, smtp) = (xml(&server.imap_host), xml(&server.smtp_host));
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006">
  <Response xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a">
    <Account>
      <AccountType>email</AccountType>
      <Action>settings</Action>
      <Protocol>
        <Type>IMAP</Type>
        <Server>{imap}</Server>
        <Port>{IMAPS_PORT}</Port>
        <DomainRequired>off</DomainRequired>
        <SPA>off</SPA>
        <SSL>on</SSL>
        <AuthRequired>on</AuthRequired>
      </Protocol>
      <Protocol>
        <Type>SMTP</Type>
        <Server>{smtp}</Server>
        <Port>{SUBMISSIONS_PORT}</Port>
        <DomainRequired>off</DomainRequired>
        <SPA>off</SPA>
        <SSL>on</SSL>
        <AuthRequired>on</AuthRequired>
        <UsePOPAuth>on</UsePOPAuth>
      </Protocol>
    </Account>
  </Response>
</Autodiscover>
"#
    )
}

/// A stable UUID for a profile payload: derived from the domain, so that
/// installing a regenerated profile replaces the old one instead of adding
/// a second account.
fn payload_uuid(domain: &str, what: &str) -> String {
    let h = Sha256::digest(format!("postwerk autoconfig {what} {domain}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    // RFC 9562 §5.8: version 8 (custom), variant 10.
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x: String = b.iter().map(|v| format!("{v:02X}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &x[..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..]
    )
}

/// An Apple configuration profile with one `com.apple.mail.managed`
/// payload. The address and user name are left out, so the device asks
/// for them when the profile is installed.
pub fn mobileconfig(server: &Server, domain: &str) -> String {
    let d = xml(domain);
    let (imap, smtp) = (xml(&server.imap_host), xml(&server.smtp_host));
    let reverse: Vec<&str> = domain.split('.').rev().collect();
    let id = xml(&reverse.join("."));
    let (outer, inner) = (
        payload_uuid(domain, "profile"),
        payload_uuid(domain, "mail"),
    );
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
  <key>PayloadContent</key>
  <array>
    <dict>
      <key>EmailAccountDescription</key>
      <string>{d}</string>
      <key>EmailAccountType</key>
      <string>EmailTypeIMAP</string>
      <key>IncomingMailServerAuthentication</key>
      <string>EmailAuthPassword</string>
      <key>IncomingMailServerHostName</key>
      <string>{imap}</string>
      <key>IncomingMailServerPortNumber</key>
      <integer>{IMAPS_PORT}</integer>
      <key>IncomingMailServerUseSSL</key>
      <true/>
      <key>OutgoingMailServerAuthentication</key>
      <string>EmailAuthPassword</string>
      <key>OutgoingMailServerHostName</key>
      <string>{smtp}</string>
      <key>OutgoingMailServerPortNumber</key>
      <integer>{SUBMISSIONS_PORT}</integer>
      <key>OutgoingMailServerUseSSL</key>
      <true/>
      <key>OutgoingPasswordSameAsIncomingPassword</key>
      <true/>
      <key>PayloadDescription</key>
      <string>Mail account for {d}</string>
      <key>PayloadDisplayName</key>
      <string>{d} Mail</string>
      <key>PayloadIdentifier</key>
      <string>{id}.postwerk.mail</string>
      <key>PayloadType</key>
      <string>com.apple.mail.managed</string>
      <key>PayloadUUID</key>
      <string>{inner}</string>
      <key>PayloadVersion</key>
      <integer>1</integer>
    </dict>
  </array>
  <key>PayloadDescription</key>
  <string>Mail settings for {d}</string>
  <key>PayloadDisplayName</key>
  <string>{d} Mail</string>
  <key>PayloadIdentifier</key>
  <string>{id}.postwerk</string>
  <key>PayloadRemovalDisallowed</key>
  <false/>
  <key>PayloadType</key>
  <string>Configuration</string>
  <key>PayloadUUID</key>
  <string>{outer}</string>
  <key>PayloadVersion</key>
  <integer>1</integer>
</dict>
</plist>
"#
    )
}

/// Writes `data` to `path` through a temporary file and a rename, so the
/// web server never serves half a file; unchanged files are not touched.
fn write_file(path: &Path, data: &str) -> anyhow::Result<bool> {
    if std::fs::read(path).is_ok_and(|old| old == data.as_bytes()) {
        return Ok(false);
    }
    let dir = path.parent().context("a file path has a directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = path.file_name().context("a file path has a name")?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> anyhow::Result<()> {
        let mut f = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        f.write_all(data.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("cannot rename to {}", path.display()))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map(|()| true)
}

/// The files of one domain, relative to its directory.
fn files(server: &Server, domain: &str) -> Vec<(&'static str, String)> {
    let ad = autodiscover(server);
    let mut out = vec![
        ("mail/config-v1.1.xml", thunderbird(server, domain)),
        // Outlook asks for both spellings, and nginx is case-sensitive.
        ("autodiscover/autodiscover.xml", ad.clone()),
        ("Autodiscover/Autodiscover.xml", ad),
        ("email.mobileconfig", mobileconfig(server, domain)),
        (
            MARKER,
            "written by `postwerk autoconfig`; regenerated from the database\n".into(),
        ),
    ];
    if let Some(policy) = server.mta_sts_policy() {
        out.push((".well-known/mta-sts.txt", policy));
    }
    out
}

/// Runs `postwerk autoconfig`.
pub async fn run(ctx: &Ctx, args: AutoconfigArgs) -> anyhow::Result<()> {
    let server = Server::resolve(&ctx.cfg.server, &args.server)?;
    let (all, domains) = ctx.domains_or(args.domain.as_deref()).await?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let mut changed = 0usize;
    for domain in &domains {
        let dir = args.out.join(domain);
        // A stale MTA-STS policy would keep telling senders to expect TLS.
        if server.mta_sts_policy().is_none() {
            let stale = dir.join(".well-known/mta-sts.txt");
            if stale.exists() {
                std::fs::remove_file(&stale)
                    .with_context(|| format!("cannot remove {}", stale.display()))?;
                changed += 1;
            }
        }
        for (rel, data) in files(&server, domain) {
            if write_file(&dir.join(rel), &data)? {
                changed += 1;
            }
        }
    }
    // Directories of domains that are gone, if we wrote them.
    let mut removed = Vec::new();
    if args.domain.is_none() {
        let keep: BTreeSet<&str> = all.iter().map(String::as_str).collect();
        for entry in std::fs::read_dir(&args.out)
            .with_context(|| format!("cannot read {}", args.out.display()))?
        {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if path.is_dir() && !keep.contains(name.as_str()) && path.join(MARKER).is_file() {
                std::fs::remove_dir_all(&path)
                    .with_context(|| format!("cannot remove {}", path.display()))?;
                removed.push(name);
            }
        }
    }
    if domains.is_empty() && removed.is_empty() {
        bail!("the database has no domains yet — add one with `postwerk domain add DOMAIN`");
    }
    if ctx.json {
        crate::output::json(&serde_json::json!({
            "out": args.out.display().to_string(),
            "domains": domains,
            "removed": removed,
            "files_changed": changed,
            "imap": format!("{}:{IMAPS_PORT}", server.imap_host),
            "smtp": format!("{}:{SUBMISSIONS_PORT}", server.smtp_host),
        }))?;
    } else {
        println!(
            "{}: {} domain(s), {changed} file(s) written; IMAP {}:{IMAPS_PORT}, SMTP {}:{SUBMISSIONS_PORT}",
            args.out.display(),
            domains.len(),
            server.imap_host,
            server.smtp_host
        );
        for r in &removed {
            println!("removed {r} (no longer in the database)");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_escapes_markup() {
        assert_eq!(xml("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&apos;");
    }

    #[test]
    fn payload_uuids_are_stable_and_distinct() {
        let a = payload_uuid("example.org", "mail");
        assert_eq!(a, payload_uuid("example.org", "mail"));
        assert_ne!(a, payload_uuid("example.net", "mail"));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "8");
    }
}

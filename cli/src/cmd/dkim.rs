//! `postwerk dkim`: DKIM keys where postwerk-milterd finds them
//! (`[milterd.dkim].path` with `$domain` and `$selector`, Rspamd's
//! pattern) and the DNS TXT records to publish for them.

use super::{Ctx, parse_domain};
use crate::output;
use anyhow::{Context, bail};
use clap::{Subcommand, ValueEnum};
use postwerk_core::service::UnixOptions;
use postwerk_milterd::keys::{self, Algo, Key, KeyError};
use serde::Serialize;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of a key file: readable by its owner and group only, never
/// writable (milterd only reads it).
pub const KEY_MODE: u32 = 0o440;
/// Groups tried, in order, when `--group` is not given: postwerk's own,
/// then Rspamd's (a migrating host keeps its key files' group).
pub const DEFAULT_GROUPS: &[&str] = &["postwerk", "_rspamd"];

/// Key algorithm on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AlgoArg {
    /// RSA-SHA256 (understood by every verifier)
    Rsa,
    /// Ed25519-SHA256 (RFC 8463; sign with RSA too, not every verifier has it)
    Ed25519,
}

/// `postwerk dkim …`
#[derive(Subcommand, Debug)]
pub enum DkimCmd {
    /// Make a new key where milterd finds it and print its DNS record
    Keygen {
        /// The domain the key signs for
        #[arg(long)]
        domain: String,
        /// Selector [default: the first of [milterd.dkim].selector]
        #[arg(long)]
        selector: Option<String>,
        /// Key algorithm
        #[arg(long, value_enum, default_value = "rsa")]
        algo: AlgoArg,
        /// RSA key size in bits
        #[arg(long, default_value_t = 2048)]
        bits: usize,
        /// Owner of the key file (user name or uid) [default: keep ours]
        #[arg(long)]
        owner: Option<String>,
        /// Group of the key file, the group milterd runs with [default: postwerk or _rspamd if it exists]
        #[arg(long)]
        group: Option<String>,
        /// Replace an existing key file (the old DNS record stops verifying)
        #[arg(long)]
        force: bool,
    },
    /// Print the DNS records of the keys milterd uses for a domain
    Show {
        /// The domain
        domain: String,
    },
}

#[derive(Serialize)]
struct Record {
    domain: String,
    selector: String,
    path: String,
    algorithm: Option<&'static str>,
    bits: Option<usize>,
    name: String,
    txt: Option<String>,
    txt_strings: Vec<String>,
    error: Option<String>,
}

fn record(domain: &str, selector: &str, path: &Path, key: Result<&Key, String>) -> Record {
    let (algorithm, bits, txt, error) = match key {
        Ok(k) => (
            Some(k.algo().name()),
            (k.bits > 0).then_some(k.bits),
            Some(keys::txt_value(k)),
            None,
        ),
        Err(e) => (None, None, None, Some(e)),
    };
    let txt_strings = txt
        .as_deref()
        .map(|t| {
            t.as_bytes()
                .chunks(keys::TXT_CHUNK)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect()
        })
        .unwrap_or_default();
    Record {
        domain: domain.to_owned(),
        selector: selector.to_owned(),
        path: path.display().to_string(),
        algorithm,
        bits,
        name: keys::record_name(selector, domain),
        txt,
        txt_strings,
        error,
    }
}

/// Runs `postwerk dkim`.
pub async fn run(ctx: &Ctx, cmd: DkimCmd) -> anyhow::Result<()> {
    let dkim = &ctx.cfg.milterd.dkim;
    match cmd {
        DkimCmd::Keygen {
            domain,
            selector,
            algo,
            bits,
            owner,
            group,
            force,
        } => {
            let domain = parse_domain(&domain)?;
            ctx.require_domain(&domain).await?;
            let selector = match selector {
                Some(s) => s,
                None => dkim
                    .selectors
                    .first()
                    .cloned()
                    .context("no selector configured; give --selector")?,
            };
            if selector.is_empty()
                || !selector
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
            {
                bail!("`{selector}` is not a selector; use letters, digits and `-`");
            }
            if !dkim.selectors.contains(&selector) {
                eprintln!(
                    "postwerk: note: selector {selector} is not in [milterd.dkim].selector ({}); milterd signs with it once you add it and reload",
                    dkim.selectors.join(", ")
                );
            }
            let path = keys::expand_path(&dkim.path, &domain, &selector);
            if path.exists() && !force {
                let shared = if dkim.path.contains("$domain") {
                    String::new()
                } else {
                    format!(
                        " (the path pattern {} has no $domain: every domain shares this key; `postwerk dkim show {domain}` prints its record)",
                        dkim.path
                    )
                };
                bail!(
                    "{} exists already{shared}; use a new --selector for a key rotation, or --force to replace it",
                    path.display()
                );
            }
            let algo = match algo {
                AlgoArg::Rsa => Algo::Rsa,
                AlgoArg::Ed25519 => Algo::Ed25519,
            };
            let pem = keys::generate(algo, bits)?;
            let key =
                keys::parse(pem.as_bytes()).map_err(|e| anyhow::anyhow!("generated key: {e}"))?;
            let ownership = resolve_ownership(owner, group)?;
            write_key(&path, pem.as_bytes(), &ownership)?;
            let rec = record(&domain, &selector, &path, Ok(&key));
            if ctx.json {
                output::json(&rec)?;
            } else {
                println!(
                    "wrote {} ({}{}, mode {KEY_MODE:04o}{})",
                    path.display(),
                    algo.name(),
                    if key.bits > 0 {
                        format!(" {} bits", key.bits)
                    } else {
                        String::new()
                    },
                    match ownership {
                        (_, Some((name, _))) => format!(", group {name}"),
                        _ => String::new(),
                    }
                );
                println!(
                    "publish this DNS record:\n{}",
                    keys::zone_line(&selector, &domain, &key)
                );
            }
            Ok(())
        }
        DkimCmd::Show { domain } => {
            let domain = parse_domain(&domain)?;
            let mut records = Vec::new();
            for selector in &dkim.selectors {
                let path = keys::expand_path(&dkim.path, &domain, selector);
                let rec = match keys::load(&path) {
                    Ok(k) => {
                        if !ctx.json {
                            println!("; {} ({})", path.display(), k.algo().name());
                            println!("{}", keys::zone_line(selector, &domain, &k));
                        }
                        record(&domain, selector, &path, Ok(&k))
                    }
                    Err(e) => {
                        let hint = match &e {
                            KeyError::Missing(_) => format!(
                                " — make one with `postwerk dkim keygen --domain {domain} --selector {selector}`"
                            ),
                            _ => String::new(),
                        };
                        if !ctx.json {
                            println!("; selector {selector}: {e}{hint}");
                        }
                        record(&domain, selector, &path, Err(e.to_string()))
                    }
                };
                records.push(rec);
            }
            if ctx.json {
                output::json(&records)?;
            }
            if records.iter().all(|r| r.error.is_some()) {
                bail!("no usable DKIM key for {domain}; mail from it leaves unsigned");
            }
            Ok(())
        }
    }
}

type Ownership = (Option<(String, u32)>, Option<(String, u32)>);

fn resolve_ownership(owner: Option<String>, group: Option<String>) -> anyhow::Result<Ownership> {
    let group = match group {
        Some(g) => Some(g),
        None => DEFAULT_GROUPS
            .iter()
            .find(|g| {
                UnixOptions {
                    group: Some((**g).to_owned()),
                    ..UnixOptions::default()
                }
                .resolve()
                .is_ok()
            })
            .map(|g| (*g).to_owned()),
    };
    let opts = UnixOptions {
        owner: owner.clone(),
        group: group.clone(),
        ..UnixOptions::default()
    };
    let ids = opts.resolve().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((
        owner.zip(ids.uid.map(|u| u.as_raw())),
        group.zip(ids.gid.map(|g| g.as_raw())),
    ))
}

/// Writes the key next to its final name, sets mode and owner, then
/// renames it into place, so milterd never reads half a key.
fn write_key(path: &Path, pem: &[u8], (owner, group): &Ownership) -> anyhow::Result<()> {
    let dir = path.parent().context("the key path has no directory")?;
    if !dir.exists() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750))
            .with_context(|| format!("cannot chmod {}", dir.display()))?;
        std::os::unix::fs::chown(
            dir,
            owner.as_ref().map(|o| o.1),
            group.as_ref().map(|g| g.1),
        )
        .with_context(|| format!("cannot chown {}", dir.display()))?;
    }
    let name = path.file_name().context("the key path has no file name")?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> anyhow::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        f.write_all(pem)?;
        f.sync_all()?;
        std::os::unix::fs::chown(
            &tmp,
            owner.as_ref().map(|o| o.1),
            group.as_ref().map(|g| g.1),
        )
        .with_context(|| format!("cannot chown {}", tmp.display()))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(KEY_MODE))?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("cannot rename to {}", path.display()))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

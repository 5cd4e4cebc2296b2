//! `postwerk tlspolicy`: the `tlspolicies` table (Postfix
//! `smtp_tls_policy_maps`).

use super::{Ctx, parse_domain};
use crate::output;
use anyhow::bail;
use clap::Subcommand;
use postwerk_core::db::{Policy, TlsPolicy};

/// `postwerk tlspolicy …`
#[derive(Subcommand, Debug)]
pub enum TlsPolicyCmd {
    /// Add a policy: none, may, encrypt, dane, dane-only, fingerprint, verify, secure
    Add {
        /// Next-hop domain, e.g. gmx.de (.example.org matches subdomains)
        domain: String,
        /// The policy
        policy: String,
        /// Postfix policy attributes, e.g. "match=.gmx.net" or "match=AB:CD:… protocols=TLSv1.3"
        params: Option<String>,
    },
    /// List policies
    List,
    /// Delete the policy of a domain
    Del {
        /// The domain
        domain: String,
    },
}

/// Normalises a policy key: a domain, or `.domain` for its subdomains.
fn parse_policy_domain(s: &str) -> anyhow::Result<String> {
    match s.trim().strip_prefix('.') {
        Some(rest) => Ok(format!(".{}", parse_domain(rest)?)),
        None => parse_domain(s),
    }
}

/// Checks `params` as Postfix reads them: whitespace-separated
/// `name=value` attributes (see postconf(5) smtp_tls_policy_maps).
fn check_params(policy: Policy, params: Option<&str>) -> anyhow::Result<Option<String>> {
    const ATTRS: &[&str] = &[
        "match",
        "ciphers",
        "exclude",
        "protocols",
        "tafile",
        "connection_reuse",
        "enable_rpk",
    ];
    let Some(p) = params.map(str::trim).filter(|p| !p.is_empty()) else {
        if policy == Policy::Fingerprint {
            bail!(
                "policy fingerprint needs params such as \"match=AB:CD:…\" (the certificate or key fingerprint)"
            );
        }
        return Ok(None);
    };
    for attr in p.split_whitespace() {
        let Some((name, value)) = attr.split_once('=') else {
            bail!(
                "params: `{attr}` is not name=value; allowed names: {}",
                ATTRS.join(", ")
            );
        };
        if !ATTRS.contains(&name) {
            bail!(
                "params: unknown attribute `{name}`; allowed: {}",
                ATTRS.join(", ")
            );
        }
        if value.is_empty() {
            bail!("params: `{name}` has an empty value");
        }
    }
    if p.len() > 255 {
        bail!("params are longer than 255 characters (the column is varchar(255))");
    }
    Ok(Some(p.to_owned()))
}

/// Runs a `tlspolicy` subcommand.
pub async fn run(ctx: &Ctx, cmd: TlsPolicyCmd) -> anyhow::Result<()> {
    let db = ctx.db().await?;
    match cmd {
        TlsPolicyCmd::Add {
            domain,
            policy,
            params,
        } => {
            let d = parse_policy_domain(&domain)?;
            let policy: Policy = policy.parse().map_err(|e: String| anyhow::anyhow!("{e}"))?;
            let params = check_params(policy, params.as_deref())?;
            let p = TlsPolicy {
                domain: d.clone(),
                policy,
                params,
            };
            db.tlspolicy_add(&p).await.map_err(|e| ctx.explain(e))?;
            output::done(ctx.json, &format!("added TLS policy {d}: {policy}"))
        }
        TlsPolicyCmd::List => {
            let list = db.tlspolicy_list().await.map_err(|e| ctx.explain(e))?;
            if ctx.json {
                return output::json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|p| {
                    vec![
                        p.domain.clone(),
                        p.policy.to_string(),
                        p.params.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            output::table(&["DOMAIN", "POLICY", "PARAMS"], &rows);
            Ok(())
        }
        TlsPolicyCmd::Del { domain } => {
            let d = parse_policy_domain(&domain)?;
            if !db.tlspolicy_del(&d).await.map_err(|e| ctx.explain(e))? {
                bail!("there is no TLS policy for {d} — see `postwerk tlspolicy list`");
            }
            output::done(ctx.json, &format!("deleted TLS policy {d}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_checked() {
        assert_eq!(
            check_params(Policy::Secure, Some("match=.gmx.net"))
                .unwrap()
                .as_deref(),
            Some("match=.gmx.net")
        );
        assert!(check_params(Policy::Fingerprint, None).is_err());
        assert!(check_params(Policy::Secure, Some("match")).is_err());
        assert!(check_params(Policy::Secure, Some("bogus=1")).is_err());
        assert_eq!(check_params(Policy::DaneOnly, None).unwrap(), None);
        assert_eq!(parse_policy_domain(".Example.ORG").unwrap(), ".example.org");
    }
}

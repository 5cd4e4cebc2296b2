//! `postwerk account`: the `accounts` table.

use super::{Ctx, parse_address, parse_domain, read_new_password};
use crate::output;
use anyhow::bail;
use clap::Subcommand;
use postwerk_core::config::{Secret, units};
use postwerk_core::db::Account;
use postwerk_core::password::{self, Scheme};

/// `postwerk account …`
#[derive(Subcommand, Debug)]
pub enum AccountCmd {
    /// Add an account (its domain must exist)
    Add {
        /// The address, e.g. user1@example.org (stored lowercase)
        address: String,
        /// Mailbox quota: 512M, 2G, 1T, or 0 for unlimited (a bare number is MB)
        #[arg(long, default_value = "0")]
        quota: String,
        /// May log in and send, but has no mailbox
        #[arg(long)]
        sendonly: bool,
        /// Create it disabled
        #[arg(long)]
        disabled: bool,
        /// Password scheme [default: [mail].default_pass_scheme, SHA512-CRYPT]
        #[arg(long, short = 's')]
        scheme: Option<String>,
        /// Read the password from stdin (one line) instead of prompting
        #[arg(long)]
        password_stdin: bool,
    },
    /// List accounts, all or of one domain
    List {
        /// Only this domain
        domain: Option<String>,
    },
    /// Delete an account (mail on disk is left in place)
    Del {
        /// The address
        address: String,
    },
    /// Set a new password
    Passwd {
        /// The address
        address: String,
        /// Password scheme [default: [mail].default_pass_scheme]
        #[arg(long, short = 's')]
        scheme: Option<String>,
        /// Read the password from stdin (one line) instead of prompting
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set the mailbox quota (512M, 2G, 0 = unlimited)
    Quota {
        /// The address
        address: String,
        /// The quota
        quota: String,
    },
    /// Enable an account
    Enable {
        /// The address
        address: String,
    },
    /// Disable an account (it can no longer log in or receive mail)
    Disable {
        /// The address
        address: String,
    },
}

#[derive(serde::Serialize)]
struct AccountView<'a> {
    address: String,
    quota: String,
    #[serde(flatten)]
    account: &'a Account,
}

fn scheme_or_default(ctx: &Ctx, scheme: Option<&str>) -> anyhow::Result<Scheme> {
    match scheme {
        Some(s) => s.parse::<Scheme>().map_err(|e| anyhow::anyhow!("{e}")),
        None => Ok(ctx.cfg.mail.default_pass_scheme),
    }
}

fn hash(password: &[u8], scheme: Scheme) -> anyhow::Result<Secret> {
    password::hash(password, scheme)
        .map(Secret::new)
        .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))
}

/// Runs an `account` subcommand.
pub async fn run(ctx: &Ctx, cmd: AccountCmd) -> anyhow::Result<()> {
    let db = ctx.db().await?;
    let not_found =
        |a: &str| anyhow::anyhow!("account {a} does not exist — see `postwerk account list`");
    match cmd {
        AccountCmd::Add {
            address,
            quota,
            sendonly,
            disabled,
            scheme,
            password_stdin,
        } => {
            let addr = parse_address(&address)?;
            if !postwerk_core::address::usable_user_name(&addr, &ctx.cfg.mail.username_chars) {
                bail!(
                    "{addr} has characters Dovecot does not accept in a user name (auth_username_chars: {}): \
                     it could neither log in nor read its mail. Choose another name, or allow the characters \
                     in dovecot.conf's auth_username_chars and in [mail].username_chars",
                    ctx.cfg.mail.username_chars
                );
            }
            let quota_mb =
                units::parse_quota_mb(&quota).map_err(|e| anyhow::anyhow!("--quota: {e}"))?;
            let scheme = scheme_or_default(ctx, scheme.as_deref())?;
            ctx.require_domain(addr.domain()).await?;
            if db
                .account_get(addr.local(), addr.domain())
                .await
                .map_err(|e| ctx.explain(e))?
                .is_some()
            {
                bail!(
                    "account {addr} already exists — change it with `postwerk account passwd|quota|enable|disable`"
                );
            }
            let pw = read_new_password(password_stdin)?;
            let account = Account {
                username: addr.local().to_owned(),
                domain: addr.domain().to_owned(),
                password: hash(&pw, scheme)?,
                quota_mb: i64::from(quota_mb),
                enabled: !disabled,
                sendonly,
            };
            db.account_add(&account).await.map_err(|e| ctx.explain(e))?;
            let mut note = format!("quota {}", units::format_quota_mb(u64::from(quota_mb)));
            if sendonly {
                note.push_str(", send-only");
            }
            if disabled {
                note.push_str(", disabled");
            }
            output::done(ctx.json, &format!("added account {addr} ({note})"))
        }
        AccountCmd::List { domain } => {
            let domain = domain.as_deref().map(parse_domain).transpose()?;
            let list = db
                .account_list(domain.as_deref())
                .await
                .map_err(|e| ctx.explain(e))?;
            if ctx.json {
                let views: Vec<_> = list
                    .iter()
                    .map(|a| AccountView {
                        address: a.address(),
                        quota: units::format_quota_mb(a.quota_mb.max(0).unsigned_abs()),
                        account: a,
                    })
                    .collect();
                return output::json(&views);
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|a| {
                    vec![
                        a.address(),
                        units::format_quota_mb(a.quota_mb.max(0).unsigned_abs()),
                        output::yes_no(a.enabled),
                        output::yes_no(a.sendonly),
                    ]
                })
                .collect();
            output::table(&["ACCOUNT", "QUOTA", "ENABLED", "SENDONLY"], &rows);
            Ok(())
        }
        AccountCmd::Del { address } => {
            let addr = parse_address(&address)?;
            if !db
                .account_del(addr.local(), addr.domain())
                .await
                .map_err(|e| ctx.explain(e))?
            {
                return Err(not_found(&addr.to_string()));
            }
            output::done(
                ctx.json,
                &format!("deleted account {addr}; its mail on disk is left in place"),
            )
        }
        AccountCmd::Passwd {
            address,
            scheme,
            password_stdin,
        } => {
            let addr = parse_address(&address)?;
            let scheme = scheme_or_default(ctx, scheme.as_deref())?;
            if db
                .account_get(addr.local(), addr.domain())
                .await
                .map_err(|e| ctx.explain(e))?
                .is_none()
            {
                return Err(not_found(&addr.to_string()));
            }
            let pw = read_new_password(password_stdin)?;
            let h = hash(&pw, scheme)?;
            if !db
                .account_set_password(addr.local(), addr.domain(), &h)
                .await
                .map_err(|e| ctx.explain(e))?
            {
                return Err(not_found(&addr.to_string()));
            }
            output::done(
                ctx.json,
                &format!("changed the password of {addr} ({scheme})"),
            )
        }
        AccountCmd::Quota { address, quota } => {
            let addr = parse_address(&address)?;
            let mb = units::parse_quota_mb(&quota).map_err(|e| anyhow::anyhow!("quota: {e}"))?;
            if !db
                .account_set_quota(addr.local(), addr.domain(), i64::from(mb))
                .await
                .map_err(|e| ctx.explain(e))?
            {
                return Err(not_found(&addr.to_string()));
            }
            output::done(
                ctx.json,
                &format!(
                    "quota of {addr} is now {}",
                    units::format_quota_mb(u64::from(mb))
                ),
            )
        }
        AccountCmd::Enable { address } => set_enabled(ctx, &address, true).await,
        AccountCmd::Disable { address } => set_enabled(ctx, &address, false).await,
    }
}

async fn set_enabled(ctx: &Ctx, address: &str, enabled: bool) -> anyhow::Result<()> {
    let addr = parse_address(address)?;
    let db = ctx.db().await?;
    if !db
        .account_set_enabled(addr.local(), addr.domain(), enabled)
        .await
        .map_err(|e| ctx.explain(e))?
    {
        bail!("account {addr} does not exist — see `postwerk account list`");
    }
    output::done(
        ctx.json,
        &format!(
            "{} account {addr}",
            if enabled { "enabled" } else { "disabled" }
        ),
    )
}

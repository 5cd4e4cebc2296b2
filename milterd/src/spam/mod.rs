//! LOGIC: spam scoring, the part of milterd that replaces Rspamd's
//! scanner. One [`Scanner`] per config runs, for one message: the local
//! rules ([`rules`]), the multimap lists ([`multimap`]), the DNS lists
//! ([`dnsbl`]), Bayes ([`bayes`]), then sums the weighted symbols into a
//! score, picks the action from `[milterd.spam.actions]` (Rspamd's
//! defaults: reject 15, add header 6, greylist 4), greylists
//! ([`greylist`]) and autolearns. The result ([`Scan`]) is turned into
//! milter replies and headers by `filter`/`reply`/[`headers`] and into
//! JSON by the controller. Nothing here knows milter or HTTP.
//!
//! Failure behaviour: Redis or DNS failures never fail a scan. Bayes is
//! skipped with `BAYES_FAIL`, greylisting falls back to this process, a DNS
//! list that does not answer within `dnsbl_timeout` adds `DNSBL_FAIL`; all
//! of the network work of one message shares the `timeout` budget.

pub mod bayes;
pub mod content;
pub mod dnsbl;
pub mod greylist;
pub mod headers;
pub mod multimap;
pub mod redis;
pub mod rules;
pub mod stats;
pub mod symbols;

use bayes::{Class, Learned, Store};
use postwerk_core::config::milterd::spam::{MultimapAction, SpamConfig};
use rules::{AuthResults, Hit};
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use symbols::name;
use tracing::{debug, warn};

/// What a scan decided (Rspamd's action names on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `no action`: deliver.
    NoAction,
    /// `greylist`: the score reached the greylist threshold, and the
    /// triplet passed greylisting (or greylisting was not asked): deliver.
    Greylist,
    /// `add header`: deliver with `X-Spam: Yes` (filed into Spam).
    AddHeader,
    /// `soft reject`: tempfail (greylisted, come back later).
    SoftReject,
    /// `reject`: refuse with 5xx.
    Reject,
}

impl Action {
    /// Rspamd's name (`/checkv2` JSON, `X-Rspamd-Action`).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::NoAction => "no action",
            Action::Greylist => "greylist",
            Action::AddHeader => "add header",
            Action::SoftReject => "soft reject",
            Action::Reject => "reject",
        }
    }

    /// Whether the message counts as spam (`X-Spam-Status: Yes`).
    pub fn is_spam(self) -> bool {
        match self {
            Action::NoAction | Action::Greylist => false,
            Action::AddHeader | Action::SoftReject | Action::Reject => true,
        }
    }

    /// All actions, in `/stat` order.
    pub const ALL: [Action; 5] = [
        Action::Reject,
        Action::SoftReject,
        Action::AddHeader,
        Action::Greylist,
        Action::NoAction,
    ];
}

/// One symbol in a result.
#[derive(Debug, Clone, PartialEq)]
pub struct Symbol {
    /// The name.
    pub name: String,
    /// What it added to this message's score.
    pub score: f64,
    /// Its configured weight (Rspamd's `metric_score`).
    pub weight: f64,
    /// Its description.
    pub description: Option<String>,
    /// Details.
    pub options: Vec<String>,
}

/// The result of scanning one message.
#[derive(Debug, Clone)]
pub struct Scan {
    /// The sum of the symbol scores.
    pub score: f64,
    /// The reject threshold (Rspamd's `required_score`; 0 when off).
    pub required_score: f64,
    /// The action.
    pub action: Action,
    /// The symbols that fired, highest score first.
    pub symbols: Vec<Symbol>,
    /// Why a reject or soft reject happened, for the SMTP reply.
    pub message: Option<String>,
    /// The Message-ID, without brackets.
    pub message_id: Option<String>,
    /// Link hosts.
    pub urls: Vec<String>,
    /// What autolearn did.
    pub autolearned: Option<Class>,
    /// How long the scan took.
    pub elapsed: Duration,
}

impl Scan {
    /// Whether `name` fired.
    pub fn has(&self, name: &str) -> bool {
        self.symbols.iter().any(|s| s.name == name)
    }
}

/// What the SMTP session (or the HTTP request) told about the message.
#[derive(Debug, Clone, Default)]
pub struct Envelope<'a> {
    /// The client address.
    pub client_ip: Option<IpAddr>,
    /// The HELO name.
    pub helo: &'a str,
    /// The envelope sender (empty for `<>`).
    pub mail_from: &'a str,
    /// The envelope recipients.
    pub rcpts: &'a [String],
    /// The Postfix queue id (for the log and history).
    pub queue_id: &'a str,
    /// The user whose Bayes statistics count with `per_user` (rspamc's
    /// `Deliver-To:`); without it the first recipient.
    pub deliver_to: Option<&'a str>,
}

/// Why a scanner could not be built (a config the daemon must refuse).
#[derive(Debug, thiserror::Error)]
pub enum SpamError {
    /// `[milterd.spam.symbols]` names a symbol no rule inserts.
    #[error(transparent)]
    UnknownSymbol(#[from] symbols::UnknownSymbol),
    /// A DNS list resolver could not be set up.
    #[error("cannot set up the DNS list resolver: {0}")]
    Resolver(String),
}

/// What outlives a config reload: the in-process stores and the counters.
#[derive(Debug, Default)]
pub struct Local {
    /// Bayes without Redis.
    pub bayes: Arc<bayes::Memory>,
    /// Greylisting without Redis, and the fallback.
    pub greylist: Arc<greylist::Memory>,
    /// Counters and history.
    pub stats: stats::Stats,
}

/// The process-wide [`Local`].
pub fn local() -> &'static Local {
    static LOCAL: OnceLock<Local> = OnceLock::new();
    LOCAL.get_or_init(Local::default)
}

/// Scans messages with one config.
#[derive(Debug)]
pub struct Scanner {
    cfg: SpamConfig,
    table: symbols::Table,
    bayes: Store,
    greylist: greylist::Greylist,
    maps: multimap::Maps,
    dnsbl: dnsbl::Lists,
}

impl Scanner {
    /// A scanner for `cfg`; DNS lists ask `dns` (`[milterd].dns_servers`,
    /// empty: /etc/resolv.conf). Connects to nothing yet.
    pub fn new(cfg: &SpamConfig, dns: &[std::net::SocketAddr]) -> Result<Scanner, SpamError> {
        let rules = cfg
            .multimap
            .iter()
            .map(|m| (m.name.as_str(), m.score, m.description.as_str()))
            .chain(
                cfg.dnsbl
                    .iter()
                    .map(|d| (d.name.as_str(), d.score, d.description.as_str())),
            );
        let table = symbols::Table::new(rules, &cfg.symbols)?;
        let redis = cfg
            .redis_url
            .as_deref()
            .map(|u| Arc::new(redis::Redis::new(u)));
        let bayes = match &redis {
            Some(r) => Store::Redis(r.clone(), cfg.redis_prefix.clone()),
            None => {
                if let Some(f) = &cfg.bayes.file {
                    local().bayes.attach(f);
                }
                Store::Memory(local().bayes.clone())
            }
        };
        let greylist = greylist::Greylist {
            cfg: cfg.greylist,
            redis: redis.map(|r| (r, cfg.redis_prefix.clone())),
            memory: local().greylist.clone(),
        };
        Ok(Scanner {
            table,
            bayes,
            greylist,
            maps: multimap::Maps::new(&cfg.multimap),
            dnsbl: dnsbl::Lists::new(cfg, dns).map_err(SpamError::Resolver)?,
            cfg: cfg.clone(),
        })
    }

    /// `[milterd.spam]`.
    pub fn cfg(&self) -> &SpamConfig {
        &self.cfg
    }

    /// The symbol table.
    pub fn table(&self) -> &symbols::Table {
        &self.table
    }

    /// Where Bayes counts live (`redis` or `memory`).
    pub fn store_kind(&self) -> &'static str {
        match self.bayes {
            Store::Redis(..) => "redis",
            Store::Memory(_) => "memory",
        }
    }

    /// The Bayes store for a message to `user` (global unless
    /// `per_user`).
    fn store(&self, user: Option<&str>) -> Store {
        match user.and_then(bayes::user_key) {
            Some(u) if self.cfg.bayes.per_user => self.bayes.for_user(&u),
            _ => self.bayes.clone(),
        }
    }

    fn symbol(&self, hit: Hit) -> Symbol {
        self.named(hit.name, hit.factor, hit.options)
    }

    fn named(&self, name: &str, factor: f64, options: Vec<String>) -> Symbol {
        let weight = self.table.weight(name);
        Symbol {
            name: name.to_owned(),
            score: weight * factor,
            weight,
            description: self.table.description(name).map(str::to_owned),
            options,
        }
    }

    fn action_for(&self, score: f64) -> Action {
        let a = &self.cfg.actions;
        if a.reject.is_some_and(|t| score >= t) {
            Action::Reject
        } else if a.add_header.is_some_and(|t| score >= t) {
            Action::AddHeader
        } else if a.greylist.is_some_and(|t| score >= t) {
            Action::Greylist
        } else {
            Action::NoAction
        }
    }

    /// Scans `raw` (the whole message). `auth`: the verification results,
    /// when the message was verified. `may_act`: greylisting and
    /// autolearning happen (false in shadow mode and for `/checkv2`
    /// requests that only ask).
    pub async fn scan(
        &self,
        raw: &[u8],
        env: &Envelope<'_>,
        auth: Option<&AuthResults>,
        may_act: bool,
    ) -> Scan {
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + self.cfg.timeout;
        let c = content::parse(raw);
        let mut hits = Vec::new();
        let mut forced: Option<(Action, String)> = None;
        if rules::gtube(&c, raw) {
            hits.push(Hit {
                name: name::GTUBE,
                factor: 1.0,
                options: Vec::new(),
            });
            forced = Some((Action::Reject, "GTUBE test string".to_owned()));
        }
        rules::headers(&c, &mut hits);
        rules::subject(&c, &mut hits);
        rules::mua(&c, &mut hits);
        rules::body(&c, &mut hits);
        if let Some(a) = auth {
            rules::auth(a, &mut hits);
        }
        let mut symbols: Vec<Symbol> = hits.into_iter().map(|h| self.symbol(h)).collect();

        // Multimap: the admin's allow and block lists.
        for m in self.maps.matches(env, &c) {
            symbols.push(self.named(&m.name, 1.0, vec![m.matched.clone()]));
            let f = match m.action {
                MultimapAction::Score => None,
                MultimapAction::Accept => Some(Action::NoAction),
                MultimapAction::Reject => Some(Action::Reject),
                MultimapAction::AddHeader => Some(Action::AddHeader),
            };
            // An allow list wins over block lists, as a prefilter would.
            if let Some(f) = f
                && (forced.is_none() || f == Action::NoAction)
            {
                forced = Some((f, format!("listed in {}", m.name)));
            }
        }

        // DNS lists, within the budget.
        for r in self
            .dnsbl
            .check(env.client_ip, &c.url_hosts, deadline)
            .await
        {
            match r {
                dnsbl::Found::Listed { name, option } => {
                    symbols.push(self.named(&name, 1.0, vec![option]));
                }
                dnsbl::Found::Failed(option) => {
                    symbols.push(self.named(name::DNSBL_FAIL, 1.0, vec![option]));
                }
            }
        }

        // Bayes.
        let store = self.store(env.deliver_to.or(env.rcpts.first().map(String::as_str)));
        let tokens = if self.cfg.bayes.enabled {
            bayes::tokens(&c)
        } else {
            Vec::new()
        };
        if self.cfg.bayes.enabled && !tokens.is_empty() {
            match tokio::time::timeout_at(deadline, store.counts(&tokens)).await {
                Ok(Ok((ns, nh, counts))) => {
                    let min = self.cfg.bayes.min_learns;
                    if ns >= min
                        && nh >= min
                        && let Some(p) = bayes::probability(&counts, ns, nh)
                    {
                        if p >= bayes::DECISION {
                            let f = (p - 0.5) * 2.0;
                            symbols.push(self.named(
                                name::BAYES_SPAM,
                                f,
                                vec![format!("{:.2}%", p * 100.0)],
                            ));
                        } else if p <= 1.0 - bayes::DECISION {
                            let f = (0.5 - p) * 2.0;
                            symbols.push(self.named(
                                name::BAYES_HAM,
                                f,
                                vec![format!("{:.2}%", (1.0 - p) * 100.0)],
                            ));
                        }
                    }
                }
                Ok(Err(e)) => {
                    warn!(error = %e, "bayes store failed; bayes skipped");
                    symbols.push(self.named(name::BAYES_FAIL, 1.0, vec![store_failure(&e)]));
                }
                Err(_) => {
                    warn!("bayes store did not answer within the scan budget; bayes skipped");
                    symbols.push(self.named(name::BAYES_FAIL, 1.0, vec!["timeout".to_owned()]));
                }
            }
        }

        let score: f64 = symbols.iter().map(|s| s.score).sum();
        let score = (score * 100.0).round() / 100.0;
        let mut action = self.action_for(score);
        let mut message = None;
        if let Some((f, why)) = forced {
            action = f;
            if f == Action::Reject {
                message = Some(format!("Spam message rejected: {why}"));
            }
        } else if action == Action::Reject {
            message = Some(format!(
                "Spam message rejected: score {score:.2} / {:.2} ({})",
                self.cfg.actions.reject.unwrap_or(0.0),
                top_names(&symbols, 3)
            ));
        }

        // Greylisting needs a client address for its triplet (mail from
        // a local sendmail, or an HTTP scan without `Ip:`, is not
        // greylisted).
        if action == Action::Greylist && may_act && env.client_ip.is_some() {
            let key = greylist::triplet(env.client_ip, env.mail_from, env.rcpts);
            let (outcome, err) = self.greylist.check(&key).await;
            let mut options = Vec::new();
            match outcome {
                greylist::Outcome::New => {
                    options.push("greylisted".to_owned());
                    options.push("new record".to_owned());
                }
                greylist::Outcome::TooEarly(left) => {
                    options.push("greylisted".to_owned());
                    options.push(format!("too early, {}s left", left.as_secs()));
                }
                greylist::Outcome::Passed => options.push("pass".to_owned()),
            }
            if let Some(e) = &err {
                warn!(error = %e, "greylist state in Redis failed; used this process's state");
                options.push("redis failed; local state".to_owned());
            }
            if outcome != greylist::Outcome::Passed {
                action = Action::SoftReject;
                message = Some("Try again later".to_owned());
            }
            symbols.push(self.named(name::GREYLIST, 1.0, options));
        }

        // Autolearn (the guide's override.d: autolearn = true). Bayes'
        // own opinion does not count, or it would teach itself.
        let mut autolearned = None;
        if self.cfg.bayes.enabled && self.cfg.bayes.autolearn && may_act && !tokens.is_empty() {
            let own: f64 = symbols
                .iter()
                .filter(|s| s.name == name::BAYES_SPAM || s.name == name::BAYES_HAM)
                .map(|s| s.score)
                .sum();
            let base = score - own;
            let is_gtube = symbols.iter().any(|s| s.name == name::GTUBE);
            let class = if !is_gtube && base >= self.cfg.bayes.autolearn_spam_score {
                Some(Class::Spam)
            } else if base <= self.cfg.bayes.autolearn_ham_score {
                Some(Class::Ham)
            } else {
                None
            };
            if let Some(class) = class {
                let digest = bayes::digest(&tokens);
                match tokio::time::timeout_at(deadline, store.learn(&tokens, &digest, class)).await
                {
                    Ok(Ok(Learned::Learned | Learned::Relearned)) => {
                        local().stats.learned();
                        autolearned = Some(class);
                    }
                    Ok(Ok(Learned::Already | Learned::Empty)) => {}
                    Ok(Err(e)) => warn!(error = %e, "autolearn failed"),
                    Err(_) => warn!("autolearn did not finish within the scan budget"),
                }
            }
        }

        symbols.sort_by(|a, b| {
            b.score
                .abs()
                .partial_cmp(&a.score.abs())
                .unwrap_or(std::cmp::Ordering::Equal)
                .then_with(|| a.name.cmp(&b.name))
        });
        let scan = Scan {
            score,
            required_score: self.cfg.actions.reject.unwrap_or(0.0),
            action,
            symbols,
            message,
            message_id: c.message_id.clone(),
            urls: c.url_hosts.clone(),
            autolearned,
            elapsed: started.elapsed(),
        };
        debug!(score = scan.score, action = scan.action.as_str(), "scanned");
        local().stats.scanned(&scan, env, c.subject.as_deref());
        scan
    }

    /// Learns `raw` as `class` (rspamc `learn_spam` / `learn_ham`), for
    /// `user` with `per_user`.
    pub async fn learn(
        &self,
        raw: &[u8],
        class: Class,
        user: Option<&str>,
    ) -> Result<(Learned, Option<String>), bayes::BayesError> {
        let c = content::parse(raw);
        let tokens = bayes::tokens(&c);
        let digest = bayes::digest(&tokens);
        let r = self.store(user).learn(&tokens, &digest, class).await?;
        if matches!(r, Learned::Learned | Learned::Relearned) {
            local().stats.learned();
        }
        Ok((r, c.message_id))
    }

    /// Learn counts of the Bayes store.
    pub async fn bayes_stat(&self) -> Result<bayes::Stat, bayes::BayesError> {
        self.bayes.stat().await
    }
}

/// The option of `BAYES_FAIL`: what failed, without hosts or addresses.
fn store_failure(e: &bayes::BayesError) -> String {
    match e {
        bayes::BayesError::Redis(redis::RedisError::Unreachable(_)) => "redis unreachable".into(),
        bayes::BayesError::Redis(redis::RedisError::Timeout) => "redis timeout".into(),
        bayes::BayesError::Redis(redis::RedisError::Command(_)) => "redis error".into(),
        bayes::BayesError::Protocol(_) => "redis protocol".into(),
    }
}

/// The names of the `n` symbols with the highest positive score.
pub fn top_names(symbols: &[Symbol], n: usize) -> String {
    let mut pos: Vec<&Symbol> = symbols.iter().filter(|s| s.score > 0.0).collect();
    pos.sort_by(|a, b| {
        b.score
            .partial_cmp(&a.score)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    pos.iter()
        .take(n)
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

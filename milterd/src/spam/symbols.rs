//! LOGIC: the symbol table — every symbol milterd's own rules can insert,
//! with its default weight and description (names and weights follow
//! Rspamd 3.4 where Rspamd has the same check, so a migrating admin reads
//! familiar names), plus the weights of configured multimap and DNS list
//! rules and the admin's `[milterd.spam.symbols]` overrides. No I/O.

use std::collections::HashMap;

/// A symbol definition.
#[derive(Debug, Clone, Copy)]
pub struct Def {
    /// The name, as in Rspamd where Rspamd has it.
    pub name: &'static str,
    /// The default weight (Rspamd's `metric_score`).
    pub weight: f64,
    /// What it means.
    pub description: &'static str,
}

macro_rules! defs {
    ($($name:ident = $w:expr, $d:expr;)*) => {
        /// Names of the built-in symbols, as constants.
        pub mod name {
            $(#[doc = $d] pub const $name: &str = stringify!($name);)*
        }
        /// The built-in symbols.
        pub const BUILTIN: &[Def] = &[$(Def { name: stringify!($name), weight: $w, description: $d },)*];
    };
}

defs! {
    GTUBE = 0.0, "GTUBE test string found (forces reject)";
    MISSING_DATE = 1.0, "Date header is missing";
    MISSING_MID = 2.5, "Message-ID header is missing";
    MISSING_FROM = 2.0, "From header is missing";
    MISSING_SUBJECT = 2.0, "Subject header is missing";
    TO_MANY_RCPTS = 2.0, "Many recipients in To and Cc";
    SPOOF_DISPLAY_NAME = 8.0, "From display name contains another domain's address";
    FROM_NAME_HAS_ADDR = 1.0, "From display name contains an address";
    SUBJ_ALL_CAPS = 3.0, "All capital letters in subject";
    SUBJ_EXCESS_BASE64 = 1.5, "Subject is unnecessarily encoded in base64";
    SUBJ_EXCESS_QP = 1.2, "Subject is unnecessarily encoded in quoted-printable";
    SUBJ_MIXED_CHARSETS = 2.0, "Subject is encoded in several charsets";
    FORGED_MUA_OUTLOOK = 3.0, "Forged Outlook MUA";
    FORGED_MUA_THUNDERBIRD = 3.0, "Forged Thunderbird MUA";
    MIME_HTML_ONLY = 0.2, "Message has only an HTML part";
    R_EMPTY_IMAGE = 2.0, "Message contains images and almost no text";
    URL_SHORTENER = 1.5, "Message links to a URL shortener";
    MIME_GOOD = -0.1, "Known content-type";
    R_SPF_ALLOW = -0.2, "SPF verification allows sending";
    R_SPF_FAIL = 1.0, "SPF verification failed";
    R_SPF_SOFTFAIL = 0.0, "SPF verification soft-failed";
    R_SPF_NEUTRAL = 0.0, "SPF policy is neutral";
    R_SPF_DNSFAIL = 0.0, "SPF DNS failure";
    R_SPF_PERMFAIL = 0.0, "SPF record is malformed or persistent DNS error";
    R_SPF_NA = 0.0, "Missing SPF record";
    R_DKIM_ALLOW = -0.2, "DKIM verification succeed";
    R_DKIM_REJECT = 1.0, "DKIM verification failed";
    R_DKIM_TEMPFAIL = 0.0, "DKIM verification soft-failed";
    R_DKIM_PERMFAIL = 0.0, "DKIM verification hard-failed (invalid)";
    R_DKIM_NA = 0.0, "Missing DKIM signature";
    DMARC_POLICY_ALLOW = -0.5, "DMARC permit policy";
    DMARC_POLICY_REJECT = 2.0, "DMARC reject policy";
    DMARC_POLICY_QUARANTINE = 1.5, "DMARC quarantine policy";
    DMARC_POLICY_SOFTFAIL = 0.1, "DMARC failed";
    DMARC_NA = 0.0, "No DMARC record";
    DMARC_DNSFAIL = 0.0, "DMARC DNS failure";
    BAYES_SPAM = 5.1, "Message probably spam, probability of spam";
    BAYES_HAM = -3.0, "Message probably ham, probability of ham";
    BAYES_FAIL = 0.0, "Bayes classifier skipped: its store failed";
    GREYLIST = 0.0, "Greylisting result";
    DNSBL_FAIL = 0.0, "A DNS list could not be asked";
}

/// The weights and descriptions in force: built-ins, configured rules,
/// overrides.
#[derive(Debug, Clone, Default)]
pub struct Table {
    defs: HashMap<String, (f64, String)>,
}

/// A `[milterd.spam.symbols]` name that no rule inserts.
#[derive(Debug, thiserror::Error)]
#[error("[milterd.spam.symbols]: no rule inserts the symbol {0}")]
pub struct UnknownSymbol(pub String);

impl Table {
    /// Built-ins plus `rules` (name, weight, description) of the config,
    /// then `overrides`.
    pub fn new<'a>(
        rules: impl IntoIterator<Item = (&'a str, f64, &'a str)>,
        overrides: &std::collections::BTreeMap<String, f64>,
    ) -> Result<Table, UnknownSymbol> {
        let mut defs: HashMap<String, (f64, String)> = BUILTIN
            .iter()
            .map(|d| (d.name.to_owned(), (d.weight, d.description.to_owned())))
            .collect();
        for (name, weight, description) in rules {
            defs.insert(name.to_owned(), (weight, description.to_owned()));
        }
        for (name, weight) in overrides {
            match defs.get_mut(name) {
                Some(d) => d.0 = *weight,
                None => return Err(UnknownSymbol(name.clone())),
            }
        }
        Ok(Table { defs })
    }

    /// The weight of `name` (0 for a name not in the table).
    pub fn weight(&self, name: &str) -> f64 {
        self.defs.get(name).map_or(0.0, |d| d.0)
    }

    /// The description of `name`.
    pub fn description(&self, name: &str) -> Option<&str> {
        self.defs.get(name).map(|d| d.1.as_str())
    }

    /// All symbols, sorted by name: (name, weight, description).
    pub fn all(&self) -> Vec<(&str, f64, &str)> {
        let mut v: Vec<_> = self
            .defs
            .iter()
            .map(|(n, (w, d))| (n.as_str(), *w, d.as_str()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_apply_and_unknown_names_are_refused() {
        let mut o = std::collections::BTreeMap::new();
        o.insert("MISSING_MID".to_owned(), 4.0);
        o.insert("LOCAL_BL".to_owned(), 7.0);
        let t = Table::new([("LOCAL_BL", 5.0, "local")], &o).unwrap();
        assert_eq!(t.weight(name::MISSING_MID), 4.0);
        assert_eq!(t.weight("LOCAL_BL"), 7.0);
        assert_eq!(t.weight(name::BAYES_SPAM), 5.1);
        o.insert("NO_SUCH".to_owned(), 1.0);
        assert!(Table::new([], &o).is_err());
        for d in BUILTIN {
            assert!(postwerk_core::config::milterd::spam::is_symbol_name(d.name));
        }
    }
}

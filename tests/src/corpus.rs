//! A generated mail corpus for Bayes tests: spam and ham that differ the
//! way real mail does — in topic vocabulary and phrasing — not in one
//! marker token. Both classes share the common words of English and
//! German, share a set of ambiguous words ("offer", "free", "account",
//! "order", "Angebot" …) at different rates, and borrow a few words of the
//! other class's topics as noise. Messages come as 8-bit UTF-8, quoted-
//! printable or base64 text, some spam as HTML only, some ham as
//! multipart/alternative, so the classifier must decode MIME and HTML.
//! Deterministic: the same seed gives the same corpus.

/// A small deterministic PRNG (xorshift64*), so the corpus needs no crate.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded; a zero seed is replaced.
    pub fn new(seed: u64) -> Rng {
        Rng(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    /// One element of `items`.
    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const COMMON: &[&str] = &[
    "the", "and", "you", "your", "for", "with", "this", "that", "have", "will", "are", "our",
    "please", "can", "all", "from", "we", "it", "is", "to", "of", "in", "on", "at", "be", "as",
    "just", "more", "about", "here", "there", "when", "what", "would", "could", "also", "very",
    "some", "new", "one", "two", "time", "week", "day", "now", "get", "let", "know", "thanks",
    "und", "der", "die", "das", "mit", "für", "wir", "sie", "ist", "nicht", "auch", "bitte",
];

const AMBIGUOUS: &[&str] = &[
    "offer",
    "free",
    "account",
    "order",
    "price",
    "today",
    "click",
    "link",
    "money",
    "email",
    "update",
    "information",
    "service",
    "online",
    "best",
    "team",
    "newsletter",
    "unsubscribe",
    "Angebot",
    "Konto",
    "Preis",
    "heute",
    "Rechnung",
    "Information",
];

const SPAM_TOPICS: &[&[&str]] = &[
    &[
        "pharmacy",
        "pills",
        "prescription",
        "viagra",
        "cialis",
        "dosage",
        "discreet",
        "shipping",
        "generic",
        "tablets",
        "overnight",
        "canadian",
    ],
    &[
        "loan",
        "credit",
        "approved",
        "instant",
        "cash",
        "lender",
        "debt",
        "consolidation",
        "interest",
        "guaranteed",
        "bankruptcy",
        "refinance",
    ],
    &[
        "bitcoin",
        "crypto",
        "investment",
        "profit",
        "returns",
        "trading",
        "wallet",
        "millionaire",
        "passive",
        "income",
        "exclusive",
        "opportunity",
    ],
    &[
        "winner",
        "lottery",
        "prize",
        "claim",
        "congratulations",
        "selected",
        "jackpot",
        "beneficiary",
        "transfer",
        "fund",
        "inheritance",
        "barrister",
    ],
    &[
        "singles", "dating", "lonely", "hot", "meet", "tonight", "girls", "profile", "photos",
        "chat", "discreet", "adult",
    ],
    &[
        "replica",
        "watches",
        "rolex",
        "luxury",
        "designer",
        "handbags",
        "discount",
        "wholesale",
        "authentic",
        "cheap",
        "sale",
        "clearance",
    ],
    &[
        "Gewinn",
        "gratis",
        "Millionen",
        "sofort",
        "günstig",
        "Kredit",
        "Rabatt",
        "exklusiv",
        "garantiert",
        "Bonus",
        "Sonderangebot",
        "Abnehmen",
    ],
];

const HAM_TOPICS: &[&[&str]] = &[
    &[
        "meeting",
        "agenda",
        "minutes",
        "project",
        "deadline",
        "schedule",
        "colleagues",
        "presentation",
        "quarterly",
        "review",
        "budget",
        "notes",
    ],
    &[
        "patch",
        "commit",
        "repository",
        "build",
        "tests",
        "merge",
        "branch",
        "compiler",
        "release",
        "bug",
        "refactor",
        "documentation",
    ],
    &[
        "dinner", "weekend", "kids", "birthday", "garden", "grandma", "holiday", "photos",
        "school", "soccer", "recipe", "visit",
    ],
    &[
        "flight",
        "hotel",
        "itinerary",
        "booking",
        "train",
        "luggage",
        "passport",
        "airport",
        "reservation",
        "museum",
        "map",
        "arrival",
    ],
    &[
        "invoice",
        "receipt",
        "subscription",
        "renewal",
        "payment",
        "delivery",
        "tracking",
        "parcel",
        "warranty",
        "contract",
        "insurance",
        "statement",
    ],
    &[
        "club",
        "volunteers",
        "rehearsal",
        "choir",
        "league",
        "training",
        "members",
        "season",
        "concert",
        "library",
        "lecture",
        "seminar",
    ],
    &[
        "Besprechung",
        "Protokoll",
        "Kollegen",
        "Urlaub",
        "Geburtstag",
        "Grüße",
        "Termin",
        "Wochenende",
        "Familie",
        "Ausflug",
        "Vortrag",
        "Bahnhof",
    ],
];

const SPAM_SUBJECTS: &[&str] = &[
    "You have been selected",
    "Limited offer inside",
    "Your account needs attention",
    "Exclusive deal just for you",
    "Claim your reward",
    "Last chance",
    "Gratis für Sie",
    "Urgent reply needed",
    "Make money from home",
    "Special price today",
];

const HAM_SUBJECTS: &[&str] = &[
    "Re: notes from today",
    "Plans for the weekend",
    "Your invoice",
    "Question about the patch",
    "Trip next month",
    "Agenda for Thursday",
    "Re: Termin nächste Woche",
    "Photos",
    "Club newsletter",
    "Re: your order",
];

/// Which class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Unwanted mail.
    Spam,
    /// Wanted mail.
    Ham,
}

fn sentence(rng: &mut Rng, own: &[&str], other: &[&str], ambiguous_rate: f64) -> String {
    let n = 6 + rng.below(9);
    let mut words = Vec::with_capacity(n);
    for _ in 0..n {
        let r = rng.below(100) as f64 / 100.0;
        let w = if r < 0.52 {
            rng.pick(COMMON)
        } else if r < 0.52 + ambiguous_rate {
            rng.pick(AMBIGUOUS)
        } else if r < 0.95 {
            rng.pick(own)
        } else {
            rng.pick(other)
        };
        words.push(w);
    }
    let mut s = words.join(" ");
    if let Some(first) = s.get(..1) {
        let upper = first.to_uppercase();
        s.replace_range(..1, &upper);
    }
    s.push('.');
    s
}

fn quoted_printable(text: &str) -> String {
    let mut out = String::new();
    let mut line = 0;
    for b in text.bytes() {
        let piece = match b {
            b'\n' => {
                out.push('\n');
                line = 0;
                continue;
            }
            b'=' => "=3D".to_owned(),
            33..=126 | b' ' => (b as char).to_string(),
            _ => format!("={b:02X}"),
        };
        if line + piece.len() > 72 {
            out.push_str("=\n");
            line = 0;
        }
        line += piece.len();
        out.push_str(&piece);
    }
    out
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for (i, c) in data.chunks(3).enumerate() {
        if i > 0 && i % 19 == 0 {
            out.push('\n');
        }
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= c.len() {
                out.push(T[((n >> (18 - 6 * k)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Message number `n` of class `kind`, a complete RFC 5322 message with
/// LF line ends.
pub fn message(rng: &mut Rng, kind: Kind, n: usize) -> String {
    let (topics, others, subjects, amb) = match kind {
        Kind::Spam => (SPAM_TOPICS, HAM_TOPICS, SPAM_SUBJECTS, 0.10),
        Kind::Ham => (HAM_TOPICS, SPAM_TOPICS, HAM_SUBJECTS, 0.06),
    };
    let own = topics[rng.below(topics.len())];
    let other = others[rng.below(others.len())];
    let paragraphs = 1 + rng.below(3);
    let mut body = String::new();
    for _ in 0..paragraphs {
        let sentences = 2 + rng.below(3);
        let p: Vec<String> = (0..sentences)
            .map(|_| sentence(rng, own, other, amb))
            .collect();
        body.push_str(&p.join(" "));
        body.push_str("\n\n");
    }
    let (from, tag) = match kind {
        Kind::Spam => (
            format!("offers{}@promo{}.test", rng.below(50), rng.below(20)),
            "s",
        ),
        Kind::Ham => (
            format!("friend{}@people{}.test", rng.below(50), rng.below(20)),
            "h",
        ),
    };
    let subject = rng.pick(subjects);
    let mut m = format!(
        "From: {from}\nTo: user1@example.org\nSubject: {subject}\nDate: Mon, 01 Jun 2026 10:{:02}:00 +0000\nMessage-ID: <{tag}{n}.{}@corpus.test>\nMIME-Version: 1.0\n",
        n % 60,
        rng.next_u64() % 1_000_000
    );
    let html_only = kind == Kind::Spam && rng.chance(0.25);
    let alternative = kind == Kind::Ham && rng.chance(0.2);
    if html_only {
        let html: String = body
            .split("\n\n")
            .filter(|p| !p.is_empty())
            .map(|p| format!("<p><font color=\"red\">{p}</font></p>"))
            .collect();
        m.push_str("Content-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: base64\n\n");
        m.push_str(&base64(
            format!("<html><body>{html}</body></html>").as_bytes(),
        ));
        m.push('\n');
        return m;
    }
    if alternative {
        let html: String = body
            .split("\n\n")
            .filter(|p| !p.is_empty())
            .map(|p| format!("<p>{p}</p>"))
            .collect();
        m.push_str(&format!(
            "Content-Type: multipart/alternative; boundary=\"b{n}\"\n\n--b{n}\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n{}\n--b{n}\nContent-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: base64\n\n{}\n--b{n}--\n",
            quoted_printable(&body),
            base64(html.as_bytes())
        ));
        return m;
    }
    match rng.below(3) {
        0 => {
            m.push_str(
                "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n",
            );
            m.push_str(&body);
        }
        1 => {
            m.push_str("Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n");
            m.push_str(&quoted_printable(&body));
        }
        _ => {
            m.push_str(
                "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\n",
            );
            m.push_str(&base64(body.as_bytes()));
            m.push('\n');
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_and_qp() {
        assert_eq!(base64(b"Man"), "TWFu");
        assert_eq!(base64(b"Ma"), "TWE=");
        assert_eq!(base64(b"M"), "TQ==");
        assert_eq!(quoted_printable("Grüße=1"), "Gr=C3=BC=C3=9Fe=3D1");
    }

    #[test]
    fn deterministic_and_varied() {
        let a = message(&mut Rng::new(7), Kind::Spam, 1);
        let b = message(&mut Rng::new(7), Kind::Spam, 1);
        assert_eq!(a, b);
        let mut rng = Rng::new(7);
        let msgs: Vec<String> = (0..20).map(|i| message(&mut rng, Kind::Ham, i)).collect();
        assert!(msgs.iter().any(|m| m.contains("quoted-printable")));
        assert!(msgs.iter().any(|m| m.contains("base64")));
    }
}

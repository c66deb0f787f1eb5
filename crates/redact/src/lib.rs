//! brainbox-redact: finds secrets and personal data in log lines and alerts and replaces each
//! finding with `[REDACTED:<kind>:<fp>]`, where `<fp>` is a keyed BLAKE3 fingerprint of the
//! secret, so the same secret can be followed across lines and pods without being revealed.
//!
//! How a line is handled, cheapest first:
//! 1. One pass over the bytes (`stats`) collects what gates the personal-data rules (digit
//!    shapes, an `@`) and whether anything must be escaped (controls, ANSI, invalid UTF-8).
//! 2. One Aho-Corasick pass (`keywords`) finds the keywords of all keyword-gated rules at once.
//! 3. Only when something fired are the regexes of the fired rules run, and their candidates
//!    checked (entropy, Luhn, IBAN mod-97, SSN ranges, placeholder values, allowlists).
//! 4. A line that is JSON is redacted through a JSON scanner that keeps it valid JSON and redacts
//!    values under sensitive keys (`password`, `token`, `authorization`, …) at any depth.
//!
//! A clean line costs the two passes and no allocation: [`Redaction::text`] borrows the input.

use regex::bytes::{Regex, RegexBuilder};
use std::{borrow::Cow, collections::HashSet, fmt, path::Path};

pub mod corpus;
pub mod escape;
mod json;
mod keywords;
mod precheck;
pub mod profile;
pub mod rules;
mod stats;
pub mod validate;

#[cfg(test)]
mod tests;

use rules::{Check, Gate, Priority};
use stats::{stats, Stats};

/// Errors building an engine.
#[derive(Debug, thiserror::Error)]
pub enum RedactError {
    /// A rule's regex does not compile.
    #[error("rule {id}: bad regex: {source}")]
    Regex {
        /// The rule.
        id: String,
        /// Why.
        source: regex::Error,
    },
    /// A rules file cannot be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A rules file is not valid YAML for `kind: redact-rules`.
    #[error("{path}: {source}")]
    Yaml {
        /// The file.
        path: String,
        /// Why.
        source: serde_yaml::Error,
    },
    /// Anything else wrong with the configuration.
    #[error("{0}")]
    Invalid(String),
}

/// What a line contained: a set of classes, for routing downstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Class(u8);

impl Class {
    /// Nothing found.
    pub const CLEAN: Class = Class(0);
    /// Credentials: keys, tokens, passwords.
    pub const SECRET: Class = Class(1);
    /// Personal data: emails, phone numbers, SSNs, cards, IBANs.
    pub const PII: Class = Class(2);

    /// Union.
    pub fn union(self, o: Class) -> Class {
        Class(self.0 | o.0)
    }
    /// Does this set contain `o`?
    pub fn contains(self, o: Class) -> bool {
        self.0 & o.0 == o.0 && o.0 != 0
    }
    /// Nothing found?
    pub fn is_clean(self) -> bool {
        self.0 == 0
    }
    /// The routing tag: `clean`, `secret`, `pii` or `secret+pii`.
    pub fn tag(self) -> &'static str {
        match self.0 {
            0 => "clean",
            1 => "secret",
            2 => "pii",
            _ => "secret+pii",
        }
    }
    /// Parse `secret` or `pii`.
    pub fn parse(s: &str) -> Option<Class> {
        match s {
            "secret" => Some(Class::SECRET),
            "pii" => Some(Class::PII),
            _ => None,
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.tag())
    }
}

/// The key of the fingerprints. Keep it secret and share it between the pods whose logs should
/// correlate; without it a fingerprint cannot be tested against a guessed secret.
#[derive(Clone)]
pub struct FingerprintKey([u8; 32]);

impl fmt::Debug for FingerprintKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FingerprintKey(..)")
    }
}

/// Context string for deriving fingerprint keys from operator-supplied material.
const KEY_CONTEXT: &str = "brainbox-guard 2026 redact fingerprint key v1";

impl FingerprintKey {
    /// A key from 32 raw bytes.
    pub fn from_bytes(k: [u8; 32]) -> Self {
        Self(k)
    }
    /// A key derived from arbitrary material (a passphrase, a file's content).
    pub fn derive(material: &[u8]) -> Self {
        Self(blake3::derive_key(KEY_CONTEXT, material))
    }
    /// A fresh random key (fingerprints then correlate only within this process).
    pub fn random() -> std::io::Result<Self> {
        use std::io::Read;
        let mut k = [0u8; 32];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut k)?;
        Ok(Self(k))
    }
    /// The fingerprint of a secret.
    pub fn fingerprint(&self, secret: &[u8]) -> Fingerprint {
        let h = blake3::keyed_hash(&self.0, secret);
        let mut fp = [0u8; FP_BYTES];
        fp.copy_from_slice(&h.as_bytes()[..FP_BYTES]);
        Fingerprint(fp)
    }
    fn hasher(&self) -> blake3::Hasher {
        blake3::Hasher::new_keyed(&self.0)
    }
}

/// Fingerprint bytes: 48 bits, 12 hex digits. Enough to correlate within a fleet's logs; short
/// enough that it does not make a searchable index of the secret space.
const FP_BYTES: usize = 6;

/// A keyed fingerprint of a secret, shown as 12 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; FP_BYTES]);

impl Fingerprint {
    fn from_hash(h: &blake3::Hash) -> Self {
        let mut fp = [0u8; FP_BYTES];
        fp.copy_from_slice(&h.as_bytes()[..FP_BYTES]);
        Fingerprint(fp)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Index of a kind name in [`Engine::kind_name`].
pub type KindId = u16;

/// The result of redacting one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redaction<'a> {
    /// The redacted line (borrowed when nothing changed).
    pub text: Cow<'a, str>,
    /// What was found.
    pub class: Class,
    /// The kind of each finding, in order.
    pub kinds: Vec<KindId>,
}

impl Redaction<'_> {
    /// Did the line change?
    pub fn changed(&self) -> bool {
        matches!(self.text, Cow::Owned(_))
    }
    /// Detach from the input.
    pub fn into_owned(self) -> Redaction<'static> {
        Redaction {
            text: Cow::Owned(self.text.into_owned()),
            class: self.class,
            kinds: self.kinds,
        }
    }
}

/// One compiled rule.
#[derive(Debug)]
struct Rule {
    id: String,
    kind: KindId,
    class: Class,
    /// The pattern, compiled on the rule's first candidate line: most rules never see one in
    /// a given process (their keywords gate them), and 150 compiled regexes cost ~6 MiB, more
    /// than the rest of the egress proxy.
    source: String,
    regex: std::sync::OnceLock<Regex>,
    group: usize,
    check: Check,
    priority: Priority,
    /// What the regex needs in the haystack, tested first (built-in rules with common keywords).
    precheck: Option<precheck::Precheck>,
}

/// Compiles a rule's pattern (the same settings at load, where errors are reported, and at
/// first use).
fn compile(source: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(source)
        .unicode(false)
        .size_limit(4 << 20)
        .dfa_size_limit(4 << 20)
        .build()
}

/// Compiles `source` and checks that capture group `group` exists.
fn check_pattern(id: &str, source: &str, group: usize) -> Result<(), RedactError> {
    let regex = compile(source).map_err(|e| RedactError::Regex {
        id: id.to_owned(),
        source: e,
    })?;
    if group >= regex.captures_len() {
        return Err(RedactError::Invalid(format!(
            "rule {id}: group {group} but the regex has {} groups",
            regex.captures_len() - 1
        )));
    }
    Ok(())
}

impl Rule {
    fn regex(&self) -> &Regex {
        self.regex.get_or_init(|| {
            // Compiled with the same settings when the engine was built; cannot fail now.
            compile(&self.source).unwrap_or_else(|_| Regex::new("$^").expect("empty regex"))
        })
    }
}

/// A candidate span in the haystack.
#[derive(Debug, Clone, Copy)]
struct Finding {
    start: usize,
    end: usize,
    kind: KindId,
    class: Class,
    priority: Priority,
    rule: u16,
}

/// Rules that fired for one haystack: a bitset (rules are capped at [`MAX_RULES`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Fired([u64; MAX_RULES / 64], bool);

/// The most rules an engine can hold.
pub const MAX_RULES: usize = 512;

impl Fired {
    fn set(&mut self, i: u16) {
        self.0[(i / 64) as usize] |= 1 << (i % 64);
    }
    fn is_empty(&self) -> bool {
        !self.1 && self.0.iter().all(|w| *w == 0)
    }
    fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        self.0.iter().enumerate().flat_map(|(wi, w)| {
            let mut w = *w;
            std::iter::from_fn(move || {
                if w == 0 {
                    return None;
                }
                let b = w.trailing_zeros();
                w &= w - 1;
                Some((wi * 64) as u16 + b as u16)
            })
        })
    }
}

/// Kinds and names of sensitive JSON keys / environment variable names.
///
/// Every key of a JSON line is looked up, and almost none is sensitive: each name carries the
/// set of letters and digits it is made of ([`char_set`]), and a key that lacks one of them is
/// passed over without a substring search.
#[derive(Debug)]
struct KeyKinds {
    /// (normalised stem, its characters, kind) – a key containing the stem is sensitive.
    contains: Vec<(String, u64, KindId)>,
    /// (normalised name, kind) – a key equal to the name is sensitive.
    exact: Vec<(String, KindId)>,
}

/// The set of ASCII letters (case folded) and digits in `s`, one bit each.
fn char_set(s: &[u8]) -> u64 {
    s.iter().fold(0, |m, &b| match b.to_ascii_lowercase() {
        c @ b'a'..=b'z' => m | 1 << (c - b'a'),
        c @ b'0'..=b'9' => m | 1 << (26 + c - b'0'),
        _ => m,
    })
}

/// The redaction engine. Build once, share (`&Engine` is `Send + Sync`), use from many threads.
#[derive(Debug)]
pub struct Engine {
    rules: Vec<Rule>,
    kinds: Vec<String>,
    /// The keywords of all rules (and sensitive JSON key names), ASCII case-insensitive.
    kw: Option<keywords::Keywords>,
    /// For each keyword, the rules it opens.
    kw_rules: Vec<Vec<u16>>,
    /// The keywords themselves, lowercase (for benchmarks: the same set for a reference matcher).
    kw_names: Vec<String>,
    digit_rules: [Fired; 4],
    at_rules: Fired,
    always_rules: Fired,
    key: FingerprintKey,
    allow_values: HashSet<Vec<u8>>,
    allow_patterns: Vec<Regex>,
    keys: KeyKinds,
    private_key_kind: KindId,
    /// Unique in the process: names this engine in per-thread memos (see `json`).
    id: u64,
}

/// Builds an [`Engine`]: built-in rules, plus rules files, with a fingerprint key.
#[derive(Debug)]
pub struct EngineBuilder {
    key: Option<FingerprintKey>,
    files: Vec<profile::RulesFile>,
    builtin: bool,
}

impl Default for EngineBuilder {
    fn default() -> Self {
        Self {
            key: None,
            files: Vec::new(),
            builtin: true,
        }
    }
}

impl EngineBuilder {
    /// The fingerprint key (default: a random one).
    pub fn key(mut self, k: FingerprintKey) -> Self {
        self.key = Some(k);
        self
    }
    /// Add a rules file (custom rules, disabled rules, allowlists, sensitive keys).
    pub fn rules_file(mut self, f: profile::RulesFile) -> Self {
        self.files.push(f);
        self
    }
    /// Add every `kind: redact-rules` file in a directory.
    pub fn rules_dir(mut self, dir: &Path) -> Result<Self, RedactError> {
        self.files.extend(profile::load_dir(dir)?);
        Ok(self)
    }
    /// Without the built-in rules (only the files' rules).
    pub fn without_builtin(mut self) -> Self {
        self.builtin = false;
        self
    }

    /// Compile.
    pub fn build(self) -> Result<Engine, RedactError> {
        let key = match self.key {
            Some(k) => k,
            None => FingerprintKey::random().map_err(|e| RedactError::Io {
                path: "/dev/urandom".into(),
                source: e,
            })?,
        };
        let disabled: HashSet<&str> = self
            .files
            .iter()
            .flat_map(|f| f.disable.iter().map(String::as_str))
            .collect();
        let mut kinds: Vec<String> = Vec::new();
        let mut kind_id = |name: &str| -> KindId {
            if let Some(i) = kinds.iter().position(|k| k == name) {
                return i as KindId;
            }
            kinds.push(name.to_string());
            (kinds.len() - 1) as KindId
        };
        struct Pending {
            id: String,
            kind: KindId,
            class: Class,
            gate: Gate,
            keywords: Vec<String>,
            source: String,
            group: usize,
            check: Check,
            priority: Priority,
            precheck: Option<precheck::Precheck>,
            /// A profile's rule: compiled at load so that a bad pattern is an error now (the
            /// built-in ones are compiled by `every_builtin_rule_compiles_with_its_group`).
            custom: bool,
        }
        let mut pending: Vec<Pending> = Vec::new();
        if self.builtin {
            for s in rules::BUILTIN {
                if disabled.contains(s.id) {
                    continue;
                }
                let (source, group) = rules::pattern_source(&s.pattern);
                pending.push(Pending {
                    id: s.id.into(),
                    kind: kind_id(s.kind),
                    class: s.class,
                    gate: s.gate,
                    keywords: s.keywords.iter().map(|k| k.to_string()).collect(),
                    source,
                    group,
                    check: s.check,
                    priority: s.priority,
                    precheck: precheck::for_rule(s.id),
                    custom: false,
                });
            }
        }
        for f in &self.files {
            for r in &f.rules {
                if disabled.contains(r.id.as_str()) {
                    continue;
                }
                let check = r.check()?;
                pending.push(Pending {
                    id: r.id.clone(),
                    kind: kind_id(r.kind.as_deref().unwrap_or(&r.id)),
                    class: r.class_value()?,
                    // No keywords: the rule runs on every line (the profile's author pays for it).
                    gate: Gate::Keywords,
                    keywords: r.keywords.clone(),
                    source: r.regex.clone(),
                    group: r.group,
                    check,
                    priority: rules::P_PREFIX,
                    precheck: None,
                    custom: true,
                });
            }
        }
        if pending.len() > MAX_RULES {
            return Err(RedactError::Invalid(format!(
                "{} rules; at most {MAX_RULES}",
                pending.len()
            )));
        }
        let mut compiled = Vec::with_capacity(pending.len());
        let mut kw_index: Vec<(String, Vec<u16>)> = Vec::new();
        let mut digit_rules = [Fired::default(); 4];
        let mut at_rules = Fired::default();
        let mut always_rules = Fired::default();
        for (i, p) in pending.into_iter().enumerate() {
            let i = i as u16;
            if p.custom {
                // Compiled here to report errors at load, then dropped: see `Rule::regex`.
                check_pattern(&p.id, &p.source, p.group)?;
            }
            match p.gate {
                Gate::Digits(shape) => digit_rules[shape as usize].set(i),
                Gate::At => at_rules.set(i),
                Gate::Keywords if p.keywords.is_empty() => always_rules.set(i),
                Gate::Keywords => {
                    for k in &p.keywords {
                        let k = keyword_prefix(&k.to_ascii_lowercase());
                        match kw_index.iter_mut().find(|(w, _)| *w == k) {
                            Some((_, v)) => v.push(i),
                            None => kw_index.push((k, vec![i])),
                        }
                    }
                }
            }
            compiled.push(Rule {
                id: p.id,
                kind: p.kind,
                class: p.class,
                source: p.source,
                regex: std::sync::OnceLock::new(),
                group: p.group,
                check: p.check,
                priority: p.priority,
                precheck: p.precheck,
            });
        }
        // Names of sensitive JSON keys that no rule's keywords already cover.
        let mut hints: Vec<String> = [
            "dsn",
            "connectionstring",
            "connection_string",
            "auth",
            "pw",
            "otp",
            "pin",
            "cvv",
            "cvc",
            "sid",
            "access_key",
            "accesskey",
            "private_key",
            "privatekey",
            "api-key",
            "apikey",
            "api_key",
            "masterkey",
            "master_key",
            "credential",
            "cookie",
            "passphrase",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for f in &self.files {
            hints.extend(f.json_keys.iter().map(|k| k.to_ascii_lowercase()));
        }
        for h in hints {
            let h = keyword_prefix(&h);
            if !kw_index.iter().any(|(w, _)| *w == h) {
                kw_index.push((h, Vec::new()));
            }
        }
        let kw = (!kw_index.is_empty()).then(|| {
            keywords::Keywords::new(&kw_index.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>())
        });
        let kw_names = kw_index.iter().map(|(k, _)| k.clone()).collect();
        let kw_rules = kw_index.into_iter().map(|(_, v)| v).collect();

        let mut allow_values = HashSet::new();
        let mut allow_patterns = Vec::new();
        let mut extra_keys: Vec<String> = Vec::new();
        for f in &self.files {
            for v in &f.allow.values {
                allow_values.insert(v.as_bytes().to_vec());
            }
            for p in &f.allow.patterns {
                allow_patterns.push(RegexBuilder::new(p).unicode(false).build().map_err(|e| {
                    RedactError::Regex {
                        id: format!("allow pattern {p:?}"),
                        source: e,
                    }
                })?);
            }
            extra_keys.extend(f.json_keys.iter().cloned());
        }
        let private_key_kind = kind_id("private-key");
        let mut contains = Vec::new();
        for (stem, kind) in [
            ("password", "password"),
            ("passwd", "password"),
            ("passphrase", "password"),
            ("passwort", "password"),
            ("secret", "secret"),
            ("token", "token"),
            ("apikey", "api-key"),
            ("accesskey", "api-key"),
            ("privatekey", "private-key"),
            ("signingkey", "secret"),
            ("encryptionkey", "secret"),
            ("masterkey", "secret"),
            ("authorization", "authorization"),
            ("cookie", "cookie"),
            ("credential", "secret"),
            ("sessionid", "session-id"),
            ("dsn", "secret"),
            ("connectionstring", "secret"),
        ] {
            contains.push((stem.to_string(), char_set(stem.as_bytes()), kind_id(kind)));
        }
        for k in &extra_keys {
            let n = normalise_key(k.as_bytes());
            contains.push((n.clone(), char_set(n.as_bytes()), kind_id("secret")));
        }
        let mut exact = Vec::new();
        for (name, kind) in [
            ("auth", "authorization"),
            ("pwd", "password"),
            ("pass", "password"),
            ("pw", "password"),
            ("dbpass", "password"),
            ("otp", "secret"),
            ("pin", "secret"),
            ("cvv", "payment-card"),
            ("cvc", "payment-card"),
            ("ssn", "us-ssn"),
            ("sid", "session-id"),
        ] {
            exact.push((name.to_string(), kind_id(kind)));
        }
        Ok(Engine {
            rules: compiled,
            kinds,
            kw,
            kw_rules,
            kw_names,
            digit_rules,
            at_rules,
            always_rules,
            key,
            allow_values,
            allow_patterns,
            keys: KeyKinds { contains, exact },
            private_key_kind,
            id: {
                static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            },
        })
    }
}

/// Longest keyword the automaton holds, bytes. A longer keyword is held as its prefix: a line
/// with the keyword has the prefix, so nothing is missed (the rule's regex still decides); the
/// short overlap lets `scan_keywords` split lines into more parts.
const MAX_KEYWORD: usize = 10;

fn keyword_prefix(k: &str) -> String {
    let mut end = k.len().min(MAX_KEYWORD);
    while !k.is_char_boundary(end) {
        end -= 1;
    }
    k[..end].to_string()
}

/// Lowercase, letters and digits only: `X-Api-Key`, `x_api_key` and `xApiKey` look alike.
fn normalise_key(k: &[u8]) -> String {
    k.iter()
        .filter(|b| b.is_ascii_alphanumeric())
        .map(|b| b.to_ascii_lowercase() as char)
        .collect()
}

/// [`normalise_key`] into `buf` when it fits (keys are short), else into `long`.
fn normalise_key_into<'b>(k: &[u8], buf: &'b mut [u8; 64], long: &'b mut Vec<u8>) -> &'b [u8] {
    let mut n = 0;
    for &b in k {
        if b.is_ascii_alphanumeric() {
            if n == buf.len() {
                *long = normalise_key(k).into_bytes();
                return long;
            }
            buf[n] = b.to_ascii_lowercase();
            n += 1;
        }
    }
    &buf[..n]
}

impl Engine {
    /// A builder with the built-in rules.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// Number of compiled rules.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Ids of the compiled rules.
    pub fn rule_ids(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| r.id.as_str())
    }

    /// The name of a kind.
    pub fn kind_name(&self, k: KindId) -> &str {
        self.kinds.get(k as usize).map_or("unknown", String::as_str)
    }

    /// For benchmarks and tuning: the ids of the rules a line opens (`"(json)"` for a
    /// sensitive JSON key name), without running them.
    #[doc(hidden)]
    pub fn debug_fired(&self, line: &[u8]) -> Vec<&str> {
        let f = self.fired(line, &stats(line));
        let mut v: Vec<&str> = f
            .iter()
            .map(|r| self.rules[r as usize].id.as_str())
            .collect();
        if f.1 {
            v.push("(json)");
        }
        v
    }

    /// For benchmarks: the keywords of the keyword pass (lowercase, matched ASCII
    /// case-insensitively), so that a reference matcher can be given the same set.
    #[doc(hidden)]
    pub fn debug_keywords(&self) -> &[String] {
        &self.kw_names
    }

    /// For benchmarks: run only the prefilter (byte pass and keyword pass).
    #[doc(hidden)]
    pub fn debug_prefilter(&self, line: &[u8], what: u8) -> bool {
        match what {
            0 => stats(line).at,
            1 => {
                let mut f = Fired::default();
                self.scan_keywords(line, &mut f);
                !f.is_empty()
            }
            _ => !self.fired(line, &stats(line)).is_empty(),
        }
    }

    /// The fingerprint of a secret under this engine's key.
    pub fn fingerprint(&self, secret: &[u8]) -> Fingerprint {
        self.key.fingerprint(secret)
    }

    /// The marker that replaces a secret.
    pub fn marker(&self, kind: KindId, secret: &[u8]) -> String {
        format!(
            "[REDACTED:{}:{}]",
            self.kind_name(kind),
            self.fingerprint(secret)
        )
    }

    /// Every keyword occurrence in `hay` (overlapping ones too) sets its rules in `f`.
    fn scan_keywords(&self, hay: &[u8], f: &mut Fired) {
        let Some(kw) = &self.kw else { return };
        kw.for_each(hay, &mut |p, _| {
            let rules = &self.kw_rules[p as usize];
            // A keyword without rules is the name of a sensitive JSON key: the JSON path must
            // look at the line.
            f.1 |= rules.is_empty();
            for &r in rules {
                f.set(r);
            }
        });
    }

    fn fired(&self, hay: &[u8], st: &Stats) -> Fired {
        let mut f = Fired::default();
        self.scan_keywords(hay, &mut f);
        self.add_gated(&mut f, st);
        f
    }

    /// Adds the rules the byte pass opens (digit shapes, `@`) and those that always run.
    fn add_gated(&self, f: &mut Fired, st: &Stats) {
        for (shape, rules) in self.digit_rules.iter().enumerate() {
            if st.shapes & (1 << shape) != 0 {
                for (a, b) in f.0.iter_mut().zip(rules.0.iter()) {
                    *a |= b;
                }
            }
        }
        if st.at {
            for (a, b) in f.0.iter_mut().zip(self.at_rules.0.iter()) {
                *a |= b;
            }
        }
        for (a, b) in f.0.iter_mut().zip(self.always_rules.0.iter()) {
            *a |= b;
        }
    }

    /// Every keyword occurrence in `hay`, as (index after its end, keyword).
    fn keyword_hits(&self, hay: &[u8]) -> Vec<(usize, u32)> {
        let mut v = Vec::new();
        if let Some(kw) = &self.kw {
            kw.for_each(hay, &mut |p, end| v.push((end, p)));
        }
        v
    }

    /// The rules that the keywords among `hits` (see [`Engine::keyword_hits`]) that lie in
    /// `s..e` open; the byte pass's rules are for the caller to add.
    fn fired_in(&self, hits: &[(usize, u32)], s: usize, e: usize) -> Fired {
        let mut f = Fired::default();
        if let Some(kw) = &self.kw {
            for &(end, p) in hits {
                if end <= e && end >= s + kw.len(p) {
                    let rules = &self.kw_rules[p as usize];
                    f.1 |= rules.is_empty();
                    for &r in rules {
                        f.set(r);
                    }
                }
            }
        }
        f
    }

    fn allowed(&self, secret: &[u8]) -> bool {
        self.allow_values.contains(secret) || self.allow_patterns.iter().any(|p| p.is_match(secret))
    }

    /// Validate one candidate; returns the secret span (possibly trimmed) when it stands.
    fn check(
        &self,
        rule: &Rule,
        hay: &[u8],
        key: Option<(usize, usize)>,
        s: usize,
        e: usize,
    ) -> Option<(usize, usize)> {
        let secret = &hay[s..e];
        let ok = match rule.check {
            Check::None => true,
            Check::Entropy(min) => {
                !validate::is_placeholder(secret) && validate::entropy(secret) >= min
            }
            Check::Assignment(min) => {
                let key_ok = match key {
                    Some((ks, ke)) => {
                        let k = &hay[ks..ke];
                        !validate::is_harmless_key(k)
                            && (rule.kind != self.kind_of("password")
                                || validate::is_password_key(k))
                    }
                    None => true,
                };
                key_ok && !validate::is_placeholder(secret) && validate::looks_random(secret, min)
            }
            Check::Luhn => validate::is_card(secret) && !glued(hay, s, e),
            Check::Ssn => validate::is_ssn(secret) && !glued(hay, s, e),
            Check::Phone => validate::is_phone_digits(secret) && !glued(hay, s, e),
            Check::Email => {
                let tld = secret.rsplit(|b| *b == b'.').next().unwrap_or_default();
                let local = secret.split(|b| *b == b'@').next().unwrap_or_default();
                // `scheme://user:pass@host` and `https://user@host` are URL credentials, not mail.
                let before = s.checked_sub(1).map(|i| hay[i]);
                // Inside a URL's userinfo (`scheme://user:p&ss@host`) this is a credential.
                let token_start = hay[..s]
                    .iter()
                    .rposition(u8::is_ascii_whitespace)
                    .map_or(0, |p| p + 1);
                let in_url = memchr::memmem::find(&hay[token_start..s], b"://").is_some();
                !validate::is_file_tld(tld)
                    && local != b"git"
                    && !in_url
                    && !matches!(before, Some(b':' | b'/'))
            }
            Check::Iban => {
                return validate::iban_prefix_len(secret)
                    .map(|n| (s, s + n))
                    .filter(|(s, e)| !self.allowed(&hay[*s..*e]));
            }
        };
        (ok && !self.allowed(secret)).then_some((s, e))
    }

    fn kind_of(&self, name: &str) -> KindId {
        self.kinds
            .iter()
            .position(|k| k == name)
            .map_or(KindId::MAX, |i| i as KindId)
    }

    /// All findings in `hay`, merged (overlaps joined, the most specific kind names them).
    fn find(&self, hay: &[u8], fired: &Fired, out: &mut Vec<Finding>) {
        out.clear();
        for ri in fired.iter() {
            let rule = &self.rules[ri as usize];
            if rule.precheck.is_some_and(|p| !p.holds(hay)) {
                continue;
            }
            if rule.group == 0 {
                for m in rule.regex().find_iter(hay) {
                    if let Some((s, e)) = self.check(rule, hay, None, m.start(), m.end()) {
                        out.push(Finding {
                            start: s,
                            end: e,
                            kind: rule.kind,
                            class: rule.class,
                            priority: rule.priority,
                            rule: ri,
                        });
                    }
                }
            } else {
                for c in rule.regex().captures_iter(hay) {
                    let Some(m) = c.get(rule.group) else { continue };
                    let key = if rule.group >= 2 {
                        c.get(1).map(|k| (k.start(), k.end()))
                    } else {
                        None
                    };
                    if let Some((s, e)) = self.check(rule, hay, key, m.start(), m.end()) {
                        out.push(Finding {
                            start: s,
                            end: e,
                            kind: rule.kind,
                            class: rule.class,
                            priority: rule.priority,
                            rule: ri,
                        });
                    }
                }
            }
        }
        // Our own markers are never findings: redacting twice gives the same line.
        if !out.is_empty() && memchr::memmem::find(hay, b"[REDACTED:").is_some() {
            let markers = marker_spans(hay);
            out.retain(|f| !markers.iter().any(|&(s, e)| f.start < e && s < f.end));
        }
        if out.len() < 2 {
            return;
        }
        out.sort_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));
        let mut merged: Vec<Finding> = Vec::with_capacity(out.len());
        for f in out.drain(..) {
            match merged.last_mut() {
                Some(last) if f.start < last.end => {
                    last.end = last.end.max(f.end);
                    if f.priority > last.priority {
                        last.kind = f.kind;
                        last.priority = f.priority;
                        last.rule = f.rule;
                    }
                    last.class = last.class.union(f.class);
                }
                _ => merged.push(f),
            }
        }
        *out = merged;
    }

    /// Find in a haystack whose stats are not known yet (used for JSON string values).
    fn find_in(&self, hay: &[u8], out: &mut Vec<Finding>) {
        let st = stats(hay);
        let fired = self.fired(hay, &st);
        if fired.is_empty() {
            out.clear();
            return;
        }
        self.find(hay, &fired, out);
    }

    /// Write `hay` with findings replaced by markers. `esc` escapes the unchanged parts.
    fn render(&self, hay: &[u8], findings: &[Finding], out: &mut String, esc: bool) {
        let mut at = 0;
        for f in findings {
            push_part(out, &hay[at..f.start], esc);
            out.push_str(&self.marker(f.kind, &hay[f.start..f.end]));
            at = f.end;
        }
        push_part(out, &hay[at..], esc);
    }

    /// Redact one line (no trailing newline). Stateless: a private key spread over several lines
    /// is followed by a [`LineRedactor`], which the pipelines use.
    pub fn redact_line<'a>(&self, line: &'a [u8]) -> Redaction<'a> {
        self.redact_line_inner(line).0
    }

    /// Redact a string that may hold several lines (alert fields, evidence).
    pub fn redact_text(&self, text: &str) -> Redaction<'static> {
        let mut lr = LineRedactor::new(self);
        let mut out = String::with_capacity(text.len());
        let mut class = Class::CLEAN;
        let mut kinds = Vec::new();
        for (i, line) in text.split('\n').enumerate() {
            if i > 0 {
                out.push('\n');
            }
            let r = lr.redact(line.as_bytes());
            out.push_str(&r.text);
            class = class.union(r.class);
            kinds.extend(r.kinds);
        }
        Redaction {
            text: Cow::Owned(out),
            class,
            kinds,
        }
    }

    /// Redact one captured environment variable: the whole value when the name says it is a
    /// secret (`DB_PASSWORD`, `GITHUB_TOKEN`), else the value like a line.
    pub fn redact_env<'a>(&self, name: &str, value: &'a str) -> Redaction<'a> {
        if let Some(kind) = self.sensitive_key(name.as_bytes()) {
            if !validate::is_placeholder(value.as_bytes()) {
                return Redaction {
                    text: Cow::Owned(self.marker(kind, value.as_bytes())),
                    class: Class::SECRET,
                    kinds: vec![kind],
                };
            }
        }
        self.redact_line(value.as_bytes())
    }

    /// Is this (JSON key / variable) name sensitive? Returns the kind its values get.
    pub(crate) fn sensitive_key(&self, name: &[u8]) -> Option<KindId> {
        let (mut buf, mut long) = ([0u8; 64], Vec::new());
        let n = normalise_key_into(name, &mut buf, &mut long);
        if n.is_empty() {
            return None;
        }
        let chars = char_set(n);
        let kind = match self.keys.exact.iter().find(|(e, _)| e.as_bytes() == n) {
            Some((_, k)) => *k,
            None => {
                self.keys
                    .contains
                    .iter()
                    .find(|(c, set, _)| {
                        chars & set == *set
                            && (c.is_empty() || n.windows(c.len()).any(|w| w == c.as_bytes()))
                    })?
                    .2
            }
        };
        // Only a name that looks sensitive is checked for being a setting (`token_ttl`): most
        // keys (`ts`, `level`, `msg`) never get here, and this check is the costlier one.
        (!validate::is_harmless_key(name)).then_some(kind)
    }

    /// The line redaction, plus the state a private-key block leaves open at the end of the line.
    ///
    /// The hasher is boxed: it is ~2 KiB, and unboxed every line paid for moving an `Option` of
    /// it out of here and through the [`LineRedactor`] (a `memcpy` per line, ~4 % of a clean line).
    fn redact_line_inner<'a>(
        &self,
        line: &'a [u8],
    ) -> (Redaction<'a>, Option<Box<blake3::Hasher>>) {
        let st = stats(line);
        let json = looks_like_json(line);
        // A JSON line keeps where its keywords are, for the JSON path (see `json`).
        let hits = if json {
            self.keyword_hits(line)
        } else {
            Vec::new()
        };
        let fired = if json {
            let mut f = self.fired_in(&hits, 0, line.len());
            self.add_gated(&mut f, &st);
            f
        } else {
            self.fired(line, &st)
        };
        // JSON escapes can hide keywords (`ghp\u005f…`, `https:\/\/`): such lines are decoded.
        let escaped_json = || json && memchr::memchr(b'\\', line).is_some();
        if fired.is_empty() && !st.ctrl && !escaped_json() {
            if let Ok(s) = std::str::from_utf8(line) {
                if !st.high || !escape::str_needs_escape(s) {
                    return (
                        Redaction {
                            text: Cow::Borrowed(s),
                            class: Class::CLEAN,
                            kinds: Vec::new(),
                        },
                        None,
                    );
                }
            }
        }
        // Lines with raw controls are tried as JSON too: a document whose only controls are
        // CR/LF between tokens must come out as valid JSON, not with `\r` escapes.
        if json || st.ctrl {
            let hits = if json { hits } else { self.keyword_hits(line) };
            if let Some(r) = json::redact(self, line, &st, hits) {
                return (r, None);
            }
        }
        let mut findings = Vec::new();
        if !fired.is_empty() {
            self.find(line, &fired, &mut findings);
        }
        if findings.is_empty() && !st.ctrl {
            if let Ok(s) = std::str::from_utf8(line) {
                if !st.high || !escape::str_needs_escape(s) {
                    return (
                        Redaction {
                            text: Cow::Borrowed(s),
                            class: Class::CLEAN,
                            kinds: Vec::new(),
                        },
                        None,
                    );
                }
            }
        }
        let mut out = String::with_capacity(line.len() + 32);
        self.render(line, &findings, &mut out, true);
        let mut class = Class::CLEAN;
        for f in &findings {
            class = class.union(f.class);
        }
        // A BEGIN … PRIVATE KEY that runs to the end of the line without its END: the block goes
        // on in the next lines.
        let open = findings.last().and_then(|f| {
            let s = &line[f.start..f.end];
            (f.kind == self.private_key_kind
                && line[f.end..].iter().all(u8::is_ascii_whitespace)
                && memchr::memmem::find(s, b"-----END").is_none())
            .then(|| {
                let mut h = Box::new(self.key.hasher());
                h.update(s);
                h
            })
        });
        (
            Redaction {
                text: Cow::Owned(out),
                class,
                kinds: findings.iter().map(|f| f.kind).collect(),
            },
            open,
        )
    }
}

/// Spans of `[REDACTED:kind:fp]` markers in `hay`.
fn marker_spans(hay: &[u8]) -> Vec<(usize, usize)> {
    let mut v = Vec::new();
    for s in memchr::memmem::find_iter(hay, b"[REDACTED:") {
        if let Some(len) = hay[s..].iter().take(100).position(|b| *b == b']') {
            v.push((s, s + len + 1));
        }
    }
    v
}

fn push_part(out: &mut String, part: &[u8], esc: bool) {
    if esc {
        escape::escape_into(out, part);
    } else {
        out.push_str(&String::from_utf8_lossy(part));
    }
}

/// Is `b` glued to the candidate `[s, e)` so that it is part of a longer token (a version, an
/// address, an id)?
fn glued(hay: &[u8], s: usize, e: usize) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let before = s.checked_sub(1).and_then(|i| hay.get(i)).copied();
    let after = hay.get(e).copied();
    let after2 = hay.get(e + 1).copied();
    before.is_some_and(|b| word(b) || matches!(b, b'.' | b'-' | b'/'))
        || after.is_some_and(word)
        || (matches!(after, Some(b'.' | b'-' | b':' | b'/'))
            && after2.is_some_and(|b| b.is_ascii_digit()))
}

fn looks_like_json(line: &[u8]) -> bool {
    match line.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{' | b'[' | b'"') => true,
        // A bare number is a JSON document too (found by the `redact_json` fuzz target: a card
        // number alone on a line came out as an unquoted marker, which is not JSON). The JSON
        // path writes the marker as a string; other lines are tried as text.
        Some(b'-' | b'0'..=b'9') => line
            .iter()
            .all(|b| b.is_ascii_digit() || b.is_ascii_whitespace() || b"+-.eE".contains(b)),
        _ => false,
    }
}

/// Follows lines of one stream, so that a private key written over several lines is redacted
/// whole. Each key line becomes `[REDACTED:private-key:<fp of that line>]`; the END line carries
/// the fingerprint of the whole block. Output stays one line per input line, in order.
#[derive(Debug)]
pub struct LineRedactor<'e> {
    engine: &'e Engine,
    block: Option<(Box<blake3::Hasher>, u32)>,
}

/// Lines a private-key block may span before the redactor stops treating lines as key material.
const MAX_KEY_LINES: u32 = 512;

impl<'e> LineRedactor<'e> {
    /// A redactor for one stream.
    pub fn new(engine: &'e Engine) -> Self {
        Self {
            engine,
            block: None,
        }
    }

    /// Is a private-key block open?
    pub fn in_key_block(&self) -> bool {
        self.block.is_some()
    }

    /// Redact the next line of the stream.
    pub fn redact<'a>(&mut self, line: &'a [u8]) -> Redaction<'a> {
        if let Some((mut h, n)) = self.block.take() {
            let start = line
                .iter()
                .position(|b| !b.is_ascii_whitespace())
                .unwrap_or(line.len());
            let body = &line[start..];
            let kind = self.engine.private_key_kind;
            if let Some(p) = memchr::memmem::find(body, b"-----END") {
                let end = memchr::memmem::find(&body[p + 8..], b"-----")
                    .map_or(body.len(), |q| p + 8 + q + 5);
                h.update(&body[..end]);
                let fp = Fingerprint::from_hash(&h.finalize());
                let mut out = String::new();
                escape::escape_into(&mut out, &line[..start]);
                out.push_str(&format!("[REDACTED:{}:{fp}]", self.engine.kind_name(kind)));
                let rest = self.engine.redact_line(&body[end..]);
                out.push_str(&rest.text);
                let mut kinds = vec![kind];
                kinds.extend(rest.kinds);
                return Redaction {
                    text: Cow::Owned(out),
                    class: Class::SECRET.union(rest.class),
                    kinds,
                };
            }
            if n < MAX_KEY_LINES && is_key_material(body) {
                h.update(body);
                self.block = Some((h, n + 1));
                let mut out = String::new();
                escape::escape_into(&mut out, &line[..start]);
                if !body.is_empty() {
                    out.push_str(&self.engine.marker(kind, body));
                }
                return Redaction {
                    text: Cow::Owned(out),
                    class: Class::SECRET,
                    kinds: vec![kind],
                };
            }
            // Not key material: the block was cut short; this line is an ordinary line.
        }
        let (r, open) = self.engine.redact_line_inner(line);
        self.block = open.map(|h| (h, 0));
        r
    }
}

/// Base64 lines and PEM headers (`Proc-Type: 4,ENCRYPTED`, `DEK-Info: …`).
fn is_key_material(body: &[u8]) -> bool {
    let b = body.trim_ascii_end();
    b.iter()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'='))
        || b.starts_with(b"Proc-Type:")
        || b.starts_with(b"DEK-Info:")
        || b.starts_with(b"Comment:")
}

//! Custom rules and allowlists from YAML files (`profiles/redact/*.yaml`, `kind: redact-rules`).
//!
//! ```yaml
//! kind: redact-rules
//! name: acme
//! rules:
//!   - id: acme-internal-token          # unique; also the kind unless `kind` is given
//!     kind: acme-token
//!     class: secret                    # or pii
//!     keywords: [acme_]                # the rule runs only on lines holding one (none: every line)
//!     regex: '\bacme_[a-z0-9]{32}\b'
//!     group: 0                         # capture group that is the secret
//!     check: entropy                   # none | entropy | luhn | iban | ssn | phone | email
//!     min_entropy: 3.0
//! disable: [mailchimp-key]             # built-in rule ids to turn off
//! allow:
//!   values: [AKIAIOSFODNN7EXAMPLE]     # exact secrets never redacted (documentation examples)
//!   patterns: ['^sk_test_']            # regexes over the secret
//! json_keys: [x-acme-signature]        # more JSON keys / env names whose values are secrets
//! ```

use crate::{rules::Check, Class, RedactError};
use serde::Deserialize;
use std::path::Path;

/// The value of `kind:` in a rules file.
pub const KIND: &str = "redact-rules";

/// One rules file.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RulesFile {
    /// Must be `redact-rules`.
    pub kind: String,
    /// A name for logs.
    #[serde(default)]
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Custom rules.
    #[serde(default)]
    pub rules: Vec<CustomRule>,
    /// Built-in rule ids to turn off.
    #[serde(default)]
    pub disable: Vec<String>,
    /// Values that are never redacted.
    #[serde(default)]
    pub allow: Allow,
    /// More sensitive JSON keys / environment variable names (matched as substrings after
    /// lowercasing and dropping `-`, `_`, `.`).
    #[serde(default)]
    pub json_keys: Vec<String>,
}

/// Allowlist.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Allow {
    /// Exact secrets.
    #[serde(default)]
    pub values: Vec<String>,
    /// Regexes matched against a found secret.
    #[serde(default)]
    pub patterns: Vec<String>,
}

/// A custom rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomRule {
    /// Unique id.
    pub id: String,
    /// Kind in the marker (default: the id).
    #[serde(default)]
    pub kind: Option<String>,
    /// `secret` (default) or `pii`.
    #[serde(default)]
    pub class: Option<String>,
    /// Prefilter keywords (ASCII case-insensitive).
    #[serde(default)]
    pub keywords: Vec<String>,
    /// The regex (Rust `regex` syntax, bytes, ASCII classes).
    pub regex: String,
    /// The capture group that is the secret.
    #[serde(default)]
    pub group: usize,
    /// Validation: none, entropy, luhn, iban, ssn, phone, email.
    #[serde(default)]
    pub check: Option<String>,
    /// For `check: entropy`: bits per byte.
    #[serde(default)]
    pub min_entropy: Option<f32>,
}

impl CustomRule {
    pub(crate) fn check(&self) -> Result<Check, RedactError> {
        Ok(match self.check.as_deref().unwrap_or("none") {
            "none" => Check::None,
            "entropy" => Check::Entropy(self.min_entropy.unwrap_or(3.0)),
            "luhn" => Check::Luhn,
            "iban" => Check::Iban,
            "ssn" => Check::Ssn,
            "phone" => Check::Phone,
            "email" => Check::Email,
            o => {
                return Err(RedactError::Invalid(format!(
                    "rule {}: unknown check {o:?} (none, entropy, luhn, iban, ssn, phone, email)",
                    self.id
                )))
            }
        })
    }

    pub(crate) fn class_value(&self) -> Result<Class, RedactError> {
        match self.class.as_deref() {
            None => Ok(Class::SECRET),
            Some(c) => Class::parse(c).ok_or_else(|| {
                RedactError::Invalid(format!(
                    "rule {}: class {c:?} is not secret or pii",
                    self.id
                ))
            }),
        }
    }
}

/// Parse one rules file's text.
pub fn parse(path: &str, text: &str) -> Result<RulesFile, RedactError> {
    let f: RulesFile = serde_yaml::from_str(text).map_err(|e| RedactError::Yaml {
        path: path.to_string(),
        source: e,
    })?;
    if f.kind != KIND {
        return Err(RedactError::Invalid(format!(
            "{path}: kind is {:?}, want {KIND:?}",
            f.kind
        )));
    }
    Ok(f)
}

/// Load every `*.yaml`/`*.yml` in `dir` whose `kind:` is `redact-rules`, sorted by name.
pub fn load_dir(dir: &Path) -> Result<Vec<RulesFile>, RedactError> {
    let io = |e| RedactError::Io {
        path: dir.display().to_string(),
        source: e,
    };
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for p in paths {
        let text = std::fs::read_to_string(&p).map_err(|e| RedactError::Io {
            path: p.display().to_string(),
            source: e,
        })?;
        // Other kinds of policy may share the folder; only ours are read.
        #[derive(Deserialize)]
        struct Head {
            kind: Option<String>,
        }
        let head: Head = serde_yaml::from_str(&text).map_err(|e| RedactError::Yaml {
            path: p.display().to_string(),
            source: e,
        })?;
        if head.kind.as_deref() != Some(KIND) {
            continue;
        }
        out.push(parse(&p.display().to_string(), &text)?);
    }
    Ok(out)
}

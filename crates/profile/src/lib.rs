//! Brainbox security profiles: what a watched container is, as data.
//!
//! A profile is a YAML file in `profiles/`. Containers choose one with the label
//! [`PROFILE_LABEL`]; a container without it is not watched. Each capability (zones, egress,
//! rules, responses) adds its own section here, always with `deny_unknown_fields` so a typo is an
//! error, not a silently ignored key.

pub mod egress;
pub mod priority;
pub mod zones;

pub use priority::{BadPriority, Priority};

use serde::Deserialize;
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

pub mod safety;
pub use safety::{Lift, SafeAction, SafetyPolicy};

/// The container label that selects a profile (and so marks the container as watched).
pub const PROFILE_LABEL: &str = "brainbox.io/profile";
/// The container label naming the pod a container belongs to (the lab's stand-in for a pod).
pub const POD_LABEL: &str = "brainbox.io/pod";
/// The container label naming the container's role in its pod: `agent` or `sidecar`.
pub const ROLE_LABEL: &str = "brainbox.io/role";

/// Network zone of a container.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Zone {
    /// Agent code: trusted with nothing.
    Untrusted,
    /// Orchestrators and shared state.
    Internal,
    /// Identity, node agent, operator.
    Control,
}

/// One brainbox security profile.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Unique name; containers refer to it by [`PROFILE_LABEL`].
    pub name: String,
    /// What the profile is for, for people.
    #[serde(default)]
    pub description: String,
    /// The zone every container with this profile belongs to.
    pub zone: Zone,
    /// Whether the sensor reports this profile's process events (default true).
    #[serde(default = "yes")]
    pub watch: bool,
    /// `identity`: the SPIFFE identity containers with this profile get from the node agent's
    /// Workload API. Without it, they get none (the API answers `PermissionDenied`).
    #[serde(default)]
    pub identity: Option<IdentityProfile>,
    /// What to do when rules fire in containers of this profile (first match wins; an alert
    /// that matches none is only an alert).
    #[serde(default)]
    pub responses: Vec<ResponseRule>,
    /// The dead-man switch and safe mode (absent: neither).
    #[serde(default)]
    pub safety: Option<SafetyPolicy>,
}

/// Response actions, mildest first.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Raise the alert only.
    Alert,
    /// Kill the container's processes (the container stops; its orchestrator decides what next).
    Kill,
    /// Cut the container and its pod off the network (loopback only, through zones), capture
    /// evidence, and let it run on under observation. Without zones: keep it frozen.
    Isolate,
    /// Freeze, capture, seal, then kill and recreate from the known-good image.
    Recycle,
}

/// Which alerts a response applies to. Every given criterion must hold; an empty match matches
/// every alert.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Match {
    /// Rule names (exact).
    pub rules: Vec<String>,
    /// Any of these tags.
    pub tags: Vec<String>,
    /// At least this Falco priority (`debug` < `informational` < `notice` < `warning` < `error`
    /// < `critical` < `alert` < `emergency`).
    pub priority_at_least: Option<String>,
}

/// Limits how often a response may run for one container, so a noisy rule cannot recycle a pod
/// in a loop.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Most runs per window.
    pub max: u32,
    /// Window length in seconds.
    pub per_secs: u64,
}

/// One response rule.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ResponseRule {
    /// Name, for logs and the audit trail.
    pub name: String,
    /// Which alerts it applies to.
    #[serde(rename = "match", default)]
    pub when: Match,
    /// What to do.
    pub action: Action,
    /// How often it may run per container (default: once per 10 minutes).
    #[serde(default = "default_rate")]
    pub rate_limit: RateLimit,
}

fn default_rate() -> RateLimit {
    RateLimit {
        max: 1,
        per_secs: 600,
    }
}

impl Match {
    /// Whether an alert with this rule, tags and priority matches.
    pub fn matches(&self, rule: &str, tags: &[String], priority: &str) -> bool {
        (self.rules.is_empty() || self.rules.iter().any(|r| r == rule))
            && (self.tags.is_empty() || self.tags.iter().any(|t| tags.contains(t)))
            && self.priority_at_least.as_deref().is_none_or(|min| {
                match (Priority::parse(priority), Priority::parse(min)) {
                    (Some(p), Some(m)) => p.at_least(m),
                    _ => false,
                }
            })
    }
}

impl Profile {
    /// The first response rule matching an alert, if any.
    pub fn response_for(
        &self,
        rule: &str,
        tags: &[String],
        priority: &str,
    ) -> Option<&ResponseRule> {
        self.responses
            .iter()
            .find(|r| r.when.matches(rule, tags, priority))
    }
}

fn yes() -> bool {
    true
}

/// Placeholders a SPIFFE ID template may use.
pub const IDENTITY_PLACEHOLDERS: &[&str] = &[
    "trust_domain",
    "namespace",
    "pod",
    "name",
    "role",
    "profile",
];

/// The SPIFFE identity of a profile's containers.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct IdentityProfile {
    /// SPIFFE ID template. Placeholders: `{trust_domain}` and `{namespace}` (node agent
    /// configuration), `{pod}` (pod label, else the container name), `{name}` (container name),
    /// `{role}` (pod role label), `{profile}`.
    #[serde(default = "default_spiffe_id")]
    pub spiffe_id: String,
    /// Lifetime of X.509-SVIDs in seconds (10..=86400; default 300). The agent pushes a new one
    /// before half of it has passed.
    #[serde(default = "default_ttl")]
    pub x509_ttl_secs: u64,
    /// Lifetime of JWT-SVIDs in seconds (10..=86400; default 300).
    #[serde(default = "default_ttl")]
    pub jwt_ttl_secs: u64,
    /// Audiences JWT-SVIDs may be requested for; empty means any.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Pod roles (`brainbox.io/role`) that get the identity; empty means every container.
    /// The default, `[sidecar]`, keeps the pod's key out of the untrusted agent container.
    #[serde(default = "default_roles")]
    pub roles: Vec<String>,
}

fn default_spiffe_id() -> String {
    "spiffe://{trust_domain}/ns/{namespace}/brainbox/{pod}".into()
}

fn default_ttl() -> u64 {
    300
}

fn default_roles() -> Vec<String> {
    vec!["sidecar".into()]
}

impl Default for IdentityProfile {
    fn default() -> Self {
        Self {
            spiffe_id: default_spiffe_id(),
            x509_ttl_secs: default_ttl(),
            jwt_ttl_secs: default_ttl(),
            audiences: Vec::new(),
            roles: default_roles(),
        }
    }
}

impl IdentityProfile {
    fn validate(&self) -> Result<(), (String, String)> {
        let bad = |f: &str, r: String| Err((format!("identity.{f}"), r));
        if !self.spiffe_id.starts_with("spiffe://") {
            return bad(
                "spiffe_id",
                format!("`{}` must start with spiffe://", self.spiffe_id),
            );
        }
        let mut rest = self.spiffe_id.as_str();
        while let Some(i) = rest.find('{') {
            let after = &rest[i + 1..];
            let Some(j) = after.find('}') else {
                return bad("spiffe_id", "unclosed `{`".into());
            };
            if !IDENTITY_PLACEHOLDERS.contains(&&after[..j]) {
                return bad(
                    "spiffe_id",
                    format!(
                        "unknown placeholder `{{{}}}` (known: {})",
                        &after[..j],
                        IDENTITY_PLACEHOLDERS.join(", ")
                    ),
                );
            }
            rest = &after[j + 1..];
        }
        for (f, v) in [
            ("x509_ttl_secs", self.x509_ttl_secs),
            ("jwt_ttl_secs", self.jwt_ttl_secs),
        ] {
            if !(10..=86_400).contains(&v) {
                return bad(f, format!("{v} must be between 10 and 86400"));
            }
        }
        Ok(())
    }
}

/// Errors loading profiles; each names the file and, where known, the field.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// A file or folder could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The YAML does not match the schema.
    #[error("{path}: {message}")]
    Schema { path: PathBuf, message: String },
    /// A semantic rule is broken.
    #[error("{path}: field `{field}`: {reason}")]
    Invalid {
        path: PathBuf,
        field: String,
        reason: String,
    },
    /// Two files define the same profile name.
    #[error("profile `{name}` is defined twice: {first} and {second}")]
    Duplicate {
        name: String,
        first: PathBuf,
        second: PathBuf,
    },
}

impl Profile {
    /// Parses one profile from YAML text; `path` is used in errors.
    pub fn from_yaml(text: &str, path: &Path) -> Result<Self, ProfileError> {
        let p: Profile = parse_yaml(text, path)?;
        p.validate(path)?;
        Ok(p)
    }

    fn validate(&self, path: &Path) -> Result<(), ProfileError> {
        if self
            .safety
            .as_ref()
            .is_some_and(|s| s.checkin_interval_secs == Some(0))
        {
            return Err(ProfileError::Invalid {
                path: path.to_owned(),
                field: "safety.checkin_interval_secs".into(),
                reason: "must be at least 1 (omit it to disable the dead-man switch)".into(),
            });
        }
        for (i, r) in self.responses.iter().enumerate() {
            if let Some(p) = &r.when.priority_at_least {
                if let Err(e) = p.parse::<Priority>() {
                    return Err(ProfileError::Invalid {
                        path: path.to_owned(),
                        field: format!("responses[{i}].match.priority_at_least"),
                        reason: e.to_string(),
                    });
                }
            }
            if r.rate_limit.max == 0 || r.rate_limit.per_secs == 0 {
                return Err(ProfileError::Invalid {
                    path: path.to_owned(),
                    field: format!("responses[{i}].rate_limit"),
                    reason: "max and per_secs must both be at least 1".into(),
                });
            }
        }
        let ok = !self.name.is_empty()
            && self.name.len() <= 63
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            return Err(ProfileError::Invalid {
                path: path.to_owned(),
                field: "name".into(),
                reason: format!(
                    "`{}` must be 1-63 characters of a-z, 0-9 and '-' (it is used in labels)",
                    self.name
                ),
            });
        }
        if let Some(id) = &self.identity {
            id.validate()
                .map_err(|(field, reason)| ProfileError::Invalid {
                    path: path.to_owned(),
                    field,
                    reason,
                })?;
        }
        Ok(())
    }
}

/// All profiles of a folder, by name.
#[derive(Debug, Clone, Default)]
pub struct ProfileSet {
    profiles: BTreeMap<String, (Profile, PathBuf)>,
}

impl ProfileSet {
    /// Loads every `*.yaml`/`*.yml` file directly in `dir` that declares a profile (files with a
    /// top-level `kind:` other than `profile` are other data, such as rule overrides, and skipped).
    pub fn load_dir(dir: &Path) -> Result<Self, ProfileError> {
        let mut set = ProfileSet::default();
        let read = |source| ProfileError::Read {
            path: dir.to_owned(),
            source,
        };
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(read)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
            .collect();
        paths.sort();
        for path in paths {
            let text = std::fs::read_to_string(&path).map_err(|source| ProfileError::Read {
                path: path.clone(),
                source,
            })?;
            if !is_profile_document(&text) {
                continue;
            }
            let p = Profile::from_yaml(&strip_kind(&text), &path)?;
            set.insert(p, path)?;
        }
        Ok(set)
    }

    /// Adds a profile, refusing a duplicate name.
    pub fn insert(&mut self, p: Profile, path: PathBuf) -> Result<(), ProfileError> {
        insert_unique(&mut self.profiles, p.name.clone(), p, path)
    }

    /// The profile called `name`.
    pub fn get(&self, name: &str) -> Option<&Profile> {
        self.profiles.get(name).map(|(p, _)| p)
    }

    /// Number of profiles.
    pub fn len(&self) -> usize {
        self.profiles.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.profiles.is_empty()
    }

    /// The node's safety policy: every profile's `safety` section combined (the strictest wins).
    pub fn safety_policy(&self) -> Option<SafetyPolicy> {
        SafetyPolicy::combine(
            self.profiles
                .values()
                .filter_map(|(p, _)| p.safety.as_ref()),
        )
    }

    /// Profile names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.profiles.keys().map(String::as_str)
    }
}

/// Profile files start with `kind: profile`; anything else in `profiles/` is other data.
fn is_profile_document(text: &str) -> bool {
    text.lines()
        .map(str::trim_end)
        .any(|l| l == "kind: profile")
}

fn strip_kind(text: &str) -> String {
    text.lines()
        .filter(|l| l.trim_end() != "kind: profile")
        .collect::<Vec<_>>()
        .join("\n")
}

/// Deserializes one YAML document; a schema error names the file.
pub(crate) fn parse_yaml<T: serde::de::DeserializeOwned>(
    text: &str,
    path: &Path,
) -> Result<T, ProfileError> {
    serde_yaml::from_str(text).map_err(|e| ProfileError::Schema {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// Adds a named document to a set, refusing a second one of the same name (both files named).
pub(crate) fn insert_unique<T>(
    set: &mut BTreeMap<String, (T, PathBuf)>,
    name: String,
    item: T,
    path: PathBuf,
) -> Result<(), ProfileError> {
    if let Some((_, first)) = set.get(&name) {
        return Err(ProfileError::Duplicate {
            name,
            first: first.clone(),
            second: path,
        });
    }
    set.insert(name, (item, path));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_profile_in_the_repo_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../profiles");
        let set = ProfileSet::load_dir(&dir).unwrap();
        assert!(
            set.get("default").is_some(),
            "profiles/default.yaml must exist"
        );
    }

    #[test]
    fn unknown_field_is_an_error() {
        let e = Profile::from_yaml("name: a\nzone: untrusted\nzoen: x\n", Path::new("t.yaml"))
            .unwrap_err();
        assert!(e.to_string().contains("zoen"), "{e}");
    }

    #[test]
    fn bad_zone_and_name_are_errors() {
        assert!(Profile::from_yaml("name: a\nzone: dmz\n", Path::new("t")).is_err());
        let e = Profile::from_yaml("name: A_b\nzone: control\n", Path::new("t")).unwrap_err();
        assert!(e.to_string().contains("`name`"), "{e}");
    }

    #[test]
    fn responses_match_by_rule_tag_and_priority() {
        let p = Profile::from_yaml(
            "name: a\nzone: untrusted\nresponses:\n  - name: r\n    match: {priority_at_least: critical}\n    action: recycle\n  - name: t\n    match: {tags: [network]}\n    action: alert\n",
            Path::new("t"),
        )
        .unwrap();
        assert_eq!(
            p.response_for("x", &[], "CRITICAL").unwrap().action,
            Action::Recycle
        );
        assert_eq!(
            p.response_for("x", &[], "emergency").unwrap().action,
            Action::Recycle
        );
        assert_eq!(
            p.response_for("x", &["network".into()], "warning")
                .unwrap()
                .action,
            Action::Alert
        );
        assert!(p.response_for("x", &[], "warning").is_none());
        assert_eq!(
            p.responses[0].rate_limit,
            RateLimit {
                max: 1,
                per_secs: 600
            }
        );
    }

    #[test]
    fn bad_response_fields_are_named() {
        let e = Profile::from_yaml(
            "name: a\nzone: untrusted\nresponses:\n  - name: r\n    match: {priority_at_least: severe}\n    action: recycle\n",
            Path::new("t"),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("responses[0].match.priority_at_least"),
            "{e}"
        );
        let e = Profile::from_yaml(
            "name: a\nzone: untrusted\nresponses:\n  - name: r\n    action: nuke\n",
            Path::new("t"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("nuke"), "{e}");
    }

    #[test]
    fn identity_section_defaults_and_checks() {
        let p =
            Profile::from_yaml("name: a\nzone: untrusted\nidentity: {}\n", Path::new("t")).unwrap();
        let id = p.identity.unwrap();
        assert_eq!(id, IdentityProfile::default());
        assert_eq!(id.roles, vec!["sidecar".to_string()]);
        let e = Profile::from_yaml(
            "name: a\nzone: untrusted\nidentity: {spiffe_id: 'spiffe://{td}/x'}\n",
            Path::new("t"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("identity.spiffe_id"), "{e}");
        let e = Profile::from_yaml(
            "name: a\nzone: untrusted\nidentity: {x509_ttl_secs: 5}\n",
            Path::new("t"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("identity.x509_ttl_secs"), "{e}");
        assert!(
            Profile::from_yaml("name: a\nzone: untrusted\n", Path::new("t"))
                .unwrap()
                .identity
                .is_none()
        );
    }

    #[test]
    fn duplicate_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["a.yaml", "b.yaml"] {
            std::fs::write(
                dir.path().join(f),
                "kind: profile\nname: x\nzone: internal\n",
            )
            .unwrap();
        }
        let e = ProfileSet::load_dir(dir.path()).unwrap_err();
        assert!(matches!(e, ProfileError::Duplicate { .. }), "{e}");
    }
}

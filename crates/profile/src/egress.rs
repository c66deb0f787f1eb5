//! Egress policies: which destinations a workload, named by its SPIFFE ID, may reach through its
//! sidecar's proxy.
//!
//! A policy is a YAML file under `profiles/egress/` that starts with `kind: egress-policy`. It
//! names the SPIFFE IDs it applies to (exact, or a prefix ending in `/*`) and lists rules. An ID
//! takes the rules of the most specific policy that names it (an exact ID beats any prefix, a longer
//! prefix beats a shorter one); destinations no rule names are denied.

use crate::ProfileError;
use serde::Deserialize;
use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::{Path, PathBuf},
};

/// The `kind:` line every egress policy file starts with.
pub const EGRESS_POLICY_KIND: &str = "egress-policy";

/// One egress policy file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EgressPolicy {
    /// Always `egress-policy`.
    pub kind: String,
    /// Unique name, for audit records.
    pub name: String,
    /// What the policy is for, for people.
    #[serde(default)]
    pub description: String,
    /// SPIFFE IDs this policy applies to: `spiffe://td/path` exactly, or `spiffe://td/prefix/*`.
    pub spiffe_ids: Vec<String>,
    /// The allowlist.
    #[serde(default)]
    pub rules: Vec<EgressRule>,
}

/// Whether a matching rule blocks what it does not allow, or only records it.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum RuleMode {
    /// Requests the rule matches by host and port but that break its other conditions (method,
    /// path, address class, SNI) are refused.
    #[default]
    Enforce,
    /// Such requests pass and are recorded as `report` decisions (for rolling out a rule).
    Report,
}

/// What a `CONNECT` tunnel to the rule's destination must carry.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum TunnelKind {
    /// A TLS ClientHello whose SNI equals the `CONNECT` host (no SNI for literal IPs).
    #[default]
    Tls,
    /// Any TCP stream (no SNI check); for protocols such as SSH.
    Tcp,
}

/// One allowlist entry.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EgressRule {
    /// `api.example.com`, `*.example.com` (one or more labels, not the apex), or a literal IP.
    pub host: String,
    /// Destination ports (at least one).
    pub ports: Vec<u16>,
    /// Plain-HTTP methods allowed (empty: any). A rule with methods or paths never allows `CONNECT`,
    /// because a tunnel would carry any method and path.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Plain-HTTP path prefixes allowed (empty: any).
    #[serde(default)]
    pub paths: Vec<String>,
    /// `enforce` (default) or `report`.
    #[serde(default)]
    pub mode: RuleMode,
    /// Let a host name resolve to private, loopback, link-local, CGNAT or ULA addresses.
    #[serde(default)]
    pub allow_private: bool,
    /// What a `CONNECT` tunnel must carry: `tls` (default) or `tcp`.
    #[serde(default)]
    pub tunnel: TunnelKind,
}

impl EgressRule {
    /// The rule's host as a literal IP, if it is one (`[v6]` brackets allowed).
    pub fn literal_ip(&self) -> Option<IpAddr> {
        let h = self.host.trim_start_matches('[').trim_end_matches(']');
        h.parse().ok()
    }
}

const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE",
];

impl EgressPolicy {
    /// Parses and validates one policy; `path` is used in errors.
    pub fn from_yaml(text: &str, path: &Path) -> Result<Self, ProfileError> {
        let p: EgressPolicy = crate::parse_yaml(text, path)?;
        p.validate(path)?;
        Ok(p)
    }

    fn validate(&self, path: &Path) -> Result<(), ProfileError> {
        let bad = |field: String, reason: String| ProfileError::Invalid {
            path: path.to_owned(),
            field,
            reason,
        };
        if self.kind != EGRESS_POLICY_KIND {
            return Err(bad(
                "kind".into(),
                format!("must be `{EGRESS_POLICY_KIND}`"),
            ));
        }
        if self.name.is_empty() || self.name.len() > 63 {
            return Err(bad("name".into(), "must be 1-63 characters".into()));
        }
        if self.spiffe_ids.is_empty() {
            return Err(bad(
                "spiffe_ids".into(),
                "name at least one SPIFFE ID".into(),
            ));
        }
        for (i, id) in self.spiffe_ids.iter().enumerate() {
            check_spiffe_pattern(id).map_err(|r| bad(format!("spiffe_ids[{i}]"), r))?;
        }
        for (i, r) in self.rules.iter().enumerate() {
            let f = |k: &str| format!("rules[{i}].{k}");
            check_host(&r.host).map_err(|e| bad(f("host"), e))?;
            if r.ports.is_empty() || r.ports.contains(&0) {
                return Err(bad(f("ports"), "list at least one port, 1-65535".into()));
            }
            for m in &r.methods {
                if !METHODS.contains(&m.as_str()) {
                    return Err(bad(
                        f("methods"),
                        format!("`{m}` is not one of {}", METHODS.join(", ")),
                    ));
                }
            }
            for p in &r.paths {
                if !p.starts_with('/') || p.contains(['?', '#']) || p.contains("..") {
                    return Err(bad(
                        f("paths"),
                        format!("`{p}` must start with `/` and hold no `?`, `#` or `..`"),
                    ));
                }
            }
            if r.tunnel == TunnelKind::Tcp && (!r.methods.is_empty() || !r.paths.is_empty()) {
                return Err(bad(
                    f("tunnel"),
                    "a `tcp` tunnel rule cannot also restrict methods or paths".into(),
                ));
            }
        }
        Ok(())
    }
}

/// Checks a SPIFFE ID pattern: `spiffe://<trust domain>/<path>` or the same ending in `/*`.
pub fn check_spiffe_pattern(id: &str) -> Result<(), String> {
    let body = id.strip_suffix("/*").unwrap_or(id);
    let Some(rest) = body.strip_prefix("spiffe://") else {
        return Err(format!("`{id}` must start with spiffe://"));
    };
    let td = rest.split('/').next().unwrap_or("");
    let td_ok = !td.is_empty()
        && td
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b));
    let path_ok = rest[td.len()..]
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._/".contains(&b))
        && !rest[td.len()..].contains("//");
    if !td_ok || !path_ok || id.len() > 2048 {
        return Err(format!(
            "`{id}` is not a SPIFFE ID (lower-case trust domain, path of [A-Za-z0-9-._/])"
        ));
    }
    Ok(())
}

fn check_host(host: &str) -> Result<(), String> {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    if h.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let name = host.strip_prefix("*.").unwrap_or(host);
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
        && name.contains('.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{host}` must be a lower-case DNS name with at least two labels, `*.` plus one, or an IP"
        ))
    }
}

/// All egress policies of a folder.
#[derive(Debug, Clone, Default)]
pub struct EgressPolicySet {
    policies: BTreeMap<String, (EgressPolicy, PathBuf)>,
}

impl EgressPolicySet {
    /// Loads every `*.yaml`/`*.yml` file in `dir` that starts with `kind: egress-policy`.
    pub fn load_dir(dir: &Path) -> Result<Self, ProfileError> {
        let mut set = Self::default();
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|source| ProfileError::Read {
                path: dir.to_owned(),
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
            .collect();
        paths.sort();
        for path in paths {
            let text = std::fs::read_to_string(&path).map_err(|source| ProfileError::Read {
                path: path.clone(),
                source,
            })?;
            let is_policy = text
                .lines()
                .any(|l| l.trim_end() == format!("kind: {EGRESS_POLICY_KIND}"));
            if !is_policy {
                continue;
            }
            set.insert(EgressPolicy::from_yaml(&text, &path)?, path)?;
        }
        Ok(set)
    }

    /// Adds a policy, refusing a duplicate name.
    pub fn insert(&mut self, p: EgressPolicy, path: PathBuf) -> Result<(), ProfileError> {
        crate::insert_unique(&mut self.policies, p.name.clone(), p, path)
    }

    /// The policies, by name.
    pub fn iter(&self) -> impl Iterator<Item = &EgressPolicy> {
        self.policies.values().map(|(p, _)| p)
    }

    /// The most specific policy naming `spiffe_id`: an exact ID first, else the longest prefix.
    pub fn select(&self, spiffe_id: &str) -> Option<&EgressPolicy> {
        let mut best: Option<(usize, &EgressPolicy)> = None;
        for p in self.iter() {
            for pat in &p.spiffe_ids {
                let score = if pat == spiffe_id {
                    usize::MAX
                } else if let Some(prefix) = pat.strip_suffix('*') {
                    if spiffe_id.starts_with(prefix) {
                        prefix.len()
                    } else {
                        continue;
                    }
                } else {
                    continue;
                };
                if best.is_none_or(|(s, _)| score > s) {
                    best = Some((score, p));
                }
            }
        }
        best.map(|(_, p)| p)
    }

    /// Number of policies.
    pub fn len(&self) -> usize {
        self.policies.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<EgressPolicy, ProfileError> {
        EgressPolicy::from_yaml(s, Path::new("t.yaml"))
    }

    #[test]
    fn every_egress_policy_in_the_repo_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../profiles/egress");
        let set = EgressPolicySet::load_dir(&dir).unwrap();
        assert!(!set.is_empty(), "profiles/egress holds at least one policy");
        let example = set.iter().find(|p| p.name == "example-agents").unwrap();
        // The example shows every field.
        let r = &example.rules;
        assert!(r.iter().any(|r| r.host.starts_with("*.")));
        assert!(r.iter().any(|r| r.literal_ip().is_some()));
        assert!(r
            .iter()
            .any(|r| !r.methods.is_empty() && !r.paths.is_empty()));
        assert!(r.iter().any(|r| r.mode == RuleMode::Report));
        assert!(r.iter().any(|r| r.allow_private));
        assert!(r.iter().any(|r| r.tunnel == TunnelKind::Tcp));
    }

    #[test]
    fn schema_errors_name_the_field() {
        let base = "kind: egress-policy\nname: a\nspiffe_ids: [\"spiffe://td/x\"]\n";
        let e = parse(&format!(
            "{base}rules:\n- host: a.com\n  ports: [443]\n  prots: 1\n"
        ))
        .unwrap_err();
        assert!(e.to_string().contains("prots"), "{e}");
        let e = parse(&format!("{base}rules:\n- host: A.com\n  ports: [443]\n")).unwrap_err();
        assert!(e.to_string().contains("rules[0].host"), "{e}");
        let e = parse(&format!("{base}rules:\n- host: a.com\n  ports: []\n")).unwrap_err();
        assert!(e.to_string().contains("rules[0].ports"), "{e}");
        let e = parse(&format!(
            "{base}rules:\n- host: a.com\n  ports: [80]\n  methods: [FETCH]\n"
        ))
        .unwrap_err();
        assert!(e.to_string().contains("methods"), "{e}");
        let e = parse(&format!(
            "{base}rules:\n- host: a.com\n  ports: [80]\n  paths: [\"/a/../b\"]\n"
        ))
        .unwrap_err();
        assert!(e.to_string().contains("paths"), "{e}");
        let e = parse("kind: egress-policy\nname: a\nspiffe_ids: [\"http://x\"]\n").unwrap_err();
        assert!(e.to_string().contains("spiffe_ids[0]"), "{e}");
        assert!(parse(&format!(
            "{base}rules:\n- host: \"*.a.com\"\n  ports: [443]\n- host: \"::1\"\n  ports: [1]\n"
        ))
        .is_ok());
    }

    #[test]
    fn most_specific_policy_wins() {
        let mut set = EgressPolicySet::default();
        for (name, ids) in [
            ("all", "[\"spiffe://td/*\"]"),
            ("ns", "[\"spiffe://td/ns/a/*\"]"),
            ("one", "[\"spiffe://td/ns/a/sa/x\"]"),
        ] {
            let p = parse(&format!(
                "kind: egress-policy\nname: {name}\nspiffe_ids: {ids}\n"
            ))
            .unwrap();
            set.insert(p, name.into()).unwrap();
        }
        assert_eq!(set.select("spiffe://td/ns/a/sa/x").unwrap().name, "one");
        assert_eq!(set.select("spiffe://td/ns/a/sa/y").unwrap().name, "ns");
        assert_eq!(set.select("spiffe://td/ns/b/sa/y").unwrap().name, "all");
        assert!(set.select("spiffe://other/ns").is_none());
    }
}

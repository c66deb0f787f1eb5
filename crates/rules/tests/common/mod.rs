//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The unchanged upstream Falco stable rules: `$BRAINBOX_FALCO_RULES`, else the vendored copy
/// `rules/falco/falco_rules.yaml` (kept byte-identical to upstream by a node-agent test), else
/// `shared/falco/falco_rules.yaml` in the nearest ancestor of the repository.
pub fn upstream() -> PathBuf {
    if let Ok(p) = std::env::var("BRAINBOX_FALCO_RULES") {
        return PathBuf::from(p);
    }
    let root = repo_root().canonicalize().expect("repo root");
    let vendored = root.join("rules/falco/falco_rules.yaml");
    if vendored.exists() {
        return vendored;
    }
    for dir in root.ancestors() {
        let p = dir.join("shared/falco/falco_rules.yaml");
        if p.exists() {
            return p;
        }
    }
    panic!(
        "upstream Falco rules not found: set BRAINBOX_FALCO_RULES or put shared/falco/falco_rules.yaml beside the repository ({})",
        root.display()
    );
}

/// Our override profile.
pub fn overrides() -> PathBuf {
    repo_root().join("profiles/rules/brainbox-overrides.yaml")
}

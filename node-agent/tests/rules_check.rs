//! `brainbox-node-agent rules check` end to end (the binary, real files, exit codes).

use std::path::PathBuf;
use std::process::Command;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// `$BRAINBOX_FALCO_RULES`, else the vendored `rules/falco/falco_rules.yaml`, else
/// `shared/falco/falco_rules.yaml` in the nearest ancestor.
fn upstream() -> PathBuf {
    if let Ok(p) = std::env::var("BRAINBOX_FALCO_RULES") {
        return PathBuf::from(p);
    }
    let root = repo_root();
    let vendored = root.join("rules/falco/falco_rules.yaml");
    if vendored.exists() {
        return vendored;
    }
    root.ancestors()
        .map(|d| d.join("shared/falco/falco_rules.yaml"))
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "upstream Falco rules not found beside {}: set BRAINBOX_FALCO_RULES",
                root.display()
            )
        })
}

fn agent() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_brainbox-node-agent"));
    // An invalid agent configuration must not matter to the rule tools.
    c.env("BRAINBOX_CONFIG", "/nonexistent/agent.toml");
    c
}

#[test]
fn check_upstream_and_overrides() {
    let up = upstream();
    let ov = repo_root().join("profiles/rules/brainbox-overrides.yaml");
    let out = agent()
        .args(["rules", "check"])
        .arg(&up)
        .arg(&ov)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every upstream stable rule is evaluable (the last one, Contact K8S API Server From
    // Container, through the agent's resolver of the names rules compare fd.sip.name with).
    assert!(
        stdout.contains(
            ": 25 rules, 87 macros, 49 lists, 0 overrides; 25 rules evaluable; 0 warnings"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("total: 25 rules (25 evaluable, 25 enabled), 87 macros, 49 lists"),
        "{stdout}"
    );

    let out = agent()
        .args(["rules", "check", "--json"])
        .arg(&up)
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["total"]["rules"], 25);
    assert_eq!(v["total"]["macros"], 87);
    assert_eq!(v["total"]["lists"], 49);
    assert_eq!(v["total"]["rules_evaluable"], 25);
    assert_eq!(v["warnings"].as_array().map(Vec::len), Some(0), "{v:#}");
}

#[test]
fn check_reports_syntax_error_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "- rule: R\n  desc: d\n  condition: evt.type = execve and (proc.name = bash\n  output: o\n  priority: INFO\n",
    )
    .unwrap();
    let out = agent().args(["rules", "check"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:3:", bad.display())),
        "{stderr}"
    );
    assert!(stderr.contains("unbalanced parentheses"), "{stderr}");

    let out = agent()
        .args(["rules", "check", "--json"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["line"], 3);
    assert_eq!(v["error"]["kind"], "syntax");
}

//! Falco's exceptions, `override` and legacy `append`, across files loaded in order.

mod common;

use brainbox_rules::loader::Definitions;
use brainbox_rules::{Capabilities, OwnedEvent, Priority, RuleSet};
use serde_json::json;

fn shell_event(image: &str, shell: &str) -> OwnedEvent {
    OwnedEvent::from_json_value(&json!({
        "evt.type": "execve", "evt.num": 7, "container.id": "3f2a9c1b7d4e",
        "container.image.repository": image, "proc.name": shell, "proc.exe": format!("/bin/{shell}"),
        "proc.cmdline": shell, "proc.args": "", "proc.tty": 34816, "proc.pname": "runc",
        "proc.anames": ["runc", "containerd-shim"], "user.name": "root", "user.uid": 0,
    }))
    .unwrap()
}

fn names(rs: &RuleSet, e: &OwnedEvent) -> Vec<String> {
    rs.matches(e).into_iter().map(|r| r.name.clone()).collect()
}

#[test]
fn profile_exception_suppresses_upstream_rule() {
    let upstream = common::upstream();
    let before = std::fs::read(&upstream).unwrap();
    let caps = Capabilities::default();
    let plain = RuleSet::load_files(&[&upstream], &caps).unwrap();
    let tuned = RuleSet::load_files(&[upstream.clone(), common::overrides()], &caps).unwrap();

    let debug_shell = shell_event("ghcr.io/brainbox-guard/debug-toolbox", "bash");
    let agent_shell = shell_event("ghcr.io/acme/agent", "bash");
    let debug_zsh = shell_event("ghcr.io/brainbox-guard/debug-toolbox", "zsh");

    // Upstream alone: the operator's debug shell fires.
    assert_eq!(
        names(&plain, &debug_shell),
        vec!["Terminal shell in container"]
    );
    // With our profile: suppressed by the exception...
    assert!(
        names(&tuned, &debug_shell).is_empty(),
        "{:?}",
        names(&tuned, &debug_shell)
    );
    // ...but only for that image and the listed shells.
    assert_eq!(
        names(&tuned, &agent_shell),
        vec!["Terminal shell in container"]
    );
    assert_eq!(
        names(&tuned, &debug_zsh),
        vec!["Terminal shell in container"]
    );

    // The profile's priority overrides applied; the upstream file is untouched.
    assert_eq!(
        tuned
            .rule("Netcat Remote Code Execution in Container")
            .unwrap()
            .priority,
        Priority::Critical
    );
    assert!(tuned
        .rule("Packet socket created in container")
        .unwrap()
        .tags
        .contains(&"brainbox".to_owned()));
    assert_eq!(std::fs::read(&upstream).unwrap(), before);

    // Counts: the profile adds no rules, only overrides.
    let r = brainbox_rules::check::report(&tuned);
    assert_eq!(r.total.rules, 25);
    assert_eq!(
        r.files[1].overrides,
        r.files[1].rules + r.files[1].lists + r.files[1].macros
    );
}

const BASE: &str = r#"
- list: shells
  items: [bash, sh]
- macro: spawned
  condition: evt.type in (execve, execveat)
- rule: Shell
  desc: a shell ran
  condition: spawned and proc.name in (shells)
  output: shell %proc.name by %user.name
  priority: NOTICE
  tags: [a]
"#;

fn compile(files: &[(&str, &str)]) -> Result<RuleSet, brainbox_rules::LoadError> {
    let mut d = Definitions::new();
    for (name, text) in files {
        d.load_str(name, text)?;
    }
    RuleSet::compile(&d, &Capabilities::default())
}

fn proc(name: &str, user: &str, cwd: &str) -> OwnedEvent {
    OwnedEvent::from_json_value(&json!({
        "evt.type": "execve", "proc.name": name, "user.name": user, "proc.cwd": cwd,
        "proc.pid": 10, "proc.pname": "init",
    }))
    .unwrap()
}

fn fires(rs: &RuleSet, e: &OwnedEvent) -> bool {
    !rs.matches(e).is_empty()
}

#[test]
fn override_append_and_replace() {
    let rs = compile(&[
        ("base.yaml", BASE),
        (
            "o.yaml",
            r#"
- list: shells
  items: [zsh]
  override:
    items: append
- rule: Shell
  condition: and user.name != root
  output: (tuned)
  tags: [b]
  override:
    condition: append
    output: append
    tags: append
"#,
        ),
    ])
    .unwrap();
    assert!(fires(&rs, &proc("zsh", "bob", "/")));
    assert!(!fires(&rs, &proc("zsh", "root", "/")));
    let r = rs.rule("Shell").unwrap();
    assert_eq!(r.tags, vec!["a", "b"]);
    let e = proc("bash", "bob", "/");
    assert_eq!(
        r.render_output(&e, &|s| s.to_owned()),
        "shell bash by bob (tuned)"
    );

    let rs = compile(&[
        ("base.yaml", BASE),
        (
            "o.yaml",
            r#"
- macro: spawned
  condition: evt.type = execve and proc.pid > 100
  override:
    condition: replace
- rule: Shell
  priority: CRITICAL
  enabled: false
  override:
    priority: replace
    enabled: replace
"#,
        ),
    ])
    .unwrap();
    let r = rs.rule("Shell").unwrap();
    assert_eq!(r.priority, Priority::Critical);
    assert!(!r.enabled);
    assert!(
        !fires(&rs, &proc("bash", "bob", "/")),
        "disabled rule fired"
    );
}

#[test]
fn legacy_append_and_enable_only_items() {
    let rs = compile(&[
        ("base.yaml", BASE),
        (
            "o.yaml",
            r#"
- list: shells
  items: [fish]
  append: true
- macro: spawned
  condition: and proc.pid = 10
  append: true
- rule: Shell
  condition: and not proc.cwd startswith /opt/ci/
  append: true
"#,
        ),
    ])
    .unwrap();
    assert!(fires(&rs, &proc("fish", "bob", "/home/")));
    assert!(!fires(&rs, &proc("fish", "bob", "/opt/ci/job/")));
    let rs = compile(&[
        ("base.yaml", BASE),
        ("o.yaml", "- rule: Shell\n  enabled: false\n"),
    ])
    .unwrap();
    assert!(!rs.rule("Shell").unwrap().enabled);
}

#[test]
fn exception_forms() {
    let rules = r#"
- rule: Shell
  exceptions:
    - name: ci_users
      fields: user.name
      comps: in
      values: [ci, "build-bot"]
    - name: user_dir
      fields: [user.name, proc.cwd]
      comps: [=, startswith]
      values:
        - [alice, /home/alice/]
    - name: listed
      fields: [proc.name, user.name]
      comps: [in, in]
      values:
        - [[bash, sh], [svc1, svc2]]
  override:
    exceptions: append
"#;
    let rs = compile(&[("base.yaml", BASE), ("o.yaml", rules)]).unwrap();
    assert!(!fires(&rs, &proc("bash", "ci", "/")));
    assert!(!fires(&rs, &proc("bash", "build-bot", "/")));
    assert!(!fires(&rs, &proc("bash", "alice", "/home/alice/src/")));
    assert!(fires(&rs, &proc("bash", "alice", "/tmp/")));
    assert!(!fires(&rs, &proc("sh", "svc2", "/")));
    assert!(fires(&rs, &proc("bash", "bob", "/")));

    // A later file appends values to an existing exception by name.
    let more = r#"
- rule: Shell
  exceptions:
    - name: user_dir
      values:
        - [bob, /srv/]
  override:
    exceptions: append
"#;
    let rs = compile(&[("base.yaml", BASE), ("o.yaml", rules), ("p.yaml", more)]).unwrap();
    assert!(!fires(&rs, &proc("bash", "bob", "/srv/app/")));
    assert!(fires(&rs, &proc("bash", "bob", "/home/")));

    // Exceptions defined with the rule itself, and appended with legacy `append: true`.
    let own = r#"
- rule: Own
  desc: d
  condition: evt.type = execve and proc.name = curl
  output: o
  priority: INFO
  exceptions:
    - name: by_parent
      fields: [proc.pname]
      values:
        - [apt]
- rule: Own
  exceptions:
    - name: by_parent
      values:
        - [pip]
  append: true
"#;
    let rs = compile(&[("own.yaml", own)]).unwrap();
    let curl = |parent: &str| {
        OwnedEvent::from_json_value(
            &json!({"evt.type": "execve", "proc.name": "curl", "proc.pname": parent}),
        )
        .unwrap()
    };
    assert!(!fires(&rs, &curl("apt")));
    assert!(!fires(&rs, &curl("pip")));
    assert!(fires(&rs, &curl("bash")));
}

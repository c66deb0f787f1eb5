//! Malformed rule files give one clear error naming the file and the line.

use brainbox_rules::loader::Definitions;
use brainbox_rules::{Capabilities, ErrorKind, LoadError, RuleSet};
use std::io::Write;

/// Writes `text` to a temp file, loads and compiles it, and returns the error.
fn load_err(text: &str) -> (LoadError, String) {
    let mut f = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    let path = f.path().to_path_buf();
    let r = RuleSet::load_files(&[&path], &Capabilities::default());
    match r {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => (e, path.display().to_string()),
    }
}

fn rule(cond: &str) -> String {
    format!(
        "- macro: m\n  condition: evt.type = execve\n\n- rule: R\n  desc: d\n  condition: {cond}\n  output: o\n  priority: INFO\n"
    )
}

#[test]
fn bad_yaml() {
    let (e, path) =
        load_err("- rule: R\n  desc: d\n  condition: [evt.type = execve\n  output: o\n");
    assert_eq!(e.kind, ErrorKind::Yaml);
    assert_eq!(e.file, path);
    assert!(e.line >= 3, "{e}");
    assert!(
        e.to_string().starts_with(&format!("{path}:{}", e.line)),
        "{e}"
    );
}

#[test]
fn unknown_macro() {
    let (e, path) = load_err(&rule("m and no_such_macro"));
    assert_eq!(e.kind, ErrorKind::UndefinedMacro);
    assert_eq!((e.file.as_str(), e.line), (path.as_str(), 6), "{e}");
    assert_eq!(e.item.as_deref(), Some("rule `R`"));
    assert!(e.message.contains("no_such_macro"), "{e}");
}

#[test]
fn unknown_macro_inside_macro_points_at_the_macro() {
    let text = "- macro: a\n  condition: evt.type = execve\n- macro: b\n  condition: a and nope\n- rule: R\n  desc: d\n  condition: b\n  output: o\n  priority: INFO\n";
    let (e, _) = load_err(text);
    assert_eq!(e.kind, ErrorKind::UndefinedMacro);
    assert_eq!(e.line, 4, "{e}");
    assert_eq!(e.item.as_deref(), Some("macro `b`"));
}

#[test]
fn bad_operator() {
    let (e, _) = load_err(&rule("m and proc.name equals bash"));
    assert_eq!(e.kind, ErrorKind::Syntax);
    assert_eq!(e.line, 6);
    assert_eq!(e.col, Some(17));
    assert!(e.message.contains("bad operator `equals`"), "{e}");
}

#[test]
fn unbalanced_parentheses() {
    let (e, _) = load_err(&rule("(m and (proc.name = bash)"));
    assert_eq!(e.kind, ErrorKind::Syntax);
    assert_eq!(e.line, 6);
    assert!(e.message.contains("unbalanced parentheses"), "{e}");
    let (e, _) = load_err(&rule("m and proc.name = bash)"));
    assert!(e.message.contains("unbalanced parentheses"), "{e}");
    let (e, _) = load_err(&rule("m and proc.name in (bash, sh"));
    assert!(e.message.contains("unbalanced parentheses"), "{e}");
}

#[test]
fn type_errors() {
    let (e, _) = load_err(&rule("m and proc.pid = abc"));
    assert_eq!(e.kind, ErrorKind::Type);
    assert_eq!(e.line, 6);
    assert!(
        e.message
            .contains("`proc.pid` is a number; `abc` is not a number"),
        "{e}"
    );
    let (e, _) = load_err(&rule("m and proc.pid contains 1"));
    assert_eq!(e.kind, ErrorKind::Type);
    let (e, _) = load_err(&rule("m and container.privileged = maybe"));
    assert_eq!(e.kind, ErrorKind::Type);
    let (e, _) = load_err(&rule("m and proc.name > 3"));
    assert_eq!(e.kind, ErrorKind::Type);
    let (e, _) = load_err(&rule("m and fd.sip = not-an-ip"));
    assert_eq!(e.kind, ErrorKind::Type);
    let (e, _) = load_err(&rule("m and proc.aname[x] = bash"));
    assert_eq!(e.kind, ErrorKind::Type);
    let (e, _) = load_err(&rule("m and proc.name = val(proc.pid)"));
    assert_eq!(e.kind, ErrorKind::Type);
    let (e, _) = load_err(&rule("m and proc.name regex \"(\""));
    assert_eq!(e.kind, ErrorKind::Syntax);
}

#[test]
fn multi_line_condition_points_at_the_right_line() {
    let text = "- rule: R\n  desc: d\n  condition: |\n    evt.type = execve\n    and proc.name = bash\n    and proc.pid = abc\n  output: o\n  priority: INFO\n";
    let (e, _) = load_err(text);
    assert_eq!(e.kind, ErrorKind::Type);
    assert_eq!(e.line, 6, "{e}");
}

#[test]
fn schema_errors() {
    let (e, _) =
        load_err("- rule: R\n  desc: d\n  condition: evt.type = execve\n  priority: INFO\n");
    assert_eq!(e.kind, ErrorKind::Schema);
    assert_eq!(e.line, 1);
    assert!(e.message.contains("no `output`"), "{e}");
    let (e, _) = load_err(&rule("m").replace("priority: INFO", "priority: LOUD"));
    assert!(e.message.contains("unknown priority"), "{e}");
    let (e, _) =
        load_err("- rule: Missing\n  condition: and x\n  override:\n    condition: append\n");
    assert!(e.message.contains("no earlier rule"), "{e}");
    let (e, _) = load_err(&format!("{}- rule: R\n  condition: and proc.pid = 1\n  output: x\n  override:\n    condition: append\n", rule("m")));
    assert!(
        e.message.contains("`output` has no entry in `override`"),
        "{e}"
    );
    let (e, _) = load_err("- macro: a\n  condition: a\n- rule: R\n  desc: d\n  condition: a\n  output: o\n  priority: INFO\n");
    assert!(e.message.contains("refers to itself"), "{e}");
}

#[test]
fn error_in_an_appended_part_names_the_second_file() {
    let mut d = Definitions::new();
    d.load_str("first.yaml", &rule("m")).unwrap();
    d.load_str(
        "second.yaml",
        "# tuning\n- rule: R\n  condition: and (proc.name = x\n  append: true\n",
    )
    .unwrap();
    let e = RuleSet::compile(&d, &Capabilities::default()).unwrap_err();
    assert_eq!((e.file.as_str(), e.line), ("second.yaml", 3), "{e}");
    assert_eq!(e.kind, ErrorKind::Syntax);
}

#[test]
fn bad_exception_value_names_its_line() {
    let text = format!(
        "{}- rule: R\n  exceptions:\n    - name: e\n      fields: [proc.pid]\n      values:\n        - [12]\n        - [twelve]\n  override:\n    exceptions: append\n",
        rule("m")
    );
    let (e, _) = load_err(&text);
    assert_eq!(e.kind, ErrorKind::Type);
    assert_eq!(e.line, 15, "{e}");
}

#[test]
fn unsupported_field_is_a_warning_not_an_error() {
    let mut d = Definitions::new();
    d.load_str(
        "x.yaml",
        "- rule: Plugin\n  desc: d\n  condition: evt.type = execve and k8saudit.verb = create\n  output: o\n  priority: INFO\n- rule: Ok\n  desc: d\n  condition: evt.type = execve\n  output: o\n  priority: INFO\n",
    )
    .unwrap();
    let rs = RuleSet::compile(&d, &Capabilities::default()).unwrap();
    assert!(!rs.rule("Plugin").unwrap().evaluable);
    assert!(rs.rule("Ok").unwrap().evaluable);
    let w: Vec<_> = rs
        .warnings
        .iter()
        .filter(|w| w.rule.as_deref() == Some("Plugin"))
        .collect();
    assert!(
        w.iter()
            .any(|w| w.line == 1 && w.file == "x.yaml" && w.message.contains("not evaluable")),
        "{w:?}"
    );
}

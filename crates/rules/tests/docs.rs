//! `docs/rules.md` shows the field table exactly as the engine declares it.

mod common;

#[test]
fn docs_field_table_is_current() {
    let doc =
        std::fs::read_to_string(common::repo_root().join("docs/rules.md")).expect("docs/rules.md");
    let table = brainbox_rules::fields::fields_markdown();
    assert!(
        doc.contains(&table),
        "docs/rules.md field table is stale; regenerate with `cargo run -p brainbox-rules --example fields_table`"
    );
}

/// Every YAML example in `docs/rules.md` loads after the upstream file.
#[test]
fn docs_yaml_examples_load() {
    let doc = std::fs::read_to_string(common::repo_root().join("docs/rules.md")).unwrap();
    let mut defs = brainbox_rules::loader::Definitions::new();
    defs.load_file(&common::upstream()).unwrap();
    let mut n = 0;
    for (i, block) in doc.split("```yaml\n").skip(1).enumerate() {
        let yaml = block.split("```").next().unwrap();
        defs.load_str(&format!("docs/rules.md example {i}"), yaml)
            .unwrap_or_else(|e| panic!("{e}"));
        n += 1;
    }
    assert!(n >= 4);
    brainbox_rules::RuleSet::compile(&defs, &brainbox_rules::Capabilities::default()).unwrap();
}

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

//! Prints the supported-field table as Markdown (pasted into `docs/rules.md`; a test keeps the
//! two in sync).

fn main() {
    print!("{}", brainbox_rules::fields::fields_markdown());
}

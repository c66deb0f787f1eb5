//! Whole rule files: YAML, items, overrides, compilation. Any input gives Ok or an error with a
//! location, never a panic.
#![no_main]

use brainbox_rules::loader::Definitions;
use brainbox_rules::{Capabilities, RuleSet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut defs = Definitions::new();
    if defs.load_str("fuzz.yaml", text).is_ok() {
        let _ = RuleSet::compile(&defs, &Capabilities::default());
    }
});

//! The Falco condition parser must never panic, and whatever it accepts must print to text that
//! parses back to the same tree.
#![no_main]

use brainbox_rules::parser::parse_condition;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(expr) = parse_condition(text) {
        let printed = expr.to_string();
        let again = parse_condition(&printed).expect("printed condition must parse");
        assert_eq!(again, expr, "round trip changed the tree: {printed}");
    }
});

//! Loading the unchanged upstream Falco stable rules.

use brainbox_rules::check::{check_files, report};
use brainbox_rules::{Capabilities, RuleSet};

mod common;
use common::upstream;

#[test]
fn upstream_counts() {
    let r = check_files(&[upstream()]).unwrap();
    println!("{}", r.to_text());
    assert_eq!(r.total.rules, 25);
    assert_eq!(r.total.macros, 87);
    assert_eq!(r.total.lists, 49);
    assert!(r.total.rules_evaluable >= 20, "{}", r.total.rules_evaluable);
}

#[test]
fn everything_caps_makes_all_evaluable() {
    let rs = RuleSet::load_files(&[upstream()], &Capabilities::everything()).unwrap();
    let r = report(&rs);
    assert_eq!(r.total.rules_evaluable, 25, "{:?}", r.not_evaluable);
}

//! brainbox-rules: a Falco-compatible rule engine.
//!
//! It reads Falco rule files unchanged (`list`, `macro`, `rule`, `exceptions`, `override`,
//! legacy `append`), compiles every condition once (lists expanded, macros inlined, string sets
//! hashed, regexes and globs prepared, fields resolved against a declared [`fields`] table), and
//! evaluates events through an index keyed by event type, so an event only visits the rules
//! that can match it. Pure logic: no eBPF, no I/O beyond reading rule files.
//!
//! ```no_run
//! use brainbox_rules::{Capabilities, RuleSet};
//! let rules = RuleSet::load_files(&["falco_rules.yaml", "profiles/rules/brainbox-overrides.yaml"],
//!                                 &Capabilities::default()).unwrap();
//! # let ev = brainbox_rules::event::OwnedEvent::new(brainbox_rules::event::EventType(0));
//! rules.for_each_match(&ev, |r| println!("{}: {}", r.priority, r.render_output(&ev, &|s| s.to_owned())));
//! ```

pub mod ast;
pub mod check;
pub mod compile;
pub mod engine;
pub mod eval;
pub mod event;
pub mod fields;
pub mod loader;
pub mod naive;
pub mod output;
pub mod parser;
pub mod yaml;

pub use compile::Capabilities;
pub use engine::{CompiledRule, RuleSet};
pub use event::{Event, EventType, OwnedEvent, Value};
pub use fields::{Field, FieldArg};
pub use loader::{Definitions, ErrorKind, LoadError, Priority, Warning};

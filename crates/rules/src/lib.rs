//! brainbox-rules: a Falco-compatible rule engine.
//!
//! It reads Falco rule files unchanged (`list`, `macro`, `rule`, `exceptions`, `override`,
//! legacy `append`), compiles every condition once (lists expanded, macros inlined, string sets
//! hashed, regexes and globs prepared, fields resolved against a declared [`fields`] table), and
//! evaluates events through an index keyed by event type, so an event only visits the rules
//! that can match it. Pure logic: no eBPF, no I/O beyond reading rule files.

pub mod ast;
pub mod event;
pub mod fields;
pub mod parser;
pub mod yaml;

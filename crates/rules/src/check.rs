//! `rules check`: load files, compile them for the sensor, and report counts and warnings.

use crate::compile::Capabilities;
use crate::engine::RuleSet;
use crate::loader::{LoadError, Warning};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;

/// Counts for one file.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct FileReport {
    /// The file.
    pub file: String,
    /// `rule` items in the file.
    pub rules: usize,
    /// `macro` items.
    pub macros: usize,
    /// `list` items.
    pub lists: usize,
    /// Items that appended to or overrode an earlier definition.
    pub overrides: usize,
    /// Rules defined in this file that the engine can evaluate.
    pub rules_evaluable: usize,
    /// Warnings located in this file.
    pub warnings: usize,
}

/// Totals after all files.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Totals {
    /// Distinct rules.
    pub rules: usize,
    /// Distinct macros.
    pub macros: usize,
    /// Distinct lists.
    pub lists: usize,
    /// Rules the engine can evaluate.
    pub rules_evaluable: usize,
    /// Rules enabled (after overrides).
    pub rules_enabled: usize,
    /// Warnings.
    pub warnings: usize,
}

/// A rule that cannot be evaluated, and why.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct NotEvaluable {
    /// Rule name.
    pub rule: String,
    /// File.
    pub file: String,
    /// Line.
    pub line: usize,
    /// Why.
    pub reason: String,
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Per file, in load order.
    pub files: Vec<FileReport>,
    /// Totals.
    pub total: Totals,
    /// Rules that are not evaluable.
    pub not_evaluable: Vec<NotEvaluable>,
    /// All warnings.
    pub warnings: Vec<Warning>,
}

/// Loads and compiles `paths` in order for the sensor's capabilities.
pub fn check_files<P: AsRef<Path>>(paths: &[P]) -> Result<Report, LoadError> {
    let rs = RuleSet::load_files(paths, &Capabilities::default())?;
    Ok(report(&rs))
}

/// Builds the report of a compiled set.
pub fn report(rs: &RuleSet) -> Report {
    let files = rs
        .files
        .iter()
        .enumerate()
        .map(|(i, f)| FileReport {
            file: f.file.clone(),
            rules: f.rules,
            macros: f.macros,
            lists: f.lists,
            overrides: f.overrides,
            rules_evaluable: rs
                .rules
                .iter()
                .filter(|r| r.file_idx == i && r.evaluable)
                .count(),
            warnings: rs.warnings.iter().filter(|w| w.file == f.file).count(),
        })
        .collect();
    let not_evaluable = rs
        .rules
        .iter()
        .filter(|r| !r.evaluable)
        .map(|r| NotEvaluable {
            rule: r.name.clone(),
            file: r.loc.file.to_string(),
            line: r.loc.line,
            reason: r.not_evaluable_reason.clone().unwrap_or_default(),
        })
        .collect();
    Report {
        files,
        total: Totals {
            rules: rs.rules.len(),
            macros: rs.macros,
            lists: rs.lists,
            rules_evaluable: rs.evaluable(),
            rules_enabled: rs.rules.iter().filter(|r| r.enabled).count(),
            warnings: rs.warnings.len(),
        },
        not_evaluable,
        warnings: rs.warnings.clone(),
    }
}

impl Report {
    /// Human-readable form.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for f in &self.files {
            let _ = writeln!(
                s,
                "{}: {} rules, {} macros, {} lists, {} overrides; {} rules evaluable; {}",
                f.file,
                f.rules,
                f.macros,
                f.lists,
                f.overrides,
                f.rules_evaluable,
                warnings(f.warnings)
            );
        }
        let t = &self.total;
        let _ = writeln!(
            s,
            "total: {} rules ({} evaluable, {} enabled), {} macros, {} lists, {}",
            t.rules,
            t.rules_evaluable,
            t.rules_enabled,
            t.macros,
            t.lists,
            warnings(t.warnings)
        );
        for w in &self.warnings {
            let _ = writeln!(s, "warning: {w}");
        }
        s
    }
}

fn warnings(n: usize) -> String {
    if n == 1 {
        "1 warning".to_owned()
    } else {
        format!("{n} warnings")
    }
}

/// The JSON form of a load error (for `rules check --json`).
pub fn error_json(e: &LoadError) -> serde_json::Value {
    serde_json::json!({
        "error": {
            "file": e.file,
            "line": e.line,
            "column": e.col,
            "item": e.item,
            "kind": e.kind,
            "message": e.message,
            "text": e.to_string(),
        }
    })
}

/// Exit code of `rules check` when a file does not load (syntax, schema or type error).
pub const EXIT_RULES_INVALID: i32 = 1;

/// Runs `rules check [--json] FILE...`: prints the report to `out` (or the error to `err`,
/// and as JSON to `out` with `--json`) and returns the process exit code.
pub fn run<P: AsRef<Path>>(
    json: bool,
    files: &[P],
    out: &mut dyn std::io::Write,
    err: &mut dyn std::io::Write,
) -> i32 {
    match check_files(files) {
        Ok(r) => {
            let text = if json {
                serde_json::to_string_pretty(&r).unwrap_or_default() + "\n"
            } else {
                r.to_text()
            };
            let _ = out.write_all(text.as_bytes());
            0
        }
        Err(e) => {
            if json {
                let _ = writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&error_json(&e)).unwrap_or_default()
                );
            }
            let _ = writeln!(err, "error: {e}");
            EXIT_RULES_INVALID
        }
    }
}

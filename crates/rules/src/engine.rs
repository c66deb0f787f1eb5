//! The compiled rule set: rules indexed by event type, evaluated against events.

use crate::compile::{event_types, unavailable_fields, Capabilities, Lowerer};
use crate::eval::Node;
use crate::event::{Event, EventType, EventTypeSet, EVENT_TYPES};
use crate::loader::{Definitions, FileCounts, LoadError, Loc, Priority, Warning};
use crate::output::OutputTemplate;
use std::path::Path;

/// One compiled rule.
#[derive(Clone, Debug)]
pub struct CompiledRule {
    /// Name.
    pub name: String,
    /// Description.
    pub desc: String,
    /// Priority.
    pub priority: Priority,
    /// Tags.
    pub tags: Vec<String>,
    /// Enabled (after overrides).
    pub enabled: bool,
    /// Event source.
    pub source: String,
    /// Where it was defined.
    pub loc: Loc,
    /// Index of the defining file in [`RuleSet::files`].
    pub file_idx: usize,
    /// The output template.
    pub output: OutputTemplate,
    /// Whether the engine can evaluate it with the sensor's fields and event types.
    pub evaluable: bool,
    /// Why not, when not evaluable.
    pub not_evaluable_reason: Option<String>,
    /// Fields the condition needs that the sensor does not provide.
    pub unavailable: Vec<String>,
    /// Event types the rule can match.
    pub event_types: EventTypeSet,
    /// The compiled condition.
    pub condition: Node,
}

impl CompiledRule {
    /// Evaluates the condition (ignoring `enabled` and evaluability).
    #[inline]
    pub fn matches<E: Event + ?Sized>(&self, ev: &E) -> bool {
        self.condition.eval(ev)
    }

    /// Renders the output with `redact` applied to each substituted value.
    pub fn render_output<E: Event + ?Sized>(
        &self,
        ev: &E,
        redact: &dyn Fn(&str) -> String,
    ) -> String {
        self.output.render(ev, redact)
    }
}

/// A loaded and compiled set of rules.
#[derive(Clone, Debug)]
pub struct RuleSet {
    /// All rules in definition order (evaluable or not, enabled or not).
    pub rules: Vec<CompiledRule>,
    /// Per-file counts in load order.
    pub files: Vec<FileCounts>,
    /// Number of lists after all files.
    pub lists: usize,
    /// Number of macros after all files.
    pub macros: usize,
    /// Warnings from loading and compiling.
    pub warnings: Vec<Warning>,
    by_type: Vec<Box<[u32]>>,
}

impl RuleSet {
    /// Loads `paths` in order and compiles them for `caps`.
    pub fn load_files<P: AsRef<Path>>(
        paths: &[P],
        caps: &Capabilities,
    ) -> Result<RuleSet, LoadError> {
        let mut defs = Definitions::new();
        for p in paths {
            defs.load_file(p.as_ref())?;
        }
        RuleSet::compile(&defs, caps)
    }

    /// Compiles loaded definitions.
    pub fn compile(defs: &Definitions, caps: &Capabilities) -> Result<RuleSet, LoadError> {
        let mut lw = Lowerer::new(defs, caps);
        lw.check_macro_syntax()?;
        let mut rules = Vec::with_capacity(defs.rules.len());
        let mut warnings = defs.warnings.clone();
        let mut rule_warnings = Vec::new();
        for r in defs.rules.iter() {
            let cond = lw.rule_condition(r)?;
            let (output, unknown_out) = OutputTemplate::parse(&r.output);
            for f in unknown_out {
                rule_warnings.push(Warning {
                    file: r.output_loc.file.to_string(),
                    line: r.output_loc.line,
                    item: Some(format!("rule `{}`", r.name)),
                    rule: Some(r.name.clone()),
                    message: format!("output field `%{f}` is unknown and prints as <NA>"),
                });
            }
            let unavailable = unavailable_fields(&cond);
            let types = event_types(&cond).intersect(&caps.event_types);
            let reason = if r.source != "syscall" {
                Some(format!(
                    "source `{}` is not supported (only `syscall`)",
                    r.source
                ))
            } else if !unavailable.is_empty() {
                Some(format!(
                    "needs field{} not provided by the sensor: {}",
                    if unavailable.len() > 1 { "s" } else { "" },
                    unavailable.join(", ")
                ))
            } else if types.is_empty() {
                Some(
                    "can never match: the sensor reports none of the event types it needs"
                        .to_owned(),
                )
            } else {
                None
            };
            if let Some(why) = &reason {
                rule_warnings.push(Warning {
                    file: r.loc.file.to_string(),
                    line: r.loc.line,
                    item: Some(format!("rule `{}`", r.name)),
                    rule: Some(r.name.clone()),
                    message: format!("not evaluable: {why}"),
                });
            } else if types.len() == caps.event_types.len() && types.len() > 1 {
                rule_warnings.push(Warning {
                    file: r.loc.file.to_string(),
                    line: r.loc.line,
                    item: Some(format!("rule `{}`", r.name)),
                    rule: Some(r.name.clone()),
                    message: "condition does not restrict evt.type: evaluated for every event"
                        .into(),
                });
            }
            rules.push(CompiledRule {
                name: r.name.clone(),
                desc: r.desc.clone(),
                priority: r.priority,
                tags: r.tags.clone(),
                enabled: r.enabled,
                source: r.source.clone(),
                loc: r.loc.clone(),
                file_idx: r.file_idx,
                output,
                evaluable: reason.is_none(),
                not_evaluable_reason: reason,
                unavailable,
                event_types: types,
                condition: cond,
            });
        }
        warnings.extend(lw.warnings);
        warnings.extend(rule_warnings);
        let mut by_type: Vec<Vec<u32>> = vec![Vec::new(); EVENT_TYPES.len()];
        for (i, r) in rules.iter().enumerate() {
            if !(r.enabled && r.evaluable) {
                continue;
            }
            for t in r.event_types.iter() {
                if let Some(slot) = by_type.get_mut(t.0 as usize) {
                    slot.push(i as u32);
                }
            }
        }
        Ok(RuleSet {
            rules,
            files: defs.files.clone(),
            lists: defs.lists.len(),
            macros: defs.macros.len(),
            warnings,
            by_type: by_type.into_iter().map(Vec::into_boxed_slice).collect(),
        })
    }

    /// Indices of the enabled, evaluable rules that may match events of type `t`.
    #[inline]
    pub fn candidates(&self, t: EventType) -> &[u32] {
        self.by_type.get(t.0 as usize).map(|b| &**b).unwrap_or(&[])
    }

    /// Calls `f` with each enabled rule that matches `ev`, in definition order.
    #[inline]
    pub fn for_each_match<E: Event + ?Sized>(&self, ev: &E, mut f: impl FnMut(&CompiledRule)) {
        for &i in self.candidates(ev.event_type()) {
            let r = &self.rules[i as usize];
            if r.condition.eval(ev) {
                f(r);
            }
        }
    }

    /// The enabled rules that match `ev`.
    pub fn matches<E: Event + ?Sized>(&self, ev: &E) -> Vec<&CompiledRule> {
        let mut out = Vec::new();
        for &i in self.candidates(ev.event_type()) {
            let r = &self.rules[i as usize];
            if r.condition.eval(ev) {
                out.push(r);
            }
        }
        out
    }

    /// Like [`RuleSet::for_each_match`] but without the event-type index: every enabled,
    /// evaluable rule is evaluated (a benchmark baseline; same results).
    pub fn for_each_match_undispatched<E: Event + ?Sized>(
        &self,
        ev: &E,
        mut f: impl FnMut(&CompiledRule),
    ) {
        for r in &self.rules {
            if r.enabled && r.evaluable && r.condition.eval(ev) {
                f(r);
            }
        }
    }

    /// A rule by name.
    pub fn rule(&self, name: &str) -> Option<&CompiledRule> {
        self.rules.iter().find(|r| r.name == name)
    }

    /// The strings enabled, evaluable rules compare `field` with (`=`, `!=`, `in`), without
    /// transformers: for fields whose value the agent derives from them, as Falco's DNS manager
    /// resolves the names compared with `fd.sip.name`.
    pub fn compared_strings(&self, field: crate::Field) -> std::collections::BTreeSet<String> {
        let mut out = std::collections::BTreeSet::new();
        for r in self.rules.iter().filter(|r| r.enabled && r.evaluable) {
            r.condition.for_each_check(&mut |c| {
                if c.field != field || !c.transforms.is_empty() {
                    return;
                }
                match &c.matcher {
                    crate::eval::Matcher::StrEq(s) => {
                        out.insert(s.to_string());
                    }
                    crate::eval::Matcher::StrIn(set) => {
                        out.extend(set.iter().map(str::to_owned));
                    }
                    _ => {}
                }
            });
        }
        out
    }

    /// Number of rules that can be evaluated.
    pub fn evaluable(&self) -> usize {
        self.rules.iter().filter(|r| r.evaluable).count()
    }
}

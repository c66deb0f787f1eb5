//! Reads Falco rule files into definitions: lists, macros and rules, applying `append: true`,
//! `override:` and redefinitions in file order, and remembering `file:line` for each piece.

use crate::yaml::{self, YKind, YNode};
use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// The Falco rules-engine version whose language this engine implements.
pub const ENGINE_VERSION: (u64, u64, u64) = (0, 57, 0);

/// A place in a rule file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loc {
    /// The file as given to the loader.
    pub file: Arc<str>,
    /// 1-based line.
    pub line: usize,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// What went wrong while loading or compiling rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The file could not be read.
    Io,
    /// Not valid YAML.
    Yaml,
    /// Valid YAML but not a valid Falco item (missing or mistyped key, bad override).
    Schema,
    /// A condition does not parse (bad operator, unbalanced parentheses, ...).
    Syntax,
    /// A condition names a macro that is not defined.
    UndefinedMacro,
    /// A value does not fit the field's type or the operator (e.g. `proc.pid = abc`).
    Type,
}

/// A fatal problem with a rule file, always with file and line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}{}: {}{message}", col.map(|c| format!(":{c}")).unwrap_or_default(), item.as_ref().map(|i| format!("{i}: ")).unwrap_or_default())]
pub struct LoadError {
    /// The file.
    pub file: String,
    /// 1-based line (0 when the file could not be read).
    pub line: usize,
    /// 1-based column, when known.
    pub col: Option<usize>,
    /// The item, e.g. ``rule `Terminal shell in container` ``.
    pub item: Option<String>,
    /// Category.
    pub kind: ErrorKind,
    /// What is wrong.
    pub message: String,
}

impl LoadError {
    pub(crate) fn at(
        loc: &Loc,
        item: Option<String>,
        kind: ErrorKind,
        message: impl Into<String>,
    ) -> Self {
        LoadError {
            file: loc.file.to_string(),
            line: loc.line,
            col: None,
            item,
            kind,
            message: message.into(),
        }
    }
}

/// A non-fatal problem: the file loads, but something is ignored or not evaluable.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Warning {
    /// The file.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// The item, e.g. ``rule `X` ``.
    pub item: Option<String>,
    /// The rule name, when the warning is about a rule.
    pub rule: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.file, self.line)?;
        if let Some(i) = &self.item {
            write!(f, "{i}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Falco priorities (one definition for rules, profiles and alerts).
pub use brainbox_profile::Priority;

/// One piece of a condition (a definition plus any appended parts), with where it came from.
#[derive(Clone, Debug)]
pub struct CondPart {
    /// The text.
    pub text: String,
    /// Where the condition value starts.
    pub loc: Loc,
}

/// A `list`.
#[derive(Clone, Debug)]
pub struct ListDef {
    /// Name.
    pub name: String,
    /// Items as written (quoted items keep their quotes, as in Falco).
    pub items: Vec<String>,
    /// Where it was (last) defined.
    pub loc: Loc,
}

/// A `macro`.
#[derive(Clone, Debug)]
pub struct MacroDef {
    /// Name.
    pub name: String,
    /// Condition parts, joined by a space.
    pub cond: Vec<CondPart>,
    /// Where it was (last) defined.
    pub loc: Loc,
}

/// One cell of an exception's value row: a value, or a list for `in`-style comparisons.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExcCell {
    /// A single value.
    One(String),
    /// A list of values.
    Many(Vec<String>),
}

/// A Falco rule exception.
#[derive(Clone, Debug)]
pub struct ExceptionDef {
    /// Name (unique within the rule).
    pub name: String,
    /// Fields compared.
    pub fields: Vec<String>,
    /// True for the tuple form (`fields: [a, b]`), false for `fields: a`.
    pub tuple: bool,
    /// One comparison operator per field.
    pub comps: Vec<String>,
    /// Value rows (tuple form: one cell per field; single form: one cell per value).
    pub values: Vec<(Vec<ExcCell>, Loc)>,
    /// Where it was defined.
    pub loc: Loc,
}

/// A `rule`.
#[derive(Clone, Debug)]
pub struct RuleDef {
    /// Name.
    pub name: String,
    /// Description.
    pub desc: String,
    /// Condition parts, joined by a space.
    pub cond: Vec<CondPart>,
    /// Output template.
    pub output: String,
    /// Where the output was set.
    pub output_loc: Loc,
    /// Priority.
    pub priority: Priority,
    /// Tags.
    pub tags: Vec<String>,
    /// Enabled.
    pub enabled: bool,
    /// Exceptions.
    pub exceptions: Vec<ExceptionDef>,
    /// Event source (`syscall` unless said otherwise).
    pub source: String,
    /// Where it was (last) fully defined.
    pub loc: Loc,
    /// Index of the file that defined it.
    pub file_idx: usize,
}

/// Counts for one loaded file.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FileCounts {
    /// The file.
    pub file: String,
    /// `rule` items (definitions, appends and overrides).
    pub rules: usize,
    /// `macro` items.
    pub macros: usize,
    /// `list` items.
    pub lists: usize,
    /// Items that appended to or overrode an earlier definition.
    pub overrides: usize,
}

/// A named collection that keeps definition order and allows replacement in place.
#[derive(Clone, Debug)]
pub struct Named<T> {
    items: Vec<T>,
    index: HashMap<String, usize>,
}

impl<T> Default for Named<T> {
    fn default() -> Self {
        Named {
            items: Vec::new(),
            index: HashMap::new(),
        }
    }
}

impl<T> Named<T> {
    /// Looks a definition up.
    pub fn get(&self, name: &str) -> Option<&T> {
        self.index.get(name).map(|i| &self.items[*i])
    }

    fn get_mut(&mut self, name: &str) -> Option<&mut T> {
        match self.index.get(name) {
            Some(i) => Some(&mut self.items[*i]),
            None => None,
        }
    }

    fn put(&mut self, name: &str, v: T) {
        match self.index.get(name) {
            Some(i) => self.items[*i] = v,
            None => {
                self.index.insert(name.to_owned(), self.items.len());
                self.items.push(v);
            }
        }
    }

    /// All definitions in order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.items.iter()
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// Everything read from one or more rule files, before compilation.
#[derive(Clone, Debug, Default)]
pub struct Definitions {
    /// Lists by name.
    pub lists: Named<ListDef>,
    /// Macros by name.
    pub macros: Named<MacroDef>,
    /// Rules by name, in definition order.
    pub rules: Named<RuleDef>,
    /// Per-file counts, in load order.
    pub files: Vec<FileCounts>,
    /// Warnings found while loading.
    pub warnings: Vec<Warning>,
}

const RULE_KEYS: &[&str] = &[
    "rule",
    "desc",
    "condition",
    "output",
    "priority",
    "tags",
    "enabled",
    "exceptions",
    "append",
    "override",
    "source",
    "warn_evttypes",
    "skip-if-unknown-filter",
    "capture",
    "capture_duration",
];
const RULE_APPENDABLE: &[&str] = &["condition", "output", "desc", "tags", "exceptions"];
const RULE_REPLACEABLE: &[&str] = &[
    "condition",
    "output",
    "desc",
    "priority",
    "tags",
    "exceptions",
    "enabled",
    "warn_evttypes",
    "skip-if-unknown-filter",
    "capture",
    "capture_duration",
];

struct Ctx<'a> {
    file: Arc<str>,
    file_idx: usize,
    defs: &'a mut Definitions,
}

impl Ctx<'_> {
    fn loc(&self, line: usize) -> Loc {
        Loc {
            file: self.file.clone(),
            line,
        }
    }

    fn err(&self, line: usize, item: Option<String>, message: impl Into<String>) -> LoadError {
        LoadError::at(&self.loc(line), item, ErrorKind::Schema, message)
    }

    fn warn(
        &mut self,
        line: usize,
        item: Option<String>,
        rule: Option<String>,
        message: impl Into<String>,
    ) {
        let w = Warning {
            file: self.file.to_string(),
            line,
            item,
            rule,
            message: message.into(),
        };
        tracing::debug!(warning = %w, "rule file warning");
        self.defs.warnings.push(w);
    }
}

fn scalar<'a>(
    n: &'a YNode,
    ctx: &Ctx<'_>,
    item: &Option<String>,
    key: &str,
) -> Result<&'a str, LoadError> {
    n.as_str().ok_or_else(|| {
        ctx.err(
            n.line,
            item.clone(),
            format!("`{key}` must be a scalar, found {}", n.kind_name()),
        )
    })
}

fn scalar_list(
    n: &YNode,
    ctx: &Ctx<'_>,
    item: &Option<String>,
    key: &str,
) -> Result<Vec<String>, LoadError> {
    match &n.kind {
        YKind::Null => Ok(Vec::new()),
        YKind::Seq(v) => v
            .iter()
            .map(|x| scalar(x, ctx, item, key).map(str::to_owned))
            .collect(),
        _ => Err(ctx.err(
            n.line,
            item.clone(),
            format!("`{key}` must be a sequence, found {}", n.kind_name()),
        )),
    }
}

fn bool_value(
    n: &YNode,
    ctx: &Ctx<'_>,
    item: &Option<String>,
    key: &str,
) -> Result<bool, LoadError> {
    match n.as_str() {
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        _ => Err(ctx.err(
            n.line,
            item.clone(),
            format!("`{key}` must be true or false"),
        )),
    }
}

fn parse_version(s: &str) -> Option<(u64, u64, u64)> {
    let s = s.trim();
    if let Ok(n) = s.parse::<u64>() {
        // Falco's old integer engine versions map to 0.N.0.
        return Some((0, n, 0));
    }
    let mut it = s.split('.').map(|p| p.parse::<u64>());
    let a = it.next()?.ok()?;
    let b = it.next().unwrap_or(Ok(0)).ok()?;
    let c = it.next().unwrap_or(Ok(0)).ok()?;
    Some((a, b, c))
}

impl Definitions {
    /// An empty set of definitions.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads and loads one file (after those loaded before it).
    pub fn load_file(&mut self, path: &Path) -> Result<(), LoadError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| LoadError {
            file: name.clone(),
            line: 0,
            col: None,
            item: None,
            kind: ErrorKind::Io,
            message: format!("cannot read: {e}"),
        })?;
        self.load_str(&name, &text)
    }

    /// Loads rule-file text named `file` (after those loaded before it).
    pub fn load_str(&mut self, file: &str, text: &str) -> Result<(), LoadError> {
        let docs = yaml::parse(text).map_err(|e| LoadError {
            file: file.to_owned(),
            line: e.line,
            col: Some(e.col),
            item: None,
            kind: ErrorKind::Yaml,
            message: format!("invalid YAML: {}", e.message),
        })?;
        let file_idx = self.files.len();
        self.files.push(FileCounts {
            file: file.to_owned(),
            ..FileCounts::default()
        });
        let mut ctx = Ctx {
            file: Arc::from(file),
            file_idx,
            defs: self,
        };
        for doc in &docs {
            match &doc.kind {
                YKind::Null => {}
                YKind::Seq(items) => {
                    for item in items {
                        load_item(&mut ctx, item)?;
                    }
                }
                _ => {
                    return Err(ctx.err(
                        doc.line,
                        None,
                        format!(
                            "a rules file is a sequence of items, found {}",
                            doc.kind_name()
                        ),
                    ))
                }
            }
        }
        Ok(())
    }
}

fn load_item(ctx: &mut Ctx<'_>, item: &YNode) -> Result<(), LoadError> {
    let YKind::Map(entries) = &item.kind else {
        return Err(ctx.err(
            item.line,
            None,
            format!("each item must be a mapping, found {}", item.kind_name()),
        ));
    };
    for kind in ["rule", "macro", "list"] {
        if let Some(n) = item.get(kind) {
            let name = scalar(n, ctx, &None, kind)?.trim().to_owned();
            if name.is_empty() {
                return Err(ctx.err(n.line, None, format!("`{kind}` needs a name")));
            }
            return match kind {
                "rule" => load_rule(ctx, item, name),
                "macro" => load_macro(ctx, item, name),
                _ => load_list(ctx, item, name),
            };
        }
    }
    if let Some(v) = item.get("required_engine_version") {
        let text = v.as_str().unwrap_or("");
        match parse_version(text) {
            Some(req) if req > ENGINE_VERSION => ctx.warn(
                v.line,
                None,
                None,
                format!(
                    "file requires engine version {text}; this engine implements {}.{}.{}",
                    ENGINE_VERSION.0, ENGINE_VERSION.1, ENGINE_VERSION.2
                ),
            ),
            Some(_) => {}
            None => {
                return Err(ctx.err(
                    v.line,
                    None,
                    format!("bad required_engine_version `{text}`"),
                ))
            }
        }
        return Ok(());
    }
    if item.get("required_plugin_versions").is_some() {
        // The container plugin's fields (container.*, k8s.*) are built into our sensor.
        return Ok(());
    }
    let key = entries.first().map(|(k, _, _)| k.as_str()).unwrap_or("");
    ctx.warn(
        item.line,
        None,
        None,
        format!("unknown item `{key}` ignored"),
    );
    Ok(())
}

/// Reads `override:` into (key, mode) pairs and checks them against the item's keys.
fn read_override(
    ctx: &Ctx<'_>,
    item: &YNode,
    item_name: &Option<String>,
    name_key: &str,
    appendable: &[&str],
    replaceable: &[&str],
) -> Result<Option<Vec<(String, bool)>>, LoadError> {
    let Some(ov) = item.get("override") else {
        return Ok(None);
    };
    if item.get("append").is_some() {
        return Err(ctx.err(
            ov.line,
            item_name.clone(),
            "`append` and `override` cannot be used together",
        ));
    }
    let YKind::Map(m) = &ov.kind else {
        return Err(ctx.err(
            ov.line,
            item_name.clone(),
            "`override` must be a mapping of key: append|replace",
        ));
    };
    let mut out = Vec::new();
    for (k, line, v) in m {
        let mode = v.as_str().unwrap_or("");
        let append = match mode {
            "append" if appendable.contains(&k.as_str()) => true,
            "replace" if replaceable.contains(&k.as_str()) => false,
            "append" | "replace" => {
                return Err(ctx.err(
                    *line,
                    item_name.clone(),
                    format!("key `{k}` cannot be overridden with `{mode}`"),
                ))
            }
            _ => {
                return Err(ctx.err(
                    *line,
                    item_name.clone(),
                    format!(
                        "override mode for `{k}` must be `append` or `replace`, found `{mode}`"
                    ),
                ))
            }
        };
        if item.get(k).is_none() {
            return Err(ctx.err(
                *line,
                item_name.clone(),
                format!("`override` names `{k}` but the item has no `{k}`"),
            ));
        }
        out.push((k.clone(), append));
    }
    if let YKind::Map(entries) = &item.kind {
        for (k, line, _) in entries {
            if k != name_key && k != "override" && !out.iter().any(|(o, _)| o == k) {
                return Err(ctx.err(
                    *line,
                    item_name.clone(),
                    format!("key `{k}` has no entry in `override`"),
                ));
            }
        }
    }
    Ok(Some(out))
}

fn append_flag(ctx: &Ctx<'_>, item: &YNode, name: &Option<String>) -> Result<bool, LoadError> {
    match item.get("append") {
        Some(v) => bool_value(v, ctx, name, "append"),
        None => Ok(false),
    }
}

fn load_list(ctx: &mut Ctx<'_>, item: &YNode, name: String) -> Result<(), LoadError> {
    let label = Some(format!("list `{name}`"));
    ctx.defs.files[ctx.file_idx].lists += 1;
    warn_unknown_keys(ctx, item, &label, &["list", "items", "append", "override"]);
    let items_node = item
        .get("items")
        .ok_or_else(|| ctx.err(item.line, label.clone(), "list has no `items`"))?;
    let items = scalar_list(items_node, ctx, &label, "items")?;
    let ov = read_override(ctx, item, &label, "list", &["items"], &["items"])?;
    let append = match &ov {
        Some(o) => o.iter().any(|(_, a)| *a),
        None => append_flag(ctx, item, &label)?,
    };
    let loc = ctx.loc(item.line);
    if ov.is_some() || append {
        ctx.defs.files[ctx.file_idx].overrides += 1;
        let Some(existing) = ctx.defs.lists.get_mut(&name) else {
            return Err(ctx.err(
                item.line,
                label,
                "no earlier list of this name to append to or override",
            ));
        };
        if append {
            existing.items.extend(items);
        } else {
            existing.items = items;
            existing.loc = loc;
        }
        return Ok(());
    }
    ctx.defs.lists.put(
        &name,
        ListDef {
            name: name.clone(),
            items,
            loc,
        },
    );
    Ok(())
}

fn load_macro(ctx: &mut Ctx<'_>, item: &YNode, name: String) -> Result<(), LoadError> {
    let label = Some(format!("macro `{name}`"));
    ctx.defs.files[ctx.file_idx].macros += 1;
    warn_unknown_keys(
        ctx,
        item,
        &label,
        &["macro", "condition", "append", "override"],
    );
    let cond_node = item
        .get("condition")
        .ok_or_else(|| ctx.err(item.line, label.clone(), "macro has no `condition`"))?;
    let text = scalar(cond_node, ctx, &label, "condition")?.to_owned();
    let part = CondPart {
        text,
        loc: ctx.loc(cond_node.line),
    };
    let ov = read_override(ctx, item, &label, "macro", &["condition"], &["condition"])?;
    let append = match &ov {
        Some(o) => o.iter().any(|(_, a)| *a),
        None => append_flag(ctx, item, &label)?,
    };
    if ov.is_some() || append {
        ctx.defs.files[ctx.file_idx].overrides += 1;
        let loc = ctx.loc(item.line);
        let Some(existing) = ctx.defs.macros.get_mut(&name) else {
            return Err(ctx.err(
                item.line,
                label,
                "no earlier macro of this name to append to or override",
            ));
        };
        if append {
            existing.cond.push(part);
        } else {
            existing.cond = vec![part];
            existing.loc = loc;
        }
        return Ok(());
    }
    let loc = ctx.loc(item.line);
    ctx.defs.macros.put(
        &name,
        MacroDef {
            name: name.clone(),
            cond: vec![part],
            loc,
        },
    );
    Ok(())
}

fn warn_unknown_keys(ctx: &mut Ctx<'_>, item: &YNode, label: &Option<String>, known: &[&str]) {
    if let YKind::Map(entries) = &item.kind {
        let unknown: Vec<(String, usize)> = entries
            .iter()
            .filter(|(k, _, _)| !known.contains(&k.as_str()))
            .map(|(k, l, _)| (k.clone(), *l))
            .collect();
        for (k, line) in unknown {
            ctx.warn(
                line,
                label.clone(),
                None,
                format!("unknown key `{k}` ignored"),
            );
        }
    }
}

fn load_exceptions(
    ctx: &Ctx<'_>,
    n: &YNode,
    label: &Option<String>,
) -> Result<Vec<ExceptionDef>, LoadError> {
    let YKind::Seq(items) = &n.kind else {
        if matches!(n.kind, YKind::Null) {
            return Ok(Vec::new());
        }
        return Err(ctx.err(n.line, label.clone(), "`exceptions` must be a sequence"));
    };
    let mut out = Vec::new();
    for e in items {
        let name = e
            .get("name")
            .and_then(YNode::as_str)
            .ok_or_else(|| ctx.err(e.line, label.clone(), "exception has no `name`"))?
            .to_owned();
        let elabel = Some(format!(
            "{}exception `{name}`",
            label.as_ref().map(|l| format!("{l}: ")).unwrap_or_default()
        ));
        let (fields, tuple) = match e.get("fields") {
            None => (Vec::new(), true),
            Some(f) => match &f.kind {
                YKind::Scalar(s) => (vec![s.clone()], false),
                YKind::Seq(_) => (scalar_list(f, ctx, &elabel, "fields")?, true),
                _ => {
                    return Err(ctx.err(
                        f.line,
                        elabel,
                        "`fields` must be a field or a list of fields",
                    ))
                }
            },
        };
        let comps = match e.get("comps") {
            None => Vec::new(),
            Some(c) => match &c.kind {
                YKind::Scalar(s) => vec![s.clone()],
                YKind::Seq(_) => scalar_list(c, ctx, &elabel, "comps")?,
                _ => {
                    return Err(ctx.err(
                        c.line,
                        elabel,
                        "`comps` must be an operator or a list of operators",
                    ))
                }
            },
        };
        if !fields.is_empty() && tuple && !comps.is_empty() && comps.len() != fields.len() {
            return Err(ctx.err(
                e.line,
                elabel,
                format!("{} fields but {} comps", fields.len(), comps.len()),
            ));
        }
        let mut values = Vec::new();
        if let Some(v) = e.get("values") {
            match &v.kind {
                YKind::Null => {}
                YKind::Seq(rows) => {
                    for row in rows {
                        let cells = match (&row.kind, tuple) {
                            (YKind::Seq(cells), true) => cells
                                .iter()
                                .map(|c| match &c.kind {
                                    YKind::Scalar(s) => Ok(ExcCell::One(s.clone())),
                                    YKind::Seq(_) => Ok(ExcCell::Many(scalar_list(c, ctx, &elabel, "values")?)),
                                    _ => Err(ctx.err(c.line, elabel.clone(), "exception value must be a scalar or a list")),
                                })
                                .collect::<Result<Vec<_>, _>>()?,
                            (YKind::Scalar(s), false) => vec![ExcCell::One(s.clone())],
                            (_, true) => {
                                return Err(ctx.err(row.line, elabel, "each value of a tuple exception must be a list with one entry per field"))
                            }
                            (_, false) => {
                                return Err(ctx.err(row.line, elabel, "values of a single-field exception must be scalars"))
                            }
                        };
                        values.push((cells, ctx.loc(row.line)));
                    }
                }
                _ => return Err(ctx.err(v.line, elabel, "`values` must be a sequence")),
            }
        }
        out.push(ExceptionDef {
            name,
            fields,
            tuple,
            comps,
            values,
            loc: ctx.loc(e.line),
        });
    }
    Ok(out)
}

/// Adds `incoming` exceptions to `existing`: same name appends values, new names are added.
fn merge_exceptions(
    ctx: &Ctx<'_>,
    existing: &mut Vec<ExceptionDef>,
    incoming: Vec<ExceptionDef>,
    label: &Option<String>,
) -> Result<(), LoadError> {
    for exc in incoming {
        if let Some(old) = existing.iter_mut().find(|o| o.name == exc.name) {
            if !exc.fields.is_empty() && exc.fields != old.fields {
                return Err(ctx.err(
                    exc.loc.line,
                    label.clone(),
                    format!("exception `{}` is appended with different fields", exc.name),
                ));
            }
            for (cells, loc) in &exc.values {
                if old.tuple && cells.len() != old.fields.len() {
                    return Err(LoadError::at(
                        loc,
                        label.clone(),
                        ErrorKind::Schema,
                        format!(
                            "exception `{}` value has {} entries but the exception has {} fields",
                            exc.name,
                            cells.len(),
                            old.fields.len()
                        ),
                    ));
                }
            }
            old.values.extend(exc.values);
        } else {
            if exc.fields.is_empty() {
                return Err(ctx.err(
                    exc.loc.line,
                    label.clone(),
                    format!("new exception `{}` has no `fields`", exc.name),
                ));
            }
            existing.push(exc);
        }
    }
    Ok(())
}

fn load_rule(ctx: &mut Ctx<'_>, item: &YNode, name: String) -> Result<(), LoadError> {
    let label = Some(format!("rule `{name}`"));
    ctx.defs.files[ctx.file_idx].rules += 1;
    warn_unknown_keys(ctx, item, &label, RULE_KEYS);
    let ov = read_override(ctx, item, &label, "rule", RULE_APPENDABLE, RULE_REPLACEABLE)?;
    let append = ov.is_none() && append_flag(ctx, item, &label)?;
    let exceptions = match item.get("exceptions") {
        Some(n) => Some(load_exceptions(ctx, n, &label)?),
        None => None,
    };
    let keys: Vec<&str> = match &item.kind {
        YKind::Map(e) => e.iter().map(|(k, _, _)| k.as_str()).collect(),
        _ => Vec::new(),
    };
    let enable_only = ov.is_none()
        && !append
        && keys.iter().all(|k| matches!(*k, "rule" | "enabled"))
        && keys.contains(&"enabled");

    if let Some(ov) = ov {
        ctx.defs.files[ctx.file_idx].overrides += 1;
        let mut rule = ctx.defs.rules.get(&name).cloned().ok_or_else(|| {
            ctx.err(
                item.line,
                label.clone(),
                "no earlier rule of this name to override",
            )
        })?;
        let mut exceptions = exceptions;
        for (key, app) in ov {
            let node = item.get(&key).expect("checked by read_override");
            match key.as_str() {
                "condition" => {
                    let part = CondPart {
                        text: scalar(node, ctx, &label, "condition")?.to_owned(),
                        loc: ctx.loc(node.line),
                    };
                    if app {
                        rule.cond.push(part);
                    } else {
                        rule.cond = vec![part];
                    }
                }
                "output" => {
                    let t = scalar(node, ctx, &label, "output")?;
                    rule.output = if app {
                        format!("{} {}", rule.output, t)
                    } else {
                        t.to_owned()
                    };
                    rule.output_loc = ctx.loc(node.line);
                }
                "desc" => {
                    let t = scalar(node, ctx, &label, "desc")?;
                    rule.desc = if app {
                        format!("{} {}", rule.desc, t)
                    } else {
                        t.to_owned()
                    };
                }
                "tags" => {
                    let t = scalar_list(node, ctx, &label, "tags")?;
                    if app {
                        rule.tags.extend(t);
                    } else {
                        rule.tags = t;
                    }
                }
                "priority" => {
                    let t = scalar(node, ctx, &label, "priority")?;
                    rule.priority = Priority::parse(t).ok_or_else(|| {
                        ctx.err(node.line, label.clone(), format!("unknown priority `{t}`"))
                    })?;
                }
                "enabled" => rule.enabled = bool_value(node, ctx, &label, "enabled")?,
                "exceptions" => {
                    let ex = exceptions.take().unwrap_or_default();
                    if app {
                        merge_exceptions(ctx, &mut rule.exceptions, ex, &label)?;
                    } else {
                        let mut fresh = Vec::new();
                        merge_exceptions(ctx, &mut fresh, ex, &label)?;
                        rule.exceptions = fresh;
                    }
                }
                _ => {}
            }
        }
        ctx.defs.rules.put(&name, rule);
        return Ok(());
    }

    if append || enable_only {
        ctx.defs.files[ctx.file_idx].overrides += 1;
        let mut rule = ctx.defs.rules.get(&name).cloned().ok_or_else(|| {
            ctx.err(
                item.line,
                label.clone(),
                "no earlier rule of this name to append to or enable/disable",
            )
        })?;
        if let Some(e) = item.get("enabled") {
            rule.enabled = bool_value(e, ctx, &label, "enabled")?;
        }
        if append {
            if let Some(c) = item.get("condition") {
                rule.cond.push(CondPart {
                    text: scalar(c, ctx, &label, "condition")?.to_owned(),
                    loc: ctx.loc(c.line),
                });
            }
            if let Some(ex) = exceptions {
                merge_exceptions(ctx, &mut rule.exceptions, ex, &label)?;
            }
            for k in keys {
                if !matches!(
                    k,
                    "rule" | "append" | "condition" | "exceptions" | "enabled"
                ) {
                    let line = item.get(k).map(|n| n.line).unwrap_or(item.line);
                    ctx.warn(
                        line,
                        label.clone(),
                        Some(name.clone()),
                        format!("`{k}` is ignored with `append: true` (use `override`)"),
                    );
                }
            }
        }
        ctx.defs.rules.put(&name, rule);
        return Ok(());
    }

    let need = |k: &str| {
        item.get(k)
            .ok_or_else(|| ctx.err(item.line, label.clone(), format!("rule has no `{k}`")))
    };
    let cond_node = need("condition")?;
    let output_node = need("output")?;
    let prio_node = need("priority")?;
    let desc = need("desc")?;
    let prio_text = scalar(prio_node, ctx, &label, "priority")?;
    let priority = Priority::parse(prio_text).ok_or_else(|| {
        ctx.err(
            prio_node.line,
            label.clone(),
            format!("unknown priority `{prio_text}`"),
        )
    })?;
    let enabled = match item.get("enabled") {
        Some(e) => bool_value(e, ctx, &label, "enabled")?,
        None => true,
    };
    let tags = match item.get("tags") {
        Some(t) => scalar_list(t, ctx, &label, "tags")?,
        None => Vec::new(),
    };
    let source = match item.get("source") {
        Some(s) => scalar(s, ctx, &label, "source")?.to_owned(),
        None => "syscall".to_owned(),
    };
    let mut exc = Vec::new();
    if let Some(ex) = exceptions {
        merge_exceptions(ctx, &mut exc, ex, &label)?;
    }
    let rule = RuleDef {
        name: name.clone(),
        desc: desc.as_str().unwrap_or("").trim().to_owned(),
        cond: vec![CondPart {
            text: scalar(cond_node, ctx, &label, "condition")?.to_owned(),
            loc: ctx.loc(cond_node.line),
        }],
        output: scalar(output_node, ctx, &label, "output")?
            .trim()
            .to_owned(),
        output_loc: ctx.loc(output_node.line),
        priority,
        tags,
        enabled,
        exceptions: exc,
        source,
        loc: ctx.loc(item.line),
        file_idx: ctx.file_idx,
    };
    ctx.defs.rules.put(&name, rule);
    Ok(())
}

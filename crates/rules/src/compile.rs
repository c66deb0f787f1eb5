//! Compilation: conditions are parsed, macros inlined, lists expanded, exceptions turned into
//! `and not (...)`, fields resolved and type-checked, constants folded, and each rule's set of
//! event types extracted for dispatch.

use crate::ast::{Check, Expr, FieldExpr, Literal, Op, Rhs, Transformer};
use crate::eval::{CheckNode, IpNet, Matcher, Node, StrSet};
use crate::event::{EventType, EventTypeSet};
use crate::fields::{self, Field, FieldArg, FieldType, ResolveError};
use crate::loader::{
    CondPart, Definitions, ErrorKind, ExcCell, ExceptionDef, LoadError, Loc, Warning,
};
use crate::parser::{parse_condition, ParseError};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Event types the node agent's eBPF sensor reports to the engine (its syscall tracepoints;
/// `ebpf/common` names them). Checks on other event types are constant false, so branches that need
/// them (for example `sendto`/`sendmsg` in the `outbound` macro) are pruned before the
/// evaluability check.
pub const SENSOR_EVENT_TYPES: &[&str] = &[
    "execve",
    "execveat",
    "open",
    "openat",
    "openat2",
    "connect",
    "accept",
    "accept4",
    "socket",
    "ptrace",
    "mount",
    "umount",
    "setns",
    "unshare",
    "bpf",
    "memfd_create",
    "chmod",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "init_module",
    "finit_module",
    "setuid",
    "setgid",
    "setreuid",
    "setregid",
    "setresuid",
    "setresgid",
    "unlink",
    "unlinkat",
    "rename",
    "renameat",
    "renameat2",
    "symlink",
    "symlinkat",
    "link",
    "linkat",
    "dup",
    "dup2",
    "dup3",
    "chdir",
    "fchdir",
    "kill",
];

/// What the event source can provide: which event types it reports and which fields.
#[derive(Clone, Debug)]
pub struct Capabilities {
    /// Event types that can occur.
    pub event_types: EventTypeSet,
    /// Fields to treat as unavailable in addition to those the table marks so.
    pub missing_fields: HashSet<Field>,
    /// Treat every field of the table as available (for offline tools and tests).
    pub all_fields: bool,
}

impl Default for Capabilities {
    /// The node agent's sensor.
    fn default() -> Self {
        Capabilities {
            event_types: EventTypeSet::from_names(SENSOR_EVENT_TYPES.iter().copied()),
            missing_fields: HashSet::new(),
            all_fields: false,
        }
    }
}

impl Capabilities {
    /// Every event type and every field in the table.
    pub fn everything() -> Self {
        Capabilities {
            event_types: EventTypeSet::all(),
            missing_fields: HashSet::new(),
            all_fields: true,
        }
    }

    /// Whether the source provides `f`.
    pub fn has_field(&self, f: Field) -> bool {
        (self.all_fields || f.info().source.provided()) && !self.missing_fields.contains(&f)
    }
}

/// Limits that keep hostile rule files from exhausting memory.
const MAX_EXPANDED_NODES: usize = 200_000;
const MAX_LIST_DEPTH: usize = 32;

/// A condition assembled from parts (definition + appends) that maps offsets back to lines.
pub(crate) struct Src<'a> {
    parts: &'a [CondPart],
    starts: Vec<usize>,
    text: String,
    item: String,
}

impl<'a> Src<'a> {
    pub(crate) fn new(parts: &'a [CondPart], item: String) -> Self {
        let mut text = String::new();
        let mut starts = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                text.push(' ');
            }
            starts.push(text.len());
            text.push_str(&p.text);
        }
        Src {
            parts,
            starts,
            text,
            item,
        }
    }

    /// The part containing `offset`: its location and the column within it.
    fn locate(&self, offset: usize) -> (Loc, usize) {
        let idx = self.starts.iter().rposition(|s| *s <= offset).unwrap_or(0);
        let part = &self.parts[idx.min(self.parts.len().saturating_sub(1))];
        let col = offset - self.starts.get(idx).copied().unwrap_or(0) + 1;
        // Map to the line inside a multi-line (literal or plain) scalar when lines survive.
        let before = &part.text[..(col - 1).min(part.text.len())];
        let extra_lines = before.matches('\n').count();
        let col = match before.rfind('\n') {
            Some(nl) => col - nl - 1,
            None => col,
        };
        let mut loc = part.loc.clone();
        loc.line += extra_lines;
        (loc, col)
    }

    fn error(&self, offset: usize, kind: ErrorKind, message: impl Into<String>) -> LoadError {
        let (loc, col) = self.locate(offset);
        LoadError {
            file: loc.file.to_string(),
            line: loc.line,
            col: Some(col),
            item: Some(self.item.clone()),
            kind,
            message: message.into(),
        }
    }

    pub(crate) fn parse(&self) -> Result<Expr, LoadError> {
        parse_condition(&self.text).map_err(|ParseError { offset, message }| {
            self.error(
                offset,
                ErrorKind::Syntax,
                format!("condition syntax error: {message}"),
            )
        })
    }
}

/// Where errors in the expression being lowered are reported.
enum Where<'s, 'a> {
    Src(&'s Src<'a>),
    Fixed(Loc, String),
}

impl Where<'_, '_> {
    fn error(&self, offset: usize, kind: ErrorKind, message: impl Into<String>) -> LoadError {
        match self {
            Where::Src(s) => s.error(offset, kind, message),
            Where::Fixed(loc, item) => LoadError::at(loc, Some(item.clone()), kind, message),
        }
    }

    fn loc(&self, offset: usize) -> Loc {
        match self {
            Where::Src(s) => s.locate(offset).0,
            Where::Fixed(loc, _) => loc.clone(),
        }
    }
}

/// Turns a YAML list item into a literal: `'"a b"'` in YAML is the quoted literal `a b`.
pub(crate) fn literal_from_item(raw: &str) -> Literal {
    let t = raw.trim();
    let b = t.as_bytes();
    if b.len() >= 2 && (b[0] == b'"' || b[0] == b'\'') && b[b.len() - 1] == b[0] {
        let inner = &t[1..t.len() - 1];
        let mut text = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some(n @ ('"' | '\'' | '\\')) => text.push(n),
                    Some(n) => {
                        text.push('\\');
                        text.push(n);
                    }
                    None => text.push('\\'),
                }
            } else {
                text.push(c);
            }
        }
        Literal { text, quoted: true }
    } else {
        Literal {
            text: t.to_owned(),
            quoted: false,
        }
    }
}

/// A resolved field expression: field, argument, transformers (innermost first), result type.
type Resolved = (Field, FieldArg, Vec<Transformer>, FieldType);

pub(crate) struct Lowerer<'d> {
    defs: &'d Definitions,
    caps: &'d Capabilities,
    macro_cache: HashMap<String, Node>,
    macro_stack: Vec<String>,
    pub(crate) warnings: Vec<Warning>,
    warned: HashSet<(String, usize, String)>,
    budget: usize,
    rule: Option<String>,
}

impl<'d> Lowerer<'d> {
    pub(crate) fn new(defs: &'d Definitions, caps: &'d Capabilities) -> Self {
        Lowerer {
            defs,
            caps,
            macro_cache: HashMap::new(),
            macro_stack: Vec::new(),
            warnings: Vec::new(),
            warned: HashSet::new(),
            budget: 0,
            rule: None,
        }
    }

    fn warn(&mut self, loc: &Loc, item: Option<String>, message: String) {
        if self
            .warned
            .insert((loc.file.to_string(), loc.line, message.clone()))
        {
            self.warnings.push(Warning {
                file: loc.file.to_string(),
                line: loc.line,
                item,
                rule: self.rule.clone(),
                message,
            });
        }
    }

    fn spend(&mut self, n: usize, w: &Where<'_, '_>, offset: usize) -> Result<(), LoadError> {
        self.budget += n;
        if self.budget > MAX_EXPANDED_NODES {
            return Err(w.error(
                offset,
                ErrorKind::Schema,
                format!(
                    "condition expands to more than {MAX_EXPANDED_NODES} nodes (macro blow-up?)"
                ),
            ));
        }
        Ok(())
    }

    /// Expands bare list names in `items` (recursively) into their values.
    fn expand(
        &self,
        items: &[Literal],
        out: &mut Vec<Literal>,
        depth: usize,
    ) -> Result<(), String> {
        if depth > MAX_LIST_DEPTH {
            return Err(format!(
                "lists nest deeper than {MAX_LIST_DEPTH} levels (a list that includes itself?)"
            ));
        }
        for l in items {
            match (l.quoted, self.defs.lists.get(&l.text)) {
                (false, Some(list)) => {
                    let sub: Vec<Literal> =
                        list.items.iter().map(|s| literal_from_item(s)).collect();
                    self.expand(&sub, out, depth + 1)?;
                }
                _ => out.push(l.clone()),
            }
        }
        Ok(())
    }

    fn lower_macro(
        &mut self,
        name: &str,
        w: &Where<'_, '_>,
        offset: usize,
    ) -> Result<Node, LoadError> {
        if let Some(n) = self.macro_cache.get(name) {
            let n = n.clone();
            self.spend(n.size(), w, offset)?;
            return Ok(n);
        }
        let Some(def) = self.defs.macros.get(name) else {
            return Err(w.error(
                offset,
                ErrorKind::UndefinedMacro,
                format!("undefined macro `{name}`"),
            ));
        };
        if self.macro_stack.iter().any(|m| m == name) {
            return Err(w.error(
                offset,
                ErrorKind::Schema,
                format!(
                    "macro `{name}` refers to itself ({} -> {name})",
                    self.macro_stack.join(" -> ")
                ),
            ));
        }
        if self.macro_stack.len() > 64 {
            return Err(w.error(
                offset,
                ErrorKind::Schema,
                "macros nest deeper than 64 levels",
            ));
        }
        let src = Src::new(&def.cond, format!("macro `{name}`"));
        let ast = src.parse()?;
        self.macro_stack.push(name.to_owned());
        let r = self.lower(&ast, &Where::Src(&src));
        self.macro_stack.pop();
        let n = r?;
        self.macro_cache.insert(name.to_owned(), n.clone());
        Ok(n)
    }

    fn lower(&mut self, e: &Expr, w: &Where<'_, '_>) -> Result<Node, LoadError> {
        self.spend(1, w, 0)?;
        Ok(match e {
            Expr::And(v) => Node::And(
                v.iter()
                    .map(|x| self.lower(x, w))
                    .collect::<Result<_, _>>()?,
            ),
            Expr::Or(v) => Node::Or(
                v.iter()
                    .map(|x| self.lower(x, w))
                    .collect::<Result<_, _>>()?,
            ),
            Expr::Not(x) => Node::Not(Box::new(self.lower(x, w)?)),
            Expr::Macro(name, pos) => self.lower_macro(name, w, pos.0)?,
            Expr::Check(c) => self.lower_check(c, w)?,
        })
    }

    /// Resolves a field expression to (field, arg, transforms in application order, type).
    fn resolve_fexpr(
        &self,
        fe: &FieldExpr,
        w: &Where<'_, '_>,
    ) -> Result<Option<Resolved>, LoadError> {
        let mut ts = Vec::new();
        let mut cur = fe;
        while let FieldExpr::Transform(t, inner) = cur {
            ts.push(*t);
            cur = inner;
        }
        ts.reverse();
        let FieldExpr::Field { name, arg, pos } = cur else {
            unreachable!("loop ends at a field")
        };
        let (field, farg) = match fields::resolve(name, arg.as_deref()) {
            Ok(x) => x,
            Err(ResolveError::Unknown) => return Ok(None),
            Err(ResolveError::BadArg(m)) => return Err(w.error(pos.0, ErrorKind::Type, m)),
        };
        let mut ty = field.info().ty;
        for t in &ts {
            if ty != FieldType::Str {
                return Err(w.error(
                    pos.0,
                    ErrorKind::Type,
                    format!(
                        "transformer `{}` needs a string field; `{name}` is a {ty}",
                        t.name()
                    ),
                ));
            }
            if *t == Transformer::Len {
                ty = FieldType::Int;
            }
        }
        Ok(Some((field, farg, ts, ty)))
    }

    fn lower_check(&mut self, c: &Check, w: &Where<'_, '_>) -> Result<Node, LoadError> {
        let off = c.pos.0;
        let lhs_name = c.lhs.to_string();
        let Some((field, arg, ts, ty)) = self.resolve_fexpr(&c.lhs, w)? else {
            let loc = w.loc(off);
            self.warn(
                &loc,
                self.rule.as_ref().map(|r| format!("rule `{r}`")),
                format!("unknown field `{}`: rule not evaluable", c.lhs.base_name()),
            );
            return Ok(Node::Unavailable(Arc::from(c.lhs.base_name())));
        };
        let type_err = |msg: String| w.error(off, ErrorKind::Type, msg);
        let op = c.op;

        // evt.type is answered from the event header and drives dispatch.
        if field == Field::EvtType
            && ts.is_empty()
            && matches!(op, Op::Eq | Op::Ne | Op::In | Op::Intersects)
        {
            let lits = self.rhs_values(c, w)?;
            let mut set = EventTypeSet::empty();
            for l in &lits {
                match EventType::from_name(&l.text) {
                    Some(t) => set.insert(t),
                    None => {
                        let loc = w.loc(off);
                        self.warn(
                            &loc,
                            None,
                            format!("unknown event type `{}` never matches", l.text),
                        );
                    }
                }
            }
            let set = set.intersect(&self.caps.event_types);
            let n = if set.is_empty() {
                Node::Const(false)
            } else {
                Node::EvtType(set)
            };
            return Ok(if op == Op::Ne {
                Node::Not(Box::new(n))
            } else {
                n
            });
        }

        let negate = op == Op::Ne;
        let matcher = match (&c.rhs, op) {
            (_, Op::Exists) => Matcher::Exists,
            (Rhs::Field(other), _) => {
                let Some((of, oarg, ots, oty)) = self.resolve_fexpr(other, w)? else {
                    return Ok(Node::Unavailable(Arc::from(other.base_name())));
                };
                if oty != ty {
                    return Err(type_err(format!(
                        "cannot compare `{lhs_name}` ({ty}) with `{other}` ({oty})"
                    )));
                }
                let ok = match ty {
                    FieldType::Str => matches!(
                        op,
                        Op::Eq
                            | Op::Ne
                            | Op::Contains
                            | Op::IContains
                            | Op::StartsWith
                            | Op::EndsWith
                            | Op::Lt
                            | Op::Le
                            | Op::Gt
                            | Op::Ge
                    ),
                    FieldType::Int => {
                        matches!(op, Op::Eq | Op::Ne | Op::Lt | Op::Le | Op::Gt | Op::Ge)
                    }
                    FieldType::Bool | FieldType::Ip => matches!(op, Op::Eq | Op::Ne),
                };
                if !ok {
                    return Err(type_err(format!(
                        "operator `{}` cannot compare two {ty} fields",
                        op.as_str()
                    )));
                }
                if !self.caps.has_field(of) {
                    return Ok(Node::Unavailable(Arc::from(of.name())));
                }
                let cop = if op == Op::Ne { Op::Eq } else { op };
                Matcher::FieldCmp(cop, of, oarg, ots.into_boxed_slice())
            }
            _ => self.matcher(c, ty, &lhs_name, w)?,
        };
        if !self.caps.has_field(field) {
            return Ok(Node::Unavailable(Arc::from(field.name())));
        }
        Ok(Node::Check(Arc::new(CheckNode {
            field,
            arg,
            transforms: ts.into_boxed_slice(),
            matcher,
            negate,
        })))
    }

    /// The right-hand side as literals, with lists expanded.
    fn rhs_values(&self, c: &Check, w: &Where<'_, '_>) -> Result<Vec<Literal>, LoadError> {
        match &c.rhs {
            Rhs::Value(l) => Ok(vec![l.clone()]),
            Rhs::List(items) => {
                let mut out = Vec::new();
                self.expand(items, &mut out, 0)
                    .map_err(|m| w.error(c.pos.0, ErrorKind::Schema, m))?;
                Ok(out)
            }
            Rhs::None | Rhs::Field(_) => Ok(Vec::new()),
        }
    }

    fn matcher(
        &self,
        c: &Check,
        ty: FieldType,
        lhs: &str,
        w: &Where<'_, '_>,
    ) -> Result<Matcher, LoadError> {
        let op = c.op;
        let off = c.pos.0;
        let type_err = |msg: String| w.error(off, ErrorKind::Type, msg);
        let not_for = || {
            type_err(format!(
                "operator `{}` does not apply to `{lhs}` (a {ty})",
                op.as_str()
            ))
        };
        let vals = self.rhs_values(c, w)?;
        let single = || -> Result<&str, LoadError> {
            match &c.rhs {
                Rhs::Value(l) => Ok(l.text.as_str()),
                _ => Err(type_err(format!(
                    "operator `{}` takes one value, not a list",
                    op.as_str()
                ))),
            }
        };
        let int = |s: &str| -> Result<i64, LoadError> {
            let t = s.trim();
            let parsed = match t.strip_prefix("0x") {
                Some(h) => i64::from_str_radix(h, 16).ok(),
                None => t.parse::<i64>().ok(),
            };
            parsed.ok_or_else(|| type_err(format!("`{lhs}` is a number; `{s}` is not a number")))
        };
        let hex = |s: &str| -> Result<Vec<u8>, LoadError> {
            let t = s.trim();
            if !t.len().is_multiple_of(2) || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(type_err(format!(
                    "`{}` needs hex bytes, got `{s}`",
                    op.as_str()
                )));
            }
            Ok((0..t.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&t[i..i + 2], 16).unwrap_or(0))
                .collect())
        };
        Ok(match ty {
            FieldType::Str => match op {
                Op::Eq | Op::Ne => Matcher::StrEq(single()?.into()),
                Op::In | Op::Intersects => {
                    Matcher::StrIn(StrSet::new(vals.into_iter().map(|l| l.text).collect()))
                }
                Op::Pmatch => {
                    Matcher::Pmatch(vals.into_iter().map(|l| l.text.into_boxed_str()).collect())
                }
                Op::Contains => Matcher::Contains(Box::new(
                    memchr::memmem::Finder::new(single()?.as_bytes()).into_owned(),
                )),
                Op::IContains => {
                    Matcher::IContains(single()?.to_ascii_lowercase().into_bytes().into())
                }
                Op::StartsWith => Matcher::StartsWith(single()?.as_bytes().into()),
                Op::EndsWith => Matcher::EndsWith(single()?.as_bytes().into()),
                Op::BContains => Matcher::Contains(Box::new(
                    memchr::memmem::Finder::new(&hex(single()?)?).into_owned(),
                )),
                Op::BStartsWith => Matcher::StartsWith(hex(single()?)?.into()),
                Op::Glob => Matcher::Glob(single()?.as_bytes().into(), false),
                Op::IGlob => {
                    Matcher::Glob(single()?.to_ascii_lowercase().into_bytes().into(), true)
                }
                Op::Regex => {
                    let pat = single()?;
                    // Falco matches regexes against the whole value (RE2 ANCHOR_BOTH).
                    let re = regex::RegexBuilder::new(&format!("^(?:{pat})$"))
                        .size_limit(1 << 20)
                        .build()
                        .map_err(|e| {
                            w.error(off, ErrorKind::Syntax, format!("bad regex `{pat}`: {e}"))
                        })?;
                    Matcher::Regex(re)
                }
                Op::Lt | Op::Le | Op::Gt | Op::Ge | Op::Exists => return Err(not_for()),
            },
            FieldType::Int => match op {
                Op::Eq | Op::Ne => Matcher::Int(Op::Eq, int(single()?)?),
                Op::Lt | Op::Le | Op::Gt | Op::Ge => Matcher::Int(op, int(single()?)?),
                Op::In | Op::Intersects => Matcher::IntIn(
                    vals.iter()
                        .map(|l| int(&l.text))
                        .collect::<Result<Vec<_>, _>>()?
                        .into(),
                ),
                _ => return Err(not_for()),
            },
            FieldType::Bool => match op {
                Op::Eq | Op::Ne => match single()?.trim() {
                    "true" => Matcher::Bool(true),
                    "false" => Matcher::Bool(false),
                    s => {
                        return Err(type_err(format!(
                            "`{lhs}` is a bool; `{s}` is not true or false"
                        )))
                    }
                },
                _ => return Err(not_for()),
            },
            FieldType::Ip => {
                let net = |s: &str| {
                    IpNet::parse(s).ok_or_else(|| {
                        type_err(format!(
                            "`{lhs}` is an address; `{s}` is not an address or network"
                        ))
                    })
                };
                match op {
                    Op::Eq | Op::Ne => Matcher::IpIn(vec![net(single()?)?].into()),
                    Op::In | Op::Intersects => Matcher::IpIn(
                        vals.iter()
                            .map(|l| net(&l.text))
                            .collect::<Result<Vec<_>, _>>()?
                            .into(),
                    ),
                    _ => return Err(not_for()),
                }
            }
        })
    }

    /// Lowers one exception to "any value row matches".
    fn lower_exception(&mut self, exc: &ExceptionDef, rule: &str) -> Result<Node, LoadError> {
        let item = format!("rule `{rule}`: exception `{}`", exc.name);
        let w = Where::Fixed(exc.loc.clone(), item.clone());
        let mut fexprs = Vec::new();
        for f in &exc.fields {
            // Reuse the condition parser for field syntax (`proc.aname[2]`, `tolower(x)`).
            let fe = match parse_condition(&format!("{f} exists")) {
                Ok(Expr::Check(c)) => c.lhs,
                _ => return Err(w.error(0, ErrorKind::Syntax, format!("`{f}` is not a field"))),
            };
            fexprs.push(fe);
        }
        let default_comp = if exc.tuple { "=" } else { "in" };
        let mut ops = Vec::new();
        for i in 0..fexprs.len() {
            let comp = exc.comps.get(i).map(String::as_str).unwrap_or(default_comp);
            let op = comp_op(comp).ok_or_else(|| {
                w.error(
                    0,
                    ErrorKind::Syntax,
                    format!("bad operator `{comp}` in `comps`"),
                )
            })?;
            ops.push(op);
        }
        let mut rows = Vec::new();
        if !exc.tuple && ops.first().is_some_and(|o| o.takes_list()) {
            // Single-field form with a list operator: one check against all values.
            let items: Vec<Literal> = exc
                .values
                .iter()
                .flat_map(|(cells, _)| cells.iter())
                .flat_map(|c| match c {
                    ExcCell::One(s) => vec![literal_from_item(s)],
                    ExcCell::Many(v) => v.iter().map(|s| literal_from_item(s)).collect(),
                })
                .collect();
            if items.is_empty() {
                return Ok(Node::Const(false));
            }
            let check = Check {
                lhs: fexprs[0].clone(),
                op: ops[0],
                rhs: Rhs::List(items),
                pos: Default::default(),
            };
            let loc = exc
                .values
                .first()
                .map(|(_, l)| l.clone())
                .unwrap_or(exc.loc.clone());
            return self.lower_check(&check, &Where::Fixed(loc, item));
        }
        for (cells, loc) in &exc.values {
            let rw = Where::Fixed(loc.clone(), item.clone());
            let mut conj = Vec::new();
            let pairs: Vec<(usize, &ExcCell)> = if exc.tuple {
                if cells.len() != fexprs.len() {
                    return Err(rw.error(
                        0,
                        ErrorKind::Schema,
                        format!(
                            "value has {} entries but the exception has {} fields",
                            cells.len(),
                            fexprs.len()
                        ),
                    ));
                }
                cells.iter().enumerate().collect()
            } else {
                cells.iter().map(|c| (0, c)).collect()
            };
            for (i, cell) in pairs {
                let op = ops[i];
                let rhs = match (cell, op.takes_list()) {
                    (ExcCell::One(s), true) => Rhs::List(vec![literal_from_item(s)]),
                    (ExcCell::Many(v), true) => {
                        Rhs::List(v.iter().map(|s| literal_from_item(s)).collect())
                    }
                    (ExcCell::One(s), false) => Rhs::Value(Literal {
                        text: literal_from_item(s).text,
                        quoted: true,
                    }),
                    (ExcCell::Many(_), false) => {
                        return Err(rw.error(
                            0,
                            ErrorKind::Type,
                            format!("operator `{}` takes one value, not a list", op.as_str()),
                        ))
                    }
                };
                let check = Check {
                    lhs: fexprs[i].clone(),
                    op,
                    rhs,
                    pos: Default::default(),
                };
                conj.push(self.lower_check(&check, &rw)?);
            }
            rows.push(if exc.tuple {
                Node::And(conj.into())
            } else {
                Node::Or(conj.into())
            });
        }
        Ok(Node::Or(rows.into()))
    }
}

fn comp_op(s: &str) -> Option<Op> {
    Some(match s.trim() {
        "=" | "==" => Op::Eq,
        "!=" => Op::Ne,
        "<" => Op::Lt,
        "<=" => Op::Le,
        ">" => Op::Gt,
        ">=" => Op::Ge,
        w => Op::from_word(w).filter(|o| *o != Op::Exists)?,
    })
}

/// Folds constants: `x and false` is false, `not true` is false, single-child groups collapse.
pub fn fold(n: Node) -> Node {
    match n {
        Node::And(v) => {
            let mut out = Vec::new();
            for c in v.into_vec() {
                match fold(c) {
                    Node::Const(true) => {}
                    Node::Const(false) => return Node::Const(false),
                    Node::And(inner) => out.extend(inner.into_vec()),
                    c => out.push(c),
                }
            }
            match out.len() {
                0 => Node::Const(true),
                1 => out.pop().unwrap_or(Node::Const(true)),
                _ => Node::And(out.into()),
            }
        }
        Node::Or(v) => {
            let mut out = Vec::new();
            for c in v.into_vec() {
                match fold(c) {
                    Node::Const(false) => {}
                    Node::Const(true) => return Node::Const(true),
                    Node::Or(inner) => out.extend(inner.into_vec()),
                    c => out.push(c),
                }
            }
            match out.len() {
                0 => Node::Const(false),
                1 => out.pop().unwrap_or(Node::Const(false)),
                _ => Node::Or(out.into()),
            }
        }
        Node::Not(x) => match fold(*x) {
            Node::Const(b) => Node::Const(!b),
            Node::Not(y) => *y,
            y => Node::Not(Box::new(y)),
        },
        other => other,
    }
}

fn pure_evttype(n: &Node) -> bool {
    match n {
        Node::EvtType(_) | Node::Const(_) => true,
        Node::And(v) | Node::Or(v) => v.iter().all(pure_evttype),
        Node::Not(x) => pure_evttype(x),
        _ => false,
    }
}

/// The event types for which `n` can be true (like Falco's evttype resolver).
pub fn event_types(n: &Node) -> EventTypeSet {
    match n {
        Node::Const(true) => EventTypeSet::all(),
        Node::Const(false) => EventTypeSet::empty(),
        Node::EvtType(s) => *s,
        Node::And(v) => v
            .iter()
            .fold(EventTypeSet::all(), |acc, c| acc.intersect(&event_types(c))),
        Node::Or(v) => v
            .iter()
            .fold(EventTypeSet::empty(), |acc, c| acc.union(&event_types(c))),
        Node::Not(x) if pure_evttype(x) => event_types(x).complement(),
        _ => EventTypeSet::all(),
    }
}

/// Names of unavailable fields left in the tree, sorted and unique.
pub fn unavailable_fields(n: &Node) -> Vec<String> {
    fn walk(n: &Node, out: &mut Vec<String>) {
        match n {
            Node::And(v) | Node::Or(v) => v.iter().for_each(|c| walk(c, out)),
            Node::Not(x) => walk(x, out),
            Node::Unavailable(f) => out.push(f.to_string()),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(n, &mut out);
    out.sort();
    out.dedup();
    out
}

impl Lowerer<'_> {
    /// Compiles one rule's condition plus exceptions into a folded tree.
    pub(crate) fn rule_condition(
        &mut self,
        rule: &crate::loader::RuleDef,
    ) -> Result<Node, LoadError> {
        self.rule = Some(rule.name.clone());
        self.budget = 0;
        let src = Src::new(&rule.cond, format!("rule `{}`", rule.name));
        let ast = src.parse()?;
        let mut node = self.lower(&ast, &Where::Src(&src))?;
        if !rule.exceptions.is_empty() {
            let mut excs = Vec::new();
            for e in &rule.exceptions {
                excs.push(self.lower_exception(e, &rule.name)?);
            }
            node = Node::And(vec![node, Node::Not(Box::new(Node::Or(excs.into())))].into());
        }
        self.rule = None;
        Ok(fold(node))
    }

    /// Syntax-checks every macro, used or not, so a broken macro is reported where it is.
    pub(crate) fn check_macro_syntax(&self) -> Result<(), LoadError> {
        for m in self.defs.macros.iter() {
            Src::new(&m.cond, format!("macro `{}`", m.name)).parse()?;
        }
        Ok(())
    }
}

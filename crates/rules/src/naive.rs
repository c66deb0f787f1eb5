//! A deliberately naive interpreter that walks the *uncompiled* condition trees: macros are
//! looked up by name at every use, lists expanded at every evaluation, field names resolved by
//! string for every check, literals converted for every comparison, and every rule is tried on
//! every event (no event-type index).
//!
//! It exists as the benchmark baseline and as an independent second implementation: tests
//! check that it and the compiled engine agree.

use crate::ast::{Check, Expr, FieldExpr, Literal, Op, Rhs, Transformer};
use crate::compile::literal_from_item;
use crate::eval::{apply_transforms, glob_match, pmatch, values_cmp, IpNet};
use crate::event::{Event, Value};
use crate::fields;
use crate::loader::{Definitions, ErrorKind, ExcCell, LoadError};
use crate::parser::parse_condition;
use std::collections::HashMap;
use std::path::Path;

/// Rules as parsed trees plus name-keyed macros and lists.
pub struct NaiveEngine {
    lists: HashMap<String, Vec<String>>,
    macros: HashMap<String, Expr>,
    rules: Vec<(String, Expr)>,
}

fn bad(e: impl std::fmt::Display) -> LoadError {
    LoadError {
        file: String::new(),
        line: 0,
        col: None,
        item: None,
        kind: ErrorKind::Syntax,
        message: e.to_string(),
    }
}

impl NaiveEngine {
    /// Loads files in order.
    pub fn load<P: AsRef<Path>>(paths: &[P]) -> Result<Self, LoadError> {
        let mut defs = Definitions::new();
        for p in paths {
            defs.load_file(p.as_ref())?;
        }
        Self::from_definitions(&defs)
    }

    /// Parses every condition of loaded definitions; enabled rules only.
    pub fn from_definitions(defs: &Definitions) -> Result<Self, LoadError> {
        let join = |parts: &[crate::loader::CondPart]| {
            parts
                .iter()
                .map(|p| p.text.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let lists = defs
            .lists
            .iter()
            .map(|l| (l.name.clone(), l.items.clone()))
            .collect();
        let mut macros = HashMap::new();
        for m in defs.macros.iter() {
            macros.insert(
                m.name.clone(),
                parse_condition(&join(&m.cond)).map_err(bad)?,
            );
        }
        let mut rules = Vec::new();
        for r in defs.rules.iter().filter(|r| r.enabled) {
            let mut cond = parse_condition(&join(&r.cond)).map_err(bad)?;
            if !r.exceptions.is_empty() {
                let mut alts = Vec::new();
                for exc in &r.exceptions {
                    let fes: Vec<FieldExpr> = exc
                        .fields
                        .iter()
                        .map(|f| match parse_condition(&format!("{f} exists")) {
                            Ok(Expr::Check(c)) => Ok(c.lhs),
                            _ => Err(bad(format!("bad exception field {f}"))),
                        })
                        .collect::<Result<_, _>>()?;
                    let comp = |i: usize| -> Result<Op, LoadError> {
                        let c = exc
                            .comps
                            .get(i)
                            .map(String::as_str)
                            .unwrap_or(if exc.tuple { "=" } else { "in" });
                        Ok(match c {
                            "=" | "==" => Op::Eq,
                            "!=" => Op::Ne,
                            "<" => Op::Lt,
                            "<=" => Op::Le,
                            ">" => Op::Gt,
                            ">=" => Op::Ge,
                            w => Op::from_word(w).ok_or_else(|| bad(format!("bad comp {w}")))?,
                        })
                    };
                    let check = |i: usize, cell: &ExcCell| -> Result<Expr, LoadError> {
                        let op = comp(i)?;
                        let rhs = match (cell, op.takes_list()) {
                            (ExcCell::One(s), true) => Rhs::List(vec![literal_from_item(s)]),
                            (ExcCell::Many(v), true) => {
                                Rhs::List(v.iter().map(|s| literal_from_item(s)).collect())
                            }
                            (ExcCell::One(s), false) => Rhs::Value(literal_from_item(s)),
                            (ExcCell::Many(_), false) => return Err(bad("list for a scalar comp")),
                        };
                        Ok(Expr::Check(Check {
                            lhs: fes[i].clone(),
                            op,
                            rhs,
                            pos: Default::default(),
                        }))
                    };
                    if exc.tuple {
                        for (cells, _) in &exc.values {
                            let conj = cells
                                .iter()
                                .enumerate()
                                .map(|(i, c)| check(i, c))
                                .collect::<Result<Vec<_>, _>>()?;
                            alts.push(Expr::And(conj));
                        }
                    } else if comp(0)?.takes_list() {
                        let items: Vec<String> = exc
                            .values
                            .iter()
                            .flat_map(|(cells, _)| cells.iter())
                            .flat_map(|c| match c {
                                ExcCell::One(s) => vec![s.clone()],
                                ExcCell::Many(v) => v.clone(),
                            })
                            .collect();
                        if !items.is_empty() {
                            alts.push(check(0, &ExcCell::Many(items))?);
                        }
                    } else {
                        for (cells, _) in &exc.values {
                            for c in cells {
                                alts.push(check(0, c)?);
                            }
                        }
                    }
                }
                if !alts.is_empty() {
                    cond = Expr::And(vec![cond, Expr::Not(Box::new(Expr::Or(alts)))]);
                }
            }
            rules.push((r.name.clone(), cond));
        }
        Ok(NaiveEngine {
            lists,
            macros,
            rules,
        })
    }

    /// Names of the enabled rules that match `ev` (every rule is tried).
    pub fn matches<E: Event + ?Sized>(&self, ev: &E) -> Vec<String> {
        self.rules
            .iter()
            .filter(|(_, e)| self.eval(e, ev))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Number of matches for `ev` (no allocation for names).
    pub fn count_matches<E: Event + ?Sized>(&self, ev: &E) -> usize {
        self.rules.iter().filter(|(_, e)| self.eval(e, ev)).count()
    }

    fn eval<E: Event + ?Sized>(&self, e: &Expr, ev: &E) -> bool {
        match e {
            Expr::And(v) => v.iter().all(|x| self.eval(x, ev)),
            Expr::Or(v) => v.iter().any(|x| self.eval(x, ev)),
            Expr::Not(x) => !self.eval(x, ev),
            Expr::Macro(name, _) => self.macros.get(name).is_some_and(|m| self.eval(m, ev)),
            Expr::Check(c) => self.check(c, ev),
        }
    }

    fn expand(&self, items: &[Literal], out: &mut Vec<String>, depth: usize) {
        for l in items {
            match (l.quoted, self.lists.get(&l.text)) {
                (false, Some(list)) if depth < 32 => {
                    let sub: Vec<Literal> = list.iter().map(|s| literal_from_item(s)).collect();
                    self.expand(&sub, out, depth + 1);
                }
                _ => out.push(l.text.clone()),
            }
        }
    }

    fn get<'e, E: Event + ?Sized>(fe: &FieldExpr, ev: &'e E) -> Option<Value<'e>> {
        let mut ts: Vec<Transformer> = Vec::new();
        let mut cur = fe;
        while let FieldExpr::Transform(t, inner) = cur {
            ts.push(*t);
            cur = inner;
        }
        ts.reverse();
        let FieldExpr::Field { name, arg, .. } = cur else {
            return None;
        };
        let (field, arg) = fields::resolve(name, arg.as_deref()).ok()?;
        let v = ev.field(field, &arg)?;
        apply_transforms(v, &ts)
    }

    fn check<E: Event + ?Sized>(&self, c: &Check, ev: &E) -> bool {
        let Some(v) = Self::get(&c.lhs, ev) else {
            return false;
        };
        let negate = c.op == Op::Ne;
        let hit = match &v {
            Value::List(items) => {
                if c.op == Op::Exists {
                    !items.is_empty()
                } else {
                    items.iter().any(|x| self.scalar(c, x, ev))
                }
            }
            v => self.scalar(c, v, ev),
        };
        hit != negate
    }

    fn scalar<E: Event + ?Sized>(&self, c: &Check, v: &Value<'_>, ev: &E) -> bool {
        if c.op == Op::Exists {
            return true;
        }
        if let Rhs::Field(other) = &c.rhs {
            let Some(o) = Self::get(other, ev) else {
                return false;
            };
            let op = if c.op == Op::Ne { Op::Eq } else { c.op };
            return values_cmp(op, v, &o);
        }
        let mut vals = Vec::new();
        match &c.rhs {
            Rhs::Value(l) => vals.push(l.text.clone()),
            Rhs::List(items) => self.expand(items, &mut vals, 0),
            _ => {}
        }
        let one = vals.first().map(String::as_str).unwrap_or("");
        let eq = |lit: &str| -> bool {
            match v {
                Value::Str(s) => s == lit,
                Value::Int(i) => lit.trim().parse::<i64>().ok() == Some(*i),
                Value::Bool(b) => lit.trim() == b.to_string(),
                Value::Ip(ip) => IpNet::parse(lit).is_some_and(|n| n.contains(ip)),
                Value::List(_) => false,
            }
        };
        match (c.op, v) {
            (Op::Eq | Op::Ne, _) => eq(one),
            (Op::In | Op::Intersects, _) => vals.iter().any(|x| eq(x)),
            (Op::Pmatch, Value::Str(s)) => {
                let p: Vec<Box<str>> = vals.iter().map(|x| x.clone().into_boxed_str()).collect();
                pmatch(&p, s)
            }
            (Op::Contains, Value::Str(s)) => s.contains(one),
            (Op::IContains, Value::Str(s)) => s.to_lowercase().contains(&one.to_lowercase()),
            (Op::StartsWith, Value::Str(s)) => s.starts_with(one),
            (Op::EndsWith, Value::Str(s)) => s.ends_with(one),
            (Op::Glob, Value::Str(s)) => glob_match(one.as_bytes(), s.as_bytes()),
            (Op::IGlob, Value::Str(s)) => glob_match(
                one.to_ascii_lowercase().as_bytes(),
                s.to_ascii_lowercase().as_bytes(),
            ),
            (Op::Regex, Value::Str(s)) => {
                regex::Regex::new(&format!("^(?:{one})$")).is_ok_and(|r| r.is_match(s))
            }
            (Op::BContains | Op::BStartsWith, Value::Str(s)) => {
                let bytes: Option<Vec<u8>> = (0..one.len() / 2)
                    .map(|i| u8::from_str_radix(one.get(2 * i..2 * i + 2)?, 16).ok())
                    .collect();
                let Some(b) = bytes else { return false };
                if c.op == Op::BStartsWith {
                    s.as_bytes().starts_with(&b)
                } else {
                    memchr::memmem::find(s.as_bytes(), &b).is_some()
                }
            }
            (Op::Lt | Op::Le | Op::Gt | Op::Ge, Value::Int(i)) => {
                let Ok(x) = one.trim().parse::<i64>() else {
                    return false;
                };
                match c.op {
                    Op::Lt => *i < x,
                    Op::Le => *i <= x,
                    Op::Gt => *i > x,
                    _ => *i >= x,
                }
            }
            _ => false,
        }
    }
}

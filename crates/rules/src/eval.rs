//! The compiled form of a condition and its evaluation.
//!
//! Checks hold everything prepared at compile time: resolved field ids, hashed string sets,
//! `memchr` finders for substrings, lower-cased needles for `icontains`, compiled regexes,
//! parsed networks. Evaluation never allocates except for transformers and list-valued fields.

use crate::ast::{Op, Transformer};
use crate::event::{Event, EventTypeSet, Value};
use crate::fields::{Field, FieldArg};
use std::borrow::Cow;
use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

/// A compiled condition node.
#[derive(Clone, Debug)]
pub enum Node {
    /// Known at compile time.
    Const(bool),
    /// All hold.
    And(Box<[Node]>),
    /// Any holds.
    Or(Box<[Node]>),
    /// Negation.
    Not(Box<Node>),
    /// The event's type is in the set.
    EvtType(EventTypeSet),
    /// A field check.
    Check(Arc<CheckNode>),
    /// A check on a field the sensor does not provide (rule not evaluable).
    Unavailable(Arc<str>),
}

impl Node {
    /// Evaluates against `ev`.
    #[inline]
    pub fn eval<E: Event + ?Sized>(&self, ev: &E) -> bool {
        match self {
            Node::Const(b) => *b,
            Node::And(v) => v.iter().all(|n| n.eval(ev)),
            Node::Or(v) => v.iter().any(|n| n.eval(ev)),
            Node::Not(n) => !n.eval(ev),
            Node::EvtType(s) => s.contains(ev.event_type()),
            Node::Check(c) => c.eval(ev),
            Node::Unavailable(_) => false,
        }
    }

    /// Calls `f` with every field check in the tree.
    pub fn for_each_check(&self, f: &mut dyn FnMut(&CheckNode)) {
        match self {
            Node::And(v) | Node::Or(v) => v.iter().for_each(|n| n.for_each_check(f)),
            Node::Not(n) => n.for_each_check(f),
            Node::Check(c) => f(c),
            Node::Const(_) | Node::EvtType(_) | Node::Unavailable(_) => {}
        }
    }

    /// Number of nodes in the tree.
    pub fn size(&self) -> usize {
        match self {
            Node::And(v) | Node::Or(v) => 1 + v.iter().map(Node::size).sum::<usize>(),
            Node::Not(n) => 1 + n.size(),
            _ => 1,
        }
    }
}

/// A string set: a short list is scanned, a long one hashed.
#[derive(Clone, Debug)]
pub struct StrSet {
    small: Box<[Box<str>]>,
    big: Option<HashSet<Box<str>, foldhash::fast::FixedState>>,
}

impl StrSet {
    /// Builds the set.
    pub fn new(items: Vec<String>) -> Self {
        if items.len() <= 6 {
            StrSet {
                small: items.into_iter().map(String::into_boxed_str).collect(),
                big: None,
            }
        } else {
            let mut set = HashSet::with_capacity_and_hasher(
                items.len(),
                foldhash::fast::FixedState::with_seed(0x5eed),
            );
            for i in items {
                set.insert(i.into_boxed_str());
            }
            StrSet {
                small: Box::new([]),
                big: Some(set),
            }
        }
    }

    /// The members, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.small
            .iter()
            .chain(self.big.iter().flatten())
            .map(|s| &**s)
    }

    /// Membership.
    #[inline]
    pub fn contains(&self, s: &str) -> bool {
        match &self.big {
            Some(set) => set.contains(s),
            None => self.small.iter().any(|x| &**x == s),
        }
    }
}

/// An IP network for `fd.net`-style comparisons; an address is a /32 (/128).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Parses `a.b.c.d`, `a.b.c.d/n`, or the IPv6 forms.
    pub fn parse(s: &str) -> Option<IpNet> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim().parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p.trim().parse::<u8>().ok().filter(|p| *p <= max)?,
            None => max,
        };
        Some(IpNet { addr, prefix })
    }

    /// Whether `ip` is inside.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - self.prefix)
                };
                u32::from(n) & mask == u32::from(*a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - self.prefix)
                };
                u128::from(n) & mask == u128::from(*a) & mask
            }
            _ => false,
        }
    }
}

/// What a check compares the field's value with.
#[derive(Clone, Debug)]
pub enum Matcher {
    /// Any value.
    Exists,
    /// String equality.
    StrEq(Box<str>),
    /// String in set (`in`, `intersects`).
    StrIn(StrSet),
    /// Substring.
    Contains(Box<memchr::memmem::Finder<'static>>),
    /// ASCII-case-insensitive substring; the needle is lower-case.
    IContains(Box<[u8]>),
    /// Prefix (also `bstartswith`).
    StartsWith(Box<[u8]>),
    /// Suffix.
    EndsWith(Box<[u8]>),
    /// Glob pattern (lower-cased for `iglob`).
    Glob(Box<[u8]>, bool),
    /// Path prefixes.
    Pmatch(Box<[Box<str>]>),
    /// Anchored regex.
    Regex(regex::Regex),
    /// Integer comparison.
    Int(Op, i64),
    /// Integer in set.
    IntIn(Box<[i64]>),
    /// Boolean equality.
    Bool(bool),
    /// Address in any of the networks.
    IpIn(Box<[IpNet]>),
    /// Comparison with another field of the same event.
    FieldCmp(Op, Field, FieldArg, Box<[Transformer]>),
}

/// One compiled `field op value`.
#[derive(Clone, Debug)]
pub struct CheckNode {
    /// The field.
    pub field: Field,
    /// Its argument.
    pub arg: FieldArg,
    /// Transformers, in application order (innermost first).
    pub transforms: Box<[Transformer]>,
    /// The comparison.
    pub matcher: Matcher,
    /// `!=`: true when a value is present and does not match. A missing value never matches,
    /// with either operator, as in Falco.
    pub negate: bool,
}

impl CheckNode {
    /// Evaluates the check.
    #[inline]
    pub fn eval<E: Event + ?Sized>(&self, ev: &E) -> bool {
        let Some(v) = ev.field(self.field, &self.arg) else {
            return false;
        };
        let v = if self.transforms.is_empty() {
            v
        } else {
            match apply_transforms(v, &self.transforms) {
                Some(v) => v,
                None => return false,
            }
        };
        let hit = match &v {
            Value::List(items) => {
                if matches!(self.matcher, Matcher::Exists) {
                    !items.is_empty()
                } else {
                    items.iter().any(|x| self.matcher.matches(x, ev))
                }
            }
            v => self.matcher.matches(v, ev),
        };
        hit != self.negate
    }
}

/// Applies transformers; `None` when one cannot apply (e.g. invalid base64).
pub fn apply_transforms<'a>(mut v: Value<'a>, ts: &[Transformer]) -> Option<Value<'a>> {
    for t in ts {
        v = match v {
            Value::List(items) => Value::List(
                items
                    .into_iter()
                    .filter_map(|x| apply_transforms(x, std::slice::from_ref(t)))
                    .collect(),
            ),
            Value::Str(s) => match t {
                Transformer::ToLower => Value::Str(Cow::Owned(s.to_lowercase())),
                Transformer::ToUpper => Value::Str(Cow::Owned(s.to_uppercase())),
                Transformer::B64 => Value::Str(Cow::Owned(b64_decode(&s)?)),
                Transformer::Basename => match s {
                    Cow::Borrowed(b) => Value::Str(Cow::Borrowed(basename(b))),
                    Cow::Owned(o) => Value::Str(Cow::Owned(basename(&o).to_owned())),
                },
                Transformer::Len => Value::Int(s.len() as i64),
            },
            _ => return None,
        };
    }
    Some(v)
}

fn basename(s: &str) -> &str {
    let t = s.trim_end_matches('/');
    match t.rfind('/') {
        Some(i) => &t[i + 1..],
        None => t,
    }
}

/// Standard base64 (with or without padding) to text; `None` if invalid or not UTF-8.
pub fn b64_decode(s: &str) -> Option<String> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        })
    }
    let bytes = s.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            acc |= val(*c)? << (18 - 6 * i);
        }
        match chunk.len() {
            4 => out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]),
            3 => out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8]),
            2 => out.push((acc >> 16) as u8),
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

/// Shell-style glob over bytes: `*` (any run, including `/`), `?`, `[abc]`, `[a-z]`, `[!x]`.
pub fn glob_match(pat: &[u8], s: &[u8]) -> bool {
    let (mut p, mut i) = (0usize, 0usize);
    let (mut star_p, mut star_i) = (usize::MAX, 0usize);
    while i < s.len() {
        if p < pat.len() {
            match pat[p] {
                b'*' => {
                    star_p = p;
                    star_i = i;
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    i += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, next)) = class_match(pat, p, s[i]) {
                        if matched {
                            p = next;
                            i += 1;
                            continue;
                        }
                    } else if s[i] == b'[' {
                        p += 1;
                        i += 1;
                        continue;
                    }
                }
                c if c == s[i] => {
                    p += 1;
                    i += 1;
                    continue;
                }
                _ => {}
            }
        }
        if star_p != usize::MAX {
            p = star_p + 1;
            star_i += 1;
            i = star_i;
            continue;
        }
        return false;
    }
    while p < pat.len() && pat[p] == b'*' {
        p += 1;
    }
    p == pat.len()
}

/// Matches a `[...]` class starting at `pat[p]`; returns (matched, index after `]`), or `None`
/// when the class is not closed (then `[` is literal).
fn class_match(pat: &[u8], p: usize, c: u8) -> Option<(bool, usize)> {
    let mut j = p + 1;
    let negate = j < pat.len() && (pat[j] == b'!' || pat[j] == b'^');
    if negate {
        j += 1;
    }
    let mut matched = false;
    let mut first = true;
    while j < pat.len() && (pat[j] != b']' || first) {
        first = false;
        if j + 2 < pat.len() && pat[j + 1] == b'-' && pat[j + 2] != b']' {
            if pat[j] <= c && c <= pat[j + 2] {
                matched = true;
            }
            j += 3;
        } else {
            if pat[j] == c {
                matched = true;
            }
            j += 1;
        }
    }
    if j >= pat.len() {
        return None;
    }
    Some((matched != negate, j + 1))
}

fn icontains(hay: &[u8], needle_lower: &[u8]) -> bool {
    if needle_lower.is_empty() {
        return true;
    }
    if hay.len() < needle_lower.len() {
        return false;
    }
    let first = needle_lower[0];
    let first_up = first.to_ascii_uppercase();
    let last = hay.len() - needle_lower.len();
    let mut i = 0;
    while i <= last {
        // Jump to the next candidate start with memchr2, then compare the rest.
        match memchr::memchr2(first, first_up, &hay[i..=last]) {
            None => return false,
            Some(off) => {
                let at = i + off;
                if hay[at..at + needle_lower.len()].eq_ignore_ascii_case(needle_lower) {
                    return true;
                }
                i = at + 1;
            }
        }
    }
    false
}

/// True if `path` equals or lies under one of `prefixes`.
pub fn pmatch(prefixes: &[Box<str>], path: &str) -> bool {
    prefixes.iter().any(|p| {
        let p = if p.len() > 1 {
            p.trim_end_matches('/')
        } else {
            p
        };
        if p == "/" {
            return path.starts_with('/');
        }
        path == p || (path.starts_with(p) && path.as_bytes().get(p.len()) == Some(&b'/'))
    })
}

fn int_cmp(op: Op, a: i64, b: i64) -> bool {
    match op {
        Op::Eq => a == b,
        Op::Ne => a != b,
        Op::Lt => a < b,
        Op::Le => a <= b,
        Op::Gt => a > b,
        Op::Ge => a >= b,
        _ => false,
    }
}

/// Compares two field values with `op` (for `val()`); `op` is never `Ne` here (`negate` is).
pub fn values_cmp(op: Op, a: &Value<'_>, b: &Value<'_>) -> bool {
    match (a, b) {
        (Value::Str(a), Value::Str(b)) => match op {
            Op::Eq => a == b,
            Op::Contains => a.contains(b.as_ref()),
            Op::IContains => icontains(a.as_bytes(), b.to_ascii_lowercase().as_bytes()),
            Op::StartsWith => a.starts_with(b.as_ref()),
            Op::EndsWith => a.ends_with(b.as_ref()),
            Op::Lt => a < b,
            Op::Le => a <= b,
            Op::Gt => a > b,
            Op::Ge => a >= b,
            _ => false,
        },
        (Value::Int(a), Value::Int(b)) => int_cmp(op, *a, *b),
        (Value::Bool(a), Value::Bool(b)) => op == Op::Eq && a == b,
        (Value::Ip(a), Value::Ip(b)) => op == Op::Eq && a == b,
        (a, Value::List(items)) => items.iter().any(|b| values_cmp(op, a, b)),
        _ => false,
    }
}

impl Matcher {
    /// Whether one (scalar) value matches.
    #[inline]
    pub fn matches<E: Event + ?Sized>(&self, v: &Value<'_>, ev: &E) -> bool {
        match (self, v) {
            (Matcher::Exists, _) => true,
            (Matcher::StrEq(x), Value::Str(s)) => **x == **s,
            (Matcher::StrIn(set), Value::Str(s)) => set.contains(s),
            (Matcher::Contains(f), Value::Str(s)) => f.find(s.as_bytes()).is_some(),
            (Matcher::IContains(n), Value::Str(s)) => icontains(s.as_bytes(), n),
            (Matcher::StartsWith(p), Value::Str(s)) => s.as_bytes().starts_with(p),
            (Matcher::EndsWith(p), Value::Str(s)) => s.as_bytes().ends_with(p),
            (Matcher::Glob(p, icase), Value::Str(s)) => {
                if *icase {
                    glob_match(p, s.to_ascii_lowercase().as_bytes())
                } else {
                    glob_match(p, s.as_bytes())
                }
            }
            (Matcher::Pmatch(ps), Value::Str(s)) => pmatch(ps, s),
            (Matcher::Regex(r), Value::Str(s)) => r.is_match(s),
            (Matcher::Int(op, x), Value::Int(i)) => int_cmp(*op, *i, *x),
            (Matcher::IntIn(set), Value::Int(i)) => set.contains(i),
            (Matcher::Bool(b), Value::Bool(x)) => b == x,
            (Matcher::IpIn(nets), Value::Ip(ip)) => nets.iter().any(|n| n.contains(ip)),
            (Matcher::FieldCmp(op, f, arg, ts), v) => {
                let Some(other) = ev.field(*f, arg) else {
                    return false;
                };
                let Some(other) = apply_transforms(other, ts) else {
                    return false;
                };
                values_cmp(*op, v, &other)
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match(b"/home/*/.ssh/*", b"/home/bob/.ssh/id_rsa"));
        assert!(glob_match(b"*../*../*", b"/var/www/../../etc/passwd"));
        assert!(!glob_match(b"*../*../*", b"/var/www/../etc/passwd"));
        assert!(glob_match(b"a?c", b"abc"));
        assert!(glob_match(b"[a-c]x", b"bx"));
        assert!(!glob_match(b"[!a-c]x", b"bx"));
        assert!(glob_match(b"[x", b"[x"));
        assert!(glob_match(b"*", b""));
    }

    #[test]
    fn nets() {
        let n = IpNet::parse("10.0.0.0/8").unwrap();
        assert!(n.contains(&"10.2.3.4".parse().unwrap()));
        assert!(!n.contains(&"11.2.3.4".parse().unwrap()));
        assert!(IpNet::parse("0.0.0.0/0")
            .unwrap()
            .contains(&"1.2.3.4".parse().unwrap()));
        assert!(IpNet::parse("1.2.3.4/33").is_none());
    }

    #[test]
    fn misc() {
        assert!(icontains(b"xx AWS_Access_Key_ID yy", b"aws_access_key_id"));
        assert!(!icontains(b"aws", b"aws_access"));
        assert_eq!(b64_decode("aGVsbG8=").as_deref(), Some("hello"));
        assert_eq!(b64_decode("aGVsbG8").as_deref(), Some("hello"));
        assert!(b64_decode("a").is_none());
        let p: Vec<Box<str>> = vec!["/etc".into(), "/usr/lib/".into()];
        assert!(pmatch(&p, "/etc/passwd"));
        assert!(pmatch(&p, "/usr/lib"));
        assert!(!pmatch(&p, "/etcx"));
        assert_eq!(basename("/usr/bin/bash"), "bash");
    }
}

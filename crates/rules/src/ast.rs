//! The parsed (uncompiled) form of a Falco condition, and a printer whose output parses back to
//! the same tree.

use std::fmt;

/// A byte offset into the condition text. It compares equal to every other offset so that two
/// trees parsed from differently formatted text compare by structure alone (the printer's
/// round-trip property relies on this).
#[derive(Clone, Copy, Debug, Default)]
pub struct Pos(pub usize);

impl PartialEq for Pos {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// A boolean expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// All must hold (two or more operands).
    And(Vec<Expr>),
    /// Any must hold (two or more operands).
    Or(Vec<Expr>),
    /// Negation.
    Not(Box<Expr>),
    /// A reference to a macro by name.
    Macro(String, Pos),
    /// A field check.
    Check(Check),
}

/// `field op value`, `field exists`, `field in (list)`, `field = val(other)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    /// Left-hand side.
    pub lhs: FieldExpr,
    /// Operator.
    pub op: Op,
    /// Right-hand side (`Rhs::None` for `exists`).
    pub rhs: Rhs,
    /// Where the check starts.
    pub pos: Pos,
}

/// A field, possibly wrapped in transformers: `tolower(proc.name)`, `proc.aname[2]`.
#[derive(Clone, Debug, PartialEq)]
pub enum FieldExpr {
    /// A plain field with an optional bracket argument.
    Field {
        /// Dotted name.
        name: String,
        /// Text inside `[...]`.
        arg: Option<String>,
        /// Where it starts.
        pos: Pos,
    },
    /// A transformer applied to a field expression.
    Transform(Transformer, Box<FieldExpr>),
}

impl FieldExpr {
    /// The innermost field's name.
    pub fn base_name(&self) -> &str {
        match self {
            FieldExpr::Field { name, .. } => name,
            FieldExpr::Transform(_, inner) => inner.base_name(),
        }
    }

    /// The innermost field's position.
    pub fn pos(&self) -> Pos {
        match self {
            FieldExpr::Field { pos, .. } => *pos,
            FieldExpr::Transform(_, inner) => inner.pos(),
        }
    }
}

/// Falco's field transformers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transformer {
    /// Lower-case.
    ToLower,
    /// Upper-case.
    ToUpper,
    /// Base64-decode.
    B64,
    /// Last path component.
    Basename,
    /// Length (turns a string into a number).
    Len,
}

impl Transformer {
    /// Parses a transformer name.
    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "tolower" => Transformer::ToLower,
            "toupper" => Transformer::ToUpper,
            "b64" => Transformer::B64,
            "basename" => Transformer::Basename,
            "len" => Transformer::Len,
            _ => return None,
        })
    }

    /// The transformer's name.
    pub fn name(self) -> &'static str {
        match self {
            Transformer::ToLower => "tolower",
            Transformer::ToUpper => "toupper",
            Transformer::B64 => "b64",
            Transformer::Basename => "basename",
            Transformer::Len => "len",
        }
    }
}

/// Comparison operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// `=` or `==`.
    Eq,
    /// `!=`.
    Ne,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
    /// `in (list)`.
    In,
    /// `intersects (list)`.
    Intersects,
    /// `pmatch (list)`: path-prefix match.
    Pmatch,
    /// Substring.
    Contains,
    /// Case-insensitive substring.
    IContains,
    /// Byte substring given as hex.
    BContains,
    /// Prefix.
    StartsWith,
    /// Byte prefix given as hex.
    BStartsWith,
    /// Suffix.
    EndsWith,
    /// Shell glob (`*`, `?`, `[...]`).
    Glob,
    /// Case-insensitive glob.
    IGlob,
    /// Regular expression (unanchored search).
    Regex,
    /// The field has a value.
    Exists,
}

impl Op {
    /// Parses a word operator.
    pub fn from_word(s: &str) -> Option<Op> {
        Some(match s {
            "in" => Op::In,
            "intersects" => Op::Intersects,
            "pmatch" => Op::Pmatch,
            "contains" => Op::Contains,
            "icontains" => Op::IContains,
            "bcontains" => Op::BContains,
            "startswith" => Op::StartsWith,
            "bstartswith" => Op::BStartsWith,
            "endswith" => Op::EndsWith,
            "glob" => Op::Glob,
            "iglob" => Op::IGlob,
            "regex" => Op::Regex,
            "exists" => Op::Exists,
            _ => return None,
        })
    }

    /// The operator as written.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::In => "in",
            Op::Intersects => "intersects",
            Op::Pmatch => "pmatch",
            Op::Contains => "contains",
            Op::IContains => "icontains",
            Op::BContains => "bcontains",
            Op::StartsWith => "startswith",
            Op::BStartsWith => "bstartswith",
            Op::EndsWith => "endswith",
            Op::Glob => "glob",
            Op::IGlob => "iglob",
            Op::Regex => "regex",
            Op::Exists => "exists",
        }
    }

    /// Operators whose right-hand side is a parenthesised list.
    pub fn takes_list(self) -> bool {
        matches!(self, Op::In | Op::Intersects | Op::Pmatch)
    }
}

/// A literal. `quoted` matters: a bare word in a list may name a Falco list to expand, a quoted
/// one never does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Literal {
    /// The text after unquoting.
    pub text: String,
    /// Whether it was written in quotes.
    pub quoted: bool,
}

/// A right-hand side.
#[derive(Clone, Debug, PartialEq)]
pub enum Rhs {
    /// No operand (`exists`).
    None,
    /// One literal.
    Value(Literal),
    /// `(a, b, "c")`.
    List(Vec<Literal>),
    /// `val(field)`: compare with another field of the same event.
    Field(FieldExpr),
}

/// Characters a bare (unquoted) word may not contain, as in libsinsp's parser.
pub fn is_bare_char(c: char) -> bool {
    !(c.is_whitespace() || matches!(c, '(' | ')' | ',' | '=' | '"' | '\'' | '\u{8}'))
}

fn write_literal(f: &mut fmt::Formatter<'_>, l: &Literal) -> fmt::Result {
    // A bare word stays bare: in value position the parser reads any bare word as a value.
    let bare_ok = !l.quoted && !l.text.is_empty() && l.text.chars().all(is_bare_char);
    if bare_ok {
        return f.write_str(&l.text);
    }
    f.write_str("\"")?;
    for c in l.text.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}

impl fmt::Display for FieldExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldExpr::Field { name, arg, .. } => {
                f.write_str(name)?;
                if let Some(a) = arg {
                    write!(f, "[{a}]")?;
                }
                Ok(())
            }
            FieldExpr::Transform(t, inner) => write!(f, "{}({inner})", t.name()),
        }
    }
}

/// Where an expression is printed: decides whether it needs parentheses.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Parent {
    Top,
    And,
    Or,
    Not,
}

impl fmt::Display for Expr {
    /// Prints with the fewest parentheses that keep the tree: `and` binds tighter than `or`,
    /// `not` tighter than both. Every parenthesis printed stands where the source needed one
    /// too, so printed text never nests deeper than the text it was parsed from (the parser
    /// bounds nesting; a printer that added levels made long conditions fail to parse back).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_in(f, Parent::Top)
    }
}

impl Expr {
    fn write_in(&self, f: &mut fmt::Formatter<'_>, parent: Parent) -> fmt::Result {
        let parens = match (self, parent) {
            (Expr::And(_), Parent::Top | Parent::Or) | (Expr::Or(_), Parent::Top) => false,
            (Expr::And(_) | Expr::Or(_), _) => true,
            _ => false,
        };
        if parens {
            f.write_str("(")?;
        }
        self.write_bare(f)?;
        if parens {
            f.write_str(")")?;
        }
        Ok(())
    }

    fn write_bare(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::And(v) | Expr::Or(v) => {
                let (sep, me) = if matches!(self, Expr::And(_)) {
                    (" and ", Parent::And)
                } else {
                    (" or ", Parent::Or)
                };
                for (i, e) in v.iter().enumerate() {
                    if i > 0 {
                        f.write_str(sep)?;
                    }
                    e.write_in(f, me)?;
                }
                Ok(())
            }
            Expr::Not(e) => {
                f.write_str("not ")?;
                e.write_in(f, Parent::Not)
            }
            Expr::Macro(m, _) => f.write_str(m),
            Expr::Check(c) => {
                write!(f, "{} {}", c.lhs, c.op.as_str())?;
                match &c.rhs {
                    Rhs::None => Ok(()),
                    Rhs::Value(l) => {
                        f.write_str(" ")?;
                        write_literal(f, l)
                    }
                    Rhs::List(items) => {
                        f.write_str(" (")?;
                        for (i, l) in items.iter().enumerate() {
                            if i > 0 {
                                f.write_str(", ")?;
                            }
                            write_literal(f, l)?;
                        }
                        f.write_str(")")
                    }
                    Rhs::Field(fe) => write!(f, " val({fe})"),
                }
            }
        }
    }
}

//! A recursive-descent parser for Falco conditions, following libsinsp's grammar:
//!
//! ```text
//! expr   := and ('or' and)*
//! and    := not ('and' not)*
//! not    := 'not' not | check
//! check  := '(' expr ')' | macro | fexpr 'exists' | fexpr listop list | fexpr binop value
//! fexpr  := transformer '(' fexpr ')' | field ('[' arg ']')?
//! value  := quoted | bare | 'val(' fexpr ')'
//! list   := '(' (value (',' value)*)? ')'
//! ```
//!
//! Nesting is bounded so hostile input cannot overflow the stack.

use crate::ast::{is_bare_char, Check, Expr, FieldExpr, Literal, Op, Pos, Rhs, Transformer};

/// How deep parentheses, `not` and transformers may nest.
pub const MAX_DEPTH: usize = 200;

/// A syntax error at a byte offset of the condition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at column {}: {message}", offset + 1)]
pub struct ParseError {
    /// Byte offset where the problem is.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

/// Parses a condition into an [`Expr`].
pub fn parse_condition(text: &str) -> Result<Expr, ParseError> {
    let mut p = Parser {
        s: text,
        i: 0,
        depth: 0,
    };
    p.ws();
    if p.at_end() {
        return Err(p.err("empty condition"));
    }
    let e = p.or()?;
    p.ws();
    if !p.at_end() {
        let what = p.peek_token();
        return Err(if what == ")" {
            p.err("unbalanced parentheses: `)` without a matching `(`")
        } else {
            p.err(format!(
                "expected `and`, `or` or the end of the condition, found `{what}`"
            ))
        });
    }
    Ok(e)
}

struct Parser<'a> {
    s: &'a str,
    i: usize,
    depth: usize,
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-'
}

impl<'a> Parser<'a> {
    fn err(&self, message: impl Into<String>) -> ParseError {
        ParseError {
            offset: self.i,
            message: message.into(),
        }
    }

    fn err_at(&self, offset: usize, message: impl Into<String>) -> ParseError {
        ParseError {
            offset,
            message: message.into(),
        }
    }

    fn rest(&self) -> &'a str {
        &self.s[self.i..]
    }

    fn at_end(&self) -> bool {
        self.i >= self.s.len()
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.i += c.len_utf8();
        Some(c)
    }

    fn ws(&mut self) {
        while let Some(c) = self.peek() {
            if c.is_whitespace() {
                self.i += c.len_utf8();
            } else {
                break;
            }
        }
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.i += c.len_utf8();
            true
        } else {
            false
        }
    }

    /// A short description of what comes next, for error messages.
    fn peek_token(&self) -> String {
        let r = self.rest();
        let end = r
            .char_indices()
            .find(|(i, c)| c.is_whitespace() || (*i > 0 && matches!(c, '(' | ')' | ',')))
            .map(|(i, _)| i)
            .unwrap_or(r.len());
        let end = if end == 0 {
            r.chars().next().map(char::len_utf8).unwrap_or(0)
        } else {
            end
        };
        r[..end].chars().take(40).collect()
    }

    /// Consumes `kw` when it is a whole word here.
    fn keyword(&mut self, kw: &str) -> bool {
        let r = self.rest();
        if r.starts_with(kw) && !r[kw.len()..].starts_with(is_ident_char) {
            self.i += kw.len();
            true
        } else {
            false
        }
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            Err(self.err(format!("condition nests deeper than {MAX_DEPTH} levels")))
        } else {
            Ok(())
        }
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        let mut v = vec![self.and()?];
        loop {
            self.ws();
            if self.keyword("or") {
                v.push(self.and()?);
            } else {
                break;
            }
        }
        Ok(if v.len() == 1 {
            v.remove(0)
        } else {
            Expr::Or(v)
        })
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut v = vec![self.not()?];
        loop {
            self.ws();
            if self.keyword("and") {
                v.push(self.not()?);
            } else {
                break;
            }
        }
        Ok(if v.len() == 1 {
            v.remove(0)
        } else {
            Expr::And(v)
        })
    }

    fn not(&mut self) -> Result<Expr, ParseError> {
        self.ws();
        if self.keyword("not") {
            self.enter()?;
            let e = self.not()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(e)));
        }
        self.check()
    }

    fn ident(&mut self) -> &'a str {
        let start = self.i;
        if self.peek().is_some_and(is_ident_start) {
            while self.peek().is_some_and(is_ident_char) {
                self.bump();
            }
        }
        &self.s[start..self.i]
    }

    fn check(&mut self) -> Result<Expr, ParseError> {
        self.ws();
        let start = self.i;
        if self.eat('(') {
            self.enter()?;
            let e = self.or()?;
            self.ws();
            if !self.eat(')') {
                return Err(if self.at_end() {
                    self.err_at(start, "unbalanced parentheses: this `(` is never closed")
                } else {
                    self.err(format!(
                        "expected `)` (to close the `(` at column {}), found `{}`",
                        start + 1,
                        self.peek_token()
                    ))
                });
            }
            self.depth -= 1;
            return Ok(e);
        }
        if self.at_end() {
            return Err(self.err("unexpected end of condition: expected a check or a macro"));
        }
        let name = self.ident();
        if name.is_empty() {
            let tok = self.peek_token();
            return Err(if tok == ")" {
                self.err("unbalanced parentheses: `)` without a matching `(`")
            } else {
                self.err(format!("expected a field, a macro or `(`, found `{tok}`"))
            });
        }
        if matches!(name, "and" | "or") {
            return Err(self.err_at(start, format!("`{name}` is missing its left operand")));
        }
        // A name without a dot and not followed by `(` or `[` is a macro reference.
        if !name.contains('.') && self.peek() != Some('(') && self.peek() != Some('[') {
            return Ok(Expr::Macro(name.to_owned(), Pos(start)));
        }
        let lhs = self.field_expr_after(name, start)?;
        self.ws();
        let op_pos = self.i;
        let op = self.operator(&lhs)?;
        let rhs = if op == Op::Exists {
            Rhs::None
        } else if op.takes_list() {
            self.ws();
            if self.peek() != Some('(') {
                return Err(self.err(format!(
                    "`{}` needs a parenthesised list, e.g. `{} {} (a, b)`",
                    op.as_str(),
                    lhs,
                    op.as_str()
                )));
            }
            Rhs::List(self.list()?)
        } else {
            self.ws();
            if self.rest().starts_with("val(") {
                self.i += 4;
                self.ws();
                let fstart = self.i;
                let fname = self.ident();
                if fname.is_empty() {
                    return Err(self.err("`val(` needs a field name"));
                }
                let fe = self.field_expr_after(fname, fstart)?;
                self.ws();
                if !self.eat(')') {
                    return Err(self.err("expected `)` to close `val(`"));
                }
                Rhs::Field(fe)
            } else {
                match self.literal()? {
                    Some(l) => Rhs::Value(l),
                    None => {
                        return Err(self
                            .err_at(op_pos, format!("`{}` needs a value after it", op.as_str())))
                    }
                }
            }
        };
        Ok(Expr::Check(Check {
            lhs,
            op,
            rhs,
            pos: Pos(start),
        }))
    }

    /// Parses the rest of a field expression whose first identifier has been read.
    fn field_expr_after(&mut self, name: &str, start: usize) -> Result<FieldExpr, ParseError> {
        if self.peek() == Some('(') {
            let t = Transformer::from_name(name)
                .ok_or_else(|| self.err_at(start, format!("unknown transformer `{name}`")))?;
            self.bump();
            self.enter()?;
            self.ws();
            let istart = self.i;
            let iname = self.ident();
            if iname.is_empty() {
                return Err(self.err(format!("`{name}(` needs a field")));
            }
            let inner = self.field_expr_after(iname, istart)?;
            self.ws();
            if !self.eat(')') {
                return Err(self.err(format!("expected `)` to close `{name}(`")));
            }
            self.depth -= 1;
            return Ok(FieldExpr::Transform(t, Box::new(inner)));
        }
        let arg = if self.eat('[') {
            let astart = self.i;
            match self.rest().find(']') {
                Some(end) if !self.rest()[..end].contains(['[', '\n']) => {
                    self.i += end + 1;
                    Some(self.s[astart..astart + end].to_owned())
                }
                _ => return Err(self.err_at(astart - 1, "unclosed `[` in field argument")),
            }
        } else {
            None
        };
        if !name.contains('.') {
            return Err(self.err_at(
                start,
                format!("`{name}` is not a field (fields look like `class.name`)"),
            ));
        }
        Ok(FieldExpr::Field {
            name: name.to_owned(),
            arg,
            pos: Pos(start),
        })
    }

    fn operator(&mut self, lhs: &FieldExpr) -> Result<Op, ParseError> {
        for (sym, op) in [
            ("==", Op::Eq),
            ("!=", Op::Ne),
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("=", Op::Eq),
            ("<", Op::Lt),
            (">", Op::Gt),
        ] {
            if self.rest().starts_with(sym) {
                self.i += sym.len();
                return Ok(op);
            }
        }
        let start = self.i;
        let word: &str = {
            let r = self.rest();
            let end = r
                .char_indices()
                .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_'))
                .map(|(i, _)| i)
                .unwrap_or(r.len());
            &r[..end]
        };
        if word.is_empty() {
            let tok = self.peek_token();
            return Err(if tok.is_empty() {
                self.err(format!("expected an operator after `{lhs}`"))
            } else {
                self.err(format!("bad operator `{tok}` after `{lhs}`"))
            });
        }
        match Op::from_word(word) {
            Some(op) => {
                self.i += word.len();
                Ok(op)
            }
            None => Err(self.err_at(start, format!("bad operator `{word}` after `{lhs}`"))),
        }
    }

    /// A quoted or bare literal; `None` if there is none here.
    fn literal(&mut self) -> Result<Option<Literal>, ParseError> {
        match self.peek() {
            Some(q @ ('"' | '\'')) => {
                let start = self.i;
                self.bump();
                let mut text = String::new();
                loop {
                    match self.bump() {
                        None => {
                            return Err(self.err_at(start, "unterminated quoted string"));
                        }
                        Some('\\') => match self.bump() {
                            Some(c @ ('"' | '\'' | '\\')) => text.push(c),
                            Some(c) => {
                                text.push('\\');
                                text.push(c);
                            }
                            None => return Err(self.err_at(start, "unterminated quoted string")),
                        },
                        Some(c) if c == q => break,
                        Some(c) => text.push(c),
                    }
                }
                Ok(Some(Literal { text, quoted: true }))
            }
            _ => {
                let start = self.i;
                while self.peek().is_some_and(is_bare_char) {
                    self.bump();
                }
                if self.i == start {
                    return Ok(None);
                }
                Ok(Some(Literal {
                    text: self.s[start..self.i].to_owned(),
                    quoted: false,
                }))
            }
        }
    }

    fn list(&mut self) -> Result<Vec<Literal>, ParseError> {
        let open = self.i;
        self.bump(); // '('
        let mut items = Vec::new();
        self.ws();
        if self.eat(')') {
            return Ok(items);
        }
        loop {
            self.ws();
            match self.literal()? {
                Some(l) => items.push(l),
                None => {
                    return Err(if self.at_end() {
                        self.err_at(
                            open,
                            "unbalanced parentheses: this list's `(` is never closed",
                        )
                    } else {
                        self.err(format!(
                            "expected a list item, found `{}`",
                            self.peek_token()
                        ))
                    })
                }
            }
            self.ws();
            if self.eat(',') {
                continue;
            }
            if self.eat(')') {
                return Ok(items);
            }
            return Err(if self.at_end() {
                self.err_at(
                    open,
                    "unbalanced parentheses: this list's `(` is never closed",
                )
            } else {
                self.err(format!(
                    "expected `,` or `)` in list, found `{}`",
                    self.peek_token()
                ))
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Expr {
        parse_condition(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_upstream_shapes() {
        p("(evt.type in (open,openat,openat2) and evt.is_open_write=true and fd.typechar='f' and fd.num>=0)");
        p("(not proc.name in (\"<NA>\",\"N/A\"))");
        p("proc.pname in (runc:[0:PARENT], runc:[1:CHILD], runc)");
        p("proc.aname[2]=qualys-cloud-ag or proc.aname[3] startswith google_accounts");
        p("not proc.pname exists or proc.pname in (a)");
        p("tolower(proc.name) = bash and proc.name = val(proc.pname)");
        p("evt.arg[0] contains x and evt.arg.flags contains \"O_TRUNC\"");
        p("not(a) and not (b)");
        p("fd.sip.name=\"kubernetes.default.svc.cluster.local\"");
    }

    #[test]
    fn structure() {
        match p("a and b or not c") {
            Expr::Or(v) => {
                assert!(matches!(&v[0], Expr::And(x) if x.len() == 2));
                assert!(matches!(&v[1], Expr::Not(_)));
            }
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn errors() {
        let e = parse_condition("proc.name foo bash").unwrap_err();
        assert!(e.message.contains("bad operator `foo`"), "{e}");
        assert_eq!(e.offset, 10);
        let e = parse_condition("(proc.name = bash").unwrap_err();
        assert!(e.message.contains("unbalanced"), "{e}");
        let e = parse_condition("proc.name = bash)").unwrap_err();
        assert!(e.message.contains("unbalanced"), "{e}");
        let e = parse_condition("proc.name in (a, b").unwrap_err();
        assert!(e.message.contains("unbalanced"), "{e}");
        assert!(parse_condition("proc.name =").is_err());
        assert!(parse_condition("").is_err());
        assert!(parse_condition("proc.name = 'x").is_err());
        assert!(parse_condition(&"(".repeat(10_000)).is_err());
        assert!(parse_condition(&"not ".repeat(10_000)).is_err());
        assert!(parse_condition("foo(proc.name) = x").is_err());
    }

    #[test]
    fn printed_conditions_never_nest_deeper_than_their_source() {
        // Found by the fuzzer: `not (...)` around every level doubled the nesting, and a
        // condition near the depth limit did not parse back.
        let nots = format!("{}fd.num = 1", "not ".repeat(MAX_DEPTH - 1));
        // `or` of `and` inside parentheses, down to the limit: printed parentheses stand only
        // where the source has them.
        let mut deep = "fd.num = 1".to_string();
        for i in 0..MAX_DEPTH - 1 {
            deep = format!("(proc.pid = {i} or proc.ppid = {i} and {deep})");
        }
        for src in [nots, deep] {
            let e = p(&src);
            let printed = e.to_string();
            assert_eq!(p(&printed), e, "{printed}");
        }
        for (src, printed) in [
            (
                "not (fd.num = 1 and fd.num = 2)",
                "not (fd.num = 1 and fd.num = 2)",
            ),
            (
                "fd.num = 1 or fd.num = 2 and not fd.num = 3",
                "fd.num = 1 or fd.num = 2 and not fd.num = 3",
            ),
            (
                "(fd.num = 1 or fd.num = 2) and fd.num = 3",
                "(fd.num = 1 or fd.num = 2) and fd.num = 3",
            ),
            ("((fd.num = 1))", "fd.num = 1"),
        ] {
            assert_eq!(p(src).to_string(), printed);
        }
    }

    #[test]
    fn printer_round_trip() {
        for s in [
            "a and (b or c) and not d",
            "proc.name in (a, \"b c\", 'd\"e') and fd.num >= 0",
            "tolower(basename(proc.exe)) = val(proc.name)",
            "proc.cmdline contains \"a\\\\b\"",
            "proc.aname[2] exists",
        ] {
            let e = p(s);
            let printed = e.to_string();
            assert_eq!(p(&printed), e, "{s} -> {printed}");
        }
    }
}

//! Property tests for the condition parser: it never panics, and printing a tree then parsing
//! the text gives the same tree.

use brainbox_rules::ast::{Check, Expr, FieldExpr, Literal, Op, Pos, Rhs, Transformer};
use brainbox_rules::fields::FIELDS;
use brainbox_rules::parser::parse_condition;
use proptest::prelude::*;

const TOKENS: &[&str] = &[
    " ",
    "(",
    ")",
    ",",
    "=",
    "!=",
    "<=",
    ">",
    "and",
    "or",
    "not",
    "in",
    "exists",
    "contains",
    "startswith",
    "glob",
    "pmatch",
    "val(",
    "tolower(",
    "proc.name",
    "proc.aname[2]",
    "evt.type",
    "fd.num",
    "\"",
    "'",
    "\\",
    "[",
    "]",
    "bash",
    "macro_x",
    "0",
    "-1",
    "\n",
    "é",
    "%",
];

fn token_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..40).prop_map(|v| v.join(""))
}

fn literal() -> impl Strategy<Value = Literal> {
    prop_oneof![
        "[a-zA-Z0-9_./:\\[\\]*?<>!%-]{1,12}".prop_map(|text| Literal {
            text,
            quoted: false
        }),
        any::<String>().prop_map(|text| Literal { text, quoted: true }),
    ]
}

fn field() -> impl Strategy<Value = FieldExpr> {
    let names: Vec<&'static str> = FIELDS.iter().map(|f| f.name).collect();
    let base = (prop::sample::select(names), prop::option::of(0usize..8)).prop_map(|(f, idx)| {
        FieldExpr::Field {
            name: f.to_owned(),
            arg: idx.map(|i| i.to_string()),
            pos: Pos(0),
        }
    });
    let t = prop::sample::select(vec![
        Transformer::ToLower,
        Transformer::ToUpper,
        Transformer::B64,
        Transformer::Basename,
        Transformer::Len,
    ]);
    (base, prop::collection::vec(t, 0..3)).prop_map(|(mut f, ts)| {
        for t in ts {
            f = FieldExpr::Transform(t, Box::new(f));
        }
        f
    })
}

fn check() -> impl Strategy<Value = Expr> {
    let ops = prop::sample::select(vec![
        Op::Eq,
        Op::Ne,
        Op::Lt,
        Op::Le,
        Op::Gt,
        Op::Ge,
        Op::In,
        Op::Intersects,
        Op::Pmatch,
        Op::Contains,
        Op::IContains,
        Op::BContains,
        Op::StartsWith,
        Op::BStartsWith,
        Op::EndsWith,
        Op::Glob,
        Op::IGlob,
        Op::Regex,
        Op::Exists,
    ]);
    (
        field(),
        ops,
        literal(),
        prop::collection::vec(literal(), 0..4),
        field(),
        any::<bool>(),
    )
        .prop_map(|(lhs, op, lit, list, other, use_field)| {
            let rhs = if op == Op::Exists {
                Rhs::None
            } else if op.takes_list() {
                Rhs::List(list)
            } else if use_field {
                Rhs::Field(other)
            } else {
                Rhs::Value(lit)
            };
            Expr::Check(Check {
                lhs,
                op,
                rhs,
                pos: Pos(0),
            })
        })
}

fn expr() -> impl Strategy<Value = Expr> {
    let macro_name = "[a-z_][a-z0-9_]{0,10}"
        .prop_filter("keywords", |s| !matches!(s.as_str(), "and" | "or" | "not"))
        .prop_map(|m| Expr::Macro(m, Pos(0)));
    let leaf = prop_oneof![check(), macro_name];
    leaf.prop_recursive(5, 48, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::And),
            prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::Or),
            inner.prop_map(|e| Expr::Not(Box::new(e))),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn never_panics_on_any_string(s in any::<String>()) {
        let _ = parse_condition(&s);
    }

    #[test]
    fn never_panics_on_token_soup(s in token_soup()) {
        if let Ok(e) = parse_condition(&s) {
            let printed = e.to_string();
            let again = parse_condition(&printed);
            prop_assert_eq!(again.as_ref(), Ok(&e), "printed: {}", printed);
        }
    }

    #[test]
    fn print_parse_round_trip(e in expr()) {
        let printed = e.to_string();
        let parsed = parse_condition(&printed);
        prop_assert_eq!(parsed.as_ref(), Ok(&e), "printed: {}", printed);
    }
}

//! A small YAML tree with a line number on every node, read with `saphyr`'s marked loader, so
//! every error and warning can name `file:line`.

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};

/// A YAML node with the (1-based) line where it starts.
#[derive(Clone, Debug, PartialEq)]
pub struct YNode {
    /// 1-based line.
    pub line: usize,
    /// The value.
    pub kind: YKind,
}

/// YAML values as the rule loader needs them: scalars are kept as text.
#[derive(Clone, Debug, PartialEq)]
pub enum YKind {
    /// `~`, `null` or nothing.
    Null,
    /// Any scalar, as text (numbers and booleans as written in canonical form).
    Scalar(String),
    /// A sequence.
    Seq(Vec<YNode>),
    /// A mapping with scalar keys, in document order; each key with its line.
    Map(Vec<(String, usize, YNode)>),
}

/// A YAML syntax error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct YamlError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// What the YAML parser said.
    pub message: String,
}

/// How deep YAML collections may nest before we refuse the file (hostile input).
const MAX_DEPTH: usize = 64;

/// Parses all documents of `text`.
pub fn parse(text: &str) -> Result<Vec<YNode>, YamlError> {
    let docs = MarkedYaml::load_from_str(text).map_err(|e| YamlError {
        line: e.marker().line(),
        col: e.marker().col() + 1,
        message: e.info().to_owned(),
    })?;
    docs.iter().map(|d| convert(d, 0)).collect()
}

fn convert(n: &MarkedYaml<'_>, depth: usize) -> Result<YNode, YamlError> {
    let line = n.span.start.line();
    if depth > MAX_DEPTH {
        return Err(YamlError {
            line,
            col: n.span.start.col() + 1,
            message: format!("nesting deeper than {MAX_DEPTH} levels"),
        });
    }
    let kind = match &n.data {
        YamlData::Value(s) => scalar(s),
        YamlData::Representation(s, _, _) => YKind::Scalar(s.to_string()),
        YamlData::Sequence(items) => YKind::Seq(
            items
                .iter()
                .map(|i| convert(i, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        YamlData::Mapping(m) => {
            let mut out = Vec::with_capacity(m.len());
            for (k, v) in m.iter() {
                let key = match &k.data {
                    YamlData::Value(s) => match scalar(s) {
                        YKind::Scalar(s) => s,
                        _ => String::new(),
                    },
                    YamlData::Representation(s, _, _) => s.to_string(),
                    _ => {
                        return Err(YamlError {
                            line: k.span.start.line(),
                            col: k.span.start.col() + 1,
                            message: "mapping keys must be scalars".into(),
                        })
                    }
                };
                out.push((key, k.span.start.line(), convert(v, depth + 1)?));
            }
            YKind::Map(out)
        }
        YamlData::Tagged(_, inner) => return convert(inner, depth + 1),
        YamlData::Alias(_) => {
            return Err(YamlError {
                line,
                col: n.span.start.col() + 1,
                message: "YAML aliases are not supported in rule files".into(),
            })
        }
        YamlData::BadValue => {
            return Err(YamlError {
                line,
                col: n.span.start.col() + 1,
                message: "invalid YAML value".into(),
            })
        }
    };
    Ok(YNode { line, kind })
}

fn scalar(s: &Scalar<'_>) -> YKind {
    match s {
        Scalar::Null => YKind::Null,
        Scalar::Boolean(b) => YKind::Scalar(b.to_string()),
        Scalar::Integer(i) => YKind::Scalar(i.to_string()),
        Scalar::FloatingPoint(f) => YKind::Scalar(f.to_string()),
        Scalar::String(s) => YKind::Scalar(s.to_string()),
    }
}

impl YNode {
    /// The scalar text, if this is a scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            YKind::Scalar(s) => Some(s),
            _ => None,
        }
    }

    /// Looks a key up in a mapping.
    pub fn get(&self, key: &str) -> Option<&YNode> {
        match &self.kind {
            YKind::Map(m) => m.iter().find(|(k, _, _)| k == key).map(|(_, _, v)| v),
            _ => None,
        }
    }

    /// A short name of the node's kind for error messages.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            YKind::Null => "nothing",
            YKind::Scalar(_) => "a scalar",
            YKind::Seq(_) => "a sequence",
            YKind::Map(_) => "a mapping",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let docs =
            parse("# c\n- list: a\n  items: [x, 1]\n- macro: m\n  condition: >\n    x and y\n")
                .unwrap();
        let YKind::Seq(items) = &docs[0].kind else {
            panic!()
        };
        assert_eq!(items[0].line, 2);
        assert_eq!(items[1].line, 4);
        assert_eq!(items[0].get("items").unwrap().line, 3);
        let YKind::Seq(v) = &items[0].get("items").unwrap().kind else {
            panic!()
        };
        assert_eq!(v[1].as_str(), Some("1"));
        assert_eq!(
            items[1].get("condition").unwrap().as_str(),
            Some("x and y\n")
        );
    }

    #[test]
    fn syntax_error_has_line() {
        let e = parse("- rule: a\n  condition: [x\n- rule: b\n").unwrap_err();
        assert!(e.line >= 2, "{e:?}");
    }
}

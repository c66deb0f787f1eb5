//! Rule outputs: `%field` / `%field[N]` substitution with a redaction hook applied to every
//! substituted value before it leaves the node.

use crate::event::{Event, Value};
use crate::fields::{self, Field, FieldArg};

/// The value printed for a field the event does not carry (as Falco prints it).
pub const NA: &str = "<NA>";

#[derive(Clone, Debug)]
enum Seg {
    Lit(String),
    Field {
        name: String,
        resolved: Option<(Field, FieldArg)>,
    },
}

/// A parsed output template.
#[derive(Clone, Debug, Default)]
pub struct OutputTemplate {
    segs: Vec<Seg>,
}

impl OutputTemplate {
    /// Parses `text`; returns the template and the names of fields that are not in the table.
    pub fn parse(text: &str) -> (OutputTemplate, Vec<String>) {
        let mut segs = Vec::new();
        let mut unknown = Vec::new();
        let mut lit = String::new();
        let b = text.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                let start = i + 1;
                let mut j = start;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] == b'.')
                {
                    j += 1;
                }
                // A trailing dot is punctuation, not part of the field name.
                while j > start && b[j - 1] == b'.' {
                    j -= 1;
                }
                if j == start {
                    lit.push('%');
                    i += 1;
                    continue;
                }
                let name = &text[start..j];
                let mut end = j;
                let mut arg = None;
                if j < b.len() && b[j] == b'[' {
                    if let Some(close) = text[j..].find(']') {
                        arg = Some(&text[j + 1..j + close]);
                        end = j + close + 1;
                    }
                }
                if !lit.is_empty() {
                    segs.push(Seg::Lit(std::mem::take(&mut lit)));
                }
                let resolved = fields::resolve(name, arg).ok();
                if resolved.is_none() {
                    unknown.push(text[start..end].to_owned());
                }
                segs.push(Seg::Field {
                    name: text[start..end].to_owned(),
                    resolved,
                });
                i = end;
            } else {
                let ch = text[i..].chars().next().unwrap_or(' ');
                lit.push(ch);
                i += ch.len_utf8();
            }
        }
        if !lit.is_empty() {
            segs.push(Seg::Lit(lit));
        }
        (OutputTemplate { segs }, unknown)
    }

    /// Renders the template; every substituted value passes through `redact`.
    pub fn render<E: Event + ?Sized>(&self, ev: &E, redact: &dyn Fn(&str) -> String) -> String {
        let mut out = String::new();
        for s in &self.segs {
            match s {
                Seg::Lit(l) => out.push_str(l),
                Seg::Field { resolved, .. } => {
                    out.push_str(&redact(&field_text(ev, resolved.as_ref())))
                }
            }
        }
        out
    }

    /// The substituted fields as (name, redacted value) pairs, like Falco's `output_fields`.
    pub fn fields<E: Event + ?Sized>(
        &self,
        ev: &E,
        redact: &dyn Fn(&str) -> String,
    ) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for s in &self.segs {
            if let Seg::Field { name, resolved } = s {
                if !out.iter().any(|(n, _)| n == name) {
                    out.push((name.clone(), redact(&field_text(ev, resolved.as_ref()))));
                }
            }
        }
        out
    }

    /// Field names used by the template.
    pub fn field_names(&self) -> impl Iterator<Item = &str> {
        self.segs.iter().filter_map(|s| match s {
            Seg::Field { name, .. } => Some(name.as_str()),
            Seg::Lit(_) => None,
        })
    }
}

fn field_text<E: Event + ?Sized>(ev: &E, f: Option<&(Field, FieldArg)>) -> String {
    let Some((field, arg)) = f else {
        return NA.to_owned();
    };
    match ev.field(*field, arg) {
        None => NA.to_owned(),
        Some(Value::Str(s)) if s.is_empty() => String::new(),
        Some(v) => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventType, OwnedEvent};
    use std::borrow::Cow;

    #[test]
    fn renders_and_redacts() {
        let (t, unknown) = OutputTemplate::parse(
            "Shell | user=%user.name cmd=%proc.cmdline gp=%proc.aname[2] x=%foo.bar 100% done. flags=%evt.arg.flags",
        );
        assert_eq!(unknown, vec!["foo.bar".to_owned()]);
        let mut ev = OwnedEvent::new(EventType::from_name("execve").unwrap());
        ev.set(Field::UserName, Value::Str(Cow::Borrowed("root")));
        ev.set(
            Field::ProcCmdline,
            Value::Str(Cow::Borrowed("curl -H token=SECRET")),
        );
        ev.set(Field::ProcName, Value::Str(Cow::Borrowed("curl")));
        ev.set_ancestors(&["bash", "sshd"]);
        let redact = |s: &str| s.replace("SECRET", "[REDACTED]");
        let out = t.render(&ev, &redact);
        assert_eq!(
            out,
            "Shell | user=root cmd=curl -H token=[REDACTED] gp=sshd x=<NA> 100% done. flags=<NA>"
        );
        let f = t.fields(&ev, &redact);
        assert_eq!(f[0], ("user.name".into(), "root".into()));
    }
}

//! SPIFFE IDs (`spiffe://<trust-domain>/<path>`), checked as the SPIFFE ID standard says, and
//! rendered from a profile's template.

use std::fmt;

/// Errors parsing a SPIFFE ID or a trust domain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpiffeIdError {
    /// The scheme is not `spiffe://`.
    #[error("`{0}` does not start with spiffe://")]
    Scheme(String),
    /// The trust domain is empty or has characters outside `a-z 0-9 . - _`.
    #[error("bad trust domain `{0}` (lowercase letters, digits, '.', '-', '_')")]
    TrustDomain(String),
    /// A path segment is empty, `.`, `..` or has characters outside `A-Z a-z 0-9 . - _`.
    #[error(
        "bad path in `{0}` (segments of letters, digits, '.', '-', '_'; no empty, '.' or '..')"
    )]
    Path(String),
    /// Longer than 2048 bytes.
    #[error("SPIFFE ID longer than 2048 bytes")]
    TooLong,
}

/// A syntactically valid SPIFFE ID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    text: String,
    td_len: usize,
}

/// Checks a trust domain name.
pub fn check_trust_domain(td: &str) -> Result<(), SpiffeIdError> {
    let ok = !td.is_empty()
        && td.len() <= 255
        && td
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(SpiffeIdError::TrustDomain(td.to_owned()))
    }
}

impl SpiffeId {
    /// Parses and checks a SPIFFE ID.
    pub fn parse(s: &str) -> Result<Self, SpiffeIdError> {
        if s.len() > 2048 {
            return Err(SpiffeIdError::TooLong);
        }
        let rest = s
            .strip_prefix("spiffe://")
            .ok_or_else(|| SpiffeIdError::Scheme(s.to_owned()))?;
        let (td, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        check_trust_domain(td)?;
        if !path.is_empty() {
            for seg in path[1..].split('/') {
                let ok = !seg.is_empty()
                    && seg != "."
                    && seg != ".."
                    && seg
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
                if !ok {
                    return Err(SpiffeIdError::Path(s.to_owned()));
                }
            }
        }
        Ok(SpiffeId {
            text: s.to_owned(),
            td_len: td.len(),
        })
    }

    /// The ID of a trust domain itself (`spiffe://<td>`), used in CA certificates and as the
    /// key of bundle maps.
    pub fn of_trust_domain(td: &str) -> Result<Self, SpiffeIdError> {
        Self::parse(&format!("spiffe://{td}"))
    }

    /// The trust domain name.
    pub fn trust_domain(&self) -> &str {
        &self.text["spiffe://".len().."spiffe://".len() + self.td_len]
    }

    /// The path, starting with `/`, or empty.
    pub fn path(&self) -> &str {
        &self.text["spiffe://".len() + self.td_len..]
    }

    /// The whole ID.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Renders a profile's SPIFFE ID template: `{name}` placeholders are replaced by `vars`, an
/// unknown placeholder is an error (a typo must not silently produce a shared identity), and
/// the result must be a valid SPIFFE ID.
pub fn render_template(template: &str, vars: &[(&str, &str)]) -> Result<SpiffeId, String> {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("unclosed `{{` in `{template}`"))?;
        let key = &after[..close];
        let value = vars
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .ok_or_else(|| format!("unknown placeholder `{{{key}}}` in `{template}`"))?;
        // A value fills exactly one path segment: a `/` in a label must not let one workload
        // render a path that belongs to another.
        if value.contains('/') {
            return Err(format!("value `{value}` of `{{{key}}}` contains `/`"));
        }
        out.push_str(value);
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    SpiffeId::parse(&out).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_ids() {
        let id = SpiffeId::parse("spiffe://brainbox.local/ns/default/brainbox/a-1").unwrap();
        assert_eq!(id.trust_domain(), "brainbox.local");
        assert_eq!(id.path(), "/ns/default/brainbox/a-1");
        let td = SpiffeId::of_trust_domain("example.org").unwrap();
        assert_eq!(td.path(), "");
    }

    #[test]
    fn refuses_bad_ids() {
        for bad in [
            "http://x/y",
            "spiffe://",
            "spiffe://UPPER/x",
            "spiffe://td/",
            "spiffe://td//x",
            "spiffe://td/./x",
            "spiffe://td/../x",
            "spiffe://td/a b",
            "spiffe://td:80/x",
            "spiffe://user@td/x",
        ] {
            assert!(SpiffeId::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn template_renders_and_refuses_unknown_placeholders() {
        let id = render_template(
            "spiffe://{trust_domain}/ns/{namespace}/brainbox/{pod}",
            &[
                ("trust_domain", "td"),
                ("namespace", "default"),
                ("pod", "p1"),
            ],
        )
        .unwrap();
        assert_eq!(id.as_str(), "spiffe://td/ns/default/brainbox/p1");
        assert!(render_template("spiffe://{td}/x", &[("trust_domain", "t")]).is_err());
        // A value that would escape its segment makes the result invalid, not another identity.
        assert!(render_template("spiffe://td/{pod}", &[("pod", "a/../b")]).is_err());
        assert!(render_template("spiffe://td/{pod}", &[("pod", "a/b")]).is_err());
    }
}

//! Pre-checks: a cheap test of what a rule's regex structurally requires, run before the regex.
//!
//! The keywords of the generic rules are common words (`token`, `secret`, `pass`, `cookie`), so
//! a third of clean lines open one of them only because they mention the word (`max_tokens`,
//! `token bucket refilled`, `password reset email`). Their regexes all need the word followed by
//! an assignment (`token=`, `"secret": `, `Cookie:`); a pre-check looks for that shape and the
//! line skips the regex when it is absent.
//!
//! A pre-check is exactly conservative: every match of the rule's regex contains the shape, so
//! skipping never loses a finding (tested against the regexes on random and corpus lines).

/// What a rule's regex needs in the haystack.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Precheck {
    /// One of `words` (ASCII case-insensitive), then an optional quote, then at most `max_ws`
    /// whitespace bytes, then one of `ops`.
    Assignment {
        words: &'static [&'static [u8]],
        max_ws: usize,
        ops: &'static [u8],
    },
    /// This byte occurs.
    Byte(u8),
}

/// The pre-check of a built-in rule, by id (`None`: the regex always runs).
///
/// Each entry restates the part of the rule's regex (in `rules::BUILTIN`) that it relies on.
pub(crate) fn for_rule(id: &str) -> Option<Precheck> {
    use Precheck::{Assignment, Byte};
    Some(match id {
        // `(?:…secret|token|api[_.-]?key|…|credentials?|…|master[_.-]?key)["']?\s{0,3}
        // (?:=|:=|=>|:)`: every alternative ends in one of these words.
        "generic-secret-assignment" => Assignment {
            words: &[b"secret", b"token", b"key", b"credential", b"credentials"],
            max_ws: 3,
            ops: b"=:",
        },
        // `(?:password|passwd|passphrase|passwort|pwd|pass))["']?\s{0,3}(?:=|:=|=>|:)`
        "password-assignment" => Assignment {
            words: &[
                b"password",
                b"passwd",
                b"passphrase",
                b"passwort",
                b"pwd",
                b"pass",
            ],
            max_ws: 3,
            ops: b"=:",
        },
        // `authorization["']?\s*[:=]`
        "authorization-header" => Assignment {
            words: &[b"authorization"],
            max_ws: usize::MAX,
            ops: b"=:",
        },
        // `cookie["']?\s*:`
        "cookie-header" => Assignment {
            words: &[b"cookie"],
            max_ws: usize::MAX,
            ops: b":",
        },
        // `(?:x-api-key|x-auth-token|…|api-key|apikey)["']?\s*[:=]`: all end in `key` or `token`.
        "api-key-header" => Assignment {
            words: &[b"key", b"token"],
            max_ws: usize::MAX,
            ops: b"=:",
        },
        // `…://user:password@host`
        "url-password" => Byte(b'@'),
        _ => return None,
    })
}

/// `\s` of a regex without Unicode: `[\t\n\v\f\r ]` (`u8::is_ascii_whitespace` lacks `\v`).
fn is_space(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ')
}

impl Precheck {
    /// Could the rule's regex match in `hay`?
    pub(crate) fn holds(&self, hay: &[u8]) -> bool {
        match *self {
            Precheck::Byte(b) => memchr::memchr(b, hay).is_some(),
            Precheck::Assignment { words, max_ws, ops } => {
                let at_op = |i: usize| {
                    // Back over the whitespace before the operator: all of it must fit.
                    let mut j = i;
                    while j > 0 && is_space(hay[j - 1]) {
                        j -= 1;
                        if i - j > max_ws {
                            return false;
                        }
                    }
                    if j > 0 && matches!(hay[j - 1], b'"' | b'\'') {
                        j -= 1;
                    }
                    let before = &hay[..j];
                    words.iter().any(|w| {
                        before.len() >= w.len()
                            && before[before.len() - w.len()..].eq_ignore_ascii_case(w)
                    })
                };
                match *ops {
                    [a] => memchr::memchr_iter(a, hay).any(at_op),
                    [a, b] => memchr::memchr2_iter(a, b, hay).any(at_op),
                    _ => hay
                        .iter()
                        .enumerate()
                        .any(|(i, c)| ops.contains(c) && at_op(i)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{for_rule, Precheck};
    use crate::{corpus, rules};
    use proptest::prelude::*;
    use regex::bytes::{Regex, RegexBuilder};

    /// The built-in rules that have a pre-check, with their regexes compiled as the engine does.
    fn checked() -> &'static [(&'static str, Precheck, Regex)] {
        static C: std::sync::OnceLock<Vec<(&'static str, Precheck, Regex)>> =
            std::sync::OnceLock::new();
        C.get_or_init(|| {
            rules::BUILTIN
                .iter()
                .filter_map(|s| {
                    let p = for_rule(s.id)?;
                    let re = RegexBuilder::new(&rules::pattern_source(&s.pattern).0)
                        .unicode(false)
                        .build()
                        .unwrap();
                    Some((s.id, p, re))
                })
                .collect()
        })
    }

    /// Never a line the regex matches and the pre-check rejects.
    fn conservative(checked: &[(&str, Precheck, Regex)], line: &[u8]) -> Result<(), String> {
        for (id, p, re) in checked {
            if re.is_match(line) && !p.holds(line) {
                return Err(format!("{id}: {:?}", String::from_utf8_lossy(line)));
            }
        }
        Ok(())
    }

    #[test]
    fn every_precheck_names_a_builtin_rule() {
        assert_eq!(checked().len(), 6);
    }

    #[test]
    fn conservative_on_corpus() {
        let c = checked();
        let mut skipped = 0;
        let clean = corpus::clean_lines(42, 20_000);
        for l in &clean {
            conservative(c, l.as_bytes()).unwrap();
            skipped += c.iter().filter(|(_, p, _)| !p.holds(l.as_bytes())).count();
        }
        for l in corpus::secret_lines(43, 50) {
            conservative(c, l.line.as_bytes()).unwrap();
        }
        // The pre-checks do reject clean lines (else they would be dead weight).
        assert!(skipped > clean.len(), "{skipped}");
    }

    #[test]
    fn shapes() {
        let p = for_rule("generic-secret-assignment").unwrap();
        assert!(p.holds(b"x API_KEY = 1"));
        assert!(p.holds(b"{\"Secret\":\t\"x\"}"));
        assert!(p.holds(b"token\x0b\x0b\x0b=x"));
        assert!(!p.holds(b"token\x0b\x0b\x0b\x0b=x"));
        assert!(!p.holds(b"max_tokens 4096, ts 16:01:02"));
        assert!(!p.holds(b"token\"\"=x"));
        let p = for_rule("cookie-header").unwrap();
        assert!(p.holds(b"Set-Cookie    : a=b"));
        assert!(!p.holds(b"cookie=a"));
    }

    /// Lines made of the words, quotes, whitespace and operators the pre-checks look at, and
    /// of other bytes.
    fn line() -> impl Strategy<Value = Vec<u8>> {
        let part = prop_oneof![
            proptest::sample::select(vec![
                &b"token"[..],
                b"SECRET",
                b"api_key",
                b"X-Api-Key",
                b"credentials",
                b"Credential",
                b"password",
                b"PASSWD",
                b"pwd",
                b"pass",
                b"passphrase",
                b"Authorization",
                b"set-cookie",
                b"x-auth-token",
                b"private-key",
                b"master.key",
                b"bearer",
                b"postgres://",
                b"user",
                b"@",
                b"db.internal",
            ]),
            proptest::sample::select(vec![
                &b"="[..],
                b":",
                b":=",
                b"=>",
                b"\"",
                b"'",
                b"`",
                b" ",
                b"\t",
                b"\x0b",
                b"\r",
                b"\n",
                b"\x0c",
                b"   ",
                b"_",
                b"-",
                b".",
                b",",
                b";",
                b"&",
                b"/",
            ]),
        ];
        let part = prop_oneof![
            3 => part.prop_map(<[u8]>::to_vec),
            1 => "[A-Za-z0-9+/=._-]{1,24}".prop_map(String::into_bytes),
        ];
        proptest::collection::vec(part, 0..24).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5_000))]
        #[test]
        fn conservative_on_random_lines(l in line()) {
            prop_assert!(conservative(checked(), &l).is_ok(), "{:?}", conservative(checked(), &l));
        }

        #[test]
        fn conservative_on_random_bytes(l in proptest::collection::vec(any::<u8>(), 0..200)) {
            prop_assert!(conservative(checked(), &l).is_ok(), "{:?}", conservative(checked(), &l));
        }
    }
}

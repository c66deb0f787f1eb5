//! Validators that cut false positives after a regex matched: entropy, checksums, context.

/// Shannon entropy in bits per byte.
pub fn entropy(s: &[u8]) -> f32 {
    if s.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in s {
        counts[b as usize] += 1;
    }
    let n = s.len() as f32;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f32 / n;
            -p * p.log2()
        })
        .sum()
}

/// Values that are not secrets but stand where one would (`password=***`, `token: null`).
pub fn is_placeholder(v: &[u8]) -> bool {
    let v = trim_quotes(v);
    if v.is_empty() || v.starts_with(b"[REDACTED") {
        return true;
    }
    // Templates and references: `${DB_PASSWORD}`, `{{ .Values.x }}`, `<password>`, `%s`, `$PASS`.
    if v.starts_with(b"${")
        || v.starts_with(b"{{")
        || v.starts_with(b"<")
        || v.starts_with(b"%")
        || (v.starts_with(b"$")
            && v.len() > 1
            && v[1..].iter().all(|b| b.is_ascii_uppercase() || *b == b'_'))
    {
        return true;
    }
    // All one repeated masking character: `***`, `xxxx`, `....`, `----`.
    if v.len() >= 2
        && v.iter().all(|&b| b == v[0])
        && matches!(v[0], b'*' | b'x' | b'X' | b'.' | b'-' | b'#' | b'?')
    {
        return true;
    }
    const WORDS: &[&str] = &[
        "true",
        "false",
        "null",
        "nil",
        "none",
        "undefined",
        "empty",
        "redacted",
        "masked",
        "hidden",
        "changeme",
        "required",
        "optional",
        "unset",
        "set",
        "missing",
        "invalid",
        "expired",
        "ok",
        "yes",
        "no",
        "n/a",
        "na",
        "secret",
        "password",
        "token",
        "string",
        "str",
        "bool",
        "int",
        "bytes",
        "object",
        "dict",
        "any",
        "filtered",
        "omitted",
        "sensitive",
        "enabled",
        "disabled",
    ];
    WORDS.iter().any(|w| w.as_bytes().eq_ignore_ascii_case(v))
}

fn trim_quotes(v: &[u8]) -> &[u8] {
    let mut v = v;
    while let [b'"' | b'\'' | b'`', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b'"' | b'\'' | b'`'] = v {
        v = rest;
    }
    v
}

/// Parts of key names that make the key a setting about a secret (`password_min_length`).
const HARMLESS_PARTS: &[&str] = &[
    "tokens",
    "_count",
    "count_",
    "tokencount",
    "length",
    "_len",
    "size",
    "limit",
    "_max",
    "max_",
    "_min",
    "min_",
    "type",
    "expir",
    "ttl",
    "_url",
    "_uri",
    "uri_",
    "url_",
    "path",
    "_file",
    "file_",
    "_name",
    "name_",
    "policy",
    "required",
    "enabled",
    "rotation",
    "version",
    "format",
    "_ref",
    "ref_",
    "endpoint",
    "_env",
    "algorithm",
    "_at",
    "_prompt",
    "_reset",
    "changed",
    "strength",
    "hint",
    "_kind",
    "_mode",
    "_field",
    "_duration",
    "_timeout",
    "_interval",
    "_provider",
    "_source",
    "_domain",
    "samesite",
    "same_site",
    "httponly",
    "_secure",
    "bypass",
    "compass",
    "_schema",
    "placeholder",
    "_usage",
    "_header",
    "header_",
];

/// One automaton for all of [`HARMLESS_PARTS`]: keys are checked on every sensitive-looking JSON
/// key and assignment, and a scan per part was a tenth of the engine's time on busy logs. It is
/// the keyword automaton (the parts are lowercase, so its case folding changes nothing): for
/// keys of a few bytes, a walk costs less than entering `aho_corasick`'s search (a JSON line
/// of token counts spent a tenth of its time there).
static HARMLESS: std::sync::LazyLock<crate::keywords::Keywords> =
    std::sync::LazyLock::new(|| crate::keywords::Keywords::new(HARMLESS_PARTS));

/// Key names next to which a value is a setting about a secret, not the secret.
pub fn is_harmless_key(key: &[u8]) -> bool {
    // Separators normalised so `password-min-length`, `password.min_length` look alike.
    let norm = |b: &u8| match b.to_ascii_lowercase() {
        b'-' | b'.' => b'_',
        c => c,
    };
    let mut small = [0u8; 64];
    let long: Vec<u8>;
    let k: &[u8] = if key.len() <= small.len() {
        for (d, s) in small.iter_mut().zip(key) {
            *d = norm(s);
        }
        &small[..key.len()]
    } else {
        long = key.iter().map(norm).collect();
        &long
    };
    let mut found = false;
    HARMLESS.for_each(k, &mut |_, _| found = true);
    found
}

/// The key of a `password…=` assignment really names a password (not `compass`, `passing`).
pub fn is_password_key(key: &[u8]) -> bool {
    let k: Vec<u8> = key.iter().map(u8::to_ascii_lowercase).collect();
    if ["password", "passwd", "passphrase", "passwort"]
        .iter()
        .any(|w| k.windows(w.len()).any(|x| x == w.as_bytes()))
    {
        return true;
    }
    // `pass`/`pwd` only as a whole word or the last part of a name (`db_pass`, `MYSQL_PWD`).
    for w in [&b"pass"[..], b"pwd"] {
        if k == w {
            return true;
        }
        if k.ends_with(w) {
            let before = k[k.len() - w.len() - 1];
            if matches!(before, b'_' | b'-' | b'.') {
                return true;
            }
        }
    }
    false
}

/// Value checks for generic assignments: random-looking (letters and digits, some entropy).
pub fn looks_random(v: &[u8], min_entropy: f32) -> bool {
    if min_entropy <= 0.0 {
        return true;
    }
    let has_digit = v.iter().any(u8::is_ascii_digit);
    let has_alpha = v.iter().any(u8::is_ascii_alphabetic);
    let e = entropy(v);
    // Paths and plain URLs are settings, not secrets.
    if v.starts_with(b"/")
        || v.starts_with(b"./")
        || v.starts_with(b"~/")
        || memchr::memmem::find(v, b"://").is_some()
    {
        return false;
    }
    (has_digit && has_alpha && e >= min_entropy) || e >= min_entropy + 1.2
}

/// Luhn checksum over the digits of `s` (non-digits skipped).
pub fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, &d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d - b'0');
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

/// A card number: 13–19 digits, a known issuer prefix and a valid Luhn checksum.
pub fn is_card(s: &[u8]) -> bool {
    let digits: Vec<u8> = s.iter().copied().filter(u8::is_ascii_digit).collect();
    let n = digits.len();
    if !(13..=19).contains(&n) {
        return false;
    }
    let p = |k: usize| -> u32 {
        digits[..k]
            .iter()
            .fold(0u32, |a, d| a * 10 + u32::from(d - b'0'))
    };
    let known = match digits[0] {
        b'4' => matches!(n, 13 | 16 | 19),                // Visa
        b'5' => (51..=55).contains(&p(2)) && n == 16,     // Mastercard
        b'2' => (2221..=2720).contains(&p(4)) && n == 16, // Mastercard 2-series
        b'3' => {
            (matches!(p(2), 34 | 37) && n == 15)                                   // Amex
                || ((3528..=3589).contains(&p(4)) && (16..=19).contains(&n))       // JCB
                || ((300..=305).contains(&p(3)) || matches!(p(2), 36 | 38 | 39)) && (14..=19).contains(&n)
            // Diners
        }
        b'6' => {
            (p(4) == 6011 || (644..=649).contains(&p(3)) || p(2) == 65 || p(2) == 62)
                && (16..=19).contains(&n)
        }
        _ => false,
    };
    known && luhn(&digits)
}

/// IBAN lengths by country (ISO 13616 registry).
fn iban_len(cc: &[u8]) -> Option<usize> {
    const T: &[(&str, usize)] = &[
        ("AD", 24),
        ("AE", 23),
        ("AL", 28),
        ("AT", 20),
        ("AZ", 28),
        ("BA", 20),
        ("BE", 16),
        ("BG", 22),
        ("BH", 22),
        ("BR", 29),
        ("BY", 28),
        ("CH", 21),
        ("CR", 22),
        ("CY", 28),
        ("CZ", 24),
        ("DE", 22),
        ("DK", 18),
        ("DO", 28),
        ("EE", 20),
        ("EG", 29),
        ("ES", 24),
        ("FI", 18),
        ("FO", 18),
        ("FR", 27),
        ("GB", 22),
        ("GE", 22),
        ("GI", 23),
        ("GL", 18),
        ("GR", 27),
        ("GT", 28),
        ("HR", 21),
        ("HU", 28),
        ("IE", 22),
        ("IL", 23),
        ("IQ", 23),
        ("IS", 26),
        ("IT", 27),
        ("JO", 30),
        ("KW", 30),
        ("KZ", 20),
        ("LB", 28),
        ("LC", 32),
        ("LI", 21),
        ("LT", 20),
        ("LU", 20),
        ("LV", 21),
        ("MC", 27),
        ("MD", 24),
        ("ME", 22),
        ("MK", 19),
        ("MR", 27),
        ("MT", 31),
        ("MU", 30),
        ("NL", 18),
        ("NO", 15),
        ("PK", 24),
        ("PL", 28),
        ("PS", 29),
        ("PT", 25),
        ("QA", 29),
        ("RO", 24),
        ("RS", 22),
        ("SA", 24),
        ("SC", 31),
        ("SE", 24),
        ("SI", 19),
        ("SK", 24),
        ("SM", 27),
        ("ST", 25),
        ("SV", 28),
        ("TL", 23),
        ("TN", 24),
        ("TR", 26),
        ("UA", 29),
        ("VA", 22),
        ("VG", 24),
        ("XK", 20),
    ];
    T.iter().find(|(c, _)| c.as_bytes() == cc).map(|(_, l)| *l)
}

/// If `s` starts with an IBAN (spaces allowed between characters), the byte length of it.
pub fn iban_prefix_len(s: &[u8]) -> Option<usize> {
    if s.len() < 2 {
        return None;
    }
    let want = iban_len(&s[..2])?;
    let mut chars = Vec::with_capacity(want);
    let mut end = 0;
    for (i, &b) in s.iter().enumerate() {
        if b == b' ' {
            continue;
        }
        if !b.is_ascii_alphanumeric() {
            break;
        }
        chars.push(b);
        if chars.len() == want {
            end = i + 1;
            break;
        }
    }
    if chars.len() != want {
        return None;
    }
    // The account part must not run on into more alphanumerics (a longer token is no IBAN).
    if s.get(end).is_some_and(u8::is_ascii_alphanumeric) {
        return None;
    }
    if !chars[2..4].iter().all(u8::is_ascii_digit) {
        return None;
    }
    // ISO 7064 mod 97-10 over the rearranged string, letters as 10..35.
    let mut rem: u32 = 0;
    for &c in chars[4..].iter().chain(chars[..4].iter()) {
        let v = match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            b'A'..=b'Z' => u32::from(c - b'A') + 10,
            _ => return None,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    (rem == 1).then_some(end)
}

/// A US SSN that the SSA could have issued.
pub fn is_ssn(s: &[u8]) -> bool {
    let d: Vec<u8> = s.iter().copied().filter(u8::is_ascii_digit).collect();
    if d.len() != 9 {
        return false;
    }
    let area = &d[..3];
    area != b"000" && area != b"666" && area[0] != b'9' && &d[3..5] != b"00" && &d[5..] != b"0000"
}

/// Digits of a phone number candidate are plausible (8–15, E.164).
pub fn is_phone_digits(s: &[u8]) -> bool {
    let n = s.iter().filter(|b| b.is_ascii_digit()).count();
    (8..=15).contains(&n)
}

/// Top-level "domains" that are really file extensions (`logo@2x.png`).
pub fn is_file_tld(tld: &[u8]) -> bool {
    const EXT: &[&str] = &[
        "png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "js", "mjs", "css", "json", "yaml",
        "yml", "txt", "log", "go", "rs", "py", "ts", "tsx", "jsx", "sh", "zip", "gz", "tgz", "tar",
        "lock", "md", "html", "htm", "xml", "toml", "ini", "conf", "java", "class", "jar", "so",
        "dll", "exe", "bin", "wasm", "map", "pdf", "csv", "proto", "rb", "php", "kt", "swift",
        "pem", "crt", "key",
    ];
    EXT.iter().any(|e| e.as_bytes().eq_ignore_ascii_case(tld))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_and_cards() {
        assert!(is_card(b"4111 1111 1111 1111"));
        assert!(is_card(b"5500-0000-0000-0004"));
        assert!(is_card(b"378282246310005"));
        assert!(!is_card(b"4111 1111 1111 1112"));
        assert!(
            !is_card(b"1732551625123"),
            "a millisecond timestamp is no card"
        );
    }

    #[test]
    fn iban_checksums() {
        assert_eq!(iban_prefix_len(b"DE89370400440532013000"), Some(22));
        assert_eq!(
            iban_prefix_len(b"GB29 NWBK 6016 1331 9268 19 EUR"),
            Some(27)
        );
        assert_eq!(iban_prefix_len(b"DE89370400440532013001"), None);
        assert_eq!(iban_prefix_len(b"ZZ89370400440532013000"), None);
    }

    #[test]
    fn ssn_rules() {
        assert!(is_ssn(b"123-45-6789"));
        assert!(!is_ssn(b"000-45-6789"));
        assert!(!is_ssn(b"666-45-6789"));
        assert!(!is_ssn(b"923-45-6789"));
        assert!(!is_ssn(b"123-00-6789"));
    }

    #[test]
    fn placeholders_and_keys() {
        assert!(is_placeholder(b"***"));
        assert!(is_placeholder(b"${DB_PASSWORD}"));
        assert!(is_placeholder(b"[REDACTED:password:0011aabbccdd]"));
        assert!(!is_placeholder(b"hunter2"));
        assert!(is_password_key(b"DB_PASS"));
        assert!(!is_password_key(b"compass"));
        assert!(is_harmless_key(b"password_min_length"));
        assert!(!is_harmless_key(b"client_secret"));
    }

    #[test]
    fn entropy_orders_strings() {
        assert!(entropy(b"aaaaaaaa") < 0.1);
        assert!(entropy(b"Zx8kQ2mP9vL4nR7tW1yB") > 4.0);
    }
}

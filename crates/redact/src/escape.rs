//! Escaping of bytes that could forge log lines or terminal output.
//!
//! A redacted line must be one line of valid UTF-8 that a terminal shows as it is: carriage
//! returns, ANSI escape sequences, other C0/C1 controls, Unicode line separators and bidirectional
//! overrides ("Trojan Source") are written as visible escapes; bytes that are not UTF-8 become
//! `\xNN`. Tabs stay. Backslashes are not doubled, so clean lines pass byte for byte; the price is
//! that a line that literally contains `\x1b` reads the same as one that contained an ESC.

/// Does this code point need escaping?
fn is_dangerous(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{8}' | '\u{a}'..='\u{1f}' | '\u{7f}'..='\u{9f}'
        | '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Does `s` (valid UTF-8) hold a code point that must be escaped?
pub fn str_needs_escape(s: &str) -> bool {
    s.chars().any(is_dangerous)
}

/// Append `bytes` to `out`, escaped.
pub fn escape_into(out: &mut String, bytes: &[u8]) {
    for chunk in bytes.utf8_chunks() {
        let valid = chunk.valid();
        let mut start = 0;
        for (i, c) in valid.char_indices() {
            if is_dangerous(c) {
                out.push_str(&valid[start..i]);
                push_escape(out, c);
                start = i + c.len_utf8();
            }
        }
        out.push_str(&valid[start..]);
        for b in chunk.invalid() {
            push_hex(out, *b);
        }
    }
}

fn push_hex(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('\\');
    out.push('x');
    out.push(HEX[(b >> 4) as usize] as char);
    out.push(HEX[(b & 15) as usize] as char);
}

fn push_escape(out: &mut String, c: char) {
    match c {
        '\r' => out.push_str("\\r"),
        '\n' => out.push_str("\\n"),
        c if (c as u32) < 0x80 => push_hex(out, c as u8),
        c => {
            out.push_str("\\u{");
            out.push_str(&format!("{:x}", c as u32));
            out.push('}');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(b: &[u8]) -> String {
        let mut s = String::new();
        escape_into(&mut s, b);
        s
    }

    #[test]
    fn forging_bytes_are_visible() {
        assert_eq!(esc(b"a\rb"), "a\\rb");
        assert_eq!(esc(b"\x1b[31mred\x1b[0m"), "\\x1b[31mred\\x1b[0m");
        assert_eq!(esc(b"tab\tstays"), "tab\tstays");
        assert_eq!(esc(b"bad\xff\xfeutf8"), "bad\\xff\\xfeutf8");
        assert_eq!(
            esc("x\u{2028}y\u{202e}z\u{85}".as_bytes()),
            "x\\u{2028}y\\u{202e}z\\u{85}"
        );
        assert_eq!(esc("caf\u{e9} \u{1f600}".as_bytes()), "caf\u{e9} \u{1f600}");
    }
}

//! The JSON path: a scanner that walks one JSON document in place and rewrites only the string
//! (and number) tokens that hold secrets, so the output is the input byte for byte except those
//! tokens, and stays valid JSON. Values under sensitive keys (`password`, `token`,
//! `authorization`, …) are redacted whole, at any depth; every other string is searched with the
//! rules after decoding its escapes (a secret written as `ghp\u005f…` is still found).
//!
//! The line's prefilter passes have already been made when a line gets here, and most strings
//! of a JSON line are short and clean (`"ts"`, `"level"`, `"info"`): a string without escapes
//! is its own bytes in the line, so the rules it opens come from the line's keyword hits that
//! lie inside it ([`Engine::fired_in`]), not from a byte pass and a keyword pass of its own.
//!
//! The keys of a stream of JSON lines are the same few names line after line, and what the
//! scanner learns about a key depends on its bytes alone: whether it is a sensitive name, a
//! harmless one, and that the rules find nothing in it. Each thread remembers that for the
//! last keys it saw ([`KeyMemo`]); a key seen before costs a hash and a compare instead of a
//! normalisation, name look-ups, a keyword walk and the rules' checks (two fifths of a JSON
//! line whose keys hold `token`, `secret`, `password`).

use crate::{
    escape,
    stats::{stats, Stats},
    validate, Class, Engine, Finding, KindId, Redaction,
};
use std::{borrow::Cow, cell::RefCell};

/// Deeper documents are not treated as JSON (the text path still redacts them).
const MAX_DEPTH: usize = 128;

/// Keys of at most this many bytes are remembered.
const MEMO_KEY: usize = 48;
/// Entries of the per-thread memo (direct mapped).
const MEMO_SLOTS: usize = 128;

/// What is known about one key name under one engine; only keys in which the rules find
/// nothing are remembered.
#[derive(Clone, Copy)]
struct KeyFacts {
    engine: u64,
    len: u8,
    key: [u8; MEMO_KEY],
    /// [`Engine::sensitive_key`].
    kind: Option<KindId>,
    /// [`validate::is_harmless_key`].
    harmless: bool,
}

/// The per-thread memo of key facts: a direct-mapped table, so a lookup is one hash, one slot
/// and one compare, and an unlucky collision only costs the work the memo saves.
struct KeyMemo([Option<KeyFacts>; MEMO_SLOTS]);

thread_local! {
    static MEMO: RefCell<KeyMemo> = const { RefCell::new(KeyMemo([None; MEMO_SLOTS])) };
}

impl KeyMemo {
    /// `key` padded with zeros to [`MEMO_KEY`] bytes, and its slot. Compared as whole arrays
    /// (with the length: a remembered key has no zero byte), a hit costs no `memcmp` call.
    fn padded(engine: u64, key: &[u8]) -> ([u8; MEMO_KEY], usize) {
        let mut p = [0u8; MEMO_KEY];
        // FNV-1a over the key, then the engine.
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for (d, &b) in p.iter_mut().zip(key) {
            *d = b;
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        let h = (h ^ engine).wrapping_mul(0x0100_0000_01b3);
        (p, (h >> 32) as usize % MEMO_SLOTS)
    }

    fn get(engine: u64, key: &[u8]) -> Option<KeyFacts> {
        let (p, slot) = Self::padded(engine, key);
        MEMO.with(|m| {
            let f = m.borrow().0[slot]?;
            (f.engine == engine && usize::from(f.len) == key.len() && f.key == p).then_some(f)
        })
    }

    fn put(f: KeyFacts) {
        let (_, slot) = Self::padded(f.engine, &f.key[..usize::from(f.len)]);
        MEMO.with(|m| m.borrow_mut().0[slot] = Some(f));
    }
}

struct Edit {
    start: usize,
    end: usize,
    with: String,
}

struct Parser<'a, 'e> {
    b: &'a [u8],
    /// `b`, known to be UTF-8.
    text: &'a str,
    /// The byte pass over the whole line.
    st: Stats,
    /// The line's keyword hits: (index after the end, keyword).
    hits: Vec<(usize, u32)>,
    i: usize,
    e: &'e Engine,
    edits: Vec<Edit>,
    class: Class,
    kinds: Vec<KindId>,
    scratch: Vec<Finding>,
}

type R = Result<(), ()>;

/// Redact a JSON line whose byte pass is `st` and keyword hits are `hits`
/// ([`Engine::keyword_hits`]); `None` when the line is not one valid JSON document.
pub(crate) fn redact<'a>(
    e: &Engine,
    line: &'a [u8],
    st: &Stats,
    hits: Vec<(usize, u32)>,
) -> Option<Redaction<'a>> {
    let text = std::str::from_utf8(line).ok()?;
    let mut p = Parser {
        b: line,
        text,
        st: *st,
        hits,
        i: 0,
        e,
        edits: Vec::new(),
        class: Class::CLEAN,
        kinds: Vec::new(),
        scratch: Vec::new(),
    };
    p.value(0, None).ok()?;
    p.ws();
    if p.i != line.len() {
        return None;
    }
    if p.edits.is_empty() {
        return Some(Redaction {
            text: Cow::Borrowed(text),
            class: Class::CLEAN,
            kinds: Vec::new(),
        });
    }
    let mut out = String::with_capacity(line.len() + 32);
    let mut at = 0;
    for ed in &p.edits {
        out.push_str(&text[at..ed.start]);
        out.push_str(&ed.with);
        at = ed.end;
    }
    out.push_str(&text[at..]);
    Some(Redaction {
        text: Cow::Owned(out),
        class: p.class,
        kinds: p.kinds,
    })
}

impl Parser<'_, '_> {
    fn ws(&mut self) {
        while let Some(&c @ (b' ' | b'\t' | b'\n' | b'\r')) = self.b.get(self.i) {
            // A raw CR/LF between tokens is valid JSON but would break the line on a terminal:
            // a space is the same document.
            if c == b'\n' || c == b'\r' {
                self.edits.push(Edit {
                    start: self.i,
                    end: self.i + 1,
                    with: " ".to_string(),
                });
            }
            self.i += 1;
        }
    }

    fn expect(&mut self, c: u8) -> R {
        self.ws();
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            Ok(())
        } else {
            Err(())
        }
    }

    fn value(&mut self, depth: usize, sens: Option<KindId>) -> R {
        if depth > MAX_DEPTH {
            return Err(());
        }
        self.ws();
        match self.b.get(self.i).copied() {
            Some(b'{') => self.object(depth, sens),
            Some(b'[') => self.array(depth, sens),
            Some(b'"') => {
                let (s, e, esc) = self.string()?;
                self.on_string(s, e, esc, sens)
            }
            Some(b't') => self.lit(b"true"),
            Some(b'f') => self.lit(b"false"),
            Some(b'n') => self.lit(b"null"),
            Some(b'-' | b'0'..=b'9') => {
                let (s, e) = self.number()?;
                self.on_number(s, e, sens)
            }
            _ => Err(()),
        }
    }

    fn lit(&mut self, w: &[u8]) -> R {
        if self.b[self.i..].starts_with(w) {
            self.i += w.len();
            Ok(())
        } else {
            Err(())
        }
    }

    fn object(&mut self, depth: usize, sens: Option<KindId>) -> R {
        self.i += 1;
        self.ws();
        if self.b.get(self.i) == Some(&b'}') {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.ws();
            if self.b.get(self.i) != Some(&b'"') {
                return Err(());
            }
            let (ks, ke, esc) = self.string()?;
            let facts = self.key(ks, ke, esc)?;
            let child = match facts.kind {
                Some(k) => Some(k),
                // Leaves under a sensitive object are sensitive too, unless their own name says
                // they are a setting (`expires_at`, `type`).
                None => sens.filter(|_| !facts.harmless),
            };
            self.expect(b':')?;
            self.value(depth + 1, child)?;
            self.ws();
            match self.b.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(()),
            }
        }
    }

    /// Handles the key `b[ks..ke]` (quotes included): searches it with the rules like any
    /// string, unless the memo has it as clean, and returns what it is. A short printable ASCII
    /// key without escapes is remembered when clean: its facts depend on its bytes alone.
    fn key(&mut self, ks: usize, ke: usize, esc: bool) -> Result<KeyFacts, ()> {
        let raw = &self.b[ks + 1..ke - 1];
        let memo = !esc && raw.len() <= MEMO_KEY && raw.iter().all(|b| (0x20..0x7f).contains(b));
        if memo {
            if let Some(f) = KeyMemo::get(self.e.id, raw) {
                return Ok(f);
            }
        }
        let key = decode(&self.text[ks + 1..ke - 1], esc)?;
        let mut f = KeyFacts {
            engine: self.e.id,
            len: 0,
            key: [0; MEMO_KEY],
            kind: self.e.sensitive_key(key.as_bytes()),
            harmless: validate::is_harmless_key(key.as_bytes()),
        };
        let edits = self.edits.len();
        self.on_string(ks, ke, esc, None)?;
        // Printable ASCII is never escaped: no edit means no finding.
        if memo && self.edits.len() == edits {
            f.len = raw.len() as u8;
            f.key[..raw.len()].copy_from_slice(raw);
            KeyMemo::put(f);
        }
        Ok(f)
    }

    fn array(&mut self, depth: usize, sens: Option<KindId>) -> R {
        self.i += 1;
        self.ws();
        if self.b.get(self.i) == Some(&b']') {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.value(depth + 1, sens)?;
            self.ws();
            match self.b.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(()),
            }
        }
    }

    /// Scan a string token; returns (index of the opening quote, index after the closing quote,
    /// whether it holds escapes).
    fn string(&mut self) -> Result<(usize, usize, bool), ()> {
        let start = self.i;
        self.i += 1;
        let mut esc = false;
        loop {
            // Jump to the next byte that matters.
            let rest = &self.b[self.i..];
            let Some(off) = rest
                .iter()
                .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
            else {
                return Err(());
            };
            self.i += off;
            match self.b[self.i] {
                b'"' => {
                    self.i += 1;
                    return Ok((start, self.i, esc));
                }
                b'\\' => {
                    esc = true;
                    match self.b.get(self.i + 1) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 2,
                        Some(b'u') => {
                            let hex = self.b.get(self.i + 2..self.i + 6).ok_or(())?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return Err(());
                            }
                            self.i += 6;
                        }
                        _ => return Err(()),
                    }
                }
                _ => return Err(()),
            }
        }
    }

    fn number(&mut self) -> Result<(usize, usize), ()> {
        let s = self.i;
        let b = self.b;
        let mut i = self.i;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                while b.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
            }
            _ => return Err(()),
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            if !b.get(i).is_some_and(u8::is_ascii_digit) {
                return Err(());
            }
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        }
        if let Some(b'e' | b'E') = b.get(i) {
            i += 1;
            if let Some(b'+' | b'-') = b.get(i) {
                i += 1;
            }
            if !b.get(i).is_some_and(u8::is_ascii_digit) {
                return Err(());
            }
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        }
        self.i = i;
        Ok((s, i))
    }

    fn kind_class(&self, k: KindId) -> Class {
        match self.e.kind_name(k) {
            "us-ssn" | "payment-card" | "email" | "phone" | "iban" => Class::PII,
            _ => Class::SECRET,
        }
    }

    fn redact_whole(&mut self, s: usize, e: usize, kind: KindId, content: &str) {
        // `Bearer <token>` keeps its scheme, so the value still says what it was.
        let mut with = String::new();
        let mut secret = content;
        if self.e.kind_name(kind) == "authorization" {
            if let Some((scheme, rest)) = content.split_once(' ') {
                if !rest.is_empty()
                    && scheme.len() <= 20
                    && scheme
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                {
                    with.push_str(scheme);
                    with.push(' ');
                    secret = rest.trim_start();
                }
            }
        }
        with.push_str(&self.e.marker(kind, secret.as_bytes()));
        self.edits.push(Edit {
            start: s,
            end: e,
            with: quote(&with),
        });
        self.class = self.class.union(self.kind_class(kind));
        self.kinds.push(kind);
    }

    fn on_string(&mut self, s: usize, e: usize, esc: bool, sens: Option<KindId>) -> R {
        let raw_str = &self.text[s + 1..e - 1];
        let raw = raw_str.as_bytes();
        let content = decode(raw_str, esc)?;
        if let Some(kind) = sens {
            if !content.is_empty() && !validate::is_placeholder(content.as_bytes()) {
                self.redact_whole(s, e, kind, &content);
                return Ok(());
            }
        }
        let mut findings = std::mem::take(&mut self.scratch);
        if esc {
            self.e.find_in(content.as_bytes(), &mut findings);
        } else {
            // The content is `b[s + 1..e - 1]`, between quotes.
            let mut fired = self.e.fired_in(&self.hits, s + 1, e - 1);
            // Quotes delimit the part: a digit shape in it is one of the line, so when the line
            // has none (and no `@`), neither has the part, and its byte pass is skipped.
            if self.st.shapes != 0 || self.st.at {
                self.e.add_gated(&mut fired, &stats(raw));
            } else {
                self.e.add_gated(&mut fired, &Stats::default());
            }
            debug_assert_eq!(fired, self.e.fired(raw, &stats(raw)), "{raw_str:?}");
            findings.clear();
            if !fired.is_empty() {
                self.e.find(raw, &fired, &mut findings);
            }
        }
        if !findings.is_empty() {
            let mut plain = String::with_capacity(content.len() + 32);
            self.e
                .render(content.as_bytes(), &findings, &mut plain, false);
            for f in &findings {
                self.class = self.class.union(f.class);
                self.kinds.push(f.kind);
            }
            self.edits.push(Edit {
                start: s,
                end: e,
                with: quote(&plain),
            });
        } else if (self.st.high || self.st.ctrl) && raw.iter().any(|b| *b >= 0x80 || *b == 0x7f) {
            // Raw (unescaped) line separators, bidi overrides or DEL: write them as JSON escapes.
            if escape::str_needs_escape(raw_str) || raw.contains(&0x7f) {
                self.edits.push(Edit {
                    start: s,
                    end: e,
                    with: quote(&content),
                });
            }
        }
        self.scratch = findings;
        Ok(())
    }

    fn on_number(&mut self, s: usize, e: usize, sens: Option<KindId>) -> R {
        let text_str = &self.text[s..e];
        let text = text_str.as_bytes();
        if let Some(kind) = sens {
            self.redact_whole(s, e, kind, text_str);
            return Ok(());
        }
        if text.iter().filter(|b| b.is_ascii_digit()).count() < 8 {
            return Ok(());
        }
        let mut findings = std::mem::take(&mut self.scratch);
        self.e.find_in(text, &mut findings);
        if !findings.is_empty() {
            let mut plain = String::new();
            self.e.render(text, &findings, &mut plain, false);
            for f in &findings {
                self.class = self.class.union(f.class);
                self.kinds.push(f.kind);
            }
            self.edits.push(Edit {
                start: s,
                end: e,
                with: quote(&plain),
            });
        }
        self.scratch = findings;
        Ok(())
    }
}

/// Decode a JSON string's content (without quotes).
fn decode(s: &str, esc: bool) -> Result<Cow<'_, str>, ()> {
    if !esc {
        return Ok(Cow::Borrowed(s));
    }
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let Some(off) = b[i..].iter().position(|&c| c == b'\\') else {
            out.push_str(&s[i..]);
            break;
        };
        out.push_str(&s[i..i + off]);
        i += off;
        let c = *b.get(i + 1).ok_or(())?;
        i += 2;
        match c {
            b'"' => out.push('"'),
            b'\\' => out.push('\\'),
            b'/' => out.push('/'),
            b'b' => out.push('\u{8}'),
            b'f' => out.push('\u{c}'),
            b'n' => out.push('\n'),
            b'r' => out.push('\r'),
            b't' => out.push('\t'),
            b'u' => {
                let hi = hex4(b.get(i..i + 4).ok_or(())?)?;
                i += 4;
                let cp = if (0xD800..0xDC00).contains(&hi) && b.get(i..i + 2) == Some(b"\\u") {
                    match b.get(i + 2..i + 6).map(hex4) {
                        Some(Ok(lo)) if (0xDC00..0xE000).contains(&lo) => {
                            i += 6;
                            0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                        }
                        _ => 0xFFFD,
                    }
                } else {
                    hi
                };
                out.push(char::from_u32(cp).unwrap_or('\u{FFFD}'));
            }
            _ => return Err(()),
        }
    }
    Ok(Cow::Owned(out))
}

fn hex4(h: &[u8]) -> Result<u32, ()> {
    let s = std::str::from_utf8(h).map_err(|_| ())?;
    u32::from_str_radix(s, 16).map_err(|_| ())
}

/// Encode a JSON string token, escaping controls and the code points [`escape`] guards against.
pub(crate) fn quote(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20
                || ('\u{7f}'..='\u{9f}').contains(&c)
                || escape::str_needs_escape(c.encode_utf8(&mut [0; 4])) =>
            {
                o.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

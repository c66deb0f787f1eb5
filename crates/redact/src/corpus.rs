//! A deterministic, labeled synthetic corpus: log lines with planted secrets of every rule's kind
//! and clean look-alikes (UUIDs, git SHAs, base64 of ordinary text, prices, timestamps, token
//! counts) that must pass unchanged. Used by the recall/false-positive test and the benchmark.
//! Every secret is generated here from a seed; none is real.

use crate::rules::BUILTIN;

/// splitmix64: small, fast, reproducible.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    /// Pick one.
    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
    fn from(&mut self, alphabet: &[u8], n: usize) -> String {
        (0..n).map(|_| *self.pick(alphabet) as char).collect()
    }
    fn digits(&mut self, n: usize) -> String {
        self.from(b"0123456789", n)
    }
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const UPPER_DIGIT: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const LOWER_DIGIT: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const LETTERS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const HEX: &[u8] = b"0123456789abcdef";
const HEX_UPPER: &[u8] = b"0123456789ABCDEF";
const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
const B32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const BECH32: &[u8] = b"QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L";

fn uuid(r: &mut Rng) -> String {
    let h = r.from(HEX, 32);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Expand a sample template; returns the text and the secrets (the parts inside `«…»`, or the
/// whole text when there are no markers).
pub fn expand(template: &str, r: &mut Rng) -> (String, Vec<String>) {
    let mut out = String::new();
    let mut secrets = Vec::new();
    let mut open: Option<usize> = None;
    let mut chars = template.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        match c {
            '«' => open = Some(out.len()),
            '»' => {
                if let Some(s) = open.take() {
                    secrets.push(out[s..].to_string());
                }
            }
            '{' => {
                let mut spec = String::new();
                for (_, c) in chars.by_ref() {
                    if c == '}' {
                        break;
                    }
                    spec.push(c);
                }
                if spec == "UUID" {
                    out.push_str(&uuid(r));
                    continue;
                }
                let (cls, n) = spec.split_at(1);
                let n: usize = n.parse().unwrap_or(0);
                let alphabet = match cls {
                    "a" => ALNUM,
                    "A" => UPPER_DIGIT,
                    "l" => LOWER_DIGIT,
                    "L" => LETTERS,
                    "h" => HEX,
                    "H" => HEX_UPPER,
                    "d" => b"0123456789",
                    "b" => B64,
                    "u" => B64URL,
                    "B" => B32,
                    "Z" => BECH32,
                    _ => ALNUM,
                };
                out.push_str(&r.from(alphabet, n));
            }
            c => out.push(c),
        }
    }
    if secrets.is_empty() {
        secrets.push(out.clone());
    }
    (out, secrets)
}

const FIRST: &[&str] = &[
    "alice", "bob", "carol", "dmitri", "erin", "farah", "gustav", "hana", "ivan", "jules",
];
const LAST: &[&str] = &[
    "smith", "ng", "okafor", "muller", "garcia", "kowalski", "tanaka", "silva", "haddad",
];
const DOMAINS: &[&str] = &[
    "example.com",
    "mail.example.org",
    "corp-acme.io",
    "gmail.com",
    "customer.co.uk",
];

fn luhn_digit(body: &str) -> char {
    let mut sum = 0u32;
    for (i, d) in body.bytes().rev().enumerate() {
        let mut v = u32::from(d - b'0');
        if i % 2 == 0 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    char::from(b'0' + ((10 - sum % 10) % 10) as u8)
}

fn card(r: &mut Rng) -> String {
    let (prefix, len): (&str, usize) = *r.pick(&[
        ("4", 16),
        ("51", 16),
        ("55", 16),
        ("2221", 16),
        ("34", 15),
        ("37", 15),
        ("6011", 16),
        ("65", 16),
        ("3530", 16),
        ("4", 19),
    ]);
    let body = format!("{prefix}{}", r.digits(len - 1 - prefix.len()));
    let n = format!("{body}{}", luhn_digit(&body));
    match (len, r.below(3)) {
        (16, 0) => format!("{} {} {} {}", &n[..4], &n[4..8], &n[8..12], &n[12..]),
        (16, 1) => format!("{}-{}-{}-{}", &n[..4], &n[4..8], &n[8..12], &n[12..]),
        (15, 0) => format!("{} {} {}", &n[..4], &n[4..10], &n[10..]),
        _ => n,
    }
}

fn iban(r: &mut Rng) -> String {
    let (cc, bban): (&str, String) = match r.below(6) {
        0 => ("DE", r.digits(18)),
        1 => (
            "GB",
            format!(
                "{}{}",
                r.from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", 4),
                r.digits(14)
            ),
        ),
        2 => ("FR", r.digits(23)),
        3 => (
            "NL",
            format!(
                "{}{}",
                r.from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", 4),
                r.digits(10)
            ),
        ),
        4 => ("ES", r.digits(20)),
        _ => ("CH", r.digits(17)),
    };
    let mut rem = 0u32;
    for c in bban.bytes().chain(cc.bytes()).chain(*b"00") {
        let v = if c.is_ascii_digit() {
            u32::from(c - b'0')
        } else {
            u32::from(c - b'A') + 10
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    let iban = format!("{cc}{:02}{bban}", 98 - rem);
    if r.below(2) == 0 {
        iban.as_bytes()
            .chunks(4)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        iban
    }
}

fn ssn(r: &mut Rng) -> String {
    let area = loop {
        let a = 1 + r.below(899);
        if a != 666 {
            break a;
        }
    };
    format!("{area:03}-{:02}-{:04}", 1 + r.below(99), 1 + r.below(9999))
}

/// Generate one personal-data sample `(fragment, secret)` for a `@…` template.
fn pii(name: &str, r: &mut Rng) -> (String, Vec<String>) {
    match name {
        "@email" => {
            let e = format!(
                "{}.{}{}@{}",
                r.pick(FIRST),
                r.pick(LAST),
                r.below(100),
                r.pick(DOMAINS)
            );
            (format!("sent receipt to {e}"), vec![e])
        }
        "@phone-us" => {
            let (a, b, c) = (200 + r.below(800), 200 + r.below(800), r.below(10000));
            let p = match r.below(4) {
                0 => format!("({a}) {b}-{c:04}"),
                1 => format!("{a}-{b}-{c:04}"),
                2 => format!("+1 {a} {b} {c:04}"),
                _ => format!("{a}.{b}.{c:04}"),
            };
            (format!("callback requested phone={p}"), vec![p])
        }
        "@phone-intl" => {
            let p = match r.below(4) {
                0 => format!("+44 20 {} {}", r.digits(4), r.digits(4)),
                1 => format!("+49 30 {}", r.digits(7)),
                2 => format!(
                    "+33 1 {} {} {} {}",
                    r.digits(2),
                    r.digits(2),
                    r.digits(2),
                    r.digits(2)
                ),
                _ => format!("+91 9{} {}", r.digits(4), r.digits(5)),
            };
            (format!("sms delivery to {p} queued"), vec![p])
        }
        "@ssn" => {
            let s = ssn(r);
            (format!("kyc check applicant ssn {s} verified"), vec![s])
        }
        "@ssn-context" => {
            let s = ssn(r).replace('-', "");
            (format!("applicant SSN: {s}"), vec![s])
        }
        "@card" => {
            let c = card(r);
            (
                format!("charge declined for card {c} reason=insufficient_funds"),
                vec![c],
            )
        }
        "@iban" => {
            let i = iban(r);
            (format!("payout scheduled to IBAN {i}"), vec![i])
        }
        _ => (String::new(), vec![]),
    }
}

/// A line with planted secrets.
#[derive(Debug, Clone)]
pub struct Labeled {
    /// The line.
    pub line: String,
    /// The planted secrets; none may appear in the output.
    pub secrets: Vec<String>,
    /// The rule that planted it.
    pub rule: &'static str,
    /// The kind expected in the marker.
    pub kind: &'static str,
}

fn ts(r: &mut Rng) -> String {
    format!(
        "2026-11-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        1 + r.below(28),
        r.below(24),
        r.below(60),
        r.below(60),
        r.below(1000)
    )
}

fn json_escape(s: &str) -> String {
    let mut o = String::new();
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o
}

const SERVICES: &[&str] = &[
    "agent-runner",
    "orchestrator",
    "tool-proxy",
    "billing",
    "checkout",
    "indexer",
];

/// Wrap a fragment in one of several realistic log line shapes.
fn wrap(fragment: &str, r: &mut Rng) -> String {
    let t = ts(r);
    let svc = r.pick(SERVICES);
    match r.below(6) {
        0 => format!("{t} INFO  {svc} {fragment}"),
        1 => format!(
            "ts={t} level=warn svc={svc} pid={} {fragment}",
            1000 + r.below(9000)
        ),
        2 => format!(
            "{{\"ts\":\"{t}\",\"level\":\"info\",\"svc\":\"{svc}\",\"msg\":\"{}\",\"attempt\":{}}}",
            json_escape(fragment),
            r.below(5)
        ),
        3 => format!("[{t}] [{svc}] {fragment} (retry {}/5)", r.below(5)),
        4 => format!("{t} alert priority=WARNING rule=\"Suspicious command\" output: {fragment}"),
        _ => format!("\u{1b}[32mINFO\u{1b}[0m {t} {svc}: {fragment}"),
    }
}

/// `per_rule` lines for every built-in rule.
pub fn secret_lines(seed: u64, per_rule: usize) -> Vec<Labeled> {
    let mut r = Rng::new(seed);
    let mut out = Vec::new();
    for spec in BUILTIN {
        for _ in 0..per_rule {
            let (frag, secrets) = if spec.sample.starts_with('@') {
                pii(spec.sample, &mut r)
            } else {
                expand(spec.sample, &mut r)
            };
            out.push(Labeled {
                line: wrap(&frag, &mut r),
                secrets,
                rule: spec.id,
                kind: spec.kind,
            });
        }
    }
    out
}

const B64_TEXTS: &[&str] = &[
    "the quick brown fox jumps over the lazy dog",
    "hello world, this is a perfectly ordinary message",
    "{\"page\":2,\"per_page\":50,\"sort\":\"created_at\"}",
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit",
];

fn b64(s: &str) -> String {
    let b = s.as_bytes();
    let mut o = String::new();
    for ch in b.chunks(3) {
        let n = (u32::from(ch[0]) << 16)
            | (u32::from(*ch.get(1).unwrap_or(&0)) << 8)
            | u32::from(*ch.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= ch.len() {
                o.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                o.push('=');
            }
        }
    }
    o
}

/// `n` clean lines: realistic, full of look-alikes, holding no secret and no personal data.
pub fn clean_lines(seed: u64, n: usize) -> Vec<String> {
    let mut r = Rng::new(seed);
    let paths = [
        "/api/v1/orders",
        "/healthz",
        "/api/v2/agents/run",
        "/static/app.js",
        "/metrics",
    ];
    (0..n)
        .map(|_| {
            let t = ts(&mut r);
            let svc = *r.pick(SERVICES);
            let id = uuid(&mut r);
            match r.below(26) {
                0 => format!(
                    "10.{}.{}.{} - - [25/Nov/2026:16:{:02}:{:02} +0000] \"GET {}?page={} HTTP/1.1\" {} {} \"-\" \"Mozilla/5.0 (X11; Linux x86_64)\" 0.{:03}",
                    r.below(256), r.below(256), r.below(256), r.below(60), r.below(60),
                    r.pick(&paths), r.below(50), r.pick(&[200, 201, 204, 301, 404, 500]), r.below(100000), r.below(1000)
                ),
                1 => format!(
                    "{{\"ts\":\"{t}\",\"level\":\"info\",\"msg\":\"order created\",\"order_id\":\"{id}\",\"amount\":{}.{:02},\"currency\":\"EUR\",\"duration_ms\":{}}}",
                    r.below(5000), r.below(100), r.below(900)
                ),
                2 => format!(
                    "{{\"ts\":\"{t}\",\"model\":\"claude-sonnet-4\",\"prompt_tokens\":{},\"completion_tokens\":{},\"total_tokens\":{},\"max_tokens\":4096,\"stop_reason\":\"end_turn\"}}",
                    r.below(100000), r.below(8000), r.below(108000)
                ),
                3 => format!("{t} INFO {svc} deployed commit {} (parent {}) to staging", r.from(HEX, 40), r.from(HEX, 40)),
                4 => format!(
                    "{t} Normal Pulled pod/{svc}-{} Successfully pulled image \"registry.internal/{svc}@sha256:{}\" in {}.{}s",
                    r.from(LOWER_DIGIT, 5), r.from(HEX, 64), r.below(10), r.below(10)
                ),
                5 => format!("{t} DEBUG {svc} payload={} encoding=base64", b64(r.pick::<&str>(B64_TEXTS))),
                6 => format!(
                    "{t} INFO checkout cart total ${},{:03}.{:02} (tax 8.25%) items={} sku=SKU-{} discount=-$5.00",
                    1 + r.below(9), r.below(1000), r.below(100), 1 + r.below(9), r.digits(5)
                ),
                7 => format!("{} {} epoch_ms={} uptime_s={}", t, svc, 1_732_000_000_000u64 + r.below(1_000_000_000) as u64, r.below(10_000_000)),
                8 => format!("{t} INFO {svc} request_id={id} trace_id={} span_id={} status=ok", r.from(HEX, 32), r.from(HEX, 16)),
                9 => format!(
                    "{t} starting {svc} v{}.{}.{} (rustc 1.85.0, build {}) on linux/amd64 with {} workers",
                    r.below(3), r.below(50), r.below(20), r.from(HEX, 12), 1 + r.below(16)
                ),
                10 => format!("goroutine {} [running]:\nmain.(*Server).handle(0xc000{}) /src/server.go:{} +0x{}", r.below(500), r.from(HEX, 6), r.below(900), r.from(HEX, 3))
                    .replace('\n', " "),
                11 => format!(
                    "{t} DEBUG db SELECT id, name, created_at FROM orders WHERE created_at > '2026-11-{:02}' AND status = 'paid' LIMIT {} -- {}ms",
                    1 + r.below(28), r.below(500), r.below(90)
                ),
                12 => format!("{t} INFO ratelimit token bucket refilled: {} tokens available, rate={}/s", r.below(100), r.below(1000)),
                13 => format!("{t} INFO auth password reset email queued for user id {}", r.below(1_000_000)),
                14 => format!("{t} INFO auth session refreshed for user {} after {}s; next secret rotation in {}h", r.below(100000), r.below(4000), r.below(48)),
                15 => format!("{t} WARN {svc} Authorization header missing on {} from 10.0.{}.{}", r.pick(&paths), r.below(256), r.below(256)),
                16 => format!(
                    "{t} INFO {svc} connected to 10.244.{}.{}:5432 from 192.168.{}.{} in {}.{}ms (pool {}/{})",
                    r.below(256), r.below(256), r.below(256), r.below(256), r.below(100), r.below(10), r.below(20), 20
                ),
                17 => format!("{t} INFO {svc} processed {} bytes in {}.{} ms ({}.{} MB/s)", r.below(100_000_000), r.below(100), r.below(10), r.below(1000), r.below(10)),
                18 => format!(
                    "{{\"ts\":\"{t}\",\"config\":{{\"token_ttl\":{},\"password_min_length\":{},\"secret_name\":\"{svc}-db\",\"cookie_domain\":\".example.com\",\"auth\":null}}}}",
                    r.below(86400), 8 + r.below(8)
                ),
                19 => format!("{t} INFO kubectl get secret {svc}-tls -n prod -o jsonpath='{{.metadata.name}}' exited 0"),
                20 => format!("{t} INFO {svc} order #{} shipped, tracking 1Z{}", r.digits(9), r.from(UPPER_DIGIT, 16)),
                21 => format!("{t} INFO {svc} uploaded s3://artifacts-{}/builds/{}/agent.tar.gz ({} KiB)", r.from(LOWER_DIGIT, 6), r.from(HEX, 40), r.below(90000)),
                22 => format!("{t} INFO {svc} file checksum sha256={} size={}", r.from(HEX, 64), r.below(10_000_000)),
                23 => format!("{t} INFO {svc} scheduled job {} next run 2026-12-{:02} 0{}:00:00 UTC (cron \"0 */6 * * *\")", id, 1 + r.below(28), r.below(10)),
                24 => format!("{t} INFO {svc} tool call read_file path=/workspace/src/{}.rs lines={}-{} ok", r.from(LOWER_DIGIT, 8), r.below(100), 100 + r.below(400)),
                _ => format!("{t} INFO {svc} latency p50={}ms p99={}ms rps={}.{} errors={} queue_depth={}", r.below(50), r.below(900), r.below(5000), r.below(10), r.below(9), r.below(1000)),
            }
        })
        .collect()
}

/// Recall and false positives of an engine on the corpus.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Per kind: (lines, lines with no leak, lines whose marker names the kind).
    pub per_kind: std::collections::BTreeMap<&'static str, (usize, usize, usize)>,
    /// Clean lines tested.
    pub clean: usize,
    /// Clean lines changed.
    pub clean_changed: usize,
    /// Examples of leaks and false positives (at most 20 each), for debugging.
    pub leaks: Vec<String>,
    /// Examples of changed clean lines.
    pub false_positives: Vec<String>,
}

impl Report {
    /// Overall recall: lines without any leak / lines.
    pub fn recall(&self) -> f64 {
        let (n, ok) = self
            .per_kind
            .values()
            .fold((0, 0), |(n, ok), v| (n + v.0, ok + v.1));
        ok as f64 / n.max(1) as f64
    }
    /// Smallest per-kind recall.
    pub fn min_kind_recall(&self) -> f64 {
        self.per_kind
            .values()
            .map(|v| v.1 as f64 / v.0.max(1) as f64)
            .fold(1.0, f64::min)
    }
    /// Fraction of clean lines changed.
    pub fn fp_rate(&self) -> f64 {
        self.clean_changed as f64 / self.clean.max(1) as f64
    }
    /// A Markdown table.
    pub fn to_markdown(&self) -> String {
        let mut s = String::from(
            "| kind | lines | recall (no leak) | named right |\n|---|---:|---:|---:|\n",
        );
        for (k, (n, ok, named)) in &self.per_kind {
            s.push_str(&format!(
                "| {k} | {n} | {:.2}% | {:.2}% |\n",
                100.0 * *ok as f64 / *n as f64,
                100.0 * *named as f64 / *n as f64
            ));
        }
        s.push_str(&format!(
            "\nOverall recall {:.3}% (lowest kind {:.2}%); clean lines changed {}/{} = {:.3}%\n",
            100.0 * self.recall(),
            100.0 * self.min_kind_recall(),
            self.clean_changed,
            self.clean,
            100.0 * self.fp_rate()
        ));
        s
    }
}

/// A secret leaks when it, its JSON-escaped form, or any 12-byte window of it is in the output.
pub fn leaks(output: &str, secret: &str) -> bool {
    let esc = json_escape(secret);
    if output.contains(secret) || output.contains(&esc) {
        return true;
    }
    let b = secret.as_bytes();
    let w = b.len().min(12);
    b.windows(w)
        .any(|win| memchr::memmem::find(output.as_bytes(), win).is_some())
}

/// Run the engine over the corpus (`per_rule` lines per rule, `clean` clean lines).
pub fn evaluate(engine: &crate::Engine, seed: u64, per_rule: usize, clean: usize) -> Report {
    let mut rep = Report::default();
    for l in secret_lines(seed, per_rule) {
        let out = engine.redact_line(l.line.as_bytes());
        let leaked = l.secrets.iter().any(|s| leaks(&out.text, s));
        let named = out.text.contains(&format!("[REDACTED:{}:", l.kind));
        let e = rep.per_kind.entry(l.kind).or_default();
        e.0 += 1;
        e.1 += usize::from(!leaked);
        e.2 += usize::from(named);
        if leaked && rep.leaks.len() < 20 {
            rep.leaks
                .push(format!("{}: {}\n  -> {}", l.rule, l.line, out.text));
        }
    }
    for l in clean_lines(seed ^ 0x5EED, clean) {
        rep.clean += 1;
        let out = engine.redact_line(l.as_bytes());
        if out.text != l {
            rep.clean_changed += 1;
            if rep.false_positives.len() < 20 {
                rep.false_positives.push(format!("{l}\n  -> {}", out.text));
            }
        }
    }
    rep
}

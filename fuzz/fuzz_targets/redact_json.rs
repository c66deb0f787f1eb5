//! The JSON path: whatever JSON goes in, valid JSON comes out; invalid JSON does not panic.
#![no_main]

use brainbox_redact::{Engine, FingerprintKey};
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
    // Single-line JSON documents (what a log line is): pretty input is one line per document.
    if data.contains(&b'\n') {
        return;
    }
    let r = e.redact_line(data);
    if serde_json::from_slice::<serde_json::Value>(data).is_ok() {
        if let Err(err) = serde_json::from_str::<serde_json::Value>(&r.text) {
            panic!("valid JSON became invalid: {err}\n in: {:?}\nout: {:?}", String::from_utf8_lossy(data), r.text);
        }
    }
});

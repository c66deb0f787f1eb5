//! The audit chain verifier must never panic, whatever the log holds.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = brainbox_audit::chain::verify_bytes(data);
});

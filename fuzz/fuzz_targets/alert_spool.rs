//! The spool frame decoder must never panic on a damaged segment, and whatever it accepts must
//! re-encode to the same bytes (nothing is half-read).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (records, _err) = brainbox_alerts::spool::decode_segment(data);
    let mut again = Vec::new();
    for r in &records {
        again.extend(brainbox_alerts::spool::encode_frame(r.seq, &r.payload));
    }
    assert_eq!(&data[..again.len()], &again[..]);
});

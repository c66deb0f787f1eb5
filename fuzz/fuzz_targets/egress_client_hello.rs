//! The ClientHello reader on arbitrary bytes: no panics, and a prefix of input never yields a
//! different answer than the whole.
#![no_main]

use brainbox_sidecar::egress::client_hello::parse_client_hello;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let whole = parse_client_hello(data, 16 * 1024);
    if let Ok(Some(h)) = &whole {
        if let Some(sni) = &h.sni {
            assert!(!sni.is_empty() && sni.len() <= 253);
            assert!(!sni.bytes().any(|b| b.is_ascii_uppercase()));
        }
        // Any strict prefix is "need more" or the same verdict, never another name.
        for cut in [data.len() / 2, data.len().saturating_sub(1)] {
            if let Ok(Some(p)) = parse_client_hello(&data[..cut], 16 * 1024) {
                assert_eq!(&p, h);
            }
        }
    }
});

//! X.509-SVID and DER chain parsing on hostile input: never panics.
#![no_main]

use brainbox_identity::{ca::pem_decode_first, x509};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = x509::parse_svid(data) {
        // Whatever parses as an SVID has a well-formed SPIFFE ID.
        assert!(p.spiffe_id.as_str().starts_with("spiffe://"));
    }
    let _ = x509::split_der_chain(data);
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(der) = pem_decode_first(text, "CERTIFICATE") {
            let _ = x509::parse_svid(&der);
        }
        let _ = brainbox_identity::spiffe_id::SpiffeId::parse(text);
        let _ = brainbox_identity::denylist::DenyList::parse(text);
    }
});

//! JWT-SVID parsing and validation on hostile input: never panics, and never accepts a token
//! the fixed key did not sign.
#![no_main]

use brainbox_identity::jwt::{decode_unverified, validate, JwtBundle, JwtPublicKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        // JWKS parsing takes bytes.
        let _ = JwtBundle::from_jwks(data);
        return;
    };
    let _ = decode_unverified(text);
    let _ = JwtBundle::from_jwks(data);
    // A bundle with a fixed public point (the P-256 generator). Its private key is 1, but a
    // valid signature still needs an ECDSA computation that mutation does not perform, so
    // validation must always fail; an `Ok` here would mean a verification bypass.
    let mut point = vec![4u8];
    point.extend_from_slice(&[
        0x6b, 0x17, 0xd1, 0xf2, 0xe1, 0x2c, 0x42, 0x47, 0xf8, 0xbc, 0xe6, 0xe5, 0x63, 0xa4, 0x40, 0xf2,
        0x77, 0x03, 0x7d, 0x81, 0x2d, 0xeb, 0x33, 0xa0, 0xf4, 0xa1, 0x39, 0x45, 0xd8, 0x98, 0xc2, 0x96,
        0x4f, 0xe3, 0x42, 0xe2, 0xfe, 0x1a, 0x7f, 0x9b, 0x8e, 0xe7, 0xeb, 0x4a, 0x7c, 0x0f, 0x9e, 0x16,
        0x2b, 0xce, 0x33, 0x57, 0x6b, 0x31, 0x5e, 0xce, 0xcb, 0xb6, 0x40, 0x68, 0x37, 0xbf, 0x51, 0xf5,
    ]);
    let bundle = JwtBundle {
        keys: vec![JwtPublicKey { kid: "k".into(), point }],
    };
    assert!(validate(text, "t.test", &bundle, "aud", 0).is_err());
});

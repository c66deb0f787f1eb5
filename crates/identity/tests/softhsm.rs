//! The root CA key in a PKCS#11 token (SoftHSM2): generated inside the token, it signs the
//! intermediate, and its value can never be read out of the token.
#![cfg(feature = "pkcs11")]

use brainbox_identity::{
    ca::{self_signed_root, Ca},
    pkcs11::Pkcs11Key,
    spiffe_id::SpiffeId,
};
use cryptoki::object::{Attribute, AttributeType};
use std::{path::Path, process::Command, time::Duration};
use x509_parser::prelude::*;

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

#[test]
fn softhsm_root_signs_the_intermediate_and_never_leaves_the_token() {
    assert!(
        Path::new(MODULE).exists() && Command::new("softhsm2-util").arg("--version").output().is_ok(),
        "this test needs SoftHSM2 ({MODULE} and softhsm2-util): apt-get install softhsm2 (scripts/setup.d/identity.packages)"
    );
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    // This test binary has only this test, so setting the variable cannot race another test.
    std::env::set_var("SOFTHSM2_CONF", &conf);
    let out = Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            "bb-test",
            "--pin",
            "1234",
            "--so-pin",
            "5678",
        ])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "softhsm2-util: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let root_der = {
        let key = Pkcs11Key::generate(Path::new(MODULE), "bb-test", "1234", "bb-root").unwrap();
        // The key's secret value is not readable: sensitive, never extractable.
        let attrs = key
            .private_key_attributes(&[
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::NeverExtractable,
            ])
            .unwrap();
        assert!(attrs.contains(&Attribute::Sensitive(true)), "{attrs:?}");
        assert!(attrs.contains(&Attribute::Extractable(false)), "{attrs:?}");
        assert!(
            attrs.contains(&Attribute::NeverExtractable(true)),
            "{attrs:?}"
        );
        match key.private_key_attributes(&[AttributeType::Value]) {
            Err(_) => {}
            Ok(v) => assert!(
                !v.iter().any(|a| matches!(a, Attribute::Value(_))),
                "CKA_VALUE of the root key was readable: {v:?}"
            ),
        }
        self_signed_root("hsm.test", &key, Duration::from_secs(3600)).unwrap()
    };

    // Later (another start of the agent): open the key by label and sign an intermediate.
    let key = Pkcs11Key::open(Path::new(MODULE), "bb-test", "1234", "bb-root").unwrap();
    let ca = Ca::new_intermediate("hsm.test", &root_der, &key, Duration::from_secs(600)).unwrap();
    drop(key);
    let (_, root) = X509Certificate::from_der(&root_der).unwrap();
    let (_, inter) = X509Certificate::from_der(ca.intermediate_der()).unwrap();
    root.verify_signature(None)
        .expect("root self-signature (made by the token)");
    inter
        .verify_signature(Some(root.public_key()))
        .expect("intermediate signed by the token's key");
    assert_eq!(inter.issuer(), root.subject());
    let id = SpiffeId::parse("spiffe://hsm.test/x").unwrap();
    let svid = ca.issue_x509(&id, Duration::from_secs(60)).unwrap();
    let (_, leaf) = X509Certificate::from_der(&svid.chain[0]).unwrap();
    leaf.verify_signature(Some(inter.public_key())).unwrap();

    // A wrong PIN is refused.
    assert!(Pkcs11Key::open(Path::new(MODULE), "bb-test", "0000", "bb-root").is_err());
}

//! Interoperability of the node agent's Workload API with third-party SPIFFE clients: the Rust
//! `spiffe` crate and the Python `spiffe` package fetch X.509 and JWT SVIDs and bundles;
//! `openssl verify` accepts the chain; the JWT verifies against the JWT bundle.

mod identity_common;

use std::{path::Path, process::Command, time::Duration};

const PYTHON: &str = "/opt/brainbox/venv-identity/bin/python";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_spiffe_crate_fetches_svids_and_bundles() {
    let api = identity_common::start("rust-interop", 300);
    let source = tokio::time::timeout(
        Duration::from_secs(20),
        spiffe::X509Source::builder()
            .endpoint(api.endpoint())
            .build(),
    )
    .await
    .expect("X509Source timed out")
    .expect("X509Source");
    let svid = source.svid().unwrap();
    assert_eq!(svid.spiffe_id().to_string(), api.spiffe_id);
    assert_eq!(svid.cert_chain().len(), 2);
    let td = svid.spiffe_id().trust_domain().clone();
    let bundle = source
        .bundle_set()
        .unwrap()
        .get(&td)
        .expect("bundle for our trust domain");
    assert_eq!(bundle.authorities().len(), 1);

    let jwt_source = spiffe::JwtSource::builder()
        .endpoint(api.endpoint())
        .build()
        .await
        .expect("JwtSource");
    let jwt = jwt_source.fetch_jwt_svid(["interop-aud"]).await.unwrap();
    assert_eq!(jwt.spiffe_id().to_string(), api.spiffe_id);
    // Verify the token offline against the JWT bundle, with the crate's own verifier.
    let jwt_bundles = jwt_source.bundle_set().unwrap();
    let verified =
        spiffe::JwtSvid::parse_and_validate(jwt.token(), &*jwt_bundles, &["interop-aud"])
            .expect("JWT-SVID verifies against the JWT bundle");
    assert_eq!(verified.spiffe_id().to_string(), api.spiffe_id);
    assert!(
        spiffe::JwtSvid::parse_and_validate(jwt.token(), &*jwt_bundles, &["other"]).is_err(),
        "a wrong audience must not verify"
    );
    source.shutdown().await;
    jwt_source.shutdown().await;
}

fn pem(label: &str, der: &[u8]) -> String {
    brainbox_identity::ca::pem_encode(label, &[der])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_verifies_the_chain() {
    assert!(
        Command::new("openssl").arg("version").output().is_ok(),
        "this test needs the openssl CLI (Debian package openssl; scripts/setup.sh)"
    );
    let api = identity_common::start("openssl", 300);
    let source = spiffe::X509Source::builder()
        .endpoint(api.endpoint())
        .build()
        .await
        .unwrap();
    let svid = source.svid().unwrap();
    let td = svid.spiffe_id().trust_domain().clone();
    let root = source.bundle_set().unwrap().get(&td).unwrap().authorities()[0]
        .as_bytes()
        .to_vec();
    let dir = tempfile::tempdir().unwrap();
    let w = |name: &str, text: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let leaf = w(
        "leaf.pem",
        pem("CERTIFICATE", svid.cert_chain()[0].as_bytes()),
    );
    let inter = w(
        "inter.pem",
        pem("CERTIFICATE", svid.cert_chain()[1].as_bytes()),
    );
    let rootp = w("root.pem", pem("CERTIFICATE", &root));
    let run = |args: &[&Path], purpose: &str| {
        let out = Command::new("openssl")
            .arg("verify")
            .args(["-purpose", purpose])
            .arg("-CAfile")
            .arg(args[0])
            .arg("-untrusted")
            .arg(args[1])
            .arg(args[2])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    for purpose in ["sslclient", "sslserver"] {
        let (ok, text) = run(&[&rootp, &inter, &leaf], purpose);
        assert!(
            ok && text.contains(": OK"),
            "openssl verify ({purpose}): {text}"
        );
    }
    // And it is a real check: the leaf does not verify against an unrelated root.
    let other = brainbox_identity::ca::Ca::ephemeral(
        identity_common::TRUST_DOMAIN,
        Duration::from_secs(600),
    )
    .unwrap();
    let bad_root = w("bad_root.pem", pem("CERTIFICATE", other.root_der()));
    let (ok, text) = run(&[&bad_root, &inter, &leaf], "sslclient");
    assert!(!ok, "verified against the wrong root: {text}");
    source.shutdown().await;
}

const PY_CLIENT: &str = r#"
import json, sys
from spiffe import WorkloadApiClient, JwtSvid
sock, aud = sys.argv[1], sys.argv[2]
with WorkloadApiClient(socket_path=sock) as c:
    x = c.fetch_x509_svid()
    td = x.spiffe_id.trust_domain
    xb = c.fetch_x509_bundles().get_bundle_for_trust_domain(td)
    j = c.fetch_jwt_svid(audience={aud})
    jb = c.fetch_jwt_bundles().get_bundle_for_trust_domain(td)
    offline = JwtSvid.parse_and_validate(j.token, jb, {aud})
    online = c.validate_jwt_svid(j.token, aud)
    try:
        c.validate_jwt_svid(j.token, aud)
        replay = "accepted"
    except Exception as e:
        replay = "refused: " + type(e).__name__
    print(json.dumps({
        "x509_id": str(x.spiffe_id),
        "chain_len": len(x.cert_chain),
        "x509_bundle_len": len(xb.x509_authorities),
        "jwt_id": str(j.spiffe_id),
        "offline_id": str(offline.spiffe_id),
        "online_id": str(online.spiffe_id),
        "jwt_keys": len(jb.jwt_authorities),
        "replay": replay,
    }))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_spiffe_client_fetches_and_validates() {
    assert!(
        Path::new(PYTHON).exists(),
        "this test needs the Python `spiffe` client in {PYTHON}: run scripts/setup.sh (scripts/setup.d/identity.sh)"
    );
    let api = identity_common::start("python", 300);
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("client.py");
    std::fs::write(&script, PY_CLIENT).unwrap();
    // grpc-python derives the HTTP/2 `:authority` from the socket path, percent-encoding its
    // slashes (`tmp%2F…%2Fagent.sock`); the `http` crate under hyper/h2 (and so tonic) rejects
    // a `%` in an authority and resets the stream (PROTOCOL_ERROR). A relative socket path
    // gives the clean authority `agent.sock`, so the client runs in the socket's folder.
    // (SPIRE's Go server accepts either; see docs/identity.md.)
    let sock_dir = api.socket.parent().unwrap().to_owned();
    // The child runs in this process's cgroup, so it attests as the same workload.
    let out = tokio::task::spawn_blocking(move || {
        Command::new(PYTHON)
            .current_dir(&sock_dir)
            .arg(&script)
            .arg("unix:agent.sock")
            .arg("py-aud")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python client failed: {}\n{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    for k in ["x509_id", "jwt_id", "offline_id", "online_id"] {
        assert_eq!(v[k], api.spiffe_id.as_str(), "{k}: {v}");
    }
    assert_eq!(v["chain_len"], 2, "{v}");
    assert_eq!(v["x509_bundle_len"], 1, "{v}");
    assert_eq!(v["jwt_keys"], 1, "{v}");
    assert!(v["replay"].as_str().unwrap().starts_with("refused"), "{v}");
}

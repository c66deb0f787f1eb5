//! The Kubernetes pod-deletion client over real TLS on loopback. There is no API server on this
//! machine (Debian packages none, and no registry serves one), so the server here is a TLS
//! listener that records the request and answers as the API server documents
//! (`DELETE /api/v1/namespaces/{ns}/pods/{name}` → 200 Status/Pod, 404, 409 on a failed UID
//! precondition, 403 Status). What it proves: the request (method, path, bearer token re-read
//! per request, `DeleteOptions` body), CA verification, outcome mapping and bounded time.

use brainbox_node_agent::runtime::kube::{Deleted, KubeClient, KubeError};
use std::{io::Write, sync::Arc, time::Duration};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

struct Pki {
    ca_pem: String,
    server: Arc<rustls::ServerConfig>,
}

fn pki() -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "kubernetes-test-ca");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let leaf_cert = leaf.signed_by(&leaf_key, &ca_cert, &ca_key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf_cert.der().clone(), ca_cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        server: Arc::new(server),
    }
}

/// Serves `answers` in order, one connection each; returns the raw requests it got.
async fn serve(
    pki: &Pki,
    answers: Vec<(u16, &'static str)>,
) -> (u16, tokio::task::JoinHandle<Vec<String>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let acceptor = tokio_rustls::TlsAcceptor::from(pki.server.clone());
    let task = tokio::spawn(async move {
        let mut seen = vec![];
        for (status, body) in answers {
            let (tcp, _) = l.accept().await.unwrap();
            let Ok(mut s) = acceptor.accept(tcp).await else {
                seen.push(String::from("<tls failed>"));
                continue;
            };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Headers, then Content-Length bytes of body.
            loop {
                let n = s.read(&mut chunk).await.unwrap();
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf);
                if let Some(end) = text.find("\r\n\r\n") {
                    let len: usize = text
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        break;
                    }
                }
            }
            seen.push(String::from_utf8_lossy(&buf).into_owned());
            let resp = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            s.write_all(resp.as_bytes()).await.unwrap();
            let _ = s.shutdown().await;
        }
        seen
    });
    (port, task)
}

fn token_file(token: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    writeln!(f, "{token}").unwrap();
    f
}

#[tokio::test]
async fn delete_sends_the_documented_request_and_maps_outcomes() {
    let pki = pki();
    let (port, server) = serve(
        &pki,
        vec![
            (200, r#"{"kind":"Pod","apiVersion":"v1"}"#),
            (404, r#"{"kind":"Status","code":404,"message":"pods \"p1\" not found"}"#),
            (409, r#"{"kind":"Status","code":409,"message":"Precondition failed: UID in precondition"}"#),
            (403, r#"{"kind":"Status","code":403,"message":"pods \"p1\" is forbidden: User cannot delete"}"#),
        ],
    )
    .await;
    let tok = token_file("tok-1");
    let c = KubeClient::new(
        &format!("https://127.0.0.1:{port}"),
        pki.ca_pem.as_bytes(),
        tok.path().to_owned(),
        5_000,
    )
    .unwrap();
    assert_eq!(
        c.delete_pod("brainboxes", "agent-7f9c", Some("1234-uid"))
            .await
            .unwrap(),
        Deleted::Accepted
    );
    // The token is re-read for every request (kubelet rotates projected tokens).
    std::fs::write(tok.path(), "tok-2\n").unwrap();
    assert_eq!(
        c.delete_pod("brainboxes", "agent-7f9c", None)
            .await
            .unwrap(),
        Deleted::AlreadyGone(404)
    );
    assert_eq!(
        c.delete_pod("brainboxes", "agent-7f9c", Some("old-uid"))
            .await
            .unwrap(),
        Deleted::AlreadyGone(409)
    );
    match c.delete_pod("brainboxes", "agent-7f9c", None).await {
        Err(KubeError::Status {
            status: 403,
            message,
            ..
        }) => assert!(message.contains("forbidden"), "{message}"),
        other => panic!("{other:?}"),
    }
    let seen = server.await.unwrap();
    let first = &seen[0];
    assert!(
        first.starts_with("DELETE /api/v1/namespaces/brainboxes/pods/agent-7f9c HTTP/1.1\r\n"),
        "{first}"
    );
    assert!(
        first.contains("\r\nAuthorization: Bearer tok-1\r\n"),
        "{first}"
    );
    let body: serde_json::Value =
        serde_json::from_str(first.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["kind"], "DeleteOptions");
    assert_eq!(body["gracePeriodSeconds"], 0);
    assert_eq!(body["preconditions"]["uid"], "1234-uid");
    assert!(
        seen[1].contains("\r\nAuthorization: Bearer tok-2\r\n"),
        "{}",
        seen[1]
    );
    assert!(!seen[1].contains("preconditions"), "{}", seen[1]);
}

#[tokio::test]
async fn a_server_outside_the_cluster_ca_is_refused() {
    let (real, other) = (pki(), pki());
    let (port, _server) = serve(&real, vec![(200, "{}")]).await;
    let tok = token_file("t");
    let c = KubeClient::new(
        &format!("https://127.0.0.1:{port}"),
        other.ca_pem.as_bytes(),
        tok.path().to_owned(),
        5_000,
    )
    .unwrap();
    match c.delete_pod("ns", "p", None).await {
        Err(KubeError::Request { reason, .. }) => assert!(reason.contains("TLS"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_silent_server_costs_at_most_the_timeout_and_bad_names_never_leave() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    // Accepts and says nothing.
    let _hold = tokio::spawn(async move {
        let mut held = vec![];
        loop {
            if let Ok((s, _)) = l.accept().await {
                held.push(s);
            }
        }
    });
    let tok = token_file("t");
    let pki = pki();
    let c = KubeClient::new(
        &format!("https://127.0.0.1:{port}"),
        pki.ca_pem.as_bytes(),
        tok.path().to_owned(),
        300,
    )
    .unwrap();
    let r = tokio::time::timeout(Duration::from_secs(10), c.delete_pod("ns", "p", None))
        .await
        .expect("the client's own bound did not hold");
    match r {
        Err(KubeError::Request { reason, .. }) => assert!(reason.contains("no answer"), "{reason}"),
        other => panic!("{other:?}"),
    }
    for (ns, name) in [
        ("ns", "../../nodes/n1"),
        ("a/b", "p"),
        ("ns", "P"),
        ("", "p"),
    ] {
        assert!(
            matches!(
                c.delete_pod(ns, name, None).await,
                Err(KubeError::Config(_))
            ),
            "{ns}/{name}"
        );
    }
    assert!(KubeClient::new("https://x:1", b"not a pem", tok.path().to_owned(), 100).is_err());
}

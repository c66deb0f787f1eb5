//! `brainboxctl webhook` answers a real `AdmissionReview` over TLS: the test makes a CA-less
//! self-signed serving certificate with rcgen, starts the real binary, and speaks HTTPS to it
//! with a rustls client that verifies the certificate for the Service's DNS name. The JSON patch
//! it returns, applied to the pod, gives a pod that passes PodSecurity `restricted`; a pod that
//! asks for the host's PID namespace is refused with the reason.

use base64::Engine as _;
use brainboxctl::podsecurity::check_restricted;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};
use std::{
    io::{Read, Write},
    net::TcpStream,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

const DNS: &str = "brainbox-webhook.brainbox-system.svc";

struct Server {
    child: Child,
    port: u16,
    cert_der: Vec<u8>,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec![DNS.to_string()]).unwrap();
    std::fs::write(dir.path().join("tls.crt"), ck.cert.pem()).unwrap();
    std::fs::write(dir.path().join("tls.key"), ck.key_pair.serialize_pem()).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_brainboxctl"))
        .args(["webhook", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--cert")
        .arg(dir.path().join("tls.crt"))
        .arg("--key")
        .arg(dir.path().join("tls.key"))
        .args(["--sidecar-image", "brainbox-guard/sidecar:test"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "webhook did not listen within 20 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Server {
        child,
        port,
        cert_der: ck.cert.der().to_vec(),
        _dir: dir,
    }
}

/// One HTTPS request; returns (status line, body).
fn https(server: &Server, method: &str, path: &str, body: &[u8]) -> (String, Vec<u8>) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(server.cert_der.clone().into()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let conn = rustls::ClientConnection::new(Arc::new(cfg), DNS.try_into().unwrap()).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    write!(
        tls,
        "{method} {path} HTTP/1.1\r\nHost: {DNS}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    tls.write_all(body).unwrap();
    tls.flush().unwrap();
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP response");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    (
        head.lines().next().unwrap_or("").to_owned(),
        raw[split + 4..].to_vec(),
    )
}

fn review(uid: &str, pod: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "namespace": "brainboxes",
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": pod,
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
        }
    }))
    .unwrap()
}

fn pod() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "research-agent-5d8f-", "namespace": "brainboxes",
                     "labels": {"app": "research-agent"}},
        "spec": {
            "securityContext": {"runAsUser": 1000},
            "containers": [{"name": "agent", "image": "registry.example.invalid/agent:1",
                            "resources": {"limits": {"memory": "1Gi"}}}]
        }
    })
}

#[test]
fn admission_review_over_tls_gets_a_patch_that_makes_the_pod_restricted() {
    let server = start();
    let (status, body) = https(&server, "GET", "/healthz", b"");
    assert!(status.contains(" 200 "), "{status}");
    assert_eq!(body, b"ok");

    let original = pod();
    let (status, body) = https(
        &server,
        "POST",
        "/mutate",
        &review("uid-1", original.clone()),
    );
    assert!(
        status.contains(" 200 "),
        "{status}: {}",
        String::from_utf8_lossy(&body)
    );
    let out: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(out["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(out["kind"], "AdmissionReview");
    let resp = &out["response"];
    assert_eq!(resp["uid"], "uid-1");
    assert_eq!(resp["allowed"], true);
    assert_eq!(resp["patchType"], "JSONPatch");
    let patch_bytes = base64::engine::general_purpose::STANDARD
        .decode(resp["patch"].as_str().unwrap())
        .unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&patch_bytes).unwrap();
    // Apply it as the API server would, to the object it sent.
    let mut patched = original.clone();
    json_patch::patch(&mut patched, &patch).unwrap();
    let pod: Pod = serde_json::from_value(patched).unwrap();
    let spec = pod.spec.unwrap();
    assert!(check_restricted(&pod.metadata, &spec).is_empty());
    let original_violations = check_restricted(
        &serde_json::from_value(original["metadata"].clone()).unwrap(),
        &serde_json::from_value(original["spec"].clone()).unwrap(),
    );
    assert!(!original_violations.is_empty());
    let sidecar = &spec.init_containers.unwrap()[0];
    assert_eq!(sidecar.name, "brainbox-sidecar");
    assert_eq!(
        sidecar.image.as_deref(),
        Some("brainbox-guard/sidecar:test")
    );
    assert_eq!(
        pod.metadata.annotations.unwrap()["brainbox.io/injected"],
        "true"
    );
    // The user's own fields survive.
    assert_eq!(
        spec.containers[0]
            .resources
            .as_ref()
            .unwrap()
            .limits
            .as_ref()
            .unwrap()["memory"]
            .0,
        "1Gi"
    );
}

#[test]
fn a_pod_asking_for_the_host_pid_namespace_is_refused_with_the_reason() {
    let server = start();
    let mut bad = pod();
    bad["spec"]["hostPID"] = json!(true);
    let (status, body) = https(&server, "POST", "/mutate", &review("uid-2", bad));
    assert!(status.contains(" 200 "), "{status}");
    let out: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(out["response"]["uid"], "uid-2");
    assert_eq!(out["response"]["allowed"], false);
    assert_eq!(out["response"]["status"]["code"], 403);
    let msg = out["response"]["status"]["message"].as_str().unwrap();
    assert!(msg.contains("hostPID"), "{msg}");
    assert!(out["response"].get("patch").is_none());
}

#[test]
fn garbage_and_plain_http_are_refused() {
    let server = start();
    let (status, _) = https(&server, "POST", "/mutate", b"{not json");
    assert!(status.contains(" 400 "), "{status}");
    let (status, _) = https(&server, "GET", "/nothing", b"");
    assert!(status.contains(" 404 "), "{status}");
    // Plain HTTP on the TLS port gets no HTTP answer.
    let mut tcp = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut buf = Vec::new();
    let _ = tcp.read_to_end(&mut buf);
    assert!(
        !buf.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf)
    );
}

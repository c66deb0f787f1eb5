//! The egress proxy end to end on loopback: policy, SSRF checks, SNI, smuggling, revocation.

mod support;

use std::sync::Arc;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn rules_for(port: u16, tls_port: u16) -> String {
    format!(
        r#"  - host: api.test
    ports: [{port}, {tls_port}]
    allow_private: true
  - host: "*.wild.test"
    ports: [{port}]
    allow_private: true
  - host: paths.test
    ports: [{port}]
    methods: [GET]
    paths: ["/v1/"]
    allow_private: true
  - host: rep.test
    ports: [{port}]
    paths: ["/ok/"]
    mode: report
    allow_private: true
  - host: rebind.test
    ports: [{port}]
  - host: meta.test
    ports: [80]
  - host: mixed.test
    ports: [{port}]
"#
    )
}

async fn setup() -> (Proxy, u16, u16, Tls) {
    let up = http_upstream("plain").await;
    let tls = tls(&["api.test", "other.test"]);
    let tup = tls_upstream(tls.acceptor.clone()).await;
    let dns = dns(&[
        ("api.test", &["127.0.0.1"]),
        ("a.wild.test", &["127.0.0.1"]),
        ("b.c.wild.test", &["127.0.0.1"]),
        ("wild.test", &["127.0.0.1"]),
        ("paths.test", &["127.0.0.1"]),
        ("rep.test", &["127.0.0.1"]),
        ("rebind.test", &["127.0.0.1"]),
        ("meta.test", &["169.254.169.254"]),
        ("mixed.test", &["93.184.216.34", "10.0.0.7"]),
        ("other.test", &["127.0.0.1"]),
    ])
    .await;
    let p = proxy(&rules_for(up.port(), tup.port()), dns, |_| {}).await;
    (p, up.port(), tup.port(), tls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_http_passes_rewritten_and_audited_without_query() {
    let (p, port, _, _) = setup().await;
    let r = get(
        p.addr,
        &format!("http://api.test:{port}/v1/items?token=s3cret"),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, "plain GET /v1/items?token=s3cret HTTP/1.1");
    // The upstream saw origin form and no proxy headers.
    assert!(!r.head.to_lowercase().contains("proxy-"), "{}", r.head);
    eventually(|| p.events().iter().any(|e| e.host == "api.test")).await;
    let e = p.last_for("api.test");
    assert_eq!((e.verdict, e.reason), ("allow", "allowed"));
    assert_eq!(e.path.as_deref(), Some("/v1/items"));
    assert_eq!(e.spiffe_id.as_deref(), Some(ID));
    let line = serde_json_line(&e);
    assert!(!line.contains("s3cret"), "{line}");
}

fn serde_json_line(e: &brainbox_sidecar::egress::audit::AuditEvent) -> String {
    serde_json::to_string(e).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_requests_reuse_one_upstream() {
    let (p, port, _, _) = setup().await;
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    for i in 0..5 {
        let req =
            format!("GET http://api.test:{port}/n{i} HTTP/1.1\r\nHost: api.test:{port}\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let r = read_response(&mut s).await.unwrap();
        assert_eq!(r.body, format!("plain GET /n{i} HTTP/1.1"));
    }
    // A POST with a chunked body passes through unchanged.
    let req = format!(
        "POST http://api.test:{port}/c HTTP/1.1\r\nHost: api.test:{port}\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let r = read_response(&mut s).await.unwrap();
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_tls_allowed_and_sni_checked() {
    let (p, _, tport, tls) = setup().await;
    let client = |sni: bool, name: &str| {
        let mut cfg = rustls::ClientConfig::builder()
            .with_root_certificates(tls.roots.clone())
            .with_no_client_auth();
        cfg.enable_sni = sni;
        (
            tokio_rustls::TlsConnector::from(Arc::new(cfg)),
            rustls::pki_types::ServerName::try_from(name.to_string()).unwrap(),
        )
    };
    // Allowed: SNI equals the CONNECT host.
    let (s, r) = connect(p.addr, &format!("api.test:{tport}")).await;
    assert_eq!(r.status, 200);
    let (c, name) = client(true, "api.test");
    let mut t = c.connect(name, s).await.expect("TLS through the tunnel");
    t.write_all(b"GET /hello HTTP/1.1\r\nHost: api.test\r\n\r\n")
        .await
        .unwrap();
    let r = read_response(&mut t).await.unwrap();
    assert_eq!(r.body, "tls GET /hello HTTP/1.1");
    eventually(|| {
        p.events()
            .iter()
            .any(|e| e.request == "connect" && e.verdict == "allow")
    })
    .await;

    // Domain fronting: CONNECT api.test, SNI other.test.
    let (s, r) = connect(p.addr, &format!("api.test:{tport}")).await;
    assert_eq!(r.status, 200);
    let (c, name) = client(true, "other.test");
    assert!(c.connect(name, s).await.is_err(), "fronted TLS must fail");
    eventually(|| p.events().iter().any(|e| e.reason == "sni-mismatch")).await;

    // No SNI at all.
    let (s, _) = connect(p.addr, &format!("api.test:{tport}")).await;
    let (c, name) = client(false, "api.test");
    assert!(c.connect(name, s).await.is_err(), "SNI-less TLS must fail");
    eventually(|| p.events().iter().any(|e| e.reason == "sni-missing")).await;

    // Not TLS at all.
    let (mut s, _) = connect(p.addr, &format!("api.test:{tport}")).await;
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut b = [0u8; 16];
    assert_eq!(s.read(&mut b).await.unwrap_or(0), 0);
    eventually(|| p.events().iter().any(|e| e.reason == "not-tls")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_hosts_get_403_with_reason() {
    let (p, port, _, _) = setup().await;
    let r = get(p.addr, &format!("http://evil.test:{port}/")).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.reason().as_deref(), Some("no-rule"));
    assert_eq!(r.body, "{\"verdict\":\"deny\",\"reason\":\"no-rule\"}\n");
    let (_, r) = connect(p.addr, "evil.test:443").await;
    assert_eq!((r.status, r.reason().as_deref()), (403, Some("no-rule")));
    // A literal IP no rule names.
    let r = get(p.addr, &format!("http://127.0.0.1:{port}/")).await;
    assert_eq!(r.reason().as_deref(), Some("literal-ip-not-allowed"));
    let (_, r) = connect(p.addr, "[::ffff:127.0.0.1]:443").await;
    assert_eq!(r.reason().as_deref(), Some("literal-ip-not-allowed"));
    eventually(|| {
        p.events()
            .iter()
            .any(|e| e.host == "evil.test" && e.verdict == "deny")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_port_method_and_path_rules() {
    let (p, port, tport, _) = setup().await;
    assert_eq!(
        get(p.addr, &format!("http://a.wild.test:{port}/"))
            .await
            .status,
        200
    );
    assert_eq!(
        get(p.addr, &format!("http://b.c.wild.test:{port}/"))
            .await
            .status,
        200
    );
    // The apex is not covered by `*.`.
    let r = get(p.addr, &format!("http://wild.test:{port}/")).await;
    assert_eq!(r.reason().as_deref(), Some("no-rule"));
    // Right host, wrong port.
    let r = get(p.addr, &format!("http://a.wild.test:{tport}/")).await;
    assert_eq!(r.reason().as_deref(), Some("no-rule"));
    assert_eq!(
        get(p.addr, &format!("http://paths.test:{port}/v1/a"))
            .await
            .status,
        200
    );
    let r = get(p.addr, &format!("http://paths.test:{port}/admin")).await;
    assert_eq!(r.reason().as_deref(), Some("path-not-allowed"));
    let r = get(p.addr, &format!("http://paths.test:{port}/v1/../admin")).await;
    assert_eq!(r.reason().as_deref(), Some("path-not-allowed"));
    let r = raw(
        p.addr,
        &format!(
            "DELETE http://paths.test:{port}/v1/a HTTP/1.1\r\nHost: paths.test:{port}\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(r.reason().as_deref(), Some("method-not-allowed"));
    let (_, r) = connect(p.addr, &format!("paths.test:{port}")).await;
    assert_eq!(r.reason().as_deref(), Some("connect-not-allowed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_mode_passes_and_records() {
    let (p, port, _, _) = setup().await;
    let r = get(p.addr, &format!("http://rep.test:{port}/elsewhere")).await;
    assert_eq!(r.status, 200, "{r:?}");
    eventually(|| p.events().iter().any(|e| e.host == "rep.test")).await;
    let e = p.last_for("rep.test");
    assert_eq!((e.verdict, e.reason), ("report", "path-not-allowed"));
    let r = get(p.addr, &format!("http://rep.test:{port}/ok/x")).await;
    assert_eq!(r.status, 200);
    eventually(|| p.last_for("rep.test").verdict == "allow").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_resolving_to_private_addresses_are_refused() {
    let (p, port, _, _) = setup().await;
    // DNS rebinding: an allowed name whose answer is loopback.
    let r = get(p.addr, &format!("http://rebind.test:{port}/")).await;
    assert_eq!(
        (r.status, r.reason().as_deref()),
        (403, Some("address-loopback"))
    );
    let (_, r) = connect(p.addr, &format!("rebind.test:{port}")).await;
    assert_eq!(r.reason().as_deref(), Some("address-loopback"));
    // Cloud metadata.
    let r = get(p.addr, "http://meta.test/latest/meta-data/").await;
    assert_eq!(r.reason().as_deref(), Some("address-link-local"));
    // One bad answer among good ones refuses the name.
    let r = get(p.addr, &format!("http://mixed.test:{port}/")).await;
    assert_eq!(r.reason().as_deref(), Some("address-private"));
    eventually(|| p.events().iter().any(|e| e.host == "mixed.test")).await;
    let e = p.last_for("mixed.test");
    assert_eq!(e.addr, Some("10.0.0.7".parse().unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_forms_are_refused() {
    let (p, port, _, _) = setup().await;
    let h = format!("api.test:{port}");
    for (req, reason) in [
        (
            format!("POST http://{h}/ HTTP/1.1\r\nHost: {h}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            "content-length-with-transfer-encoding",
        ),
        (
            format!("POST http://{h}/ HTTP/1.1\r\nHost: {h}\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd"),
            "duplicate-content-length",
        ),
        (
            format!("POST http://{h}/ HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked, identity\r\n\r\n"),
            "bad-transfer-encoding",
        ),
        (
            format!("GET http://{h}/ HTTP/1.1\r\nHost: evil.test\r\n\r\n"),
            "host-mismatch",
        ),
        (
            format!("GET http://{h}/ HTTP/1.1\nHost: {h}\n\n"),
            "bare-lf",
        ),
    ] {
        let r = raw(p.addr, &req).await;
        assert_eq!((r.status, r.reason().as_deref()), (400, Some(reason)), "{req:?}");
    }
    eventually(|| p.events().iter().any(|e| e.reason == "host-mismatch")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_identity_is_refused_everything() {
    let up = http_upstream("plain").await;
    let dns = dns(&[("api.test", &["127.0.0.1"])]).await;
    let rev_dir = tempfile::tempdir().unwrap();
    let rev = rev_dir.path().join("revoked");
    let rev2 = rev.clone();
    let p = proxy(
        &format!(
            "  - host: api.test\n    ports: [{}]\n    allow_private: true\n",
            up.port()
        ),
        dns,
        move |c| c.revocation_file = rev2.display().to_string(),
    )
    .await;
    let url = format!("http://api.test:{}/", up.port());
    assert_eq!(get(p.addr, &url).await.status, 200);
    std::fs::write(&rev, format!("# pushed by the identity service\n{ID}\n")).unwrap();
    p.handle.state.refresh().unwrap();
    let r = get(p.addr, &url).await;
    assert_eq!(
        (r.status, r.reason().as_deref()),
        (403, Some("identity-revoked"))
    );
    let (_, r) = connect(p.addr, &format!("api.test:{}", up.port())).await;
    assert_eq!(r.reason().as_deref(), Some("identity-revoked"));
    std::fs::write(&rev, "spiffe://brainbox.local/ns/agents/sa/someone-else\n").unwrap();
    p.handle.state.refresh().unwrap();
    assert_eq!(get(p.addr, &url).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_identity_has_no_policy() {
    let dns = dns(&[("api.test", &["127.0.0.1"])]).await;
    let p = proxy("  - host: api.test\n    ports: [80]\n", dns, |c| {
        c.spiffe_id = "spiffe://brainbox.local/ns/other/sa/x".into()
    })
    .await;
    let r = get(p.addr, "http://api.test/").await;
    assert_eq!(r.reason().as_deref(), Some("no-policy"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_upstream_closed_meanwhile_is_retried_once() {
    // An upstream that answers one request per connection and then closes without saying so.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nonce")
                    .await;
            });
        }
    });
    let dns = dns(&[("api.test", &["127.0.0.1"])]).await;
    let p = proxy(
        &format!("  - host: api.test\n    ports: [{port}]\n    allow_private: true\n"),
        dns,
        |_| {},
    )
    .await;
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    for _ in 0..3 {
        let req = format!("GET http://api.test:{port}/ HTTP/1.1\r\nHost: api.test:{port}\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let r = read_response(&mut s).await.unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "once"), "{r:?}");
    }
}

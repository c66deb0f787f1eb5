//! Shared pieces of the egress integration tests: a DNS responder, upstream servers (plain and
//! TLS), a proxy started in-process, and a tiny HTTP client.
#![allow(dead_code)]

use brainbox_sidecar::egress::{
    self,
    audit::{AuditEvent, EgressMetrics, MemoryAudit},
    identity::StaticIdentity,
    EgressConfig, EgressHandle,
};
use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream, UdpSocket},
};

pub const ID: &str = "spiffe://brainbox.local/ns/agents/sa/test";

/// A UDP DNS responder on loopback that answers A/AAAA from a fixed map (TTL 0).
pub async fn dns(map: &[(&str, &[&str])]) -> SocketAddr {
    let map: HashMap<String, Vec<IpAddr>> = map
        .iter()
        .map(|(n, ips)| {
            (
                n.to_string(),
                ips.iter().map(|i| i.parse().unwrap()).collect(),
            )
        })
        .collect();
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        loop {
            let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
                continue;
            };
            if let Some(resp) = answer(&buf[..n], &map) {
                let _ = sock.send_to(&resp, peer).await;
            }
        }
    });
    addr
}

fn answer(q: &[u8], map: &HashMap<String, Vec<IpAddr>>) -> Option<Vec<u8>> {
    if q.len() < 12 {
        return None;
    }
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let l = *q.get(i)? as usize;
        i += 1;
        if l == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(q.get(i..i + l)?).to_lowercase());
        i += l;
    }
    let qtype = u16::from_be_bytes([*q.get(i)?, *q.get(i + 1)?]);
    let qend = i + 4;
    let name = labels.join(".");
    let ips = map.get(&name);
    let answers: Vec<IpAddr> = ips
        .map(|v| {
            v.iter()
                .copied()
                .filter(|ip| (qtype == 1 && ip.is_ipv4()) || (qtype == 28 && ip.is_ipv6()))
                .collect()
        })
        .unwrap_or_default();
    let mut r = Vec::new();
    r.extend_from_slice(&q[..2]);
    let rcode = if ips.is_none() { 3 } else { 0 };
    r.extend_from_slice(&[0x81, 0x80 | rcode]);
    r.extend_from_slice(&[0, 1]);
    r.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    r.extend_from_slice(&[0, 0, 0, 0]);
    r.extend_from_slice(&q[12..qend]);
    for ip in answers {
        r.extend_from_slice(&[0xc0, 0x0c]);
        match ip {
            IpAddr::V4(v4) => {
                r.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 0, 0, 4]);
                r.extend_from_slice(&v4.octets());
            }
            IpAddr::V6(v6) => {
                r.extend_from_slice(&[0, 28, 0, 1, 0, 0, 0, 0, 0, 16]);
                r.extend_from_slice(&v6.octets());
            }
        }
    }
    Some(r)
}

/// Reads one HTTP/1.1 request head (no body support needed beyond Content-Length).
async fn read_request<S: AsyncReadExt + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..p + 4]).into_owned();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            while buf.len() < p + 4 + len {
                let mut tmp = [0u8; 4096];
                let n = s.read(&mut tmp).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&tmp[..n]);
            }
            buf.drain(..p + 4 + len);
            return Some(head);
        }
        let mut tmp = [0u8; 4096];
        let n = s.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
    }
}

/// Serves keep-alive HTTP on any stream: the body is `<tag> <request line>`.
pub async fn serve_http<S: AsyncReadExt + AsyncWriteExt + Unpin>(mut s: S, tag: String) {
    let mut buf = Vec::new();
    while let Some(head) = read_request(&mut s, &mut buf).await {
        let line = head.lines().next().unwrap_or("").to_string();
        let body = format!("{tag} {line}");
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Seen-Head: {}\r\n\r\n{body}",
            body.len(),
            head.replace("\r\n", "|")
        );
        if s.write_all(resp.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// A plain HTTP upstream on loopback.
pub async fn http_upstream(tag: &str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let tag = tag.to_string();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(serve_http(s, tag.clone()));
        }
    });
    addr
}

/// TLS material for the TLS upstream: one CA-less self-signed cert for the names given.
pub struct Tls {
    pub acceptor: tokio_rustls::TlsAcceptor,
    pub roots: rustls::RootCertStore,
}

pub fn tls(names: &[&str]) -> Tls {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    let cert = params.self_signed(&key).unwrap();
    let der = cert.der().clone();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der.clone()).unwrap();
    let cfg = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![der],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    Tls {
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(cfg)),
        roots,
    }
}

/// A TLS HTTP upstream on loopback.
pub async fn tls_upstream(acceptor: tokio_rustls::TlsAcceptor) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else {
                continue;
            };
            let acc = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(t) = acc.accept(s).await {
                    serve_http(t, "tls".into()).await;
                }
            });
        }
    });
    addr
}

/// A proxy running in this process with an in-memory audit sink.
pub struct Proxy {
    pub handle: EgressHandle,
    pub audit: Arc<MemoryAudit>,
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
}

impl Proxy {
    pub fn policy_path(&self) -> PathBuf {
        self.dir.path().join("policy.yaml")
    }

    pub fn events(&self) -> Vec<AuditEvent> {
        self.audit.events()
    }

    /// The last audit record for `host`.
    pub fn last_for(&self, host: &str) -> AuditEvent {
        self.events()
            .into_iter()
            .rev()
            .find(|e| e.host == host)
            .unwrap_or_else(|| panic!("no audit record for {host}: {:?}", self.events()))
    }
}

/// Starts a proxy whose policy for [`ID`] has `rules` (YAML list items).
pub async fn proxy(rules: &str, dns: SocketAddr, tweak: impl FnOnce(&mut EgressConfig)) -> Proxy {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("policy.yaml"),
        format!(
            "kind: egress-policy\nname: test\nspiffe_ids: [\"spiffe://brainbox.local/ns/agents/*\"]\nrules:\n{rules}"
        ),
    )
    .unwrap();
    let mut cfg = EgressConfig {
        listen: "127.0.0.1:0".into(),
        policy_dir: dir.path().display().to_string(),
        nameservers: vec![dns.to_string()],
        spiffe_id: ID.into(),
        refresh_ms: 100,
        ..EgressConfig::default()
    };
    tweak(&mut cfg);
    let audit = Arc::new(MemoryAudit::default());
    let handle = egress::start(
        &cfg,
        Arc::new(StaticIdentity(cfg.spiffe_id.clone())),
        audit.clone(),
        EgressMetrics::default(),
    )
    .await
    .unwrap();
    let addr = handle.local_addr;
    Proxy {
        handle,
        audit,
        dir,
        addr,
    }
}

/// A response as the tests look at it.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Resp {
    pub fn reason(&self) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("x-brainbox-egress-reason")
                .then(|| v.trim().to_string())
        })
    }
}

/// Reads one response with a Content-Length body (or until close).
pub async fn read_response<S: AsyncReadExt + Unpin>(s: &mut S) -> Option<Resp> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..p + 4]).into_owned();
            let status = head.get(9..12)?.parse().ok()?;
            let len: Option<usize> = head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            });
            if len.is_none() && head.contains("Connection Established") {
                return Some(Resp {
                    status,
                    head,
                    body: String::new(),
                });
            }
            let want = len.map(|l| p + 4 + l);
            while want.is_none_or(|w| buf.len() < w) {
                let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut tmp))
                    .await
                    .ok()?
                    .ok()?;
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&tmp[..n]);
            }
            let body = String::from_utf8_lossy(&buf[p + 4..want.unwrap_or(buf.len())]).into_owned();
            return Some(Resp { status, head, body });
        }
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut tmp))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
    }
}

/// Sends raw bytes to the proxy and reads one response.
pub async fn raw(proxy: SocketAddr, req: &str) -> Resp {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    read_response(&mut s).await.expect("a response")
}

/// `GET url` through the proxy (absolute form).
pub async fn get(proxy: SocketAddr, url: &str) -> Resp {
    let rest = url.strip_prefix("http://").unwrap();
    let host = rest.split('/').next().unwrap();
    raw(
        proxy,
        &format!("GET {url} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    )
    .await
}

/// `CONNECT authority` through the proxy: the stream and the proxy's answer.
pub async fn connect(proxy: SocketAddr, authority: &str) -> (TcpStream, Resp) {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let r = read_response(&mut s).await.expect("an answer to CONNECT");
    (s, r)
}

/// Waits until `f` holds (the proxy's audit is written after the response).
pub async fn eventually(mut f: impl FnMut() -> bool) {
    for _ in 0..100 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("condition not reached in 2 s");
}

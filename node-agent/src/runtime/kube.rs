//! Recycling a Kubernetes pod: after the freeze, the capture and the kill, the node agent asks
//! the API server to delete the pod (grace period 0, with a UID precondition so a pod recreated
//! under the same name is never the one deleted), and the pod's controller creates a fresh one
//! from its template.
//!
//! The client is deliberately small: one HTTPS request over `rustls`, verified against the
//! cluster CA, authenticated with the service-account token (re-read for every request: kubelet
//! rotates projected tokens). In-cluster defaults come from `KUBERNETES_SERVICE_HOST`/`_PORT`
//! and `/var/run/secrets/kubernetes.io/serviceaccount/`.

use serde::Deserialize;
use std::{path::PathBuf, sync::Arc, time::Duration};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `[kubernetes]` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubeConfig {
    /// `auto` (on when running in a pod: `KUBERNETES_SERVICE_HOST` is set), `on` or `off`.
    pub mode: KubeMode,
    /// API server, `https://host:port` (empty: from `KUBERNETES_SERVICE_HOST`/`_PORT`).
    pub api_server: String,
    /// Bearer token file (re-read for every request).
    pub token_file: PathBuf,
    /// CA bundle of the API server.
    pub ca_file: PathBuf,
    /// Longest one API call may take, in milliseconds.
    pub timeout_ms: u64,
}

/// Whether the Kubernetes path is on.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum KubeMode {
    /// On when running in a pod.
    #[default]
    Auto,
    /// Always on (startup fails without a usable API server configuration).
    On,
    /// Off: recycle through Docker only.
    Off,
}

const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

impl Default for KubeConfig {
    fn default() -> Self {
        Self {
            mode: KubeMode::Auto,
            api_server: String::new(),
            token_file: PathBuf::from(SA_DIR).join("token"),
            ca_file: PathBuf::from(SA_DIR).join("ca.crt"),
            timeout_ms: 5_000,
        }
    }
}

/// Errors of the Kubernetes path.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// The configuration cannot be used.
    #[error("kubernetes: {0}")]
    Config(String),
    /// The request could not be made or answered.
    #[error("kubernetes API {url}: {reason}")]
    Request { url: String, reason: String },
    /// The API server refused.
    #[error("kubernetes API {url}: HTTP {status}: {message}")]
    Status {
        url: String,
        status: u16,
        message: String,
    },
}

/// A pod deletion's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deleted {
    /// The API server accepted the deletion.
    Accepted,
    /// The pod was already gone (404), or it is another pod now (409: UID precondition).
    AlreadyGone(u16),
}

/// A minimal API client.
#[derive(Clone)]
pub struct KubeClient {
    host: String,
    port: u16,
    server_name: rustls::pki_types::ServerName<'static>,
    tls: Arc<rustls::ClientConfig>,
    token_file: PathBuf,
    timeout: Duration,
}

impl std::fmt::Debug for KubeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KubeClient({}:{})", self.host, self.port)
    }
}

/// Splits `https://host:port` (IPv6 literals in brackets).
pub fn parse_server(url: &str) -> Result<(String, u16), KubeError> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| KubeError::Config(format!("api_server `{url}` must start with https://")))?;
    let rest = rest.trim_end_matches('/');
    if rest.contains('/') || rest.is_empty() {
        return Err(KubeError::Config(format!(
            "api_server `{url}` must be https://host[:port]"
        )));
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| KubeError::Config(format!("api_server `{url}`: unclosed [")))?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok(),
            None if after.is_empty() => Some(443),
            None => None,
        };
        (h.to_owned(), port)
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), p.parse().ok()),
            None => (rest.to_owned(), Some(443)),
        }
    };
    let port = port.ok_or_else(|| KubeError::Config(format!("api_server `{url}`: bad port")))?;
    Ok((host, port))
}

/// Percent-encodes nothing: Kubernetes names are DNS labels/subdomains; anything else is refused.
fn checked_name(kind: &str, v: &str) -> Result<(), KubeError> {
    let ok = !v.is_empty()
        && v.len() <= 253
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(KubeError::Config(format!(
            "{kind} `{}` is not a Kubernetes name",
            v.escape_debug()
        )))
    }
}

impl KubeClient {
    /// The client for `cfg`, or `None` when the Kubernetes path is off (or `auto` outside a
    /// cluster).
    pub fn from_config(cfg: &KubeConfig) -> Result<Option<Self>, KubeError> {
        let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
        match cfg.mode {
            KubeMode::Off => return Ok(None),
            KubeMode::Auto if !in_cluster && cfg.api_server.is_empty() => return Ok(None),
            _ => {}
        }
        let server = if cfg.api_server.is_empty() {
            let host = std::env::var("KUBERNETES_SERVICE_HOST").map_err(|_| {
                KubeError::Config("api_server is empty and KUBERNETES_SERVICE_HOST unset".into())
            })?;
            let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
            if host.contains(':') {
                format!("https://[{host}]:{port}")
            } else {
                format!("https://{host}:{port}")
            }
        } else {
            cfg.api_server.clone()
        };
        let pem = std::fs::read(&cfg.ca_file)
            .map_err(|e| KubeError::Config(format!("ca_file {}: {e}", cfg.ca_file.display())))?;
        Self::new(&server, &pem, cfg.token_file.clone(), cfg.timeout_ms).map(Some)
    }

    /// A client for `server` trusting the PEM CA bundle `ca_pem`.
    pub fn new(
        server: &str,
        ca_pem: &[u8],
        token_file: PathBuf,
        timeout_ms: u64,
    ) -> Result<Self, KubeError> {
        use rustls::pki_types::{pem::PemObject, CertificateDer};
        let (host, port) = parse_server(server)?;
        let mut roots = rustls::RootCertStore::empty();
        let mut n = 0;
        for cert in CertificateDer::pem_slice_iter(ca_pem) {
            let cert = cert.map_err(|e| KubeError::Config(format!("ca_file: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| KubeError::Config(format!("ca_file: {e}")))?;
            n += 1;
        }
        if n == 0 {
            return Err(KubeError::Config("ca_file holds no certificate".into()));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| KubeError::Config(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let server_name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| KubeError::Config(format!("api_server host `{host}`: {e}")))?;
        Ok(Self {
            host,
            port,
            server_name,
            tls: Arc::new(tls),
            token_file,
            timeout: Duration::from_millis(timeout_ms.max(100)),
        })
    }

    /// Deletes pod `namespace/name` now (grace period 0), only if its UID is still `uid` when
    /// given. A 404 or a failed precondition means the pod is already gone or replaced.
    pub async fn delete_pod(
        &self,
        namespace: &str,
        name: &str,
        uid: Option<&str>,
    ) -> Result<Deleted, KubeError> {
        checked_name("namespace", namespace)?;
        checked_name("pod", name)?;
        let path = format!("/api/v1/namespaces/{namespace}/pods/{name}");
        let mut body = serde_json::json!({
            "kind": "DeleteOptions",
            "apiVersion": "v1",
            "gracePeriodSeconds": 0,
            "propagationPolicy": "Background",
        });
        if let Some(uid) = uid {
            body["preconditions"] = serde_json::json!({ "uid": uid });
        }
        let (status, text) = self.request("DELETE", &path, Some(&body)).await?;
        match status {
            200 | 202 => Ok(Deleted::Accepted),
            404 | 409 => Ok(Deleted::AlreadyGone(status)),
            _ => Err(KubeError::Status {
                url: self.url(&path),
                status,
                message: status_message(&text),
            }),
        }
    }

    fn url(&self, path: &str) -> String {
        if self.host.contains(':') {
            format!("https://[{}]:{}{path}", self.host, self.port)
        } else {
            format!("https://{}:{}{path}", self.host, self.port)
        }
    }

    /// One request; returns (status, body). Bounded in time and size.
    async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(u16, String), KubeError> {
        let url = self.url(path);
        let err = |reason: String| KubeError::Request {
            url: url.clone(),
            reason,
        };
        let token = std::fs::read_to_string(&self.token_file)
            .map_err(|e| err(format!("token_file {}: {e}", self.token_file.display())))?;
        let token = token.trim();
        let payload = body.map(|b| b.to_string()).unwrap_or_default();
        let host_header = if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        };
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host_header}\r\nAuthorization: Bearer {token}\r\n\
             Accept: application/json\r\nContent-Type: application/json\r\n\
             User-Agent: brainbox-node-agent/{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
            env!("CARGO_PKG_VERSION"),
            payload.len()
        );
        let work = async {
            let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(|e| err(format!("connect: {e}")))?;
            let connector = tokio_rustls::TlsConnector::from(self.tls.clone());
            let mut tls = connector
                .connect(self.server_name.clone(), tcp)
                .await
                .map_err(|e| err(format!("TLS: {e}")))?;
            tls.write_all(req.as_bytes())
                .await
                .map_err(|e| err(format!("write: {e}")))?;
            let mut buf = Vec::new();
            // A Status object is small; a server that sends more is cut off, not buffered.
            let mut limited = (&mut tls).take(1 << 20);
            match limited.read_to_end(&mut buf).await {
                Ok(_) => {}
                // Servers that close without close_notify: keep what arrived.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !buf.is_empty() => {}
                Err(e) => return Err(err(format!("read: {e}"))),
            }
            parse_response(&buf).map_err(err)
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| err(format!("no answer within {} ms", self.timeout.as_millis())))?
    }
}

/// Status code and body of an HTTP/1.1 response (chunked bodies are de-chunked).
pub fn parse_response(buf: &[u8]) -> Result<(u16, String), String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let n = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err("truncated response".into()),
        Err(e) => return Err(format!("malformed response: {e}")),
    };
    let status = resp.code.ok_or("no status code")?;
    let chunked = resp.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("transfer-encoding")
            && String::from_utf8_lossy(h.value)
                .to_ascii_lowercase()
                .contains("chunked")
    });
    let raw = &buf[n..];
    let body = if chunked { dechunk(raw) } else { raw.to_vec() };
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let size_line = String::from_utf8_lossy(&raw[..eol]);
        let size_hex = size_line.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size_hex, 16) else {
            break;
        };
        raw = &raw[eol + 2..];
        if size == 0 || raw.len() < size {
            out.extend_from_slice(&raw[..size.min(raw.len())]);
            break;
        }
        out.extend_from_slice(&raw[..size]);
        raw = raw.get(size + 2..).unwrap_or_default();
    }
    out
}

/// The `message` of a Kubernetes `Status` body, or the body's start.
fn status_message(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| body.chars().take(200).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_parse() {
        assert_eq!(
            parse_server("https://10.0.0.1:6443").unwrap(),
            ("10.0.0.1".into(), 6443)
        );
        assert_eq!(
            parse_server("https://kubernetes.default.svc").unwrap(),
            ("kubernetes.default.svc".into(), 443)
        );
        assert_eq!(
            parse_server("https://[fd00::1]:443/").unwrap(),
            ("fd00::1".into(), 443)
        );
        for bad in [
            "http://x:1",
            "https://",
            "https://x:port",
            "https://x/api",
            "https://[::1",
        ] {
            assert!(parse_server(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_are_checked_before_they_reach_a_path() {
        assert!(checked_name("pod", "agent-7f9c.x").is_ok());
        for bad in ["", "../x", "a/b", "A", "a b", "a?b", "a%2f"] {
            assert!(checked_name("pod", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn responses_parse_plain_and_chunked() {
        let (s, b) = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}").unwrap();
        assert_eq!((s, b.as_str()), (200, "{}"));
        let (s, b) = parse_response(
            b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"me\r\n12\r\nssage\":\"no\"}xxxxxx\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(s, 403);
        assert!(b.starts_with("{\"message\":\"no\"}"), "{b}");
        assert!(parse_response(b"garbage").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-").is_err());
        assert_eq!(
            status_message("{\"message\":\"pods is forbidden\"}"),
            "pods is forbidden"
        );
    }

    proptest::proptest! {
        /// Whatever a server (or something posing as one) sends, parsing returns, never panics.
        #[test]
        fn hostile_responses_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048)) {
            let _ = parse_response(&bytes);
            let mut chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            chunked.extend_from_slice(&bytes);
            let _ = parse_response(&chunked);
        }
    }
}
